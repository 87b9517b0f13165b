"""The chat page's backend (emulator.chat via emulator.app) with a small test bot (not the real one)."""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from PIL import Image
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from emulator.api import EmulatorState
from emulator.app import SHUTDOWN_GRACE_SECONDS, chat_hub, create_emulator_app, start_emulator
from emulator.chat import DEMO_OPENID
from emulator.server import SERVICE_ERROR

TOKEN = "chattoken"
APP_ID = "wx00112233445566ff"
APP_SECRET = "s3cr3t0123456789abcdef0123456789"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
USER = "oChatUser000000000000000001"


class ChatBot:
    """A stand-in for the bot: verifies signatures, decrypts, answers a few phrases, pushes."""

    def __init__(self, aes_key: str | None = None) -> None:
        self.crypto = WeChatCrypto(TOKEN, aes_key, APP_ID) if aes_key else None
        self.received: list[Any] = []
        self.api_base = ""  # the emulator's URL, for pushes through the API
        self.push_results: list[dict] = []
        self._tasks: set[asyncio.Task] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/wechat", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        q = request.query
        check_signature(TOKEN, q["signature"], q["timestamp"], q["nonce"])
        body = await request.text()
        xml = self.crypto.decrypt_message(body, q["msg_signature"], q["timestamp"], q["nonce"]) if self.crypto else body
        msg = parse_message(xml)
        self.received.append(msg)
        answer = self.answer(msg)
        if answer is None:
            return web.Response(text="success")
        if isinstance(answer, web.Response):
            return answer
        reply = TextReply(message=msg, content=answer).render()
        if self.crypto:
            reply = self.crypto.encrypt_message(reply, q["nonce"], q["timestamp"])
        return web.Response(text=reply, content_type="application/xml")

    def answer(self, msg: Any) -> Any:
        if msg.type == "text":
            text = msg.content
            if text == "你好":
                return "您好！"
            if text == "多行":
                return "第一行\n第二行\n  缩进的第三行"
            if text == "坏":
                return web.Response(status=500, text="<html><body>Internal Server Error</body></html>", content_type="text/html")
            if text == "推送":
                self._spawn(self.push_text(msg.source, "这是客服消息\n第二行"))
                return None
            if text == "模板":
                self._spawn(self.push_template(msg.source))
                return None
            return f"收到：{text}"
        if msg.type == "image":
            return f"收到图片 {msg.media_id}"
        if msg.type == "event":
            if msg.event == "subscribe":
                return "欢迎关注上海自考！"
            if msg.event == "click":
                return f"菜单 {msg.key}"
            if msg.event == "unsubscribe":
                return "再见"  # WeChat shows nothing for this
        return None

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def api(self, method: str, path: str, **kw) -> dict:
        async with aiohttp.ClientSession() as s:
            async with s.get(
                f"{self.api_base}/cgi-bin/token",
                params={"grant_type": "client_credential", "appid": APP_ID, "secret": APP_SECRET},
            ) as r:
                token = (await r.json())["access_token"]
            params = {**kw.pop("params", {}), "access_token": token}
            async with s.request(method, f"{self.api_base}/cgi-bin/{path}", params=params, **kw) as r:
                return json.loads(await r.text())

    async def push_text(self, openid: str, content: str) -> None:
        await asyncio.sleep(0.05)
        self.push_results.append(
            await self.api("POST", "message/custom/send", json={"touser": openid, "msgtype": "text", "text": {"content": content}})
        )

    async def push_template(self, openid: str) -> None:
        await asyncio.sleep(0.05)
        self.push_results.append(
            await self.api(
                "POST",
                "message/template/send",
                json={
                    "touser": openid,
                    "template_id": "TM_EXAM_NOTICE",
                    "url": "http://127.0.0.1/notice",
                    "data": {"thing1": {"value": "高等数学（一）"}, "time2": {"value": "2026-04-18 09:00"}, "thing3": {"value": "请携带准考证"}},
                    "client_msg_id": "exam-1",
                },
            )
        )


@pytest.fixture(params=["plain", "safe"])
async def env(request, aiohttp_server, aiohttp_client):
    mode = request.param
    bot = ChatBot(AES_KEY if mode == "safe" else None)
    bot_server = await aiohttp_server(bot.app())
    state = EmulatorState(APP_ID, APP_SECRET)
    app = create_emulator_app(
        bot_url=str(bot_server.make_url("/wechat")),
        token=TOKEN,
        app_id=APP_ID,
        app_secret=APP_SECRET,
        aes_key=AES_KEY if mode == "safe" else None,
        mode=mode,
        state=state,
        timeout=2.0,
    )
    client = await aiohttp_client(app)
    bot.api_base = str(client.make_url("")).rstrip("/")
    return bot, state, client


