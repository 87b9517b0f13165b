"""申请毕业 in headless Chromium on the chat page, against the real service and the emulator: typed
answers and photos sent from the page to submission, the approval through the review path (its
push reaching the chat), then 我的订单's link paid in the emulator's cashier inside the web view,
to 已缴费 with the receipt.

Skipped without Debian's `chromium` and `chromium-driver` unless REQUIRE_BROWSER=1 (as
tests/test_browser.py). A screenshot goes to var/chat-graduation.png.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiohttp import web

from emulator.app import start_emulator
from tests.test_browser import AES_KEY, Loop, bubbles, open_chat, shot, wait_for
from tests.test_browser import browser_paths, driver  # noqa: F401 - fixtures
from tests.test_chat_page import APP_ID, APP_SECRET, TOKEN

OPENID = "oBrowserGraduation0000000001"
ZHANG = "310115199203154215"
ASSESSMENT = ("本人在自学考试期间，坚持工作与学习两不误，认真学习各门课程，" * 8)[:201]


class GraduationStack:
    """The real service (bot.app) with WeChat Pay configured, the emulator with its WeChat Pay, the
    demo data set with 张伟 bound, the 申请毕业 window and the payment period open."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bot_runner: web.AppRunner | None = None
        self.emu_runner: web.AppRunner | None = None
        self.base = ""
        self.db: Any = None

    async def start(self) -> None:
        import socket

        from sqlalchemy import delete, select

        from bot.app import DB, create_app
        from bot.config import load_settings
        from bot.scheduler import SchedulerOptions
        from emulator.pay import PayState
        from storage import models as m
        from storage.demo import load_demo
        from storage.migrate import upgrade_async

        def free_port() -> int:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                return sock.getsockname()[1]

        db_url = f"sqlite:///{self.tmp}/graduation.sqlite3"
        await upgrade_async(db_url)
        bot_port, emu_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{emu_port}"
        wxpay = PayState(appid=APP_ID, time_scale=0)
        self.emu_runner, _state = await start_emulator(
            "127.0.0.1", emu_port, bot_url=f"http://127.0.0.1:{bot_port}/wechat", token=TOKEN, app_id=APP_ID,
            app_secret=APP_SECRET, aes_key=AES_KEY, mode="safe", pay=wxpay)
        settings = load_settings({
            "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID, "WECHAT_APP_SECRET": APP_SECRET, "WECHAT_AES_KEY": AES_KEY,
            "WECHAT_API_BASE": self.base, "SMS_API_BASE": self.base, "WECHAT_OAUTH_BASE": self.base,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{bot_port}", "DATABASE_URL": db_url, "ZIKAO_MODE": "test",
            "MEDIA_DIR": str(self.tmp / "media"), "REPLY_BUDGET_SECONDS": "4",
            **wxpay.write_service_files(self.tmp / "wechatpay"), "WECHATPAY_API_BASE": self.base,
        })
        app = create_app(settings, scheduler=SchedulerOptions(deliver_every=0.2, renew_seconds=0.2))
        self.bot_runner = web.AppRunner(app)
        await self.bot_runner.setup()
        await web.TCPSite(self.bot_runner, "127.0.0.1", bot_port).start()
        self.db = app[DB]
        await load_demo(self.db)
        now = dt.datetime.now(dt.timezone.utc)
        async with self.db.session() as s, s.begin():
            await s.execute(delete(m.BusinessWindow).where(m.BusinessWindow.kind.in_(("graduation", "graduation_fee"))))
            cid = await s.scalar(select(m.Candidate.id).where(m.Candidate.with_id_number(ZHANG)))
            s.add(m.WechatUser(openid=OPENID, candidate_id=cid, subscribed=True, bound_at=now,
                               active_admission_number="012323200117"))
            s.add(m.BusinessWindow(kind="graduation", title="申请毕业", opens_at=now - dt.timedelta(days=1),
                                   closes_at=now + dt.timedelta(days=10)))
            s.add(m.BusinessWindow(kind="graduation_fee", title="毕业审定费缴费", opens_at=now - dt.timedelta(hours=1),
                                   closes_at=now + dt.timedelta(days=10)))

    async def stop(self) -> None:
        if self.emu_runner:
            await self.emu_runner.cleanup()
        if self.bot_runner:
            await self.bot_runner.cleanup()


@pytest.fixture(scope="module")
def grad_service(browser_paths, tmp_path_factory) -> Iterator[tuple[Loop, GraduationStack]]:  # noqa: F811
    s = GraduationStack(tmp_path_factory.mktemp("browser-graduation"))
    loop = Loop()
    loop.run(s.start, timeout=60)
    try:
        yield loop, s
    finally:
        loop.run(s.stop)
        loop.close()


