"""Property: validly signed but mutated bodies never get a 5xx nor leave a traceback in the log.

The bodies start from every kind of message WeChat sends and are then mutated: odd or missing
fields, unknown types, any Unicode (control characters, `]]>`), duplicated and extra elements,
DTDs and foreign encodings, bytes cut, inserted or flipped. In safe mode the mutated XML is
encrypted with a valid msg_signature, or the envelope itself is broken. The handler is the real
router on a real database. Examples are bounded and derandomised: fast in CI, never flaky.
"""
from __future__ import annotations

import itertools
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from bot.config import aes_key_bytes
from bot.crypto import MessageCrypto, signature
from bot.wire import parse_xml
from dialogs.router import Router
from dialogs.types import Reply
from emulator.server import build_xml
from tests.test_endpoint import APPID, KEY, NOW, TOKEN, make_app

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

_nonces = itertools.count(10_000)

MSG_TYPES = ["text", "image", "voice", "video", "shortvideo", "location", "link", "event", "file", "miniprogrampage"]
EVENTS = ["subscribe", "unsubscribe", "SCAN", "LOCATION", "CLICK", "VIEW", "TEMPLATESENDJOBFINISH",
          "pic_photo_or_album", "scancode_push", "unknown_event"]
FIELD_NAMES = ["Content", "MsgId", "MsgID", "MediaId", "PicUrl", "Format", "Recognition", "Event", "EventKey",
               "Ticket", "Latitude", "Longitude", "Precision", "Location_X", "Location_Y", "Scale", "Label",
               "Title", "Description", "Url", "Status", "ThumbMediaId", "MenuId", "Encrypt", "CreateTime",
               "FromUserName", "ToUserName", "MsgType"]
KEYWORDS = ["帮助", "绑定", "成绩", "考试计划", "免考", "下一页", "取消", "继续", "1", "个人信息", "退订", ""]

texts = st.one_of(st.sampled_from(KEYWORDS), st.text(max_size=80),
                  st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
values = st.one_of(texts, st.integers(min_value=-2**70, max_value=2**70), st.none())


@st.composite
def message_xml(draw) -> bytes:
    openid = draw(st.one_of(st.sampled_from(["o_fuzz_a", "o_fuzz_b"]), st.text(min_size=1, max_size=40)))
    msg_type = draw(st.one_of(st.sampled_from(MSG_TYPES), st.text(max_size=12)))
    fields = draw(st.lists(st.tuples(st.one_of(st.sampled_from(FIELD_NAMES),
                                               st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,10}", fullmatch=True)),
                                     values), max_size=8))
    if msg_type == "event":
        fields.insert(0, ("Event", draw(st.sampled_from(EVENTS))))
    elif draw(st.booleans()):
        fields.append(("MsgId", draw(st.integers(min_value=0, max_value=2**64))))
    create_time = draw(st.integers(min_value=-10, max_value=2**40))
    try:
        xml = build_xml("gh_fuzz", openid, msg_type, create_time, fields)
    except ValueError:
        xml = "<xml></xml>"
    prefix = draw(st.sampled_from(["", "<?xml version='1.0' encoding='utf-8'?>", "<?xml version='1.0' encoding='gbk'?>",
                                   "<!DOCTYPE x [<!ENTITY e 'boom'>]>", "\ufeff"]))
    return (prefix + xml).encode("utf-8", "surrogatepass")


@st.composite
def mutated(draw, base) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        op = draw(st.sampled_from(["cut", "insert", "flip", "none"]))
        at = draw(st.integers(min_value=0, max_value=len(data)))
        if op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(max_size=16))
        elif op == "flip" and at < len(data):
            data[at] = draw(st.integers(min_value=0, max_value=255))
    return bytes(data)


def signed_query() -> dict:
    ts, nonce = str(int(NOW)), str(next(_nonces))
    return {"timestamp": ts, "nonce": nonce, "signature": signature(TOKEN, ts, nonce)}


@pytest.fixture
async def fuzz_client(sqlite_db, aiohttp_client, caplog):
    """One service per mode for all examples: the real router on a migrated SQLite database."""
    router = Router(sqlite_db)
    caplog.set_level(logging.INFO)

    async def make(mode: str):
        return await aiohttp_client(make_app(sqlite_db, _Handler(router), keys=[KEY] if mode == "safe" else None))
    return make


class _Handler:
    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, msg):
        return await self.router.handle(msg)

    async def deliver(self, openid: str, reply: Reply) -> None:
        return None


def _problems(caplog, start: int) -> list[str]:
    return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records[start:]
            if r.levelno >= logging.ERROR or r.exc_info or "Traceback" in r.getMessage()]


@pytest.fixture
async def plain_client(fuzz_client):
    return await fuzz_client("plain")


@pytest.fixture
async def safe_client(fuzz_client):
    return await fuzz_client("safe")


@FUZZ
@given(body=mutated(message_xml()))
async def test_plaintext_mode_survives_mutated_bodies(plain_client, caplog, body):
    start = len(caplog.records)
    r = await plain_client.post("/wechat", params=signed_query(), data=body)
    text = await r.text()
    assert r.status < 500, text
    assert "Traceback" not in text
    if r.status == 200 and text != "success":
        parse_xml(text)  # a reply WeChat can read
    assert _problems(caplog, start) == []


@st.composite
def safe_request(draw):
    crypto = MessageCrypto(TOKEN, [aes_key_bytes(KEY)], APPID)  # os.urandom, not `random`
    query = signed_query()
    kind = draw(st.sampled_from(["encrypted", "encrypted", "random-encrypt", "broken-envelope"]))
    if kind == "random-encrypt":
        encrypt = draw(st.one_of(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
                                         max_size=200), st.text(max_size=50)))
        body = f"<xml><ToUserName>gh_fuzz</ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode(
            "utf-8", "surrogatepass")
    else:
        plain = draw(mutated(message_xml())).decode("utf-8", "replace")
        env = parse_xml(crypto.encrypt(plain, nonce=query["nonce"], timestamp=query["timestamp"]))
        encrypt = env["Encrypt"]
        body = f"<xml><ToUserName>gh_fuzz</ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()
        if kind == "broken-envelope":
            body = draw(mutated(st.just(body)))
    query.update(encrypt_type="aes", msg_signature=signature(TOKEN, query["timestamp"], query["nonce"], encrypt))
    return query, body


@FUZZ
@given(req=safe_request())
async def test_safe_mode_survives_mutated_bodies(safe_client, caplog, req):
    query, body = req
    start = len(caplog.records)
    r = await safe_client.post("/wechat", params=query, data=body)
    text = await r.text()
    assert r.status < 500, text
    assert "Traceback" not in text
    if r.status == 200 and text != "success":
        assert set(parse_xml(text)) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    assert _problems(caplog, start) == []

