"""The SMS side of binding: bot.sms.HttpSmsGateway against the emulated gateway (emulator/sms.py)
and against a few misbehaving providers; the emulator's checks, rate limits, faults, records,
control routes and the chat stream's ``sms`` events; no full number or text in any log."""
from __future__ import annotations

import asyncio
import logging
import socket
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web

from bot.config import Settings
from bot.sms import HttpSmsGateway, build_gateway
from dialogs.services import SmsError
from emulator.api import EmulatorState
from emulator.app import create_emulator_app
from emulator.sms import (
    CARRIER_REFUSED,
    INVALID_MOBILE,
    INVALID_TEXT,
    MINUTE_LIMIT,
    TOO_FREQUENT,
    UNAUTHORIZED,
    sms_state,
)
from tests.test_chat_page import APP_ID, APP_SECRET, TOKEN, Sse

MOBILE = "13812341234"
MASKED = "138****1234"
CODE = "482916"
TEXT = f"【上海自考】您的验证码是{CODE}，5分钟内有效。如非本人操作，请忽略。"


@pytest.fixture
async def emu(aiohttp_client):
    """The whole emulator app (as `zikao-bot demo` runs it); no bot behind it is needed here."""
    state = EmulatorState(APP_ID, APP_SECRET, seed=3)
    app = create_emulator_app(
        bot_url="http://127.0.0.1:9/wechat", token=TOKEN, app_id=APP_ID, app_secret=APP_SECRET,
        aes_key=None, mode="plain", state=state,
    )
    client = await aiohttp_client(app)
    base = str(client.make_url("")).rstrip("/")
    return SimpleNamespace(client=client, state=state, sms=sms_state(app), base=base)


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def gateway(emu, session) -> HttpSmsGateway:
    return HttpSmsGateway(session, emu.base, timeout=2.0)


async def refused(gateway, mobile=MOBILE, text=TEXT) -> str:
    with pytest.raises(SmsError) as e:
        await gateway.send(mobile, text)
    return str(e.value)


# --- sending through the emulator -----------------------------------------------------------


async def test_send_reaches_the_emulator(emu, gateway):
    before = emu.sms.now()
    await gateway.send(MOBILE, TEXT)
    after = emu.sms.now()
    (msg,) = emu.sms.messages
    assert msg["mobile"] == MOBILE and msg["text"] == TEXT and msg["masked"] == MASKED
    assert msg["id"].startswith("sms-") and msg["segments"] == 1
    assert before <= msg["at"] <= after  # stamped on the emulator's clock while the call ran


async def test_http_contract_of_the_emulator(emu):
    r = await emu.client.post("/sms/send", json={"mobile": MOBILE, "text": TEXT})
    assert r.status == 200
    body = await r.json()
    assert body["ok"] is True and body["id"] == emu.sms.messages[0]["id"]
    # not JSON, not an object, fields missing: 400 with code 1001
    for data in (b"", b"{not json", b"[1, 2]", b'{"mobile": "13812341234"}'):
        r = await emu.client.post("/sms/send", data=data, headers={"Content-Type": "application/json"})
        assert r.status == 400
        assert (await r.json())["code"] == 1001
    r = await emu.client.post("/sms/send", json={"mobile": "1381234", "text": TEXT})
    assert r.status == 400 and (await r.json()) == {
        "ok": False, "code": INVALID_MOBILE, "message": "invalid mobile: 11 digits starting 13-19"}
    assert (await emu.client.get("/sms/send")).status == 405
    assert len(emu.sms.messages) == 1


@pytest.mark.parametrize("mobile", ["12812341234", "1381234123", "138123412345", "+8613812341234",
                                    "1381234123a", "１３８１２３４１２３４", "", "10000000000"])
async def test_invalid_mobile_is_refused(emu, gateway, mobile):
    reason = await refused(gateway, mobile=mobile)
    assert reason.startswith("HTTP 400:") and str(INVALID_MOBILE) in reason
    assert emu.sms.messages == []


async def test_mobile_must_be_a_string(emu):
    r = await emu.client.post("/sms/send", json={"mobile": 13812341234, "text": TEXT})
    assert r.status == 400 and (await r.json())["code"] == INVALID_MOBILE


