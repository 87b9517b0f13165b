"""The staff console in headless Chromium, on the real service next to the WeChat emulator.

A reviewer signs in, opens the 免考 queue, looks at a photo (zoom, rotate), rejects with a reason, and
the candidate's push arrives in the emulator (and on the chat page). An admin publishes a notice and
imports a file with an error and reads the line-level report. Screenshots go to var/ (console-*.png).
Like tests/test_browser.py: skipped without chromium and chromedriver unless REQUIRE_BROWSER=1.
"""
from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiohttp import web

from bot.app import CLIENT, create_app
from bot.config import Settings
from bot.delivery import Deliverer
from bot.scheduler import SchedulerOptions
from dialogs.faq.index import DEFAULT_KB
from emulator.app import start_emulator
from storage.db import Database
from storage.migrate import upgrade_async
from tests.console_fixtures import ADMIN, EXEMPTION_REVIEWER, PASSWORD, add_people
from tests.test_applications import OPENID
from tests.test_browser import Loop, browser_paths, driver, shot, wait_for  # noqa: F401 (fixtures)
from tests.test_review_cli import pending_application

TOKEN, APP_ID, APP_SECRET = "consoletest", "wxc0n5o1e000000001", "console-app-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """The service (with its console) and the emulator on localhost, a migrated SQLite database with
    staff accounts and 赵敏's pending 申请免考 (two real photos)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.runner: web.AppRunner | None = None
        self.emu_runner: web.AppRunner | None = None
        self.emu: Any = None
        self.app: web.Application | None = None
        self.settings: Settings | None = None
        self.application: Any = None
        self.url = ""
        self.emulator_url = ""

    async def start(self) -> None:
        db_url = f"sqlite:///{self.tmp / 'console.sqlite3'}"
        await upgrade_async(db_url)
        kb = self.tmp / "kb.yaml"
        shutil.copyfile(DEFAULT_KB, kb)
        bot_port = _free_port()
        self.emu_runner, self.emu = await start_emulator(
            "127.0.0.1", 0, bot_url=f"http://127.0.0.1:{bot_port}/wechat", token=TOKEN, app_id=APP_ID,
            app_secret=APP_SECRET, aes_key=None, mode="plain")
        self.emulator_url = f"http://127.0.0.1:{self.emu_runner.addresses[0][1]}"
        self.settings = Settings(
            wechat_token=TOKEN, wechat_app_id=APP_ID, wechat_app_secret=APP_SECRET, wechat_api_base=self.emulator_url,
            database_url=db_url, media_dir=str(self.tmp / "media"), template_review_result="TM_REVIEW_RESULT",
            template_exam_notice="TM_EXAM_NOTICE", faq_kb_file=str(kb), faq_cache_dir=str(self.tmp / "jieba"))
        db = Database(db_url)
        try:
            await add_people(db)
            self.application = await pending_application(db, self.settings)
        finally:
            await db.dispose()
        # The candidate follows the account in the emulated WeChat.
        self.emu.record_user_action(OPENID, "subscribe")
        # Deliveries are run by the test (below), not by the scheduler's timer: nothing depends on timing.
        self.app = create_app(self.settings, scheduler=SchedulerOptions(enabled=False))
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", bot_port).start()
        self.url = f"http://127.0.0.1:{bot_port}"

    async def add_feedback(self, title: str, body: str) -> int:
        """The candidate leaves a 反馈建议 (so they wrote to the account just now: WeChat's 48-hour window is open)."""
        from sqlalchemy import update

        from bot.app import DB
        from storage.models import WechatUser, utcnow
        from storage.queries import add_feedback

        db = self.app[DB]
        async with db.session() as session, session.begin():
            await session.execute(update(WechatUser).where(WechatUser.openid == OPENID).values(last_interaction_at=utcnow()))
        self.emu.record_user_action(OPENID, "message")
        return await add_feedback(db, openid=OPENID, candidate_id=self.application.candidate_id, title=title, body=body)

    async def deliver(self) -> None:
        """What the scheduler's delivery job does every two seconds, once."""
        from bot.app import DB

        await Deliverer.from_settings(self.app[DB], self.app[CLIENT], self.settings).run_once()

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()
        if self.emu_runner:
            await self.emu_runner.cleanup()


