"""The /wechat endpoint: signatures, modes, bad bodies, exactly-once, the reply budget, paging."""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import itertools
import logging
import re
import time

import pytest
from aiohttp import web
from sqlalchemy import func, select, update
from wechatpy.crypto import WeChatCrypto

from bot.config import aes_key_bytes
from bot.crypto import MessageCrypto, signature
from bot.endpoint import PROCESSING, WeChatEndpoint
from bot.wire import parse_xml
from dialogs.types import Message, Reply
from storage.db import Database
from storage.models import InboundMessage, WechatUser, utcnow

TOKEN = "testtoken"
APPID = "wx1234567890abcdef"
KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
EP = web.AppKey("endpoint", WeChatEndpoint)
OLD_KEY = base64.b64encode(b"the-previous-aes-key-32-bytes-ok").decode().rstrip("=")


class Recorder:
    """A dialog handler that records calls; `delay` and `fail` shape its behaviour."""

    def __init__(self, delay: float = 0.0, fail: bool = False, text: str | None = None) -> None:
        self.calls: list[Message] = []
        self.delay, self.fail, self.text = delay, fail, text
        self.late: list[tuple[str, Reply]] = []

    async def __call__(self, msg: Message) -> Reply:
        self.calls.append(msg)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("boom")
        return Reply(self.text if self.text is not None else f"收到：{msg.text or msg.event}")

    async def deliver(self, openid: str, reply: Reply) -> None:
        self.late.append((openid, reply))


# The endpoint's clock in these tests: requests are signed at fixed timestamps around it.
NOW = 1700000001.0
_nonces = itertools.count(1000)


def make_app(db: Database, handler: Recorder, *, keys: list[str] | None = None, budget: float = 4.5,
             mode: str | None = None, clock=lambda: NOW) -> web.Application:
    crypto = MessageCrypto(TOKEN, [aes_key_bytes(k) for k in keys], APPID) if keys else None
    endpoint = WeChatEndpoint(token=TOKEN, crypto=crypto, db=db, handler=handler,
                              deliver_later=handler.deliver, budget_seconds=budget, mode=mode, clock=clock)
    app = web.Application()
    app.router.add_get("/wechat", endpoint.get)
    app.router.add_post("/wechat", endpoint.post)
    app[EP] = endpoint
    return app


def text_xml(openid: str = "o_user1", content: str = "你好", msg_id: str = "1001", create_time: str = "1700000000") -> str:
    return (f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>")


def event_xml(openid: str, event: str, create_time: str = "1700000000") -> str:
    return (f"<xml><ToUserName>gh_test</ToUserName><FromUserName>{openid}</FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType>event</MsgType><Event>{event}</Event></xml>")


def signed(extra: dict | None = None, ts: str = "1700000001", nonce: str | None = None) -> dict:
    """A signed query; every call has a new nonce unless one is given (replays are refused)."""
    nonce = nonce or str(next(_nonces))
    return {"timestamp": ts, "nonce": nonce, "signature": signature(TOKEN, ts, nonce), **(extra or {})}


async def inbound_count(db: Database) -> int:
    async with db.session() as s:
        return (await s.execute(select(func.count()).select_from(InboundMessage))).scalar_one()


@pytest.fixture
async def client_for(db, aiohttp_client):
    async def make(handler: Recorder, **kw):
        return await aiohttp_client(make_app(db, handler, **kw))
    return make


# --- URL check and signatures ----------------------------------------------------------------------


async def test_url_check_echoes_echostr(client_for):
    c = await client_for(Recorder())
    r = await c.get("/wechat", params=signed({"echostr": "abc123"}))
    assert r.status == 200 and await r.text() == "abc123"
    r = await c.get("/wechat", params={"timestamp": "1", "nonce": "2", "signature": "0" * 40, "echostr": "abc"})
    assert r.status == 403


async def test_forged_or_missing_signature_is_403_and_nothing_is_stored(client_for, db):
    handler = Recorder()
    c = await client_for(handler)
    forged = signed()
    forged["signature"] = "f" * 40
    for params in (forged, {"timestamp": "1", "nonce": "2"}):
        r = await c.post("/wechat", params=params, data=text_xml())
        assert r.status == 403
    assert handler.calls == [] and await inbound_count(db) == 0


# --- bad bodies -----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["", "hello", "<html><body>x</body></html>", "<xml><Content>no sender</Content></xml>", "<xml><a>"])
async def test_malformed_body_is_400_without_traceback(client_for, body):
    c = await client_for(Recorder())
    r = await c.post("/wechat", params=signed(), data=body)
    assert r.status == 400
    assert "Traceback" not in await r.text()


async def test_oversized_body_is_400_quickly(client_for):
    handler = Recorder()
    c = await client_for(handler)
    big = text_xml(content="字" * 30000)  # ~90 KB
    started = time.monotonic()
    r = await c.post("/wechat", params=signed(), data=big)
    assert r.status == 400 and time.monotonic() - started < 2
    assert handler.calls == []


# --- modes ----------------------------------------------------------------------------------------


async def test_plaintext_reply_swaps_users(client_for):
    c = await client_for(Recorder())
    r = await c.post("/wechat", params=signed(), data=text_xml(content="成绩"))
    fields = parse_xml(await r.text())
    assert fields["ToUserName"] == "o_user1" and fields["FromUserName"] == "gh_test"
    assert fields["Content"] == "收到：成绩"


def encrypted_request(key: str, xml: str, compat: bool = False, ts: str = "1700000001", nonce: str | None = None):
    nonce = nonce or str(next(_nonces))
    wc = WeChatCrypto(TOKEN, key, APPID)
    env = parse_xml(wc.encrypt_message(xml, nonce, ts))
    body = f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[{env['Encrypt']}]]></Encrypt></xml>"
    if compat:
        body = xml.replace("</xml>", f"<Encrypt><![CDATA[{env['Encrypt']}]]></Encrypt></xml>")
    params = signed({"encrypt_type": "aes", "msg_signature": env["MsgSignature"], "openid": "o_user1"}, ts, nonce)
    return params, body


