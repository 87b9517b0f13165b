"""emulator.server against a tiny test bot that checks everything with wechatpy."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import time
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import ImageReply, TextReply
from wechatpy.utils import check_signature
import xmltodict

from emulator.server import (
    SERVICE_ERROR,
    WeChatServer,
    account_id_for,
    build_xml,
    cdata,
    sign,
)

TOKEN = "testtoken123"
APP_ID = "wx1234567890abcdef"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
OFFICIAL_PATH = Path(__file__).resolve().parent / "data" / "official-vector.json"  # vendored copy
OFFICIAL = json.loads(OFFICIAL_PATH.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# The test bot: verifies like a careful bot would, using wechatpy only


class TestBot:
    """Records every request, checks signatures and crypto, answers as told."""

    __test__ = False  # not a pytest class

    def __init__(self, mode: str, aes_key: str | None = None):
        self.mode = mode
        self.crypto = WeChatCrypto(TOKEN, aes_key, APP_ID) if aes_key else None
        self.requests: list[dict] = []
        self.sleep_first: int = 0  # sleep on this many first attempts
        self.sleep_seconds: float = 1.0
        self.answer = "echo"  # echo, image, raw
        self.raw: tuple[int, str, str] = (200, "text/plain", "success")
        self.encrypt_reply = mode != "plain"
        self.tamper_signature = False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        body = await request.text()
        record: dict = {"query": dict(q), "body": body, "errors": []}
        self.requests.append(record)
        try:
            check_signature(TOKEN, q["signature"], q["timestamp"], q["nonce"])
        except (InvalidSignatureException, KeyError) as exc:
            record["errors"].append(f"signature: {exc!r}")
            return web.Response(status=403, text="bad signature")
        raw = xmltodict.parse(body)["xml"]
        record["outer"] = raw
        if self.mode == "plain":
            xml = body
            if "encrypt_type" in q or "Encrypt" in raw:
                record["errors"].append("plain mode request carries encryption")
        else:
            if q.get("encrypt_type") != "aes":
                record["errors"].append("encrypt_type missing")
            xml = self.crypto.decrypt_message(body, q["msg_signature"], q["timestamp"], q["nonce"])
        record["xml"] = xml
        msg = parse_message(xml)
        record["msg"] = msg
        if len(self.requests) <= self.sleep_first:
            await asyncio.sleep(self.sleep_seconds)
        if self.answer == "raw":
            status, ctype, text = self.raw
            return web.Response(status=status, text=text, content_type=ctype)
        if self.answer == "image":
            reply = ImageReply(message=msg, media_id="MEDIA_REPLY_1").render()
        else:
            reply = TextReply(message=msg, content=f"收到：{getattr(msg, 'content', msg.type)}").render()
        if self.encrypt_reply:
            reply = self.crypto.encrypt_message(reply, q["nonce"], q["timestamp"])
            if self.tamper_signature:
                reply = reply.replace("<MsgSignature><![CDATA[", "<MsgSignature><![CDATA[0")
        return web.Response(text=reply, content_type="application/xml")


async def start_bot(aiohttp_server, mode: str = "plain", aes_key: str | None = None):
    bot = TestBot(mode, aes_key)
    app = web.Application()
    app.router.add_route("*", "/wechat", bot.handle)

    async def verify(request: web.Request) -> web.Response:
        q = request.query
        try:
            check_signature(TOKEN, q["signature"], q["timestamp"], q["nonce"])
        except InvalidSignatureException:
            return web.Response(status=403, text="bad signature")
        return web.Response(text=q["echostr"])

    app.router.add_get("/verify", verify)
    server = await aiohttp_server(app)
    return bot, server


def make_server(server, mode="plain", aes_key=None, **kw) -> WeChatServer:
    return WeChatServer(str(server.make_url("/wechat")), TOKEN, APP_ID, aes_key=aes_key, mode=mode, **kw)


# ---------------------------------------------------------------------------------------------
# Helpers


def test_sign_is_wechats_signature():
    ts, nonce = "1409735669", "1320562132"
    check_signature(TOKEN, sign(TOKEN, ts, nonce), ts, nonce)  # raises when wrong
    expected = hashlib.sha1("".join(sorted([TOKEN, ts, nonce])).encode()).hexdigest()
    assert sign(TOKEN, ts, nonce) == expected
    assert sign(TOKEN, int(ts), nonce) == expected
    with pytest.raises(InvalidSignatureException):
        check_signature("othertoken", sign(TOKEN, ts, nonce), ts, nonce)
    # The official sample's query signature
    assert sign(OFFICIAL["token"], OFFICIAL["timestamp"], OFFICIAL["nonce"]) == OFFICIAL["signature"]
    assert (
        sign(OFFICIAL["token"], OFFICIAL["timestamp"], OFFICIAL["nonce"], OFFICIAL["encrypt"])
        == OFFICIAL["msg_signature"]
    )


def test_build_xml_matches_wechats_layout():
    xml = build_xml("gh_abc", "openid1", "text", 1409735668, [("Content", "a]]>b\n第二行"), ("MsgId", 6054768590064713728)])
    assert xml.startswith("<xml>\n<ToUserName><![CDATA[gh_abc]]></ToUserName>\n<FromUserName><![CDATA[openid1]]>")
    assert "<CreateTime>1409735668</CreateTime>" in xml
    assert "<MsgId>6054768590064713728</MsgId>" in xml
    msg = parse_message(xml)
    assert msg.type == "text" and msg.content == "a]]>b\n第二行" and msg.id == 6054768590064713728
    assert msg.source == "openid1" and msg.target == "gh_abc"
    assert cdata("x") == "<![CDATA[x]]>"
    # None fields are left out
    assert "Recognition" not in build_xml("gh", "o", "voice", 1, {"MediaId": "m", "Recognition": None})
    assert account_id_for(APP_ID).startswith("gh_") and len(account_id_for(APP_ID)) == 15


# ---------------------------------------------------------------------------------------------
# Signing and crypto in the three modes, every message type


@pytest.mark.parametrize("mode", ["plain", "compat", "safe"])
async def test_every_message_type_arrives_signed_and_parsable(aiohttp_server, mode):
    key = None if mode == "plain" else AES_KEY
    bot, server = await start_bot(aiohttp_server, mode, key)
    async with make_server(server, mode, key) as wx:
        sent = [
            await wx.send_text("user_a", "你好 & <welcome>"),
            await wx.send_image("user_a", "MEDIA_1", "http://127.0.0.1/pic.jpg"),
            await wx.send_voice("user_a", "VOICE_1", recognition="查成绩"),
            await wx.send_location("user_a", 31.2304, 121.4737, 15, "上海市"),
            await wx.send_link("user_a", "标题", "描述", "http://example.invalid/a"),
            await wx.send_event("user_a", "subscribe"),
            await wx.send_event("user_a", "subscribe", "qrscene_123", Ticket="TICKET1"),
            await wx.send_event("user_a", "SCAN", "123", Ticket="TICKET1"),
            await wx.send_event("user_a", "CLICK", "MENU_SCORE"),
            await wx.send_event("user_a", "VIEW", "http://example.invalid/v", MenuId=1),
            await wx.send_event("user_a", "LOCATION", Latitude=31.23, Longitude=121.47, Precision=30.0),
            await wx.send_template_finish("user_a", 200163836, "failed:user block"),
            await wx.send_event("user_a", "unsubscribe"),
        ]
    assert len(bot.requests) == len(sent)
    for rec, res in zip(bot.requests, sent):
        assert rec["errors"] == []
        assert res.ok, res.detail
        assert res.attempts and res.statuses == [200]
        assert rec["query"]["openid"] == "user_a"
        outer = rec["outer"]
        if mode == "safe":
            assert set(outer) == {"ToUserName", "Encrypt"}
            assert outer["ToUserName"] == wx.account_id
        elif mode == "compat":
            assert "Encrypt" in outer
            inner = xmltodict.parse(rec["xml"])["xml"]
            assert {k: v for k, v in outer.items() if k != "Encrypt"} == inner
        else:
            assert "Encrypt" not in outer and "msg_signature" not in rec["query"]
        if mode != "plain":
            q = rec["query"]
            assert q["msg_signature"] == sign(TOKEN, q["timestamp"], q["nonce"], outer["Encrypt"])
        assert rec["xml"] == res.request_xml
        # replies were encrypted in compat/safe mode and read back
        assert res.reply is not None and res.reply.type == "text"
        assert res.reply.encrypted == (mode != "plain")

    msgs = [r["msg"] for r in bot.requests]
    assert msgs[0].type == "text" and msgs[0].content == "你好 & <welcome>" and msgs[0].target == wx.account_id
    assert sent[0].reply.content == "收到：你好 & <welcome>"
    assert msgs[1].type == "image" and msgs[1].media_id == "MEDIA_1" and msgs[1].image == "http://127.0.0.1/pic.jpg"
    assert msgs[2].type == "voice" and msgs[2].media_id == "VOICE_1" and msgs[2].recognition == "查成绩"
    assert msgs[2].format == "amr"
    assert msgs[3].type == "location" and tuple(map(float, msgs[3].location)) == (31.2304, 121.4737) and msgs[3].label == "上海市"
    assert msgs[4].type == "link" and msgs[4].url == "http://example.invalid/a"
    assert msgs[5].type == "event" and msgs[5].event == "subscribe" and not msgs[5].key
    assert msgs[6].event == "subscribe_scan" and msgs[6].scene_id == "123" and msgs[6].ticket == "TICKET1"
    assert msgs[7].event == "scan" and msgs[7].scene_id == "123"
    assert msgs[8].event == "click" and msgs[8].key == "MENU_SCORE"
    assert msgs[9].event == "view" and msgs[9].url == "http://example.invalid/v"
    assert msgs[10].event == "location" and float(msgs[10].latitude) == 31.23
    assert msgs[11].event == "templatesendjobfinish" and msgs[11].status == "failed:user block"
    assert "<MsgID>200163836</MsgID>" in bot.requests[11]["xml"]
    assert msgs[12].event == "unsubscribe"
    # Messages carry MsgId, events do not
    assert sent[0].msg_id is not None and msgs[0].id == sent[0].msg_id
    assert "<MsgId>" not in bot.requests[8]["xml"]


async def test_image_reply_is_read(aiohttp_server):
    bot, server = await start_bot(aiohttp_server, "safe", AES_KEY)
    bot.answer = "image"
    async with make_server(server, "safe", AES_KEY) as wx:
        res = await wx.send_text("user_b", "图")
    assert res.ok and res.reply.type == "image" and res.reply.media_id == "MEDIA_REPLY_1"
    assert res.as_dict()["reply"] == {"type": "image", "encrypted": True, "media_id": "MEDIA_REPLY_1"}


async def test_compat_mode_accepts_a_plain_reply_but_safe_mode_does_not(aiohttp_server):
    bot, server = await start_bot(aiohttp_server, "compat", AES_KEY)
    bot.encrypt_reply = False
    async with make_server(server, "compat", AES_KEY) as wx:
        res = await wx.send_text("user_c", "hi")
    assert res.ok and res.reply.content == "收到：hi" and not res.reply.encrypted

    bot, server = await start_bot(aiohttp_server, "safe", AES_KEY)
    bot.encrypt_reply = False
    async with make_server(server, "safe", AES_KEY) as wx:
        res = await wx.send_text("user_c", "hi")
    assert res.error == SERVICE_ERROR and "safe mode" in res.detail


async def test_encrypted_reply_with_a_wrong_signature_is_an_error(aiohttp_server):
    bot, server = await start_bot(aiohttp_server, "safe", AES_KEY)
    bot.tamper_signature = True
    async with make_server(server, "safe", AES_KEY) as wx:
        res = await wx.send_text("user_d", "hi")
    assert res.error == SERVICE_ERROR and "MsgSignature" in res.detail
    assert res.reply is None


async def test_encrypted_reply_in_plain_mode_is_an_error(aiohttp_server):
    bot, server = await start_bot(aiohttp_server, "compat", AES_KEY)
    async with make_server(server, "compat", AES_KEY) as wx:
        prepared_mode_ok = await wx.send_text("u", "x")
    assert prepared_mode_ok.ok
    # the bot encrypts, but the emulated account believes it is in plaintext mode
    wx = WeChatServer(str(server.make_url("/wechat")), TOKEN, APP_ID, mode="plain")
    reply_xml = bot.crypto.encrypt_message(
        TextReply(source=wx.account_id, target="u", content="x").render(), "123", "456"
    )
    from emulator.server import ReplyError

    with pytest.raises(ReplyError, match="plaintext mode"):
        wx.parse_reply(reply_xml.encode(), "u")


# ---------------------------------------------------------------------------------------------
# WeChat's timeout and retries


async def test_retries_after_the_timeout_with_the_same_msgid(aiohttp_server):
    bot, server = await start_bot(aiohttp_server, "safe", AES_KEY)
    bot.sleep_first, bot.sleep_seconds = 2, 1.0
    async with make_server(server, "safe", AES_KEY, timeout=0.3) as wx:
        started = time.monotonic()
        res = await wx.send_text("user_e", "重试")
        elapsed = time.monotonic() - started
    assert res.ok and res.reply.content == "收到：重试"
    assert len(res.attempts) == 3
    assert [a.outcome for a in res.attempts] == ["timeout", "timeout", "answered"]
    assert res.statuses == [None, None, 200]
    assert elapsed >= 0.6  # two timeouts waited out (no upper bound: a loaded machine may be slow)
    assert res.attempts[0].latency >= 0.29
    assert len(bot.requests) == 3
    ids = {r["msg"].id for r in bot.requests}
    times = {r["msg"].create_time for r in bot.requests}
    assert ids == {res.msg_id} and len(times) == 1
    # each attempt is signed on its own (fresh nonce), every signature valid
    assert len({r["query"]["nonce"] for r in bot.requests}) == 3
    assert all(r["errors"] == [] for r in bot.requests)


async def test_three_timeouts_show_the_service_error(aiohttp_server):
    bot, server = await start_bot(aiohttp_server, "plain")
    bot.sleep_first, bot.sleep_seconds = 10, 1.0
    async with make_server(server, timeout=0.2, attempts=3) as wx:
        res = await wx.send_event("user_f", "CLICK", "K1")
    assert res.error == SERVICE_ERROR
    assert res.statuses == [None, None, None]
    assert len(bot.requests) == 3
    assert {r["outer"]["CreateTime"] for r in bot.requests} == {str(res.create_time)}
    assert "no answer" in res.detail


async def test_unreachable_bot_is_the_service_error():
    wx = WeChatServer("http://127.0.0.1:9/wechat", TOKEN, APP_ID, timeout=0.5, attempts=2)
    async with wx:
        res = await wx.send_text("user_g", "hi")
    assert res.error == SERVICE_ERROR and len(res.attempts) == 2
    assert all(a.outcome.startswith("connection error") for a in res.attempts)


# ---------------------------------------------------------------------------------------------
# What the bot answers


@pytest.mark.parametrize(
    "status, ctype, body, expect_error, detail",
    [
        (200, "text/plain", "success", False, ""),
        (200, "text/plain", "", False, ""),
        (200, "text/plain", "  success\n", False, ""),
        (500, "text/html", "<html><body><h1>500 Internal Server Error</h1></body></html>", True, "HTTP 500"),
        (200, "text/html", "<!DOCTYPE html><html><body>oops</body></html>", True, "DTD"),
        (200, "text/html", "<html><body>oops</body></html>", True, "root element"),
        (200, "application/json", '{"errcode": 0}', True, "not XML"),
        (502, "text/plain", "success", True, "HTTP 502"),
        (200, "application/xml", "<xml><ToUserName><![CDATA[user_h]]></ToUserName></xml>", True, "MsgType"),
    ],
)
async def test_answers_are_read_as_wechat_does(aiohttp_server, status, ctype, body, expect_error, detail):
    bot, server = await start_bot(aiohttp_server, "plain")
    bot.answer, bot.raw = "raw", (status, ctype, body)
    async with make_server(server) as wx:
        res = await wx.send_text("user_h", "hi")
    assert len(res.attempts) == 1  # an answer, even a bad one, is not retried
    if expect_error:
        assert res.error == SERVICE_ERROR and detail in res.detail
        assert res.reply is None
    else:
        assert res.ok and res.no_reply


async def test_reply_must_swap_the_users(aiohttp_server):
    bot, server = await start_bot(aiohttp_server, "plain")
    async with make_server(server) as wx:
        not_swapped = TextReply(source="user_i", target=wx.account_id, content="x").render()
        bot.answer, bot.raw = "raw", (200, "application/xml", not_swapped)
        res = await wx.send_text("user_i", "hi")
    assert res.error == SERVICE_ERROR and "ToUserName" in res.detail


async def test_overlong_text_reply_is_not_delivered(aiohttp_server):
    bot, server = await start_bot(aiohttp_server, "plain")
    async with make_server(server) as wx:
        ok = TextReply(source=wx.account_id, target="user_j", content="考" * 682).render()  # 2046 bytes
        long = TextReply(source=wx.account_id, target="user_j", content="考" * 683).render()  # 2049 bytes
        bot.answer, bot.raw = "raw", (200, "application/xml", ok)
        assert (await wx.send_text("user_j", "hi")).ok
        bot.raw = (200, "application/xml", long)
        res = await wx.send_text("user_j", "hi")
    assert res.error == SERVICE_ERROR and "2048" in res.detail


async def test_news_reply(aiohttp_server):
    bot, server = await start_bot(aiohttp_server, "plain")
    async with make_server(server) as wx:
        news = (
            f"<xml><ToUserName><![CDATA[user_k]]></ToUserName><FromUserName><![CDATA[{wx.account_id}]]></FromUserName>"
            "<CreateTime>1</CreateTime><MsgType><![CDATA[news]]></MsgType><ArticleCount>1</ArticleCount>"
            "<Articles><item><Title><![CDATA[报名须知]]></Title><Description><![CDATA[d]]></Description>"
            "<PicUrl><![CDATA[http://p]]></PicUrl><Url><![CDATA[http://u]]></Url></item></Articles></xml>"
        )
        bot.answer, bot.raw = "raw", (200, "application/xml", news)
        res = await wx.send_text("user_k", "hi")
    assert res.ok and res.reply.type == "news"
    assert res.reply.articles == [{"Title": "报名须知", "Description": "d", "PicUrl": "http://p", "Url": "http://u"}]


# ---------------------------------------------------------------------------------------------
# URL check


async def test_verify_url(aiohttp_server):
    _, server = await start_bot(aiohttp_server)
    url = str(server.make_url("/verify"))
    async with WeChatServer(url, TOKEN, APP_ID) as wx:
        ok, status, body = await wx.verify_url("echo123")
    assert (ok, status, body) == (True, 200, "echo123")
    async with WeChatServer(url, "wrongtoken", APP_ID) as wx:
        ok, status, _ = await wx.verify_url()
    assert not ok and status == 403


def test_constructor_checks():
    with pytest.raises(ValueError):
        WeChatServer("http://x", TOKEN, APP_ID, mode="safe")
    with pytest.raises(ValueError):
        WeChatServer("http://x", TOKEN, APP_ID, mode="secret")


# ---------------------------------------------------------------------------------------------
# Tencent's official vector


def _decrypt_by_the_spec(encrypt_b64: str, encoding_aes_key: str, appid: str) -> str:
    """Decrypt as PROTOCOL.md describes, without wechatpy, to check the emulator independently."""
    key = base64.b64decode(encoding_aes_key + "=")
    data = base64.b64decode(encrypt_b64)
    assert len(data) % 32 == 0
    dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = dec.update(data) + dec.finalize()
    pad = plain[-1]
    assert 1 <= pad <= 32 and plain[-pad:] == bytes([pad]) * pad
    body = plain[16:-pad]
    (length,) = struct.unpack(">I", body[:4])
    assert body[4 + length :].decode() == appid
    return body[4 : 4 + length].decode("utf-8")


def test_wechatpy_decrypts_the_official_vector():
    o = OFFICIAL
    crypto = WeChatCrypto(o["token"], o["encoding_aes_key"], o["appid"])
    envelope = f"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[{o['encrypt']}]]></Encrypt></xml>"
    assert crypto.decrypt_message(envelope, o["msg_signature"], o["timestamp"], o["nonce"]) == o["plaintext"]
    assert _decrypt_by_the_spec(o["encrypt"], o["encoding_aes_key"], o["appid"]) == o["plaintext"]


def test_emulator_encryption_decrypts_with_the_official_parameters():
    o = OFFICIAL
    wx = WeChatServer(
        "http://unused/", o["token"], o["appid"], aes_key=o["encoding_aes_key"], mode="safe", account_id="gh_10f6c3c3ac5a"
    )
    req = wx.prepare(o["plaintext"], "oyORnuP8q7ou2gfYjqLzSIWZf0rs", o["timestamp"], o["nonce"])
    assert req.params["signature"] == o["signature"]
    assert req.params["timestamp"] == o["timestamp"] and req.params["nonce"] == o["nonce"]
    outer = xmltodict.parse(req.body)["xml"]
    assert set(outer) == {"ToUserName", "Encrypt"}
    assert req.params["msg_signature"] == sign(o["token"], o["timestamp"], o["nonce"], outer["Encrypt"])
    assert outer["Encrypt"] != o["encrypt"]  # a fresh random prefix
    assert _decrypt_by_the_spec(outer["Encrypt"], o["encoding_aes_key"], o["appid"]) == o["plaintext"]
    # and the emulator's reply path reads the official ciphertext itself
    official_envelope = (
        f"<xml><Encrypt><![CDATA[{o['encrypt']}]]></Encrypt><MsgSignature><![CDATA[{o['msg_signature']}]]></MsgSignature>"
        f"<TimeStamp>{o['timestamp']}</TimeStamp><Nonce><![CDATA[{o['nonce']}]]></Nonce></xml>"
    )
    reader = WeChatServer(
        "http://unused/", o["token"], o["appid"], aes_key=o["encoding_aes_key"], mode="safe",
        account_id="oyORnuP8q7ou2gfYjqLzSIWZf0rs",
    )
    parsed = reader.parse_reply(official_envelope.encode(), "gh_10f6c3c3ac5a")
    assert parsed.type == "text" and parsed.content == "abcdteT" and parsed.encrypted
