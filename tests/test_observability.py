"""/healthz, /metrics and LOG_FORMAT=json: what an operator's monitoring sees."""
from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from bot.app import DB, create_app
from bot.config import load_settings
from bot.logs import setup_logging
from bot.scheduler import LEASE_NAME, SchedulerOptions
from emulator.server import WeChatServer
from storage.models import Lease, Outbox, utcnow

TOKEN, APP_ID = "obstoken", "wx0b5000000000000001"


class TcpRelay:
    """A TCP relay in front of a server: stopping it is the server going away for the app."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self, port: int = 0) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port or self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def stop(self) -> None:
        """Refuse new connections and cut the open ones, as a stopped server does."""
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.close()
        self.writers.clear()
        await self.server.wait_closed()


def settings_for(db_url: str, **extra: str):
    return load_settings({"WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID, "DATABASE_URL": db_url,
                          "WECHAT_API_BASE": "http://127.0.0.1:9", **extra})


def quiet() -> SchedulerOptions:
    """No background jobs: the test owns every row and every clock."""
    return SchedulerOptions(enabled=False)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape(client) -> dict[tuple[str, tuple], float]:
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    return samples(await resp.text())


async def test_healthz_checks_the_database(db_url, aiohttp_client):
    client = await aiohttp_client(create_app(settings_for(db_url), scheduler=quiet()))
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"ok": True, "database": "ok"}


async def test_healthz_is_503_while_postgresql_is_stopped_and_recovers(db_url, aiohttp_client):
    if not db_url.startswith("postgresql"):
        pytest.skip("a server that can be stopped: PostgreSQL")
    u = make_url(db_url)
    relay = TcpRelay(u.host or "127.0.0.1", u.port or 5432)
    port = await relay.start()
    url = u.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    client = await aiohttp_client(create_app(settings_for(url), scheduler=quiet()))
    try:
        assert (await client.get("/healthz")).status == 200
        await relay.stop()
        resp = await client.get("/healthz")
        body = await resp.json()
        assert resp.status == 503 and body["ok"] is False and body["database"] != "ok"
        assert str(port) not in json.dumps(body)  # a reason, not the connection string
        metrics = await scrape(client)  # still scrapes, and says the database is down
        assert metrics[("zikao_database_up", ())] == 0
        await relay.start(port)
        assert (await client.get("/healthz")).status == 200
    finally:
        await relay.stop()


async def test_healthz_is_503_when_redis_does_not_answer(sqlite_db, aiohttp_client):
    relay = TcpRelay("127.0.0.1", 6379)
    port = await relay.start()
    await relay.stop()  # a port where nothing listens any more
    settings = settings_for(str(sqlite_db.engine.url).replace("+aiosqlite", ""), REDIS_URL=f"redis://127.0.0.1:{port}/0")
    client = await aiohttp_client(create_app(settings, scheduler=quiet()))
    resp = await client.get("/healthz")
    body = await resp.json()
    assert resp.status == 503 and body["database"] == "ok" and body["redis"] != "ok"


async def test_metrics_count_messages_latency_dedupe_and_faq(db_url, aiohttp_client):
    client = await aiohttp_client(create_app(settings_for(db_url), scheduler=quiet()))
    before = await scrape(client)
    url = str(client.make_url("/wechat"))
    async with WeChatServer(url, TOKEN, APP_ID) as wx:
        assert (await wx.send_text("o_obs_1", "帮助", msg_id=91)).ok
        assert (await wx.send_text("o_obs_1", "帮助", msg_id=91)).ok  # WeChat's retry
        assert (await wx.send_text("o_obs_1", "今天天气怎么样", msg_id=92)).ok
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("zikao_messages_total", kind="text") == 2
    assert delta("zikao_dedupe_hits_total") == 1
    assert delta("zikao_reply_seconds_count") == 3
    assert delta("zikao_reply_seconds_bucket", le="+Inf") == 3
    assert delta("zikao_faq_outcomes_total", outcome="none") == 1


async def test_metrics_show_outbox_depth_and_the_scheduler_leader(db_url, aiohttp_client):
    client = await aiohttp_client(create_app(settings_for(db_url), scheduler=quiet()))
    db = client.server.app[DB]
    now = utcnow()
    async with db.session() as s, s.begin():
        for i, status in enumerate(["pending", "pending", "waiting", "failed"]):
            s.add(Outbox(openid=f"o{i}", kind="notice", payload={"text": "x"}, client_msg_id=f"obs-{i}",
                         status=status, due_at=now))
        s.add(Lease(name=LEASE_NAME, owner="host-a:4242", expires_at=now + dt.timedelta(seconds=20)))
    m = await scrape(client)
    assert m[("zikao_outbox_rows", (("status", "pending"),))] == 2
    assert m[("zikao_outbox_rows", (("status", "waiting"),))] == 1
    assert m[("zikao_outbox_rows", (("status", "failed"),))] == 1
    assert m[("zikao_outbox_rows", (("status", "sent"),))] == 0
    assert m[("zikao_scheduler_leader", (("owner", "host-a:4242"),))] == 1
    assert 0 < m[("zikao_scheduler_lease_seconds_left", ())] <= 20
    assert m[("zikao_database_up", ())] == 1


def test_json_logs_carry_the_reference_code_and_no_secret():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO", "json", stream=stream)
        setup_logging("INFO", "json", stream=stream)  # again: still one line per record
        settings = load_settings({"WECHAT_APP_SECRET": "s3cr3t-app-secret", "SMS_API_KEY": "sms-key-123",
                                  "WECHAT_TOKEN": "tok3nvalue"})
        logging.getLogger("zikao.app").info("zikao-bot ready: %s", settings.describe())
        logging.getLogger("zikao.endpoint").error("handler failed ref=%s kind=%s", "AB12CD", "text",
                                                  extra={"ref": "AB12CD", "kind": "text"})
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[1]["ref"] == "AB12CD" and lines[1]["level"] == "ERROR" and lines[1]["logger"] == "zikao.endpoint"
    assert {"time", "message", "pid"} <= set(lines[0])
    text = stream.getvalue()
    for secret in ("s3cr3t-app-secret", "sms-key-123", "tok3nvalue"):
        assert secret not in text
