"""WeChatClient against the in-process emulator: retries, token refresh, media, templates, menu."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.token_store import DatabaseTokenStore, MemoryTokenStore
from bot.wechat_client import (
    MediaExpired,
    MediaTooLarge,
    WeChatAPIError,
    WeChatArgumentError,
    WeChatBusy,
    WeChatClient,
    WeChatNetworkError,
)
from emulator.api import DEFAULT_APP_ID, DEFAULT_APP_SECRET, EmulatorState, create_api_app
from storage.models import utcnow
from tests.test_token_store import redis_store  # noqa: F401  (a fixture: skipped without Redis)

OPENID = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"


@pytest.fixture
def state() -> EmulatorState:
    return EmulatorState(seed=7)


@pytest.fixture
async def server(aiohttp_server, state) -> TestServer:
    return await aiohttp_server(create_api_app(state))


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def make_client(session, server, store=None, **kw) -> WeChatClient:
    kw.setdefault("timeout", 2.0)
    kw.setdefault("backoff_base", 0.001)
    kw.setdefault("backoff_max", 0.01)
    client = WeChatClient(
        session,
        api_base=str(server.make_url("/")),
        app_id=DEFAULT_APP_ID,
        app_secret=DEFAULT_APP_SECRET,
        token_store=store or MemoryTokenStore(),
        **kw,
    )
    client.backoffs = []
    real_sleep = client._sleep

    async def record(delay: float) -> None:
        client.backoffs.append(delay)
        await real_sleep(delay)

    client._sleep = record
    return client


@pytest.fixture
def client(session, server) -> WeChatClient:
    return make_client(session, server)


def token_calls(state: EmulatorState) -> list[dict]:
    return state.calls_to("stable_token")


# --- happy paths ------------------------------------------------------------------------------


async def test_send_text_fetches_token_once(client, state):
    state.record_user_action(OPENID, "message")
    await client.send_text(OPENID, "您的免考申请已审核通过。")
    await client.send_text(OPENID, "第二条")
    assert [o["content"] for o in state.outbound] == ["您的免考申请已审核通过。", "第二条"]
    assert len(token_calls(state)) == 1
    assert token_calls(state)[0]["body"]["force_refresh"] is False


async def test_upload_then_send_image(client, state):
    state.record_user_action(OPENID, "message")
    media_id = await client.upload_media("image", b"\xff\xd8\xff" + b"j" * 100, "card.jpg", "image/jpeg")
    await client.send_image(OPENID, media_id)
    assert state.outbound[-1]["type"] == "image" and state.outbound[-1]["media_id"] == media_id


async def test_download_media(client, state):
    media_id = state.add_media(b"\x89PNG\r\n\x1a\n" + b"p" * 5000, "image/png", "photo.png")
    data, ctype = await client.download_media(media_id)
    assert data == b"\x89PNG\r\n\x1a\n" + b"p" * 5000 and ctype == "image/png"


async def test_menu_round_trip(client, state):
    assert await client.get_menu() is None
    menu = {"button": [{"type": "click", "name": "查成绩", "key": "SCORES"}]}
    await client.create_menu(menu)
    assert (await client.get_menu())["menu"] == menu
    with pytest.raises(WeChatAPIError) as e:
        await client.create_menu({"button": []})
    assert e.value.errcode == 40016 and len(state.calls_to("menu/create")) == 2  # not retried


async def test_template_returns_msgid(client, state):
    state.set_subscribed(OPENID, True)
    msgid = await client.send_template(OPENID, "TM_SCORE_RELEASE", {"thing1": "2024年10月", "time2": "2024-11-20"})
    assert state.outbound[-1]["msgid"] == msgid and state.outbound[-1]["data"]["thing1"] == "2024年10月"
    assert state.calls_to("message/template/send")[0]["body"]["client_msg_id"]  # always set


# --- retries ----------------------------------------------------------------------------------


async def test_busy_is_retried_with_growing_backoff(session, server, state):
    client = make_client(session, server, backoff_base=0.004, backoff_max=1.0)
    state.record_user_action(OPENID, "message")
    state.faults.add("message/custom/send", errcode=-1, times=2)
    await client.send_text(OPENID, "hi")
    assert [c["errcode"] for c in state.calls_to("message/custom/send")] == [-1, -1, 0]
    first, second = client.backoffs
    assert 0.002 <= first <= 0.004 and 0.004 <= second <= 0.008
    assert len(state.outbound) == 1


async def test_frequency_limit_gives_up_after_max_retries(session, server, state):
    client = make_client(session, server, max_retries=2)
    state.record_user_action(OPENID, "message")
    state.faults.add("message/custom/send", errcode=45009)
    with pytest.raises(WeChatAPIError) as e:
        await client.send_text(OPENID, "hi")
    assert e.value.errcode == 45009 and e.value.transient
    assert len(state.calls_to("message/custom/send")) == 3 and len(client.backoffs) == 2


async def test_timeout_is_retried(session, server, state):
    client = make_client(session, server, timeout=0.2)
    await client.access_token()
    state.faults.add("menu/get", delay=1.0, times=1)
    assert await client.get_menu() is None
    assert len(state.calls_to("menu/get")) == 2 and len(client.backoffs) == 1


async def test_template_retried_after_timeout_is_delivered_once(session, server, state):
    client = make_client(session, server, timeout=0.2)
    state.set_subscribed(OPENID, True)
    await client.access_token()
    state.faults.add("message/template/send", delay=0.5, times=1)
    msgid = await client.send_template(OPENID, "TM_EXAM_NOTICE", {"thing1": "2025年4月考试"})
    calls = state.calls_to("message/template/send")
    assert len(calls) == 2 and calls[0]["body"]["client_msg_id"] == calls[1]["body"]["client_msg_id"]
    for _ in range(200):  # the delayed first attempt is still being served: let it finish
        if calls[0]["errcode"] is not None:
            break
        await asyncio.sleep(0.01)
    assert calls[0]["errcode"] == 0
    assert [o["msgid"] for o in state.outbound] == [msgid]


async def test_dropped_connection_is_retried(client, state):
    state.set_subscribed(OPENID, True)
    state.faults.add("message/template/send", drop=True, times=1)
    await client.send_template(OPENID, "TM_EXAM_NOTICE", {"thing1": "x"}, client_msg_id="outbox-1")
    calls = state.calls_to("message/template/send")
    assert [c.get("dropped", False) for c in calls] == [True, False] and len(state.outbound) == 1


async def test_customer_service_message_not_resent_when_it_may_have_arrived(client, state):
    state.record_user_action(OPENID, "message")
    state.faults.add("message/custom/send", drop=True, times=1)
    with pytest.raises(WeChatNetworkError) as e:
        await client.send_text(OPENID, "hi")
    assert e.value.maybe_delivered and e.value.errcode == -1
    assert len(state.calls_to("message/custom/send")) == 1


async def test_connection_refused_is_retried_then_raised(session):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = MemoryTokenStore()
    await store.try_lease(DEFAULT_APP_ID, "seed", 10)
    await store.put(DEFAULT_APP_ID, "seeded-token", utcnow() + dt.timedelta(hours=1), "seed")
    client = WeChatClient(
        session, api_base=f"http://127.0.0.1:{port}", app_id=DEFAULT_APP_ID, app_secret="s",
        token_store=store, max_retries=2, backoff_base=0.001, backoff_max=0.01,
    )
    with pytest.raises(WeChatNetworkError) as e:
        await client.send_text(OPENID, "hi")  # safe to resend: nothing was sent
    assert not e.value.maybe_delivered


# --- the access_token -------------------------------------------------------------------------


async def test_invalid_token_refreshes_once_and_retries_once(client, state):
    state.record_user_action(OPENID, "message")
    await client.send_text(OPENID, "one")
    state.faults.add("message/custom/send", errcode=40001, times=1)
    await client.send_text(OPENID, "two")
    tokens = token_calls(state)
    assert [c["body"]["force_refresh"] for c in tokens] == [False, True]
    assert [c["errcode"] for c in state.calls_to("message/custom/send")] == [0, 40001, 0]


async def test_invalid_token_twice_is_an_error_not_a_loop(client, state):
    state.record_user_action(OPENID, "message")
    state.faults.add("message/custom/send", errcode=40001)
    with pytest.raises(WeChatAPIError) as e:
        await client.send_text(OPENID, "hi")
    assert e.value.errcode == 40001
    assert len(token_calls(state)) == 2 and len(state.calls_to("message/custom/send")) == 2


async def test_expired_token_is_replaced(client, state):
    state.record_user_action(OPENID, "message")
    await client.send_text(OPENID, "before")
    state.advance(7200)  # WeChat's clock passes expiry; the client's copy still looks fresh
    state.record_user_action(OPENID, "message")
    await client.send_text(OPENID, "after")
    assert [c["errcode"] for c in state.calls_to("message/custom/send")] == [0, 42001, 0]
    assert len(token_calls(state)) == 2


async def test_token_replaced_elsewhere_is_picked_up_without_fetching(session, server, state):
    store = MemoryTokenStore()
    a, b = make_client(session, server, store), make_client(session, server, store)
    state.record_user_action(OPENID, "message")
    await a.send_text(OPENID, "a1")
    await b.send_text(OPENID, "b1")
    await a.access_token(force=True)  # a's process force-refreshes: b's copy is now invalid
    await b.send_text(OPENID, "b2")  # 40001, then b finds a's new token in the store
    assert len(token_calls(state)) == 2
    assert [c["errcode"] for c in state.calls_to("message/custom/send")] == [0, 0, 40001, 0]


async def test_wrong_secret_is_not_retried(session, server, state):
    client = WeChatClient(
        session, api_base=str(server.make_url("/")), app_id=DEFAULT_APP_ID, app_secret="wrong",
        token_store=MemoryTokenStore(), backoff_base=0.001,
    )
    with pytest.raises(WeChatAPIError) as e:
        await client.get_menu()
    assert e.value.errcode == 40125 and len(token_calls(state)) == 1


async def test_token_fetch_busy_is_retried(client, state):
    state.faults.add("stable_token", errcode=-1, times=1)
    assert await client.get_menu() is None
    assert [c["errcode"] for c in token_calls(state)] == [-1, 0]


async def test_token_and_secret_never_logged(session, server, state, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(session, server)
    state.record_user_action(OPENID, "message")
    state.faults.add("message/custom/send", errcode=40001, times=1)
    state.faults.add("message/custom/send", errcode=-1, times=1)
    state.faults.add("menu/get", drop=True)
    await client.send_text(OPENID, "hi")
    with pytest.raises(WeChatNetworkError) as e:
        await client.get_menu()
    token = client._token[0]
    # The emulator's own access log shows URLs (with the token): it plays WeChat, not us.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")
    assert "retry" in ours and "refreshing" in ours
    for text in (ours, str(e.value), repr(client)):
        assert token not in text and DEFAULT_APP_SECRET not in text


# --- concurrency: one fetch for many callers ---------------------------------------------------


async def many_clients_fetch_once(session, server, state, store) -> None:
    """Ten clients (standing for processes) with five callers each: one stable_token call."""
    state.faults.add("stable_token", delay=0.1, times=1)  # a slow fetch, so the others must wait
    clients = [make_client(session, server, store) for _ in range(10)]
    tokens = await asyncio.gather(*(c.access_token() for c in clients for _ in range(5)))
    assert len(set(tokens)) == 1 and len(token_calls(state)) == 1
    state.record_user_action(OPENID, "message")
    await clients[3].send_text(OPENID, "works")


async def test_concurrent_callers_fetch_once_memory(session, server, state):
    await many_clients_fetch_once(session, server, state, MemoryTokenStore())


async def test_concurrent_callers_fetch_once_database(session, server, state, db):
    await many_clients_fetch_once(session, server, state, DatabaseTokenStore(db))


async def test_concurrent_callers_fetch_once_redis(session, server, state, redis_store):
    await many_clients_fetch_once(session, server, state, redis_store)


async def test_concurrent_invalid_token_refreshes_once(client, state):
    state.record_user_action(OPENID, "message")
    await client.access_token()
    state.faults.add("message/custom/send", errcode=40001, times=3)
    await asyncio.gather(*(client.send_text(OPENID, f"m{i}") for i in range(3)))
    assert [c["body"]["force_refresh"] for c in token_calls(state)] == [False, True]


# --- media errors -----------------------------------------------------------------------------


async def test_media_error_inside_200_is_raised(client, state):
    with pytest.raises(WeChatAPIError) as e:
        await client.download_media("no-such-media")
    assert e.value.errcode == 40007 and len(state.calls_to("media/get")) == 1
    media_id = state.add_media(b"jpeg", "image/jpeg", "a.jpg")
    state.advance(3 * 86400 + 1)
    with pytest.raises(WeChatAPIError) as e:
        await client.download_media(media_id)
    assert e.value.errcode == 40007


async def test_unknown_expired_or_missing_media_raise_media_expired(client, state):
    with pytest.raises(MediaExpired) as e:
        await client.download_media("no-such-media")
    assert e.value.errcode == 40007 and not e.value.transient
    media_id = state.add_media(b"jpeg", "image/jpeg", "a.jpg")
    state.advance(3 * 86400 + 1)  # temporary media lives three days
    with pytest.raises(MediaExpired) as e:
        await client.download_media(media_id)
    assert e.value.errcode == 40007 and e.value.endpoint == "media/get"
    with pytest.raises(MediaExpired) as e:
        await client.download_media("")
    assert e.value.errcode == 41006


async def test_sending_an_expired_image_raises_media_expired(client, state):
    state.record_user_action(OPENID, "message")
    media_id = state.add_media(b"jpeg", "image/jpeg", "a.jpg")
    state.advance(3 * 86400 + 1)
    state.record_user_action(OPENID, "message")
    with pytest.raises(MediaExpired) as e:
        await client.send_image(OPENID, media_id)
    assert e.value.errcode == 40007 and len(state.calls_to("message/custom/send")) == 1


@pytest.mark.parametrize("errcode", [-1, 45009, 45011])
async def test_busy_codes_raise_wechat_busy_after_the_retries(session, server, state, errcode):
    client = make_client(session, server, max_retries=1)
    state.record_user_action(OPENID, "message")
    state.faults.add("message/custom/send", errcode=errcode)
    with pytest.raises(WeChatBusy) as e:
        await client.send_text(OPENID, "hi")
    assert e.value.errcode == errcode and e.value.transient and not isinstance(e.value, WeChatNetworkError)
    assert len(state.calls_to("message/custom/send")) == 2


async def test_media_error_inside_200_with_token_error_refreshes(client, state):
    media_id = state.add_media(b"jpeg", "image/jpeg", "a.jpg")
    await client.access_token()
    state.faults.add("media/get", errcode=42001, times=1)
    assert await client.download_media(media_id) == (b"jpeg", "image/jpeg")
    assert len(token_calls(state)) == 2


async def test_oversize_media_is_refused(client, state):
    media_id = state.add_media(b"x" * 4096, "image/jpeg", "big.jpg")
    with pytest.raises(MediaTooLarge) as e:
        await client.download_media(media_id, max_bytes=1024)
    assert e.value.limit == 1024 and len(state.calls_to("media/get")) == 1


async def test_oversize_media_without_length_stops_streaming(aiohttp_server, session):
    """A chunked answer (no Content-Length) is cut off as soon as it passes the limit."""
    sent = []

    async def stable_token(request):
        return web.json_response({"access_token": "T" * 32, "expires_in": 7200})

    async def media_get(request):
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for _ in range(1000):
                await resp.write(b"x" * 1024)
                sent.append(1024)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    app = web.Application()
    app.router.add_post("/cgi-bin/stable_token", stable_token)
    app.router.add_get("/cgi-bin/media/get", media_get)
    srv = await aiohttp_server(app)
    client = make_client(session, srv)
    with pytest.raises(MediaTooLarge):
        await client.download_media("m", max_bytes=10 * 1024)


# --- validation before sending ----------------------------------------------------------------


@pytest.mark.parametrize("value", ["一" * 21, "两\n行", "a\rb"])
async def test_template_values_checked_before_sending(client, state, value):
    state.set_subscribed(OPENID, True)
    with pytest.raises(WeChatArgumentError) as e:
        await client.send_template(OPENID, "TM_EXAM_NOTICE", {"thing1": value})
    assert e.value.errcode == 47003 and isinstance(e.value, ValueError)
    assert state.calls_to("message/template/send") == []


async def test_long_text_refused_before_sending(client, state):
    with pytest.raises(WeChatArgumentError) as e:
        await client.send_text(OPENID, "字" * 683)
    assert e.value.errcode == 45002 and state.calls == []


async def test_client_msg_id_dedupes(client, state):
    state.set_subscribed(OPENID, True)
    first = await client.send_template(OPENID, "TM_EXAM_NOTICE", {"thing1": "x"}, client_msg_id="outbox-7")
    second = await client.send_template(OPENID, "TM_EXAM_NOTICE", {"thing1": "x"}, client_msg_id="outbox-7")
    assert first == second and len(state.outbound) == 1


# --- WeChat's refusals reach the caller unchanged ----------------------------------------------


async def test_window_and_quota_errors_are_not_retried(client, state):
    state.record_user_action(OPENID, "message")
    for i in range(5):
        await client.send_text(OPENID, f"m{i}")
    with pytest.raises(WeChatAPIError) as e:
        await client.send_text(OPENID, "sixth")
    assert e.value.errcode == 45047 and not e.value.transient
    state.advance(48 * 3600 + 1)
    with pytest.raises(WeChatAPIError) as e:
        await client.send_text(OPENID, "late")
    assert e.value.errcode == 45015
    # 5 sent, 45047, then 42001 (two days passed for the token too) and 45015 after the refresh.
    assert [c["errcode"] for c in state.calls_to("message/custom/send")][5:] == [45047, 42001, 45015]


async def test_unknown_and_unsubscribed_users(client, state):
    with pytest.raises(WeChatAPIError) as e:
        await client.send_text("o_nobody", "hi")
    assert e.value.errcode == 40003
    state.set_subscribed(OPENID, False)
    with pytest.raises(WeChatAPIError) as e:
        await client.send_template(OPENID, "TM_EXAM_NOTICE", {"thing1": "x"})
    assert e.value.errcode == 43004


async def test_waiting_on_a_stuck_refresher_ends_in_an_api_error(session, server, state):
    store = MemoryTokenStore()
    assert await store.try_lease(DEFAULT_APP_ID, "stuck-process", 60)
    client = make_client(session, server, store, token_wait=0.1)
    with pytest.raises(WeChatNetworkError) as e:
        await client.access_token()
    assert not e.value.maybe_delivered and token_calls(state) == []