async def test_text_is_checked(emu, gateway):
    for text in ("", "   ", "x" * 501):
        reason = await refused(gateway, mobile="13900000000", text=text)
        assert str(INVALID_TEXT) in reason
    r = await emu.client.post("/sms/send", json={"mobile": MOBILE, "text": None})
    assert (await r.json())["code"] == INVALID_TEXT
    await gateway.send("13900000001", "码" * 500)  # 500 characters is the most
    assert emu.sms.messages[-1]["segments"] == 8  # billed as 8 parts of 67
    assert len(emu.sms.messages) == 1


async def test_rate_limits_per_number(emu, gateway):
    await gateway.send(MOBILE, TEXT)
    reason = await refused(gateway)  # at once again: one per 10 s
    assert reason.startswith("HTTP 429:") and str(TOO_FREQUENT) in reason
    await gateway.send("13912345678", TEXT)  # another number is not limited
    emu.state.advance(10)
    await gateway.send(MOBILE, TEXT)
    for _ in range(3):
        emu.state.advance(10)
        await gateway.send(MOBILE, TEXT)
    emu.state.advance(10)  # 50 s after the first: 5 sent within the minute
    reason = await refused(gateway)
    assert str(MINUTE_LIMIT) in reason and "5 messages per minute" in reason
    emu.state.advance(10.5)  # the first one is over a minute old now
    await gateway.send(MOBILE, TEXT)
    assert [m["mobile"] for m in emu.sms.messages].count(MOBILE) == 6
    # refusals did not count, and a cleared gateway forgets the history
    r = await emu.client.delete("/_emu/sms")
    assert (await r.json()) == {"ok": True, "cleared": 7}
    await gateway.send(MOBILE, TEXT)


async def test_the_bots_60_second_pace_never_trips_the_limits(emu, gateway):
    for _ in range(20):
        await gateway.send(MOBILE, TEXT)
        emu.state.advance(60)
    assert len(emu.sms.messages) == 20


async def test_api_key(emu, session):
    emu.sms.api_key = "k-123456"
    for key in ("", "wrong"):
        reason = await refused(HttpSmsGateway(session, emu.base, api_key=key))
        assert reason.startswith("HTTP 401:") and str(UNAUTHORIZED) in reason
    await HttpSmsGateway(session, emu.base, api_key="k-123456").send(MOBILE, TEXT)
    assert len(emu.sms.messages) == 1
    assert "k-123456" not in repr(HttpSmsGateway(session, emu.base, api_key="k-123456"))


# --- faults -----------------------------------------------------------------------------------


async def test_errcode_fault_fails_the_next_sends(emu, gateway):
    r = await emu.client.post("/_emu/faults", json={"endpoint": "sms", "errcode": 1503, "times": 2})
    assert r.status == 201
    for _ in range(2):
        reason = await refused(gateway)
        assert reason == "HTTP 503: 1503 service unavailable"
        emu.state.advance(10)
    assert (await (await emu.client.get("/_emu/faults")).json())["faults"] == []
    await gateway.send(MOBILE, TEXT)
    assert len(emu.sms.messages) == 1


async def test_carrier_refusal_is_ok_false_with_200(emu, gateway):
    emu.state.faults.add("sms", errcode=CARRIER_REFUSED, times=1)
    assert await refused(gateway) == "refused: 1007 refused by the carrier"
    emu.state.faults.add("sms", errcode=42, times=1)  # any other code: HTTP 500
    assert await refused(gateway) == "HTTP 500: 42 injected fault"
    assert emu.sms.messages == []


async def test_timeout(emu, session):
    emu.state.faults.add("sms", delay=1.0, times=1)
    gateway = HttpSmsGateway(session, emu.base, timeout=0.2)
    assert await refused(gateway) == "no answer within 0.2 s"
    assert emu.sms.messages == []  # it did not wait for the late answer (recorded when it is sent)
    # as with a real provider whose answer got lost, the message may arrive all the same
    for _ in range(100):
        if emu.sms.messages:
            break
        await asyncio.sleep(0.02)
    assert [m["mobile"] for m in emu.sms.messages] == [MOBILE]


async def test_dropped_connection_and_unreachable_gateway(emu, gateway, session):
    emu.state.faults.add("sms", drop=True, times=1)
    reason = await refused(gateway)
    assert reason.startswith("unreachable (") and "Disconnected" in reason
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reason = await refused(HttpSmsGateway(session, f"http://127.0.0.1:{port}", timeout=2.0))
    assert reason.startswith("unreachable (ClientConnectorError")
    assert emu.sms.messages == []


