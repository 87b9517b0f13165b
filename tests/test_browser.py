"""The chat page in headless Chromium: type, send, see the bot's reply bubble; menu, photo, pushes.

Needs Debian's `chromium` and `chromium-driver`. Without them the tests are skipped, unless
REQUIRE_BROWSER=1, which turns the skip into a failure. Screenshots go to var/ (chat-*.png).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest
from aiohttp import web

from emulator.app import start_emulator
from tests.test_chat_page import APP_ID, APP_SECRET, TOKEN, ChatBot, _png

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "var"
T = TypeVar("T")


def _find(names: tuple[str, ...], fixed: str) -> str | None:
    if Path(fixed).exists():
        return fixed
    for n in names:
        found = shutil.which(n)
        if found:
            return found
    return None


def _browser_paths() -> tuple[str, str]:
    chromium = _find(("chromium", "chromium-browser"), "/usr/bin/chromium")
    driver = _find(("chromedriver",), "/usr/bin/chromedriver")
    if chromium and driver:
        return chromium, driver
    missing = ", ".join(n for n, p in (("chromium", chromium), ("chromedriver", driver)) if not p)
    reason = f"chromium not installed: {missing} missing (apt-get install chromium chromium-driver)"
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


class Loop:
    """An event loop on a thread, running the test bot and the emulator while selenium drives."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="browser-test-loop", daemon=True)
        self.thread.start()

    def run(self, fn: Callable[[], Awaitable[T]], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


class Stack:
    """The test bot and the emulator, on free localhost ports."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.aes_key = AES_KEY if mode != "plain" else None
        self.bot = ChatBot(self.aes_key)
        self.bot_runner: web.AppRunner | None = None
        self.emu_runner: web.AppRunner | None = None
        self.state: Any = None
        self.base = ""

    async def start(self) -> None:
        self.bot_runner = web.AppRunner(self.bot.app())
        await self.bot_runner.setup()
        site = web.TCPSite(self.bot_runner, "127.0.0.1", 0)
        await site.start()
        bot_port = self.bot_runner.addresses[0][1]
        self.emu_runner, self.state = await start_emulator(
            "127.0.0.1", 0,
            bot_url=f"http://127.0.0.1:{bot_port}/wechat",
            token=TOKEN, app_id=APP_ID, app_secret=APP_SECRET,
            aes_key=self.aes_key,
            mode=self.mode,
        )
        self.base = f"http://127.0.0.1:{self.emu_runner.addresses[0][1]}"
        self.bot.api_base = self.base

    async def stop(self) -> None:
        if self.emu_runner:
            await self.emu_runner.cleanup()
        if self.bot_runner:
            await self.bot_runner.cleanup()


@pytest.fixture(scope="module")
def browser_paths() -> tuple[str, str]:
    return _browser_paths()


def _running(s: Stack) -> Iterator[tuple[Loop, Stack]]:
    """Start `s` on its own loop thread for the tests of a module, stop it after."""
    loop = Loop()
    loop.run(s.start)
    try:
        yield loop, s
    finally:
        loop.run(s.stop)
        loop.close()


@pytest.fixture(scope="module")
def stack(browser_paths) -> Iterator[tuple[Loop, Stack]]:
    yield from _running(Stack("safe"))


@pytest.fixture(scope="module")
def driver(browser_paths) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_paths
    profile = tempfile.mkdtemp(prefix="zikao-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1100,900", "--lang=zh-CN",
    ):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    drv.set_page_load_timeout(20)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(drv, cond: Callable[[Any], Any], timeout: float = 10, what: str = "") -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    from selenium.common.exceptions import StaleElementReferenceException

    return WebDriverWait(
        drv, timeout, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
    ).until(cond, message=what)


def bubbles(drv, side: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return drv.find_elements(By.CSS_SELECTOR, f".msg.{side} .bubble")


def bubble_with(drv, side: str, text: str):
    from selenium.common.exceptions import StaleElementReferenceException

    def find(d):
        try:
            for b in bubbles(d, side):
                if b.text == text:
                    return b
        except StaleElementReferenceException:
            pass
        return False

    return wait_for(drv, find, what=f"{side} bubble {text!r}")


def shot(drv, name: str) -> Path:
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / name
    drv.save_screenshot(str(path))
    return path


def open_chat(drv, stack: Stack, openid: str) -> None:
    drv.get(f"{stack.base}/?openid={openid}")
    wait_for(drv, lambda d: d.find_element("tag name", "body").get_attribute("data-stream") == "open", what="page ready")


def test_type_send_and_see_the_reply(driver, stack):
    from selenium.webdriver.common.by import By

    loop, s = stack
    open_chat(driver, s, "oBrowserUser0000000000000001")
    assert driver.find_element(By.ID, "account-name").text == "上海自考"
    # not yet a follower: the follow button stands where the keyboard will be
    follow = driver.find_element(By.ID, "follow-btn")
    assert follow.is_displayed() and not driver.find_element(By.ID, "text").is_displayed()
    follow.click()
    bubble_with(driver, "account", "欢迎关注上海自考！")

    box = wait_for(driver, lambda d: d.find_element(By.ID, "text") if d.find_element(By.ID, "text").is_displayed() else False)
    box.send_keys("你好")
    driver.find_element(By.ID, "send-btn").click()
    mine = bubble_with(driver, "user", "你好")
    reply = bubble_with(driver, "account", "您好！")
    assert box.get_attribute("value") == ""
    # WeChat's look: the user's bubble green on the right, the account's white on the left
    assert mine.value_of_css_property("background-color") in ("rgba(149, 236, 105, 1)", "rgb(149, 236, 105)")
    assert reply.value_of_css_property("background-color") in ("rgba(255, 255, 255, 1)", "rgb(255, 255, 255)")
    assert mine.location["x"] > reply.location["x"] + 50
    assert driver.find_elements(By.CSS_SELECTOR, ".messages .time")  # a time label
    assert driver.find_element(By.ID, "wire-attempts").text == "1"

    # newlines survive
    box.send_keys("多行")
    driver.find_element(By.ID, "send-btn").click()
    multi = bubble_with(driver, "account", "第一行\n第二行\n  缩进的第三行")
    assert multi.size["height"] > reply.size["height"] * 2

    # a pushed customer-service message shows up live
    loop.run(lambda: s.bot.push_text("oBrowserUser0000000000000001", "您的报名已受理"))
    bubble_with(driver, "account", "您的报名已受理")

    # WeChat's error line when the bot answers an error page
    box.send_keys("坏\n")  # Enter sends
    wait_for(driver, lambda d: any("该公众号暂时无法提供服务" in n.text for n in d.find_elements(By.CSS_SELECTOR, ".notice.error")))
    shot(driver, "chat-page.png")


def test_menu_photo_and_template(driver, stack, tmp_path):
    from selenium.webdriver.common.by import By

    loop, s = stack
    openid = "oBrowserUser0000000000000002"
    loop.run(lambda: s.bot.api("POST", "menu/create", json={"button": [
        {"name": "考试服务", "sub_button": [
            {"type": "click", "name": "成绩查询", "key": "SCORE"},
            {"type": "click", "name": "考试安排", "key": "EXAMS"},
            {"type": "pic_photo_or_album", "name": "上传照片", "key": "PHOTO"},
        ]},
        {"type": "click", "name": "报名", "key": "ENROL"},
        {"name": "帮助", "sub_button": [{"type": "view", "name": "考试院官网", "url": "http://127.0.0.1:9/site"}]},
    ]}))
    open_chat(driver, s, openid)
    driver.find_element(By.ID, "follow-btn").click()
    bubble_with(driver, "account", "欢迎关注上海自考！")
    # with a menu the bar shows the menu, as WeChat does
    tops = wait_for(driver, lambda d: [b for b in d.find_elements(By.CSS_SELECTOR, ".menu-top") if b.is_displayed()] or False)
    assert [t.text for t in tops] == ["考试服务", "报名", "帮助"]
    tops[0].click()
    sub = wait_for(driver, lambda d: d.find_element(By.ID, "submenu") if d.find_element(By.ID, "submenu").is_displayed() else False)
    assert [b.text for b in sub.find_elements(By.TAG_NAME, "button")] == ["成绩查询", "考试安排", "上传照片"]
    shot(driver, "chat-menu.png")
    sub.find_elements(By.TAG_NAME, "button")[0].click()
    bubble_with(driver, "account", "菜单 SCORE")
    assert not driver.find_element(By.ID, "submenu").is_displayed()
    tops[1].click()
    bubble_with(driver, "account", "菜单 ENROL")

    # the photo button in keyboard mode
    driver.find_element(By.ID, "to-keyboard").click()
    assert driver.find_element(By.ID, "text").is_displayed()
    photo = tmp_path / "准考证.png"
    photo.write_bytes(_png((30, 120, 200)))
    driver.find_element(By.ID, "photo-input").send_keys(str(photo))
    reply = wait_for(driver, lambda d: next((b for b in bubbles(d, "account") if b.text.startswith("收到图片 ")), False))
    media_id = reply.text.split(" ", 1)[1]
    img = wait_for(
        driver,
        lambda d: next((i for i in d.find_elements(By.CSS_SELECTOR, ".msg.user img.picture")
                        if i.get_attribute("src").endswith(media_id) and i.get_property("naturalWidth") == 32), False),
        what="the photo from the emulator",
    )
    assert img.is_displayed()

    # a template message as a card with the keyword values
    loop.run(lambda: s.bot.push_template(openid))
    card = wait_for(driver, lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, ".card.template")), False))
    wait_for(driver, lambda d: "高等数学（一）" in card.text)
    assert "考试通知" in card.text and "请携带准考证" in card.text and "详情" in card.text
    driver.find_element(By.ID, "to-menu").click()
    shot(driver, "chat-template.png")


def test_sms_panel_shows_codes_live(driver, stack):
    import re

    import aiohttp
    from selenium.webdriver.common.by import By

    from bot.sms import HttpSmsGateway
    from emulator.sms import sms_state

    loop, s = stack

    async def send(mobile: str, text: str) -> None:
        async with aiohttp.ClientSession() as session:
            await HttpSmsGateway(session, s.base).send(mobile, text)

    def items(d) -> list[Any]:
        return d.find_elements(By.CSS_SELECTOR, "#sms-list .sms")

    # one sent before the page opens shows on load
    loop.run(lambda: send("13900001111", "【上海自考】您的验证码是135790，5分钟内有效。如非本人操作，请忽略。"))
    open_chat(driver, s, "oBrowserUser0000000000000003")
    panel = driver.find_element(By.ID, "panel-sms")
    assert panel.find_element(By.TAG_NAME, "h2").text == "短信"
    wait_for(driver, lambda d: len(items(d)) == 1, what="the SMS sent before the page opened")

    # a new one arrives live, on top, with the number masked and the code set off
    loop.run(lambda: send("13812341234", "【上海自考】您的验证码是482916，5分钟内有效。如非本人操作，请忽略。"))
    wait_for(driver, lambda d: len(items(d)) == 2 and "482916" in items(d)[0].text, what="the live SMS on top")
    top = items(driver)[0]
    assert top.find_element(By.CSS_SELECTOR, ".sms-to").text == "138****1234"
    assert top.find_element(By.CSS_SELECTOR, ".sms-code").text == "482916"
    assert "您的验证码是482916" in top.find_element(By.CSS_SELECTOR, ".sms-text").text
    assert re.fullmatch(r"\d\d/\d\d \d\d:\d\d:\d\d", top.find_element(By.CSS_SELECTOR, ".sms-at").text)
    assert items(driver)[1].find_element(By.CSS_SELECTOR, ".sms-to").text == "139****1111"
    assert "13812341234" not in panel.text and "13900001111" not in panel.text
    assert driver.find_element(By.ID, "sms-count").text == "共 2 条"
    shot(driver, "chat-sms.png")

    # 清空 empties the gateway's record and the panel
    driver.find_element(By.ID, "sms-clear").click()
    wait_for(driver, lambda d: not items(d) and d.find_element(By.CSS_SELECTOR, ".sms-empty").is_displayed(),
             what="an empty panel")
    assert sms_state(s.emu_runner.app).messages == []


# --- binding through the web view: the real service, WeChat's web authorisation, the H5 page ------


class ServiceStack(Stack):
    """The real service (bot.app) on a fresh SQLite database, and the emulator, on free ports."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bot_runner: web.AppRunner | None = None
        self.emu_runner: web.AppRunner | None = None
        self.base = ""
        self.db: Any = None

    async def start(self) -> None:
        import socket

        from bot.app import DB, create_app
        from bot.config import load_settings
        from bot.scheduler import SchedulerOptions
        from storage.migrate import upgrade_async

        def free_port() -> int:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                return sock.getsockname()[1]

        db_url = f"sqlite:///{self.tmp}/browser.sqlite3"
        await upgrade_async(db_url)
        bot_port, emu_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{emu_port}"
        self.emu_runner, _state = await start_emulator(
            "127.0.0.1", emu_port, bot_url=f"http://127.0.0.1:{bot_port}/wechat", token=TOKEN, app_id=APP_ID,
            app_secret=APP_SECRET, aes_key=AES_KEY, mode="safe")
        settings = load_settings({
            "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID, "WECHAT_APP_SECRET": APP_SECRET, "WECHAT_AES_KEY": AES_KEY,
            "WECHAT_API_BASE": self.base, "SMS_API_BASE": self.base, "WECHAT_OAUTH_BASE": self.base,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{bot_port}", "DATABASE_URL": db_url, "ZIKAO_MODE": "test",
        })
        app = create_app(settings, scheduler=SchedulerOptions(enabled=False))
        self.bot_runner = web.AppRunner(app)
        await self.bot_runner.setup()
        await web.TCPSite(self.bot_runner, "127.0.0.1", bot_port).start()
        self.db = app[DB]


@pytest.fixture(scope="module")
def service(browser_paths, tmp_path_factory) -> Iterator[tuple[Loop, Stack]]:
    yield from _running(ServiceStack(tmp_path_factory.mktemp("browser-service")))


def test_binding_through_the_web_view_inside_the_phone(driver, service):
    from selenium.webdriver.common.by import By

    from tests.dialog_fixtures import ID_NUMBER, PASSWORD, add_candidate

    loop, s = service
    loop.run(lambda: add_candidate(s.db, verified=True))
    openid = "oBrowserBind0000000000000001"
    open_chat(driver, s, openid)
    driver.find_element(By.ID, "follow-btn").click()
    wait_for(driver, lambda d: bubbles(d, "account"), what="the welcome")
    if driver.find_element(By.ID, "to-keyboard").is_displayed():
        driver.find_element(By.ID, "to-keyboard").click()
    box = wait_for(driver, lambda d: d.find_element(By.ID, "text") if d.find_element(By.ID, "text").is_displayed() else False)
    box.send_keys("绑定\n")
    link = wait_for(driver, lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, ".msg.account .bubble a.link")), False),
                    what="the link to the binding page")
    assert link.text == "点击这里完成绑定"
    link.click()
    view = driver.find_element(By.ID, "webview")
    wait_for(driver, lambda d: view.is_displayed(), what="the web view")
    # The web view sits inside the phone frame, over the chat.
    phone = driver.find_element(By.ID, "phone")
    assert phone.location["x"] <= view.location["x"] and view.size["width"] <= phone.size["width"]

    frame = driver.find_element(By.ID, "webview-frame")

    def in_page(fn):
        driver.switch_to.frame(frame)
        try:
            return fn()
        finally:
            driver.switch_to.default_content()

    def page_has(selector: str):
        return lambda d: in_page(lambda: bool(d.find_elements(By.CSS_SELECTOR, selector)))

    # Web authorisation ran (authorize -> code -> exchange) and the page shows its first form.
    wait_for(driver, page_has("#form-credentials"), what="the binding form after web authorisation")

    def fill(fields: dict[str, str]) -> None:
        def go():
            for name, value in fields.items():
                driver.find_element(By.NAME, name).send_keys(value)
            driver.find_element(By.CSS_SELECTOR, "form.card button[type=submit]").click()
        in_page(go)

    fill({"id_number": ID_NUMBER, "password": PASSWORD})
    wait_for(driver, page_has("#form-code"), what="the SMS code form")
    code = wait_for(driver, lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, "#sms-list .sms .sms-code")), False),
                    what="the code in the 短信 panel").text
    fill({"code": code})
    wait_for(driver, page_has("#form-new-password"), what="the new password form")
    fill({"new": "Zikao2026ok", "again": "Zikao2026ok"})
    wait_for(driver, page_has("#done"), what="binding done")
    done = in_page(lambda: driver.find_element(By.ID, "done").text)
    assert "0115****0002" in done and "011520100002" not in done
    shot(driver, "chat-bind.png")

    driver.find_element(By.ID, "webview-close").click()
    assert not view.is_displayed()
    box.send_keys("个人信息\n")
    wait_for(driver, lambda d: any("【个人信息】" in b.text for b in bubbles(d, "account")), what="the profile")
