"""The emulated WeChat API answers like WeChat: tokens, reply windows, templates, media, menu, faults."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from emulator.api import (
    DEFAULT_APP_ID,
    DEFAULT_APP_SECRET,
    EmulatorState,
    create_api_app,
)

OPENID = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"


@pytest.fixture
def state() -> EmulatorState:
    return EmulatorState(seed=1)


@pytest.fixture
async def api(aiohttp_client, state):
    return await aiohttp_client(create_api_app(state))


async def stable_token(api, force: bool | None = None, **override) -> dict:
    body = {"grant_type": "client_credential", "appid": DEFAULT_APP_ID, "secret": DEFAULT_APP_SECRET}
    if force is not None:
        body["force_refresh"] = force
    body.update(override)
    r = await api.post("/cgi-bin/stable_token", json=body)
    assert r.status == 200
    return await r.json()


async def basic_token(api, **override) -> dict:
    params = {"grant_type": "client_credential", "appid": DEFAULT_APP_ID, "secret": DEFAULT_APP_SECRET, **override}
    r = await api.get("/cgi-bin/token", params=params)
    return await r.json()


async def post(api, endpoint: str, token: str, body) -> dict:
    r = await api.post(f"/cgi-bin/{endpoint}", params={"access_token": token}, json=body)
    assert r.status == 200
    return await r.json()


async def get(api, endpoint: str, token: str, **params) -> dict:
    r = await api.get(f"/cgi-bin/{endpoint}", params={"access_token": token, **params})
    assert r.status == 200
    return await r.json(content_type=None)


def text(content: str, to: str = OPENID) -> dict:
    return {"touser": to, "msgtype": "text", "text": {"content": content}}


def template(data: dict, to: str = OPENID, **extra) -> dict:
    return {"touser": to, "template_id": "TM_REVIEW_RESULT", "data": {k: {"value": v} for k, v in data.items()}, **extra}


# --- tokens -----------------------------------------------------------------------------------


async def test_token_endpoint_keeps_previous_token_for_five_minutes(api, state):
    first = (await basic_token(api))["access_token"]
    second = await basic_token(api)
    assert second["expires_in"] == 7200 and second["access_token"] != first
    assert (await get(api, "menu/get", first))["errcode"] == 46003  # still valid: no menu yet
    state.advance(301)
    assert (await get(api, "menu/get", first))["errcode"] == 40001
    assert (await get(api, "menu/get", second["access_token"]))["errcode"] == 46003


@pytest.mark.parametrize(
    "override, errcode",
    [({"appid": "wx1111111111111111"}, 40013), ({"secret": "wrong"}, 40125), ({"grant_type": "password"}, 40002),
     ({"secret": ""}, 41004)],
)
async def test_wrong_credentials_are_refused(api, override, errcode):
    assert (await basic_token(api, **override))["errcode"] == errcode
    assert (await stable_token(api, **override))["errcode"] == errcode


async def test_stable_token_is_the_same_until_five_minutes_before_expiry(api, state):
    first = await stable_token(api)
    assert first["expires_in"] == 7200
    state.advance(1000)
    again = await stable_token(api)
    assert again["access_token"] == first["access_token"] and again["expires_in"] == 6200
    state.advance(6000)  # 200 s left: inside the last five minutes
    renewed = await stable_token(api)
    assert renewed["access_token"] != first["access_token"] and renewed["expires_in"] == 7200
    assert (await get(api, "menu/get", first["access_token"]))["errcode"] == 46003  # old one still valid
    state.advance(200)
    assert (await get(api, "menu/get", first["access_token"]))["errcode"] == 42001


async def test_force_refresh_invalidates_old_token_and_is_limited(aiohttp_client):
    state = EmulatorState(force_refresh_daily_limit=2)
    api = await aiohttp_client(create_api_app(state))
    first = (await stable_token(api))["access_token"]
    forced = (await stable_token(api, force=True))["access_token"]
    assert forced != first
    assert (await get(api, "menu/get", first))["errcode"] == 40001
    # Within 30 s a second force changes nothing (and costs nothing).
    assert (await stable_token(api, force=True))["access_token"] == forced
    state.advance(31)
    assert (await stable_token(api, force=True))["access_token"] != forced
    state.advance(31)
    assert (await stable_token(api, force=True))["errcode"] == 45009
    assert (await stable_token(api, force="yes"))["errcode"] == 47001


async def test_token_problems_have_their_own_errcodes(api, state):
    r = await api.get("/cgi-bin/menu/get")
    assert (await r.json())["errcode"] == 41001
    assert (await get(api, "menu/get", "not a token!"))["errcode"] == 40014
    assert (await get(api, "menu/get", "A" * 100))["errcode"] == 40001
    token = (await stable_token(api))["access_token"]
    state.advance(7200)
    assert (await get(api, "menu/get", token))["errcode"] == 42001
    token = (await basic_token(api))["access_token"]
    state.revoke_tokens()  # as after an AppSecret reset
    assert (await get(api, "menu/get", token))["errcode"] == 40001


# --- customer-service messages ----------------------------------------------------------------


async def test_text_is_delivered_to_outbound_and_listeners(api, state):
    token = (await stable_token(api))["access_token"]
    state.record_user_action(OPENID, "message")
    q = state.listen()
    assert (await post(api, "message/custom/send", token, text("你好，成绩已发布")))["errcode"] == 0
    item = q.get_nowait()
    assert item["openid"] == OPENID and item["type"] == "text" and item["content"] == "你好，成绩已发布"
    assert isinstance(item["msgid"], int) and item["at"] == pytest.approx(state.now(), abs=5)
    assert state.outbound == [item]
    state.unlisten(q)
    await post(api, "message/custom/send", token, text("second"))
    assert q.empty() and len(state.outbound) == 2


async def test_unknown_and_unsubscribed_users(api, state):
    token = (await stable_token(api))["access_token"]
    assert (await post(api, "message/custom/send", token, text("hi")))["errcode"] == 40003
    state.record_user_action(OPENID, "message")
    state.set_subscribed(OPENID, False)
    assert (await post(api, "message/custom/send", token, text("hi")))["errcode"] == 43004
    assert (await post(api, "message/template/send", token, template({"thing1": "x"})))["errcode"] == 43004
    assert state.outbound == []


async def test_message_window_and_quota(api, state):
    token = (await stable_token(api))["access_token"]
    state.record_user_action(OPENID, "message")
    for i in range(5):
        assert (await post(api, "message/custom/send", token, text(f"m{i}")))["errcode"] == 0
    assert (await post(api, "message/custom/send", token, text("six")))["errcode"] == 45047
    state.record_user_action(OPENID, "message")  # a new user message resets the quota
    assert (await post(api, "message/custom/send", token, text("again")))["errcode"] == 0
    state.advance(48 * 3600 + 1)
    token = (await stable_token(api))["access_token"]
    assert (await post(api, "message/custom/send", token, text("late")))["errcode"] == 45015
    assert len(state.outbound) == 6


async def test_click_allows_three_messages_within_a_minute(api, state):
    token = (await stable_token(api))["access_token"]
    state.record_user_action(OPENID, "click")
    for i in range(3):
        assert (await post(api, "message/custom/send", token, text(f"m{i}")))["errcode"] == 0
    assert (await post(api, "message/custom/send", token, text("four")))["errcode"] == 45047
    state.record_user_action(OPENID, "scan")
    assert (await post(api, "message/custom/send", token, text("after scan")))["errcode"] == 0
    state.advance(61)
    assert (await post(api, "message/custom/send", token, text("too late")))["errcode"] == 45015


async def test_text_over_2048_bytes_and_bad_messages(api, state):
    token = (await stable_token(api))["access_token"]
    state.record_user_action(OPENID, "message")
    assert (await post(api, "message/custom/send", token, text("字" * 683)))["errcode"] == 45002  # 2049 bytes
    assert (await post(api, "message/custom/send", token, text("字" * 682 + "ab")))["errcode"] == 0  # 2048
    assert (await post(api, "message/custom/send", token, {"touser": OPENID, "msgtype": "video"}))["errcode"] == 40008
    image = {"touser": OPENID, "msgtype": "image", "image": {"media_id": "nope"}}
    assert (await post(api, "message/custom/send", token, image))["errcode"] == 40007
    r = await api.post("/cgi-bin/message/custom/send", params={"access_token": token}, data=b"{not json")
    assert (await r.json())["errcode"] == 47001


async def test_image_message_with_stored_media(api, state):
    token = (await stable_token(api))["access_token"]
    state.record_user_action(OPENID, "message")
    media_id = state.add_media(b"\xff\xd8\xff\xe0jpeg", "image/jpeg", "photo.jpg")
    answer = await post(api, "message/custom/send", token, {"touser": OPENID, "msgtype": "image", "image": {"media_id": media_id}})
    assert answer["errcode"] == 0
    assert state.outbound[-1]["type"] == "image" and state.outbound[-1]["media_id"] == media_id


# --- template messages ------------------------------------------------------------------------


async def test_template_is_delivered_and_reported(api, state):
    reports = []

    async def hook(openid, msgid, status):
        reports.append((openid, msgid, status))

    state.on_template_sent = hook
    state.set_subscribed(OPENID, True)  # no 48-hour window needed for templates
    token = (await stable_token(api))["access_token"]
    answer = await post(api, "message/template/send", token, template({"thing1": "申请免考", "phrase2": "通过"}, url="https://example.org/x"))
    assert answer["errcode"] == 0 and isinstance(answer["msgid"], int)
    item = state.outbound[-1]
    assert item["type"] == "template" and item["template_id"] == "TM_REVIEW_RESULT" and item["title"] == "审核结果通知"
    assert item["data"] == {"thing1": "申请免考", "phrase2": "通过"} and item["msgid"] == answer["msgid"]
    for _ in range(100):
        if reports:
            break
        await asyncio.sleep(0.01)
    assert reports == [(OPENID, answer["msgid"], "success")]


async def test_template_values_are_checked(api, state):
    state.set_subscribed(OPENID, True)
    token = (await stable_token(api))["access_token"]
    assert (await post(api, "message/template/send", token, template({"thing1": "一" * 20})))["errcode"] == 0
    assert (await post(api, "message/template/send", token, template({"thing1": "一" * 21})))["errcode"] == 47003
    assert (await post(api, "message/template/send", token, template({"thing1": "两\n行"})))["errcode"] == 47003
    bad_id = template({"thing1": "x"}) | {"template_id": "TM_UNKNOWN"}
    assert (await post(api, "message/template/send", token, bad_id))["errcode"] == 40037
    assert (await post(api, "message/template/send", token, template({"thing1": "x"}, to="nobody")))["errcode"] == 40003
    assert len(state.outbound) == 1


async def test_client_msg_id_dedupes_for_ten_minutes(api, state):
    state.set_subscribed(OPENID, True)
    token = (await stable_token(api))["access_token"]
    body = template({"thing1": "成绩发布"}, client_msg_id="outbox-42")
    first = await post(api, "message/template/send", token, body)
    second = await post(api, "message/template/send", token, body)
    assert second["msgid"] == first["msgid"] and len(state.outbound) == 1
    other_user = "o6_other"
    state.set_subscribed(other_user, True)
    third = await post(api, "message/template/send", token, template({"thing1": "成绩发布"}, to=other_user, client_msg_id="outbox-42"))
    assert third["msgid"] != first["msgid"]  # dedupe is per openid
    state.advance(601)
    token = (await stable_token(api))["access_token"]
    fourth = await post(api, "message/template/send", token, body)
    assert fourth["msgid"] != first["msgid"] and len(state.outbound) == 3


async def test_template_daily_quota_and_blocked_user(aiohttp_client):
    state = EmulatorState(template_daily_quota=2)
    api = await aiohttp_client(create_api_app(state))
    reports = []

    async def hook(openid, msgid, status):
        reports.append(status)

    state.on_template_sent = hook
    state.set_subscribed(OPENID, True)
    state.template_blocked.add(OPENID)
    token = (await stable_token(api))["access_token"]
    assert (await post(api, "message/template/send", token, template({"thing1": "a"})))["errcode"] == 0
    assert (await post(api, "message/template/send", token, template({"thing1": "b"})))["errcode"] == 0
    assert (await post(api, "message/template/send", token, template({"thing1": "c"})))["errcode"] == 45009
    for _ in range(100):
        if len(reports) == 2:
            break
        await asyncio.sleep(0.01)
    assert reports == ["failed:user block"] * 2 and state.outbound == []


# --- media ------------------------------------------------------------------------------------


async def test_media_get_returns_file_or_error_inside_200(api, state):
    token = (await stable_token(api))["access_token"]
    media_id = state.add_media(b"\x89PNG\r\n\x1a\npng-bytes", "image/png", "evidence.png")
    r = await api.get("/cgi-bin/media/get", params={"access_token": token, "media_id": media_id})
    assert r.status == 200 and r.content_type == "image/png"
    assert r.headers["Content-Disposition"] == 'attachment; filename="evidence.png"'
    assert await r.read() == b"\x89PNG\r\n\x1a\npng-bytes"
    r = await api.get("/cgi-bin/media/get", params={"access_token": token, "media_id": "unknown"})
    assert r.status == 200 and r.content_type == "text/plain"
    assert (await r.json(content_type=None))["errcode"] == 40007
    state.advance(3 * 86400 + 1)
    token = (await stable_token(api))["access_token"]
    assert (await get(api, "media/get", token, media_id=media_id))["errcode"] == 40007


async def test_media_upload_limits(api, state):
    token = (await stable_token(api))["access_token"]

    async def upload(data: bytes, filename="a.jpg", content_type="image/jpeg", kind="image") -> dict:
        form = aiohttp.FormData()
        form.add_field("media", data, filename=filename, content_type=content_type)
        r = await api.post("/cgi-bin/media/upload", params={"access_token": token, "type": kind}, data=form)
        return await r.json()

    answer = await upload(b"\xff\xd8\xff" + b"x" * 1000)
    assert answer["type"] == "image" and answer["created_at"] == pytest.approx(state.now(), abs=5)
    assert state.media[answer["media_id"]].data.startswith(b"\xff\xd8\xff")
    assert (await upload(b"x" * (10 * 1024 * 1024 + 1)))["errcode"] == 40009
    assert (await upload(b"MZ...", filename="a.exe", content_type="application/octet-stream"))["errcode"] == 40005
    assert (await upload(b"x", kind="sticker"))["errcode"] == 40004
    assert state.calls_to("media/upload")[0]["body"] == {"filename": "a.jpg", "content_type": "image/jpeg", "size": 1003}


# --- menu -------------------------------------------------------------------------------------

GOOD_MENU = {
    "button": [
        {"type": "click", "name": "查成绩", "key": "SCORES"},
        {"name": "业务办理", "sub_button": [
            {"type": "click", "name": "申请免考", "key": "EXEMPTION"},
            {"type": "pic_photo_or_album", "name": "上传照片", "key": "PHOTO"},
            {"type": "view", "name": "考试计划", "url": "https://example.org/plan"},
        ]},
    ]
}


async def test_menu_create_and_get(api, state):
    token = (await stable_token(api))["access_token"]
    assert (await get(api, "menu/get", token))["errcode"] == 46003
    assert (await post(api, "menu/create", token, GOOD_MENU))["errcode"] == 0
    assert (await get(api, "menu/get", token))["menu"] == GOOD_MENU
    assert state.menu == GOOD_MENU


@pytest.mark.parametrize(
    "menu, errcode",
    [
        ({"button": []}, 40016),
        ({"button": [{"type": "click", "name": "a", "key": "k"}] * 4}, 40016),
        ({"button": [{"type": "click", "name": "一二三四五六", "key": "k"}]}, 40018),  # 18 bytes
        ({"button": [{"type": "dance", "name": "a"}]}, 40017),
        ({"button": [{"type": "click", "name": "a", "key": "k" * 129}]}, 40019),
        ({"button": [{"type": "click", "name": "a"}]}, 40019),
        ({"button": [{"type": "view", "name": "a", "url": "ftp://x"}]}, 40055),
        ({"button": [{"name": "a", "sub_button": [{"type": "click", "name": "b", "key": "k"}] * 6}]}, 40023),
        ({"button": [{"name": "a", "sub_button": [{"type": "click", "name": "b" * 61, "key": "k"}]}]}, 40025),
        ({"button": [{"name": "a", "sub_button": [{"type": "click", "name": "b", "key": ""}]}]}, 40026),
        ({"button": [{"name": "a", "sub_button": [{"type": "view", "name": "b"}]}]}, 40027),
        ({"button": [{"name": "a", "sub_button": [{"type": "nope", "name": "b"}]}]}, 40024),
    ],
)
async def test_menu_validation(api, state, menu, errcode):
    token = (await stable_token(api))["access_token"]
    assert (await post(api, "menu/create", token, menu))["errcode"] == errcode
    assert state.menu is None


# --- call records and faults ------------------------------------------------------------------


async def test_calls_are_recorded_without_token_or_secret(api, state):
    token = (await stable_token(api))["access_token"]
    state.record_user_action(OPENID, "message")
    await post(api, "message/custom/send", token, text("hi"))
    await basic_token(api)
    stable, send, basic = state.calls
    assert stable["endpoint"] == "stable_token" and stable["body"]["secret"] == "***" and stable["errcode"] == 0
    assert send["endpoint"] == "message/custom/send" and send["query"] == {} and send["body"] == text("hi")
    assert send["errcode"] == 0 and send["at"] == pytest.approx(state.now(), abs=5)
    assert basic["query"]["secret"] == "***"
    assert token not in repr(state.calls) and DEFAULT_APP_SECRET not in repr(state.calls)


async def test_errcode_fault_applies_given_times(api, state):
    token = (await stable_token(api))["access_token"]
    state.faults.add("menu/get", errcode=-1, times=2)
    assert (await get(api, "menu/get", token))["errcode"] == -1
    assert (await get(api, "menu/get", token))["errcode"] == -1
    assert (await get(api, "menu/get", token))["errcode"] == 46003
    assert [c["errcode"] for c in state.calls_to("menu/get")] == [-1, -1, 46003]
    assert len(state.faults) == 0


async def test_fault_probability_zero_never_fires(api, state):
    token = (await stable_token(api))["access_token"]
    state.faults.add("menu/get", errcode=-1, probability=0.0)
    for _ in range(5):
        assert (await get(api, "menu/get", token))["errcode"] == 46003


async def test_fault_for_all_endpoints_and_media_error_type(api, state):
    token = (await stable_token(api))["access_token"]
    state.faults.add("*", errcode=45009, times=2)
    assert (await get(api, "menu/get", token))["errcode"] == 45009
    r = await api.get("/cgi-bin/media/get", params={"access_token": token, "media_id": "x"})
    assert r.content_type == "text/plain" and (await r.json(content_type=None))["errcode"] == 45009


async def test_drop_fault_closes_connection_without_answer(api, state):
    token = (await stable_token(api))["access_token"]
    state.record_user_action(OPENID, "message")
    state.faults.add("message/custom/send", drop=True, times=1)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.post("/cgi-bin/message/custom/send", params={"access_token": token}, json=text("hi"))
    assert state.outbound == [] and state.calls_to("message/custom/send")[0]["dropped"] is True
    assert (await post(api, "message/custom/send", token, text("hi")))["errcode"] == 0


async def test_delay_fault_answers_late(api, state):
    token = (await stable_token(api))["access_token"]
    state.faults.add("menu/get", delay=0.3, times=1)
    with pytest.raises(asyncio.TimeoutError):
        await api.get("/cgi-bin/menu/get", params={"access_token": token}, timeout=aiohttp.ClientTimeout(total=0.05))
    assert (await get(api, "menu/get", token))["errcode"] == 46003


async def test_http_control_api(api, state):
    r = await api.post("/_emu/faults", json={"endpoint": "message/custom/send", "errcode": 45047, "times": 1})
    assert r.status == 201
    fault = await r.json()
    assert fault["endpoint"] == "message/custom/send" and fault["errcode"] == 45047
    assert (await api.post("/_emu/faults", json={"endpoint": "x", "probability": 2, "errcode": -1})).status == 400
    assert (await api.post("/_emu/faults", json={"endpoint": "x", "colour": "red"})).status == 400
    assert (await api.post("/_emu/faults", json={"endpoint": "x"})).status == 400  # no effect given
    assert [f["id"] for f in (await (await api.get("/_emu/faults")).json())["faults"]] == [fault["id"]]

    assert (await (await api.post("/_emu/users", json={"openid": OPENID, "action": "message"})).json())["subscribed"]
    token = (await stable_token(api))["access_token"]
    assert (await post(api, "message/custom/send", token, text("one")))["errcode"] == 45047
    assert (await post(api, "message/custom/send", token, text("two")))["errcode"] == 0

    calls = (await (await api.get("/_emu/calls", params={"endpoint": "message/custom/send"})).json())["calls"]
    assert [c["errcode"] for c in calls] == [45047, 0]
    outbound = (await (await api.get("/_emu/outbound", params={"openid": OPENID})).json())["outbound"]
    assert [o["content"] for o in outbound] == ["two"]
    assert (await (await api.get("/_emu/outbound", params={"openid": "someone"})).json())["outbound"] == []

    await api.post("/_emu/faults", json={"endpoint": "menu/get", "errcode": -1})
    assert (await api.delete("/_emu/faults")).status == 200 and len(state.faults) == 0

    before = state.now()
    now = (await (await api.post("/_emu/clock", json={"advance": 3600})).json())["now"]
    assert now - before >= 3600
    assert (await api.post("/_emu/reset")).status == 200
    assert state.calls == [] and state.outbound == [] and state.users == {}
    assert (await get(api, "menu/get", token))["errcode"] == 40001  # tokens forgotten too