@pytest.mark.parametrize("compat", [False, True], ids=["safe", "compat"])
async def test_encrypted_request_gets_encrypted_reply(client_for, compat):
    c = await client_for(Recorder(), keys=[KEY])
    params, body = encrypted_request(KEY, text_xml(content="考试计划"), compat=compat)
    r = await c.post("/wechat", params=params, data=body)
    text = await r.text()
    env = parse_xml(text)
    assert set(env) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    plain = WeChatCrypto(TOKEN, KEY, APPID).decrypt_message(text, env["MsgSignature"], env["TimeStamp"], env["Nonce"])
    assert parse_xml(plain)["Content"] == "收到：考试计划"


async def test_bad_msg_signature_is_403(client_for):
    handler = Recorder()
    c = await client_for(handler, keys=[KEY])
    params, body = encrypted_request(KEY, text_xml())
    params["msg_signature"] = "0" * 40
    r = await c.post("/wechat", params=params, data=body)
    assert r.status == 403 and handler.calls == []


async def test_key_rotation_answers_with_the_key_that_worked(client_for):
    c = await client_for(Recorder(), keys=[KEY, OLD_KEY])
    params, body = encrypted_request(OLD_KEY, text_xml(content="旧密钥"))
    r = await c.post("/wechat", params=params, data=body)
    text = await r.text()
    env = parse_xml(text)
    plain = WeChatCrypto(TOKEN, OLD_KEY, APPID).decrypt_message(text, env["MsgSignature"], env["TimeStamp"], env["Nonce"])
    assert parse_xml(plain)["Content"] == "收到：旧密钥"


async def test_undecryptable_message_is_400(client_for):
    c = await client_for(Recorder(), keys=[KEY])
    params, body = encrypted_request(OLD_KEY, text_xml())  # a key the bot does not have
    r = await c.post("/wechat", params=params, data=body)
    assert r.status == 400


# --- exactly once ---------------------------------------------------------------------------------


async def test_retry_while_first_attempt_runs_gets_same_reply(client_for):
    handler = Recorder(delay=0.4)
    c = await client_for(handler)
    first = asyncio.create_task(c.post("/wechat", params=signed(), data=text_xml(msg_id="7")))
    await asyncio.sleep(0.1)
    retry = await c.post("/wechat", params=signed(nonce="43"), data=text_xml(msg_id="7"))
    r1 = await first
    assert parse_xml(await r1.text())["Content"] == parse_xml(await retry.text())["Content"] == "收到：你好"
    assert len(handler.calls) == 1


async def test_retry_after_completion_gets_stored_reply(client_for, db):
    handler = Recorder()
    c = await client_for(handler)
    for nonce in ("1", "2", "3"):
        r = await c.post("/wechat", params=signed(nonce=nonce), data=text_xml(msg_id="8"))
        assert parse_xml(await r.text())["Content"] == "收到：你好"
    assert len(handler.calls) == 1 and await inbound_count(db) == 1


async def test_same_msgid_from_two_users_is_two_messages(client_for):
    handler = Recorder()
    c = await client_for(handler)
    await c.post("/wechat", params=signed(), data=text_xml(openid="o_a", msg_id="9"))
    await c.post("/wechat", params=signed(), data=text_xml(openid="o_b", msg_id="9"))
    assert [m.openid for m in handler.calls] == ["o_a", "o_b"]


async def test_events_dedupe_by_create_time_and_event(client_for):
    handler = Recorder()
    c = await client_for(handler)
    for _ in range(2):
        await c.post("/wechat", params=signed(), data=event_xml("o_e", "CLICK", "1700000100"))
    await c.post("/wechat", params=signed(), data=event_xml("o_e", "CLICK", "1700000101"))
    assert len(handler.calls) == 2


