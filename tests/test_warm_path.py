"""Issue 15's warm path: an idle follower's query is claimed and answered with no database
statement awaited; the claim, the nonce and the reply are written behind, and a change of the
follower's binding or conversation is seen at once (docs/delivery.md, "The warm path")."""
from __future__ import annotations

import contextlib
import uuid

from aiohttp import web
from sqlalchemy import event, func, select

from bot.endpoint import WeChatEndpoint
from bot.freshness import nonce_key
from bot.wire import parse_xml
from storage import accounts, followers
from storage import queries as sq
from storage.models import InboundMessage, InboundNonce
from tests.dialog_fixtures import demo_router_bound
from tests.test_endpoint import EP, NOW, TOKEN, signed, text_xml

OPENID = "o_warm_000000000000000000001"


async def content(request) -> str:
    """The text of the passive reply (the XML's CreateTime is the clock's second: never compared)."""
    body = await (await request).text()
    return parse_xml(body).get("Content", body) if body.startswith("<xml>") else body


@contextlib.contextmanager
def statements(db):
    """Every SQL statement any of `db`'s engines runs inside the block."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    engines = {id(e): e for e in (db.engine.sync_engine, db.relaxed_engine.sync_engine)}.values()
    for e in engines:
        event.listen(e, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for e in engines:
            event.remove(e, "before_cursor_execute", record)


class Counting:
    def __init__(self, router) -> None:
        self.router, self.calls = router, 0

    async def __call__(self, msg):
        self.calls += 1
        return await self.router.handle(msg)


def warm_app(db, router, handler=None, *, warm: bool = True) -> web.Application:
    async def deliver(openid, reply):
        return None

    endpoint = WeChatEndpoint(token=TOKEN, crypto=None, db=db, handler=handler or router.handle, deliver_later=deliver,
                              prefetch=router.prefetch, clock=lambda: NOW,
                              cached=router.cached if warm else None, views=router.views() if warm else None)
    endpoint.deduper.write_behind_seconds = 3600  # written when the test flushes
    app = web.Application()
    app.router.add_post("/wechat", endpoint.post)
    app[EP] = endpoint

    async def drain(app: web.Application) -> None:
        await app[EP].drain()

    app.on_cleanup.append(drain)
    return app


@contextlib.contextmanager
def no_clock_expiry(db):
    """The caches' time-based re-checks off: what is tested is invalidation by change."""
    cache, views = sq.cache_for(db), followers.views_for(db)
    before = cache.recheck_seconds, views.ttl
    cache.recheck_seconds, views.ttl = 1e9, 1e9
    try:
        yield
    finally:
        cache.recheck_seconds, views.ttl = before


async def test_a_warm_score_query_runs_no_statement_and_is_written_behind(db, aiohttp_client):
    router = await demo_router_bound(db, OPENID)
    handler = Counting(router)
    app = warm_app(db, router, handler)
    c = await aiohttp_client(app)
    with no_clock_expiry(db):
        first = await content(c.post("/wechat", params=signed(), data=text_xml(OPENID, "成绩", "2001")))
        assert "当次成绩" in first
        params = signed()
        with statements(db) as seen:
            r = await c.post("/wechat", params=params, data=text_xml(OPENID, "成绩", "2002"))
            second = parse_xml(await r.text())["Content"]
        assert r.status == 200 and "当次成绩" in second
        assert seen == []  # claim, nonce, who the user is, the scores, the reply: all from memory
        # A retry of it (another nonce) is answered from memory, not run again.
        retry = await content(c.post("/wechat", params=signed(), data=text_xml(OPENID, "成绩", "2002")))
        assert retry == second and handler.calls == 2
        await app[EP].deduper.flush()
    async with db.session() as s:
        row = await s.get(InboundMessage, f"{OPENID}:2002")
        assert row.status == "done" and "当次成绩" in row.reply and row.openid == OPENID
        assert await s.get(InboundNonce, nonce_key(params["timestamp"], params["nonce"])) is not None


async def test_a_retry_after_the_write_is_answered_from_the_stored_reply(db, aiohttp_client):
    router = await demo_router_bound(db, OPENID)
    handler = Counting(router)
    app = warm_app(db, router, handler)
    c = await aiohttp_client(app)
    with no_clock_expiry(db):
        await c.post("/wechat", params=signed(), data=text_xml(OPENID, "成绩", "2011"))
        first = await content(c.post("/wechat", params=signed(), data=text_xml(OPENID, "历史成绩", "2012")))
        await app[EP].deduper.flush()
        again = await content(c.post("/wechat", params=signed(), data=text_xml(OPENID, "历史成绩", "2012")))
    assert again == first and handler.calls == 2
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(InboundMessage)) == 2


async def test_a_replayed_request_is_refused_also_after_a_restart(db, aiohttp_client):
    router = await demo_router_bound(db, OPENID)
    app = warm_app(db, router)
    c = await aiohttp_client(app)
    with no_clock_expiry(db):
        await c.post("/wechat", params=signed(), data=text_xml(OPENID, "成绩", "2021"))
        params = signed()
        assert (await c.post("/wechat", params=params, data=text_xml(OPENID, "成绩", "2022"))).status == 200
        # The same URL again, with another message body: a replay.
        assert (await c.post("/wechat", params=params, data=text_xml(OPENID, "成绩", "2023"))).status == 403
        await app[EP].deduper.flush()
    # A new process (its memory empty) on the same database refuses it too.
    restarted = await aiohttp_client(warm_app(db, router))
    assert (await restarted.post("/wechat", params=params, data=text_xml(OPENID, "成绩", "2024"))).status == 403