@pytest.fixture(scope="module")
def service(browser_paths, tmp_path_factory) -> Iterator[tuple[Loop, Service]]:  # noqa: F811
    loop = Loop()
    s = Service(tmp_path_factory.mktemp("console-browser"))
    loop.run(s.start, timeout=120)
    try:
        yield loop, s
    finally:
        loop.run(s.stop)
        loop.close()


def sign_in(drv, s: Service, username: str) -> None:
    from selenium.webdriver.common.by import By

    drv.delete_all_cookies()
    drv.get(f"{s.url}/console/")
    wait_for(drv, lambda d: d.find_elements(By.ID, "login-btn"), what="the login page")
    drv.find_element(By.ID, "username").send_keys(username)
    drv.find_element(By.ID, "password").send_keys(PASSWORD)
    drv.find_element(By.ID, "login-btn").click()
    wait_for(drv, lambda d: d.find_elements(By.CSS_SELECTOR, "header.top .who"), what="signed in")


def test_reviewer_looks_at_a_photo_rejects_and_the_push_reaches_the_candidate(driver, service):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    loop, s = service
    app_id = s.application.id
    sign_in(driver, s, EXEMPTION_REVIEWER)
    tile = driver.find_element(By.CSS_SELECTOR, '.tile[data-kind="exemption"] .count[data-status="submitted"]')
    assert tile.text == "1"
    assert [a.text for a in driver.find_elements(By.CSS_SELECTOR, "header.top nav a")] == ["申请免考"]
    shot(driver, "console-home.png")

    driver.find_element(By.LINK_TEXT, "申请免考").click()
    row = wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, f'tr[data-id="{app_id}"]'), what="the queue row")
    assert "赵敏" in row.text and "00320 领导科学" in row.text
    shot(driver, "console-queue.png")
    row.find_element(By.CSS_SELECTOR, "a.open").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "decide"), what="the application page")
    assert "*" in driver.find_element(By.ID, "id-number").text  # masked until revealed

    thumbs = driver.find_elements(By.CSS_SELECTOR, ".thumb img")
    assert len(thumbs) == 2
    wait_for(driver, lambda d: all(i.get_property("naturalWidth") > 0 for i in thumbs), what="the thumbnails load")
    driver.find_elements(By.CSS_SELECTOR, ".thumb")[0].click()
    big = driver.find_element(By.ID, "viewer-img")
    wait_for(driver, lambda d: big.is_displayed() and big.get_property("naturalWidth") >= 600, what="the photo, full size")
    driver.find_element(By.CSS_SELECTOR, '[data-act="zoom-in"]').click()
    driver.find_element(By.ID, "rotate").click()
    assert big.get_attribute("data-angle") == "90" and float(big.get_attribute("data-scale")) > 1
    assert "rotate(90deg)" in big.get_attribute("style")
    shot(driver, "console-photo.png")
    driver.find_element(By.ID, "viewer-close").click()

    reason = "成绩单照片不清晰，请重新拍摄后提交。"
    driver.find_element(By.ID, "reason").send_keys(reason)
    shot(driver, "console-application.png")
    driver.find_element(By.ID, "reject").click()
    flash = wait_for(driver, lambda d: next((f for f in d.find_elements(By.CSS_SELECTOR, ".flash.ok")), False),
                     what="the decision's confirmation")
    assert f"申请 #{app_id} 未通过，已通知考生" in flash.text
    assert not driver.find_elements(By.CSS_SELECTOR, f'tr[data-id="{app_id}"]')  # no longer 待审核

    # The push written with the decision goes out as the delivery job sends it: a template message.
    loop.run(s.deliver)
    [push] = [o for o in s.emu.outbound if o["openid"] == OPENID and o.get("type") == "template"]
    assert push["template_id"] == "TM_REVIEW_RESULT"
    assert push["data"]["thing1"] == "免考申请" and push["data"]["phrase2"] == "未通过"
    # ... and the candidate sees it on the chat page.
    driver.get(f"{s.emulator_url}/?openid={OPENID}")
    card = wait_for(driver, lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, ".card.template")), False),
                    what="the review result card")
    wait_for(driver, lambda d: "未通过" in card.text)
    shot(driver, "console-push.png")

    # The rejection is in the queue of 未通过 with its reason, and in the application's history.
    driver.get(f"{s.url}/console/queue/exemption?status=rejected")
    Select(driver.find_element(By.NAME, "status"))  # the filter form is there
    driver.find_element(By.CSS_SELECTOR, f'tr[data-id="{app_id}"] a.open').click()
    assert driver.find_element(By.ID, "app-status").text == "未通过"
    assert reason in driver.find_element(By.TAG_NAME, "main").text