async def test_retry_reaching_another_process_waits_for_the_first(db_url, aiohttp_client):
    """Two endpoints with their own engines on one database stand for two service processes."""
    db_a, db_b = Database(db_url), Database(db_url)
    try:
        slow, other = Recorder(delay=0.5), Recorder()
        ca = await aiohttp_client(make_app(db_a, slow))
        cb = await aiohttp_client(make_app(db_b, other))
        first = asyncio.create_task(ca.post("/wechat", params=signed(), data=text_xml(msg_id="11")))
        await asyncio.sleep(0.15)
        retry = await cb.post("/wechat", params=signed(nonce="9"), data=text_xml(msg_id="11"))
        assert parse_xml(await retry.text())["Content"] == "收到：你好"
        await first
        assert len(slow.calls) == 1 and other.calls == []
    finally:
        await db_a.dispose()
        await db_b.dispose()


async def test_old_dedupe_records_are_purged(client_for, db):
    c = await client_for(Recorder())
    await c.post("/wechat", params=signed(), data=text_xml(msg_id="12"))
    await c.post("/wechat", params=signed(), data=text_xml(msg_id="13"))
    async with db.session() as s, s.begin():
        await s.execute(update(InboundMessage).where(InboundMessage.key.like("%:12"))
                        .values(received_at=utcnow() - dt.timedelta(hours=72)))
    removed = await c.server.app[EP].deduper.purge(dt.timedelta(hours=48))
    assert removed == 1 and await inbound_count(db) == 1


# --- the reply budget and failures ----------------------------------------------------------------


async def test_slow_work_answers_within_budget_and_delivers_later(client_for):
    handler = Recorder(delay=1.0)
    c = await client_for(handler, budget=0.3)
    started = time.monotonic()
    r = await c.post("/wechat", params=signed(), data=text_xml(msg_id="20", content="慢"))
    assert time.monotonic() - started < 0.9
    assert parse_xml(await r.text())["Content"] == PROCESSING
    await c.server.app[EP].drain()
    assert handler.late == [("o_user1", Reply("收到：慢"))]


async def test_unexpected_error_gets_apology_with_reference_in_log(client_for, caplog):
    c = await client_for(Recorder(fail=True))
    with caplog.at_level(logging.ERROR):
        r = await c.post("/wechat", params=signed(), data=text_xml(msg_id="21"))
    content = parse_xml(await r.text())["Content"]
    ref = re.search(r"参考编号：([0-9A-F]{6})", content).group(1)
    assert "抱歉" in content and ref in caplog.text


# --- replies --------------------------------------------------------------------------------------


async def test_long_reply_is_paged_and_next_page_continues(client_for):
    long_text = "\n".join(f"第{i}行：这是一条比较长的课程成绩说明文字" for i in range(200))
    handler = Recorder(text=long_text)
    c = await client_for(handler)
    r = await c.post("/wechat", params=signed(), data=text_xml(msg_id="30", content="历史成绩"))
    page1 = parse_xml(await r.text())["Content"]
    assert len(page1.encode()) <= 2048 and "下一页" in page1 and "第0行" in page1
    r = await c.post("/wechat", params=signed(), data=text_xml(msg_id="31", content="下一页"))
    page2 = parse_xml(await r.text())["Content"]
    assert "第0行" not in page2 and "第2/" in page2
    assert len(handler.calls) == 1  # "下一页" is served from the stored pages


async def test_empty_reply_answers_success(client_for):
    c = await client_for(Recorder(text=""))
    r = await c.post("/wechat", params=signed(), data=event_xml("o_x", "unsubscribe"))
    assert r.status == 200 and await r.text() == "success"


async def test_only_user_messages_count_as_interaction(client_for, db):
    c = await client_for(Recorder(text=""))
    await c.post("/wechat", params=signed(), data=event_xml("o_ev", "TEMPLATESENDJOBFINISH"))
    async with db.session() as s:
        assert await s.get(WechatUser, "o_ev") is None
    await c.post("/wechat", params=signed(), data=text_xml(openid="o_ev", msg_id="40"))
    async with db.session() as s:
        assert (await s.get(WechatUser, "o_ev")).last_interaction_at is not None


async def test_router_treats_recognised_voice_as_text(db):
    from dialogs import welcome
    from dialogs.router import Router

    router = Router(db)
    heard = await router.handle(Message(openid="o_v", kind="voice", text="帮助", media_id="m1"))
    assert heard.text.startswith(welcome.HELP)
    silent = await router.handle(Message(openid="o_v", kind="voice", text="", media_id="m2"))
    assert silent.text == welcome.UNSUPPORTED_KIND