async def test_unbinding_is_seen_by_the_next_message(db, aiohttp_client):
    router = await demo_router_bound(db, OPENID)
    c = await aiohttp_client(warm_app(db, router))
    with no_clock_expiry(db):
        assert "当次成绩" in await content(c.post("/wechat", params=signed(), data=text_xml(OPENID, "成绩", "2031")))
        assert router.cached(OPENID) is not None
        await accounts.unbind(db, OPENID)  # e.g. on another page of this process
        assert router.cached(OPENID) is None
        reply = await content(c.post("/wechat", params=signed(), data=text_xml(OPENID, "成绩", "2032")))
    assert "当次成绩" not in reply and "绑定" in reply


async def test_a_conversation_started_is_not_answered_from_the_idle_copy(db, aiohttp_client):
    router = await demo_router_bound(db, OPENID)
    c = await aiohttp_client(warm_app(db, router))
    with no_clock_expiry(db):
        await c.post("/wechat", params=signed(), data=text_xml(OPENID, "成绩", "2041"))
        started = await content(c.post("/wechat", params=signed(), data=text_xml(OPENID, "修改联系方式", "2042")))
        assert "请选择要修改的项目" in started
        assert router.cached(OPENID) is None
        with statements(db) as seen:
            reply = await content(c.post("/wechat", params=signed(), data=text_xml(OPENID, "取消", "2043")))
        assert seen  # read under the step lock, not from the idle copy
    assert "已取消「修改联系方式」" in reply


async def test_without_the_warm_path_every_message_reads_the_database(db, aiohttp_client):
    router = await demo_router_bound(db, OPENID)
    c = await aiohttp_client(warm_app(db, router, warm=False))
    with no_clock_expiry(db):
        await c.post("/wechat", params=signed(), data=text_xml(OPENID, "成绩", "2051"))
        with statements(db) as seen:
            assert "当次成绩" in await content(c.post("/wechat", params=signed(), data=text_xml(OPENID, "成绩", "2052")))
    assert seen  # the claim's round trip


# --- Several processes: claims, nonces and followers' generations in Redis ----------------------


def fresh() -> dict:
    """A signed query with a nonce no earlier run used: Redis keeps nonces across test runs."""
    return signed(nonce=uuid.uuid4().hex)


async def _other_process(db_url: str):
    """A second service process's database handle: its own pools and its own kept views."""
    from storage.db import Database

    return Database(db_url)


async def test_with_redis_a_retry_reaching_another_process_is_not_run_again(db, db_url, redis_client, aiohttp_client):
    oid = f"o_warm_{uuid.uuid4().hex[:22]}"  # Redis outlives the test: keys of its own
    router = await demo_router_bound(db, oid)
    other_db = await _other_process(db_url)
    try:
        from tests.dialog_fixtures import make_router

        other_router = make_router(other_db)
        followers.views_for(db).redis = followers.views_for(other_db).redis = redis_client
        h1, h2 = Counting(router), Counting(other_router)
        app1, app2 = warm_app(db, router, h1), warm_app(other_db, other_router, h2)
        for app in (app1, app2):
            app[EP].deduper.redis = redis_client
        c1, c2 = await aiohttp_client(app1), await aiohttp_client(app2)
        with no_clock_expiry(db), no_clock_expiry(other_db):
            # Both processes have read the follower (cold), then one answers from memory.
            await c1.post("/wechat", params=fresh(), data=text_xml(oid, "成绩", "3001"))
            await c2.post("/wechat", params=fresh(), data=text_xml(oid, "成绩", "3002"))
            with statements(db) as seen:
                first = await content(c1.post("/wechat", params=fresh(), data=text_xml(oid, "成绩", "3003")))
            assert seen == [] and "当次成绩" in first
            await app1[EP].deduper.flush()
            # WeChat's retry lands on the other process: it reads the stored reply.
            retry = await content(c2.post("/wechat", params=fresh(), data=text_xml(oid, "成绩", "3003")))
            assert retry == first
            assert (h1.calls, h2.calls) == (2, 1)
            # A replayed URL is refused by either process.
            params = fresh()
            assert (await c1.post("/wechat", params=params, data=text_xml(oid, "成绩", "3004"))).status == 200
            assert (await c2.post("/wechat", params=params, data=text_xml(oid, "成绩", "3005"))).status == 403
            # Unbinding in one process is seen by the other's next message.
            await accounts.unbind(db, oid)
            reply = await content(c2.post("/wechat", params=fresh(), data=text_xml(oid, "成绩", "3006")))
            assert "当次成绩" not in reply and "绑定" in reply
        await app2[EP].deduper.flush()
    finally:
        followers.views_for(db).redis = None
        await other_db.dispose()


async def test_a_recent_key_whose_row_is_missing_runs_again(db, aiohttp_client):
    """A key answered here a moment ago goes through the database claim to find its stored reply;
    if the row is missing (its write failed), the claim is won and the message runs again."""
    router = await demo_router_bound(db, OPENID)
    app = warm_app(db, router)
    c = await aiohttp_client(app)
    with no_clock_expiry(db):
        first = await content(c.post("/wechat", params=signed(), data=text_xml(OPENID, "帮助", "2061")))
        await app[EP].deduper.flush()
        async with db.session() as s, s.begin():  # as if that write had failed: no row to find
            await s.execute(InboundMessage.__table__.delete().where(InboundMessage.key == f"{OPENID}:2061"))
        again = await content(c.post("/wechat", params=signed(), data=text_xml(OPENID, "帮助", "2061")))
    assert again == first