async def test_sms_faults_and_wechat_faults_are_separate(emu, gateway):
    emu.state.faults.add("*", errcode=-1)  # every WeChat API call fails ...
    await gateway.send(MOBILE, TEXT)  # ... the SMS gateway is another service
    r = await emu.client.get("/cgi-bin/menu/get", params={"access_token": "x" * 20})
    assert (await r.json())["errcode"] == -1
    emu.state.faults.clear()
    emu.state.faults.add("sms", errcode=1500)
    r = await emu.client.get("/cgi-bin/menu/get", params={"access_token": "x" * 20})
    assert (await r.json())["errcode"] == 40001  # not the SMS fault
    emu.state.advance(10)
    assert (await refused(gateway)).startswith("HTTP 500: 1500")


# --- records and control routes ----------------------------------------------------------------


async def test_control_routes(emu, gateway):
    await gateway.send(MOBILE, "第一条 111111")
    await gateway.send("13900000000", "第二条 222222")
    emu.state.advance(10)
    await gateway.send(MOBILE, "第三条 333333")
    listed = (await (await emu.client.get("/_emu/sms")).json())["messages"]
    assert [m["text"] for m in listed] == ["第三条 333333", "第二条 222222", "第一条 111111"]  # newest first
    assert listed[0]["mobile"] == MOBILE and listed[0]["masked"] == MASKED
    mine = (await (await emu.client.get("/_emu/sms", params={"mobile": MOBILE})).json())["messages"]
    assert [m["text"] for m in mine] == ["第三条 333333", "第一条 111111"]
    one = (await (await emu.client.get("/_emu/sms", params={"limit": "1"})).json())["messages"]
    assert [m["text"] for m in one] == ["第三条 333333"]
    assert (await emu.client.get("/_emu/sms", params={"limit": "x"})).status == 400
    assert (await emu.client.get("/_emu/sms", params={"limit": "-1"})).status == 400
    assert (await (await emu.client.delete("/_emu/sms")).json())["cleared"] == 3
    assert (await (await emu.client.get("/_emu/sms")).json())["messages"] == []


async def test_records_are_bounded(emu, gateway):
    emu.sms.max_records = 3
    for i in range(5):
        await gateway.send(f"1390000000{i}", f"text {i}")
    assert [m["text"] for m in emu.sms.list_messages()] == ["text 4", "text 3", "text 2"]


async def test_sms_events_on_the_chat_stream(emu, gateway):
    # every open page gets them, whichever user it shows
    streams = [await emu.client.get("/_emu/chat/stream", params={"openid": o}) for o in ("oPageA", "oPageB")]
    for s in streams:
        assert s.status == 200
        while (await asyncio.wait_for(s.content.readline(), 5)) != b": connected\n":
            pass  # the page is subscribed once this comment is out
    await gateway.send(MOBILE, TEXT)
    for s in streams:
        kind, data = await Sse(s).until(lambda k, d: k == "sms")
        assert data["masked"] == MASKED and data["text"] == TEXT and data["id"] == emu.sms.messages[0]["id"]
        s.close()


async def test_page_loads_the_sms_panel(emu):
    html = await (await emu.client.get("/")).text()
    assert "/_emu/static/sms.js" in html and "/_emu/static/sms.css" in html
    js = await emu.client.get("/_emu/static/sms.js")
    assert js.status == 200
    source = await js.text()
    assert "addPanel('panel-sms', '短信')" in source and "onStream('sms'" in source
    assert (await emu.client.get("/_emu/static/sms.css")).status == 200


# --- the client against misbehaving providers ----------------------------------------------------


@pytest.fixture
async def provider(aiohttp_server):
    """A provider answering whatever the test sets in `answers` (status, body, content type)."""
    seen: list[dict] = []
    answers: list[tuple[int, str, str]] = []

    async def send(request: web.Request) -> web.Response:
        seen.append({"headers": dict(request.headers), "body": await request.json()})
        status, body, ctype = answers.pop(0)
        return web.Response(status=status, text=body, content_type=ctype)

    async def elsewhere(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "id": "moved"})

    app = web.Application()
    app.router.add_post("/api/sms/send", send)
    app.router.add_post("/elsewhere", elsewhere)
    server = await aiohttp_server(app)
    return SimpleNamespace(base=str(server.make_url("/api")), seen=seen, answers=answers)