def test_admin_publishes_a_notice_and_reads_an_import_error_report(driver, service, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    loop, s = service
    sign_in(driver, s, ADMIN)
    driver.get(f"{s.url}/console/notices/new")
    driver.find_element(By.ID, "title").send_keys("2026年下半年免考受理通知")
    driver.find_element(By.ID, "body").send_keys("申请免考将于12月1日开始受理，请提前准备好凭证照片。")
    driver.find_element(By.ID, "preview-btn").click()
    preview = wait_for(driver, lambda d: d.find_element(By.ID, "preview-push"), what="the preview")
    assert preview.text.startswith("【站内消息】2026年下半年免考受理通知")
    assert "申请免考将于12月1日开始受理" in driver.find_element(By.ID, "preview-detail").text
    shot(driver, "console-notice-preview.png")
    driver.find_element(By.ID, "publish-btn").click()
    driver.switch_to.alert.accept()
    state = wait_for(driver, lambda d: d.find_element(By.ID, "notice-state"), what="the notice's progress page")
    assert driver.find_element(By.ID, "recipients").text == "1"
    assert state.text in ("发送中", "已完成")
    loop.run(s.deliver)
    driver.refresh()
    wait_for(driver, lambda d: d.find_element(By.ID, "notice-state").text == "已完成", what="all sent")
    assert driver.find_element(By.CSS_SELECTOR, '[data-count="sent"]').text == "1"
    assert any(o["openid"] == OPENID and o.get("template_id") == "TM_EXAM_NOTICE" for o in s.emu.outbound)
    shot(driver, "console-notice-status.png")

    bad = tmp_path / "courses.csv"
    bad.write_text("课程代码,课程名称,课程类型\n09101,公共关系学,理论\n0910,市场营销学,理论\n09103,,理论\n", encoding="utf-8")
    driver.get(f"{s.url}/console/import")
    driver.find_element(By.ID, "files").send_keys(str(bad))
    driver.find_element(By.ID, "check-btn").click()
    table = wait_for(driver, lambda d: d.find_element(By.ID, "import-errors"), what="the error report")
    rows = [r.text for r in table.find_elements(By.CSS_SELECTOR, "tr")[1:]]
    assert len(rows) == 2 and rows[0].startswith("courses.csv 3 ") and rows[1].startswith("courses.csv 4 ")
    assert "未导入任何数据" in driver.find_element(By.ID, "report").text
    assert not driver.find_elements(By.ID, "commit-btn")
    shot(driver, "console-import-errors.png")
    # A 反馈建议 answered in the console reaches the candidate as a customer-service message.
    fid = loop.run(lambda: s.add_feedback("准考证打印不了", "打印准考证时页面空白，怎么办？"))
    driver.get(f"{s.url}/console/feedback")
    driver.find_element(By.LINK_TEXT, "准考证打印不了").click()
    driver.find_element(By.NAME, "reply").send_keys("请换用电脑上的浏览器打印，或清除缓存后再试。")
    driver.find_element(By.ID, "reply-btn").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "fb-reply"), what="the reply on the page")
    assert driver.find_element(By.ID, "fb-state").text.startswith("已处理")
    loop.run(s.deliver)
    [text] = [o["content"] for o in s.emu.outbound if o["openid"] == OPENID and o.get("type") == "text"]
    assert text.startswith("【反馈回复】") and "请换用电脑上的浏览器打印" in text
    # The audit log shows all of it, newest first.
    driver.get(f"{s.url}/console/audit")
    actions = [r.get_attribute("data-action") for r in driver.find_elements(By.CSS_SELECTOR, "#audit tr[data-action]")]
    assert actions.index("feedback_reply") < actions.index("import_dry_run") < actions.index("notice_publish")
    shot(driver, "console-audit.png")