def test_graduation_walked_on_the_chat_page_approved_and_paid(driver, grad_service, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    from storage import applications as apps
    from tests.evidence_fixtures import certificate

    loop, s = grad_service
    open_chat(driver, s, OPENID)
    driver.find_element(By.ID, "follow-btn").click()
    wait_for(driver, lambda d: bubbles(d, "account"), what="the welcome")
    if driver.find_element(By.ID, "to-keyboard").is_displayed():
        driver.find_element(By.ID, "to-keyboard").click()
    box = wait_for(driver, lambda d: d.find_element(By.ID, "text") if d.find_element(By.ID, "text").is_displayed() else False)

    def answered(expect: str, seen: int) -> str:
        def new_reply(d):
            return next((b.text for b in bubbles(d, "account")[seen:] if expect in b.text), False)
        return wait_for(driver, new_reply, timeout=20, what=f"a reply with {expect!r}")

    def say(text: str, expect: str) -> str:
        seen = len(bubbles(driver, "account"))
        box.send_keys(text)
        driver.find_element(By.ID, "send-btn").click()
        return answered(expect, seen)

    def photo(name: str, seed: int) -> None:
        path = tmp_path / name
        path.write_bytes(certificate(seed))
        seen = len(bubbles(driver, "account"))
        driver.find_element(By.ID, "photo-input").send_keys(str(path))
        answered("已收到", seen)

    say("申请毕业", "【申请毕业｜考生须知】")
    say("我已知晓", "【申请毕业｜个人信息】")
    say("1", "请选择申请毕业的专业")
    say("1", "【申请毕业｜合格成绩】020301K 金融学(专升本)")
    reply = say("1", "【情况说明")
    while "【情况说明" in reply:
        reply = say("本课程已报名下次考试，预计可以通过，请予以考虑。", "【")
    assert "【申请毕业｜自我鉴定】" in reply
    say("太短", "自我鉴定不少于200字")
    say(ASSESSMENT, "请输入前置学历毕业证书的编号")
    say("103251201205001234", "请输入取得毕业证书的年月")
    say("2012年7月", "请输入取得毕业证书的省份")
    say("江苏", "请发送毕业证书照片")
    photo("毕业证书.jpg", 1)
    say("完成", "请输入备案表上的在线验证码")
    say("ABCD12345678", "请发送教育部学历证书电子注册备案表照片")
    photo("备案表.jpg", 2)
    say("完成", "【申请毕业｜请核对】")
    say("确认提交", "现在是“待审核”")

    # The office approves through the review path; the push reaches the chat.
    async def approve() -> str:
        [app] = await apps.list_applications(s.db, kind="graduation")
        done = await apps.approve(s.db, app.id, by="张老师", version=app.version)
        return done.application.details["fee_order"]

    number = loop.run(approve)
    wait_for(driver, lambda d: any("毕业审定费150.00元的订单已生成" in b.text for b in bubbles(d, "account")),
             timeout=20, what="the approval push")

    # 我的订单 gives the payment link; the page and the emulator's cashier open in the web view.
    say("我的订单", "点击链接在微信中缴费")
    link = wait_for(driver, lambda d: next((a for a in d.find_elements(By.CSS_SELECTOR, ".msg.account .bubble a")
                                            if f"/pay/{number}" in (a.get_attribute("href") or "")), False),
                    what="the payment link")
    link.click()
    view = driver.find_element(By.ID, "webview")
    wait_for(driver, lambda d: view.is_displayed(), what="the web view")
    frame = driver.find_element(By.ID, "webview-frame")

    def in_page(fn):
        driver.switch_to.frame(frame)
        try:
            return fn()
        finally:
            driver.switch_to.default_content()

    def page_shows(selector: str, text: str = ""):
        def check(d):
            return in_page(lambda: any(text in e.text for e in d.find_elements(By.CSS_SELECTOR, selector)))
        return check

    wait_for(driver, page_shows("#pay", "微信支付"), timeout=20, what="the payment page")
    in_page(lambda: driver.find_element(By.ID, "pay").click())
    wait_for(driver, page_shows("button", "确认支付"), timeout=20, what="the emulator's cashier")
    assert in_page(lambda: "¥150.00" in driver.find_element(By.TAG_NAME, "body").text)
    in_page(lambda: driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click())
    wait_for(driver, page_shows("p.ok", "已缴费"), timeout=20, what="已缴费 on the payment page")
    wait_for(driver, lambda d: any("缴费成功：毕业审定费 150.00 元" in b.text for b in bubbles(d, "account")),
             timeout=20, what="the receipt in the chat")
    driver.find_element(By.ID, "webview-close").click()
    say("我的订单", "状态：已缴费")
    shot(driver, "chat-graduation.png")
