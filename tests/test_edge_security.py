"""Trustworthy edge: freshness and replays, strict modes, logs without secrets, short retention."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select, update

from bot.config import ConfigError, Settings, load_settings
from bot.crypto import signature
from bot.freshness import DatabaseNonces, RedisNonces, freshness_problem, purge_nonces
from bot.logsafe import RedactingFilter, SafeAccessLogger, redact
from bot.wire import parse_xml
from storage.models import InboundMessage, InboundNonce, utcnow
from tests.test_endpoint import (EP, KEY, NOW, TOKEN, Recorder, encrypted_request, inbound_count, make_app,
                                 signed, text_xml)

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


@pytest.fixture
async def client_for(db, aiohttp_client):
    async def make(handler: Recorder, **kw):
        return await aiohttp_client(make_app(db, handler, **kw))
    return make


# --- freshness: the timestamp window ------------------------------------------------------------


@pytest.mark.parametrize("offset", [-301, 301, -2400], ids=["5-minutes-old", "from-the-future", "40-minutes-old"])
async def test_signed_request_outside_the_window_is_refused_and_nothing_is_stored(client_for, db, offset):
    handler = Recorder()
    c = await client_for(handler)
    r = await c.post("/wechat", params=signed(ts=str(int(NOW) + offset)), data=text_xml())
    assert r.status == 403
    assert handler.calls == [] and await inbound_count(db) == 0


async def test_request_inside_the_window_is_answered(client_for):
    c = await client_for(Recorder())
    for offset in (-299, 0, 299):
        r = await c.post("/wechat", params=signed(ts=str(int(NOW) + offset)), data=text_xml(msg_id=str(900 + offset)))
        assert r.status == 200 and parse_xml(await r.text())["Content"] == "收到：你好"


async def test_window_follows_the_injected_clock(db, aiohttp_client):
    now = [NOW]
    handler = Recorder()
    c = await aiohttp_client(make_app(db, handler, clock=lambda: now[0]))
    assert (await c.post("/wechat", params=signed(), data=text_xml(msg_id="1"))).status == 200
    now[0] += 3600  # an hour later the same timestamp is stale
    assert (await c.post("/wechat", params=signed(), data=text_xml(msg_id="2"))).status == 403


@pytest.mark.parametrize("ts, nonce", [("", "1"), ("17e8", "1"), ("1700000001", ""), ("1700000001", "x" * 65),
                                       ("1700000001", "1;DROP")])
def test_malformed_timestamp_or_nonce_is_a_problem(ts, nonce):
    assert freshness_problem(ts, nonce, NOW, 300)


# --- nonces: a logged query cannot be replayed -------------------------------------------------------


async def test_replayed_query_with_another_users_body_is_refused(client_for, db):
    """The issue's attack: a logged query string, a plaintext body claiming another openid."""
    handler = Recorder(text="姓名：张三 地址：…")
    c = await client_for(handler)
    params = signed()
    first = await c.post("/wechat", params=params, data=text_xml(openid="o_victim", content="个人信息", msg_id="61"))
    assert first.status == 200
    replay = await c.post("/wechat", params=params, data=text_xml(openid="o_other", content="个人信息", msg_id="62"))
    assert replay.status == 403 and "张三" not in await replay.text()
    # The very same request again (same body too) gets nothing either, not even the stored reply.
    again = await c.post("/wechat", params=params, data=text_xml(openid="o_victim", content="个人信息", msg_id="61"))
    assert again.status == 403 and "张三" not in await again.text()
    assert [m.openid for m in handler.calls] == ["o_victim"]


async def test_wechat_retries_with_fresh_nonces_still_get_the_first_reply(client_for):
    handler = Recorder()
    c = await client_for(handler)
    replies = [await (await c.post("/wechat", params=signed(), data=text_xml(msg_id="71"))).text() for _ in range(3)]
    assert len({parse_xml(r)["Content"] for r in replies}) == 1 and len(handler.calls) == 1


async def test_nonce_seen_by_another_process_is_refused(db_url, aiohttp_client):
    """Two endpoints with their own engines stand for two processes sharing the database."""
    from storage.db import Database

    a, b = Database(db_url), Database(db_url)
    try:
        ha, hb = Recorder(), Recorder()
        ca, cb = await aiohttp_client(make_app(a, ha)), await aiohttp_client(make_app(b, hb))
        params = signed()
        assert (await ca.post("/wechat", params=params, data=text_xml(msg_id="81"))).status == 200
        assert (await cb.post("/wechat", params=params, data=text_xml(msg_id="82"))).status == 403
        assert hb.calls == []
    finally:
        await a.dispose()
        await b.dispose()


async def test_same_nonce_twice_in_one_batch_is_fresh_once(db):
    nonces = DatabaseNonces(db)
    results = await asyncio.gather(*(nonces.first_use("1700000001", "5") for _ in range(5)))
    assert sorted(results) == [False] * 4 + [True]