async def follow(client, openid: str = USER) -> dict:
    resp = await client.post("/_emu/chat/subscribe", json={"openid": openid, "subscribed": True})
    assert resp.status == 200
    return await resp.json()


class Sse:
    """Reads a Server-Sent Events stream."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self, timeout: float = 5.0) -> tuple[str, Any]:
        async def read() -> tuple[str, Any]:
            event, data = "message", []
            while True:
                line = (await self.resp.content.readline()).decode("utf-8")
                if line == "":
                    raise EOFError("stream closed")
                line = line.rstrip("\n")
                if line == "":
                    if data:
                        return event, json.loads("\n".join(data))
                    event = "message"
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)

        return await asyncio.wait_for(read(), timeout)

    async def until(self, pred, timeout: float = 5.0) -> tuple[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            kind, data = await self.next(max(0.05, deadline - time.monotonic()))
            if pred(kind, data):
                return kind, data


async def test_page_and_config(env):
    bot, state, client = env
    resp = await client.get("/")
    assert resp.status == 200
    html = await resp.text()
    assert "上海自考" in html and "/_emu/static/chat.js" in html
    for name in ("chat.js", "chat.css"):
        assert (await client.get(f"/_emu/static/{name}")).status == 200
    config = await (await client.get("/_emu/chat/config")).json()
    assert config["account_name"] == "上海自考"
    assert config["default_openid"] == DEMO_OPENID and len(DEMO_OPENID) == 28
    assert config["menu"] is None
    assert config["service_error"] == SERVICE_ERROR


async def test_follow_then_text_gets_the_reply_in_the_response(env):
    bot, state, client = env
    answer = await follow(client)
    assert [e["type"] for e in answer["entries"]] == ["notice", "text"]
    assert answer["entries"][1]["content"] == "欢迎关注上海自考！"
    assert answer["subscribed"] is True
    assert bot.received[-1].event == "subscribe"
    assert state.users[USER].subscribed and state.users[USER].event_at is not None

    resp = await client.post("/_emu/chat/text", json={"openid": USER, "text": "你好", "client_id": "c1"})
    assert resp.status == 200
    answer = await resp.json()
    user, reply = answer["entries"]
    assert user["side"] == "user" and user["content"] == "你好" and user["client_id"] == "c1"
    assert reply["side"] == "account" and reply["type"] == "text" and reply["content"] == "您好！"
    assert reply["id"] > user["id"]
    (delivery,) = answer["deliveries"]
    assert delivery["ok"] and delivery["attempts"] == 1 and delivery["statuses"] == [200]
    assert delivery["msg_id"] == user["msg_id"] and bot.received[-1].id == int(user["msg_id"])
    assert state.users[USER].message_at is not None  # the reply window is open

    answer = await (await client.post("/_emu/chat/text", json={"openid": USER, "text": "多行"})).json()
    assert answer["entries"][1]["content"] == "第一行\n第二行\n  缩进的第三行"

    history = await (await client.get("/_emu/chat/history", params={"openid": USER})).json()
    assert [e["content"] for e in history["entries"] if e["type"] == "text"] == [
        "欢迎关注上海自考！", "你好", "您好！", "多行", "第一行\n第二行\n  缩进的第三行"
    ]
    assert history["subscribed"] is True
    users = await (await client.get("/_emu/chat/users")).json()
    assert USER in users["openids"] and DEMO_OPENID in users["openids"]
    # another user's history is separate
    other = await (await client.get("/_emu/chat/history", params={"openid": "oOther"})).json()
    assert other["entries"] == []


async def test_bot_error_page_shows_wechats_error(env):
    bot, state, client = env
    await follow(client)
    answer = await (await client.post("/_emu/chat/text", json={"openid": USER, "text": "坏"})).json()
    user, err = answer["entries"]
    assert err["side"] == "system" and err["type"] == "error" and err["content"] == SERVICE_ERROR
    assert "HTTP 500" in err["detail"]
    assert answer["deliveries"][0]["error"] == SERVICE_ERROR


def _png(color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buf, "PNG")
    return buf.getvalue()


async def test_photo_upload_reaches_the_bot_and_is_downloadable(env):
    bot, state, client = env
    await follow(client)
    png = _png()
    form = aiohttp.FormData()
    form.add_field("openid", USER)
    form.add_field("client_id", "p1")
    form.add_field("file", png, filename="准考证.png", content_type="image/png")
    resp = await client.post("/_emu/chat/photo", data=form)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    user, reply = answer["entries"]
    media_id = user["media_id"]
    assert user["type"] == "image" and user["client_id"] == "p1"
    msg = bot.received[-1]
    assert msg.type == "image" and msg.media_id == media_id
    assert reply["content"] == f"收到图片 {media_id}"
    # the bot can download it through the API, as from WeChat
    token = (await (await client.get(
        "/cgi-bin/token", params={"grant_type": "client_credential", "appid": APP_ID, "secret": APP_SECRET}
    )).json())["access_token"]
    got = await client.get("/cgi-bin/media/get", params={"access_token": token, "media_id": media_id})
    assert got.status == 200 and got.content_type == "image/png" and await got.read() == png
    # PicUrl points at the emulator and serves the same bytes without a token
    assert msg.image.endswith(f"/_emu/chat/media/{media_id}")
    pic = await client.get(msg.image[msg.image.index("/_emu/"):])
    assert pic.status == 200 and await pic.read() == png
    assert (await client.get("/_emu/chat/media/nonexistent")).status == 404


async def test_photo_upload_refuses_what_is_not_an_image(env):
    bot, state, client = env
    await follow(client)
    form = aiohttp.FormData()
    form.add_field("openid", USER)
    form.add_field("file", b"%PDF-1.4", filename="a.pdf", content_type="application/pdf")
    resp = await client.post("/_emu/chat/photo", data=form)
    assert resp.status == 400 and (await resp.json())["error"] == "只能发送图片"
    assert not any(m.type == "image" for m in bot.received)


async def test_menu_photo_button_sends_the_event_then_the_image(env):
    bot, state, client = env
    await follow(client)
    form = aiohttp.FormData()
    form.add_field("openid", USER)
    form.add_field("event", "pic_photo_or_album")
    form.add_field("key", "UPLOAD_ID_PHOTO")
    form.add_field("file", _png(), filename="a.png", content_type="image/png")
    answer = await (await client.post("/_emu/chat/photo", data=form)).json()
    event_msg, image_msg = bot.received[-2:]
    assert event_msg.type == "event" and event_msg.event == "pic_photo_or_album" and event_msg.key == "UPLOAD_ID_PHOTO"
    assert event_msg.count == 1
    assert event_msg.pictures == [{"PicMd5Sum": hashlib.md5(_png()).hexdigest()}]
    assert image_msg.type == "image"
    assert len(answer["deliveries"]) == 2


async def test_pushed_messages_arrive_on_the_stream(env):
    bot, state, client = env
    await follow(client)
    stream = await client.get("/_emu/chat/stream", params={"openid": USER})
    assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
    sse = Sse(stream)
    kind, data = await sse.next()
    assert kind == "menu" and data == {"menu": None}

    answer = await (await client.post("/_emu/chat/text", json={"openid": USER, "text": "推送"})).json()
    assert [e["side"] for e in answer["entries"]] == ["user"]  # no passive reply
    # the user's own entry is on the stream too (other tabs of the same user)
    await sse.until(lambda k, d: k == "entry" and d["side"] == "user" and d["content"] == "推送")
    kind, pushed = await sse.until(lambda k, d: k == "entry" and d.get("source") == "push")
    assert pushed["type"] == "text" and pushed["content"] == "这是客服消息\n第二行"
    assert bot.push_results[-1]["errcode"] == 0

    await client.post("/_emu/chat/text", json={"openid": USER, "text": "模板"})
    kind, card = await sse.until(lambda k, d: k == "entry" and d["type"] == "template")
    assert card["title"] == "考试通知"
    labels = state.templates["TM_EXAM_NOTICE"]["labels"]  # the template's own keyword names
    assert [(r["label"], r["value"]) for r in card["rows"]] == [
        (labels["thing1"], "高等数学（一）"), (labels["time2"], "2026-04-18 09:00"), (labels["thing3"], "请携带准考证")
    ]
    assert card["url"] == "http://127.0.0.1/notice"
    # delivery is reported to the bot as TEMPLATESENDJOBFINISH, and the card gets the status
    kind, update = await sse.until(lambda k, d: k == "entry" and d["id"] == card["id"] and d.get("status"))
    assert update["status"] == "success"
    for _ in range(50):
        if any(m.type == "event" and m.event == "templatesendjobfinish" for m in bot.received):
            break
        await asyncio.sleep(0.02)
    finish = [m for m in bot.received if m.type == "event" and m.event == "templatesendjobfinish"]
    assert len(finish) == 1 and finish[0].status == "success"
    assert str(finish[0].id) == str(bot.push_results[-1]["msgid"])

    # pushes to another user do not show here
    await bot.push_text("oSomebodyElse", "x")  # not a follower: refused by the API
    await client.post("/_emu/chat/subscribe", json={"openid": "oSomebodyElse", "subscribed": True})
    await bot.push_text("oSomebodyElse", "给别人的")
    history = await (await client.get("/_emu/chat/history", params={"openid": USER})).json()
    assert all(e.get("content") != "给别人的" for e in history["entries"])
    stream.close()


def test_template_card_labels_without_a_definition():
    from emulator.chat import outbound_entry

    entry = outbound_entry(
        {"openid": USER, "type": "template", "template_id": "TM_X", "data": {"thing1": {"value": "a"}, "time2": "b", "zzz": "c"},
         "msgid": 7, "at": "2026-04-18T01:00:00+00:00"},
        {},
    )
    assert entry["title"] == "模板消息"
    assert [(r["label"], r["value"]) for r in entry["rows"]] == [("事项", "a"), ("时间", "b"), ("zzz", "c")]
    assert entry["at"] == 1776474000.0


async def test_menu_changes_reach_the_stream_and_clicks_reach_the_bot(env):
    bot, state, client = env
    await follow(client)
    stream = await client.get("/_emu/chat/stream", params={"openid": USER})
    sse = Sse(stream)
    assert (await sse.next())[0] == "menu"
    menu = {"button": [
        {"name": "查询", "sub_button": [{"type": "click", "name": "成绩查询", "key": "SCORE"},
                                       {"type": "view", "name": "官网", "url": "http://127.0.0.1/site"}]},
        {"type": "click", "name": "报名", "key": "ENROL"},
    ]}
    assert (await bot.api("POST", "menu/create", json=menu))["errcode"] == 0
    kind, data = await sse.until(lambda k, d: k == "menu")
    assert data["menu"] == menu
    config = await (await client.get("/_emu/chat/config")).json()
    assert config["menu"] == menu

    answer = await (await client.post("/_emu/chat/event", json={"openid": USER, "event": "CLICK", "key": "SCORE"})).json()
    assert answer["entries"][0]["content"] == "菜单 SCORE"
    assert bot.received[-1].event == "click" and bot.received[-1].key == "SCORE"
    answer = await (await client.post("/_emu/chat/event", json={"openid": USER, "event": "VIEW", "key": "http://127.0.0.1/site"})).json()
    assert answer["entries"] == [] and bot.received[-1].event == "view"
    stream.close()


async def test_unsubscribe_and_followers_only(env):
    bot, state, client = env
    await follow(client)
    answer = await (await client.post("/_emu/chat/subscribe", json={"openid": USER, "subscribed": False})).json()
    assert bot.received[-1].event == "unsubscribe"
    assert [e["type"] for e in answer["entries"]] == ["notice"]  # the bot's answer is not shown
    assert answer["subscribed"] is False and state.users[USER].subscribed is False
    resp = await client.post("/_emu/chat/text", json={"openid": USER, "text": "你好"})
    assert resp.status == 409 and (await resp.json())["error"] == "请先关注公众号"
    assert bot.received[-1].event == "unsubscribe"


@pytest.mark.parametrize(
    "path, body",
    [
        ("/_emu/chat/text", {"openid": "bad openid!", "text": "x"}),
        ("/_emu/chat/text", {"openid": USER, "text": "   "}),
        ("/_emu/chat/text", ["not", "an", "object"]),
        ("/_emu/chat/event", {"openid": USER, "event": "subscribe"}),
        ("/_emu/chat/subscribe", {"openid": USER, "subscribed": "yes"}),
    ],
)
async def test_bad_requests(env, path, body):
    bot, state, client = env
    resp = await client.post(path, json=body)
    assert resp.status == 400
    assert "error" in await resp.json()
    assert bot.received == []


async def test_start_emulator_serves_and_stops_promptly_with_an_open_stream(aiohttp_server):
    bot = ChatBot()
    bot_server = await aiohttp_server(bot.app())
    runner, state = await start_emulator(
        "127.0.0.1", 0, bot_url=str(bot_server.make_url("/wechat")), token=TOKEN, app_id=APP_ID,
        app_secret=APP_SECRET, aes_key=None, mode="plain",
    )
    host, port = runner.addresses[0][:2]
    base = f"http://{host}:{port}"
    assert isinstance(state, EmulatorState) and state.app_id == APP_ID
    assert chat_hub(runner.app).state is state
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}/_emu/chat/subscribe", json={"openid": USER, "subscribed": True}) as r:
            assert (await r.json())["entries"][1]["content"] == "欢迎关注上海自考！"
        stream = await s.get(f"{base}/_emu/chat/stream", params={"openid": USER})
        await Sse(stream).next()
        started = time.monotonic()
        await runner.cleanup()
        # far below the grace period: the streams were closed, not waited out
        assert time.monotonic() - started < SHUTDOWN_GRACE_SECONDS / 2
        stream.close()