async def test_answers_a_client_must_not_take(provider, session):
    gw = HttpSmsGateway(session, provider.base + "/", api_key="secret-key")
    cases = [
        ((200, '{"ok": true, "id": "A1"}', "application/json"), None),
        ((502, "<html>Bad Gateway</html>", "text/html"), "HTTP 502"),
        ((200, "OK", "text/plain"), "unexpected answer (no ok=true)"),
        ((200, '{"id": "A2"}', "application/json"), "unexpected answer (no ok=true)"),
        ((200, '{"ok": "true"}', "application/json"), "unexpected answer (no ok=true)"),
        ((200, '{"ok": false}', "application/json"), "refused"),
        ((500, '{"ok": false, "code": "E9", "message": "down\\nfor maintenance"}', "application/json"),
         "HTTP 500: E9 down for maintenance"),
        ((302, "", "text/plain"), "HTTP 302"),
    ]
    for answer, expected in cases:
        provider.answers.append(answer)
        if expected is None:
            await gw.send(MOBILE, TEXT)
        else:
            assert await refused(gw) == expected
    first = provider.seen[0]
    assert first["body"] == {"mobile": MOBILE, "text": TEXT}
    assert first["headers"]["Authorization"] == "Bearer secret-key"
    assert first["headers"]["Content-Type"].startswith("application/json")
    no_key = HttpSmsGateway(session, provider.base)
    provider.answers.append((200, '{"ok": true}', "application/json"))
    await no_key.send(MOBILE, TEXT)
    assert "Authorization" not in provider.seen[-1]["headers"]


async def test_reasons_never_carry_the_number_or_the_code(provider, session):
    gw = HttpSmsGateway(session, provider.base)
    echo = f'{{"ok": false, "code": 7, "message": "blacklisted {MOBILE} for {TEXT} code {CODE}"}}'
    provider.answers.append((200, echo, "application/json"))
    reason = await refused(gw)
    assert MOBILE not in reason and CODE not in reason and TEXT not in reason
    assert reason.startswith("refused: 7 blacklisted 138****1234 for <text> code ******")


async def test_logs_never_show_the_number_or_the_text(emu, gateway, provider, session, caplog):
    caplog.set_level(logging.DEBUG)
    await gateway.send(MOBILE, TEXT)  # accepted
    await refused(gateway)  # rate limit
    emu.state.faults.add("sms", errcode=1503, times=1)
    emu.state.advance(10)
    await refused(gateway)  # fault
    await refused(gateway, mobile="12345678901")  # invalid number
    emu.state.faults.add("sms", delay=0.5, times=1)
    await refused(HttpSmsGateway(session, emu.base, timeout=0.1))  # timeout
    provider.answers.append((400, f'{{"ok": false, "code": 2, "message": "bad {MOBILE} {TEXT}"}}', "application/json"))
    await refused(HttpSmsGateway(session, provider.base))  # a provider echoing both
    for _ in range(500):  # the late send finishes and logs too (a bounded wait on its record)
        if len(emu.sms.messages) == 2:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0)
    lines = [r.getMessage() for r in caplog.records]
    gateway_lines = [r.getMessage() for r in caplog.records if r.name == "zikao.sms"]
    assert len(gateway_lines) == 6 and all("****" in line for line in gateway_lines)
    assert sum(MASKED in line for line in gateway_lines) == 5
    assert any(r.name == "emulator.sms" for r in caplog.records) and len(emu.sms.messages) == 2
    for line in lines:
        assert MOBILE not in line and "12345678901" not in line
        assert TEXT not in line and CODE not in line


# --- configuration ------------------------------------------------------------------------------


async def test_build_gateway(session):
    assert build_gateway(SimpleNamespace(), session) is None
    assert build_gateway(Settings(), session) is None
    assert build_gateway(SimpleNamespace(sms_api_base="  ", sms_api_key="k"), session) is None
    gw = build_gateway(SimpleNamespace(sms_api_base="http://127.0.0.1:8081/", sms_api_key=" k1 "), session)
    assert isinstance(gw, HttpSmsGateway)
    assert gw.url == "http://127.0.0.1:8081/sms/send" and gw.timeout == 5.0
    assert "k1" not in repr(gw) and "api_key=set" in repr(gw)
    gw = build_gateway(Settings(sms_api_base="https://sms.example/v1", api_timeout_seconds=3.0), session)
    assert gw.url == "https://sms.example/v1/sms/send" and gw.timeout == 3.0 and "api_key=none" in repr(gw)
    with pytest.raises(ValueError):
        build_gateway(SimpleNamespace(sms_api_base="127.0.0.1:8081"), session)
    with pytest.raises(ValueError):
        HttpSmsGateway(session, "http://127.0.0.1:8081", timeout=0)