async def test_old_nonces_are_purged(db):
    nonces = DatabaseNonces(db)
    assert await nonces.first_use("1700000001", "6")
    async with db.session() as s, s.begin():
        await s.execute(update(InboundNonce).values(seen_at=utcnow() - dt.timedelta(seconds=700)))
    assert await nonces.first_use("1700000001", "7")
    assert await purge_nonces(db, 300) == 1
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(InboundNonce))).scalar_one() == 1


async def test_redis_nonces_refuse_a_replay_across_processes_and_expire(redis_client, sqlite_db, aiohttp_client):
    prefix = f"test:{secrets.token_hex(6)}:nonce:"
    try:
        handler = Recorder()
        app = make_app(sqlite_db, handler)
        app[EP].nonces = RedisNonces(redis_client, 300, prefix=prefix)
        other = RedisNonces(redis_client, 300, prefix=prefix)  # another process
        c = await aiohttp_client(app)
        params = signed()
        assert (await c.post("/wechat", params=params, data=text_xml(msg_id="91"))).status == 200
        assert (await c.post("/wechat", params=params, data=text_xml(msg_id="92"))).status == 403
        assert not await other.first_use(params["timestamp"], params["nonce"])
        ttl = await redis_client.ttl(prefix + f"{params['timestamp']}:{params['nonce']}")
        assert 0 < ttl <= 600
        assert len(handler.calls) == 1
    finally:
        keys = [k async for k in redis_client.scan_iter(match=prefix + "*")]
        if keys:
            await redis_client.delete(*keys)


# --- modes -------------------------------------------------------------------------------------------


async def test_safe_mode_refuses_a_plaintext_body(client_for, db):
    handler = Recorder()
    c = await client_for(handler, keys=[KEY])
    r = await c.post("/wechat", params=signed(), data=text_xml(content="个人信息"))
    assert r.status == 403 and handler.calls == [] and await inbound_count(db) == 0


async def test_safe_mode_uses_only_the_encrypted_fields(client_for):
    """A body with plain fields beside <Encrypt>: the plain ones are not trusted in safe mode."""
    handler = Recorder()
    c = await client_for(handler, keys=[KEY])
    params, body = encrypted_request(KEY, text_xml(openid="o_real", content="成绩"))
    forged = body.replace("</xml>", "<FromUserName><![CDATA[o_forged]]></FromUserName><MsgType>text</MsgType>"
                                    "<Content>个人信息</Content></xml>")
    r = await c.post("/wechat", params=params, data=forged)
    assert r.status == 200 and [(m.openid, m.text) for m in handler.calls] == [("o_real", "成绩")]


async def test_compat_mode_accepts_plaintext_and_encrypted_bodies(client_for):
    handler = Recorder()
    c = await client_for(handler, keys=[KEY], mode="compat")
    plain = await c.post("/wechat", params=signed(), data=text_xml(msg_id="101", content="明文"))
    assert parse_xml(await plain.text())["Content"] == "收到：明文"
    params, body = encrypted_request(KEY, text_xml(msg_id="102", content="密文"))
    enc = await c.post("/wechat", params=params, data=body)
    assert set(parse_xml(await enc.text())) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}


def test_mode_defaults_from_the_aes_key_and_can_be_set():
    assert load_settings({}).mode == "plain"
    assert load_settings({"WECHAT_AES_KEY": GOOD_KEY}).mode == "safe"
    s = load_settings({"WECHAT_AES_KEY": GOOD_KEY, "WECHAT_MODE": "compat"})
    assert s.mode == "compat" and not s.safe_mode


@pytest.mark.parametrize("env, fragment", [
    ({"WECHAT_MODE": "safe"}, "WECHAT_AES_KEY"),
    ({"WECHAT_MODE": "compat"}, "WECHAT_AES_KEY"),
    ({"WECHAT_MODE": "plain", "WECHAT_AES_KEY": GOOD_KEY}, "WECHAT_MODE"),
    ({"WECHAT_MODE": "aes"}, "WECHAT_MODE"),
    ({"WECHAT_MAX_AGE_SECONDS": "5"}, "WECHAT_MAX_AGE_SECONDS"),
    ({"DEDUPE_RETENTION_HOURS": "48"}, "DEDUPE_RETENTION_MINUTES"),
])
def test_bad_mode_settings_name_the_variable(env, fragment):
    with pytest.raises(ConfigError) as e:
        load_settings(env)
    assert fragment in str(e.value)


# --- retention ---------------------------------------------------------------------------------------


def test_reply_texts_are_kept_minutes_not_days():
    s = Settings()
    assert s.dedupe_retention_minutes <= 15
    from bot.scheduler import SchedulerOptions

    assert SchedulerOptions().purge_every <= 60


async def test_purge_job_drops_replies_older_than_the_retention(db):
    from bot import jobs
    from bot.dedupe import Deduper

    async with db.session() as s, s.begin():
        s.add(InboundMessage(key="o_p:1", openid="o_p", status="done", reply='{"text": "姓名：张三"}',
                             received_at=utcnow() - dt.timedelta(minutes=11)))
        s.add(InboundMessage(key="o_p:2", openid="o_p", status="done", reply='{"text": "刚才的回复"}',
                             received_at=utcnow() - dt.timedelta(seconds=20)))
    jobs.register("retention-test", jobs.Runtime(db=db, settings=Settings(), deduper=Deduper(db)))
    try:
        assert await jobs.purge_dedupe("retention-test") == 1
    finally:
        jobs.unregister("retention-test")
    async with db.session() as s:
        assert list((await s.execute(select(InboundMessage.key))).scalars()) == ["o_p:2"]


# --- logs --------------------------------------------------------------------------------------------


def test_redact_hides_query_values_and_identity_fields():
    line = ('GET /cgi-bin/message/custom/send?access_token=ACCESS123&x=1 POST /wechat?signature=abcdef&timestamp=1'
            '&nonce=99&openid=o_secret&msg_signature=fedcba <FromUserName>o_secret</FromUserName> '
            '{"touser": "o_secret"}')
    out = redact(line)
    for value in ("ACCESS123", "abcdef", "o_secret", "fedcba", "=99"):
        assert value not in out
    assert "/cgi-bin/message/custom/send" in out and "x=1" in out


def test_redacting_filter_cleans_messages_and_exception_texts():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("http://h/?access_token=T0KEN",), None)
    try:
        raise RuntimeError("url http://h/?access_token=T0KEN&openid=o_1")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "T0KEN" not in text and "o_1" not in text and "RuntimeError" in text


async def test_access_log_has_the_path_but_no_query(db, aiohttp_server, aiohttp_client, caplog):
    handler = Recorder()
    c = await aiohttp_client(await aiohttp_server(make_app(db, handler), access_log_class=SafeAccessLogger))
    params = signed({"openid": "o_logged_user"})
    with caplog.at_level(logging.INFO):
        await c.post("/wechat", params=params, data=text_xml(openid="o_logged_user"))
        await c.post("/wechat", params=params, data=text_xml(openid="o_logged_user"))  # a replay: warned
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert access and all(line.startswith("POST /wechat ") for line in access)
    for value in (params["signature"], params["nonce"], "o_logged_user"):
        assert value not in caplog.text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_the_running_service_logs_no_signature_nonce_or_openid(sqlite_db, tmp_path):
    """`zikao-bot serve` as deployed: every line it writes while answering, a replay and a stale
    request included, is free of the request's credentials and the user's openid."""
    port = _free_port()
    env = dict(os.environ, DATABASE_URL=sqlite_db.url.replace("+aiosqlite", ""), PORT=str(port),
               WECHAT_TOKEN=TOKEN, FAQ_CACHE_DIR=str(tmp_path / "jieba"), MEDIA_DIR=str(tmp_path / "media"),
               LOG_LEVEL="INFO", WECHAT_API_BASE="http://127.0.0.1:9", SECRET_KEY=secrets.token_urlsafe(32))
    env.pop("ZIKAO_CONFIG", None)
    env.pop("ZIKAO_MODE", None)  # as deployed: production, with a key of its own
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    openid = "o_service_log_user_0001"
    ts = str(int(time.time()))
    params = {"timestamp": ts, "nonce": "123456789", "signature": signature(TOKEN, ts, "123456789"),
              "openid": openid}
    stale_ts = str(int(time.time()) - 3600)
    stale = {"timestamp": stale_ts, "nonce": "55555", "signature": signature(TOKEN, stale_ts, "55555"), "openid": openid}
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/wechat"
            deadline = time.monotonic() + 90
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, "the service did not start"
                await asyncio.sleep(0.2)
            async with session.post(url, params=params, data=text_xml(openid=openid, content="帮助")) as r:
                assert r.status == 200
            async with session.post(url, params=params, data=text_xml(openid=openid, msg_id="2")) as r:
                assert r.status == 403
            async with session.post(url, params=stale, data=text_xml(openid=openid, msg_id="3")) as r:
                assert r.status == 403
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert "POST /wechat 200" in out and "POST /wechat 403" in out and "replay" in out
    for value in (params["signature"], stale["signature"], "123456789", "55555", openid, env["SECRET_KEY"], TOKEN):
        assert value not in out, f"{value!r} in the service's log"


async def test_emulator_logs_no_access_token_or_secret(caplog):
    from emulator.app import start_emulator

    port = _free_port()
    runner, _state = await start_emulator("127.0.0.1", port, bot_url="http://127.0.0.1:9/wechat", token=TOKEN,
                                          app_id="wx1234567890abcdef", app_secret="s3cr3t-app-secret",
                                          aes_key=None, mode="plain")
    try:
        with caplog.at_level(logging.INFO):
            async with aiohttp.ClientSession() as session:
                base = f"http://127.0.0.1:{port}/cgi-bin"
                async with session.get(f"{base}/token", params={"grant_type": "client_credential",
                                                               "appid": "wx1234567890abcdef",
                                                               "secret": "s3cr3t-app-secret"}) as r:
                    token = (await r.json())["access_token"]
                async with session.post(f"{base}/message/custom/send", params={"access_token": token},
                                        json={"touser": "o_emulated_user", "msgtype": "text",
                                              "text": {"content": "hi"}}) as r:
                    await r.read()
    finally:
        await runner.cleanup()
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any("/cgi-bin/token" in line for line in access)
    for value in (token, "s3cr3t-app-secret"):
        assert value not in caplog.text
