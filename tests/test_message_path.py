"""Issue 15's message path: the nonce in the claim's transaction, read-only replies written
behind, interaction times only when stale, cold candidates loaded in bulk."""
from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import func, select, update

from bot.dedupe import Deduper
from bot.freshness import nonce_key
from dialogs.types import Reply
from storage import queries as sq
from storage.models import InboundMessage, InboundNonce, WechatUser, utcnow
from tests.dialog_fixtures import add_candidate
from tests.test_endpoint import EP, Recorder, make_app, signed, text_xml


class ReadOnly(Recorder):
    """A handler whose answers are queries (the router marks those read-only)."""

    async def __call__(self, msg):
        reply = await super().__call__(msg)
        return Reply(reply.text, read_only=True)


async def _row(db, key: str):
    async with db.session() as s:
        return await s.get(InboundMessage, key)


async def test_a_read_only_reply_is_written_behind_and_a_retry_meanwhile_gets_it_from_memory(db, aiohttp_client):
    handler = ReadOnly()
    app = make_app(db, handler)
    deduper = app[EP].deduper
    deduper.write_behind_seconds = 3600  # nothing is written until the test says so
    c = await aiohttp_client(app)
    r = await c.post("/wechat", params=signed(), data=text_xml(msg_id="1501", content="成绩"))
    assert "收到：成绩" in await r.text()
    assert (await _row(db, "o_user1:1501")).status == "processing"  # answered, not written yet
    retry = await c.post("/wechat", params=signed(), data=text_xml(msg_id="1501", content="成绩"))
    assert "收到：成绩" in await retry.text() and len(handler.calls) == 1
    await app[EP].drain()  # shutdown writes what is held behind
    row = await _row(db, "o_user1:1501")
    assert row.status == "done" and "收到：成绩" in row.reply
    again = await c.post("/wechat", params=signed(), data=text_xml(msg_id="1501", content="成绩"))
    assert "收到：成绩" in await again.text() and len(handler.calls) == 1


async def test_a_reply_that_is_not_read_only_is_stored_before_it_is_sent(db, aiohttp_client):
    app = make_app(db, Recorder())
    app[EP].deduper.write_behind_seconds = 3600
    c = await aiohttp_client(app)
    await c.post("/wechat", params=signed(), data=text_xml(msg_id="1502", content="是"))
    assert (await _row(db, "o_user1:1502")).status == "done"


async def test_the_nonce_is_recorded_with_the_claim_and_a_replay_claims_nothing(db, aiohttp_client):
    handler = ReadOnly()
    c = await aiohttp_client(make_app(db, handler))
    params = signed()
    assert (await c.post("/wechat", params=params, data=text_xml(msg_id="1503"))).status == 200
    async with db.session() as s:
        assert await s.get(InboundNonce, nonce_key(params["timestamp"], params["nonce"])) is not None
    replay = await c.post("/wechat", params=params, data=text_xml(msg_id="1504"))
    assert replay.status == 403 and len(handler.calls) == 1
    assert await _row(db, "o_user1:1504") is None


async def test_same_process_retry_still_spends_its_nonce(db, aiohttp_client):
    """A retry answered from memory records its own nonce too: replaying it later is refused."""
    app = make_app(db, ReadOnly())
    app[EP].deduper.write_behind_seconds = 3600
    c = await aiohttp_client(app)
    await c.post("/wechat", params=signed(), data=text_xml(msg_id="1505"))
    params = signed()
    assert (await c.post("/wechat", params=params, data=text_xml(msg_id="1505"))).status == 200
    assert (await c.post("/wechat", params=params, data=text_xml(msg_id="1505"))).status == 403


async def test_interaction_time_is_written_again_only_when_stale(db):
    clock = [1000.0]
    d = Deduper(db, monotonic=lambda: clock[0])
    old = utcnow() - dt.timedelta(days=1)

    async def seen_at():
        async with db.session() as s:
            return (await s.get(WechatUser, "o_seen")).last_interaction_at

    async def message(n: int) -> None:
        assert (await d.claim(f"o_seen:{n}", "o_seen", 1.0)).owner
        await d.finish(f"o_seen:{n}", Reply("好"), "o_seen")

    await message(1)
    first = await seen_at()
    assert first > old
    async with db.session() as s, s.begin():
        await s.execute(update(WechatUser).where(WechatUser.openid == "o_seen").values(last_interaction_at=old))
    clock[0] += 59  # within a minute of this process's last write: not written again
    await message(2)
    assert await seen_at() == old
    clock[0] += 2  # a minute since: written
    await message(3)
    assert await seen_at() > old


async def test_cold_candidates_are_preloaded_in_one_statement_on_the_callers_connection(db):
    ids = [await add_candidate(db, id_number=n, numbers=(a,)) for n, a in
           (("310101199001011234", "011520100001"), ("310115198506120042", "011520100002"))]
    cache = sq.ReadCache(db)
    await cache.reference()  # fresh stamps: preload works only then
    statements: list[str] = []

    from sqlalchemy import event

    def count(conn, cursor, statement, *a):
        statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        async with db.engine.connect() as conn:
            await cache.preload(conn, ids)
        assert len(statements) == 1
        data = [await cache.candidate(i) for i in ids]
        assert len(statements) == 1 and cache.stats["candidate_hits"] == 2
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    async with db.session() as s:
        for i, got in zip(ids, data):
            assert got == await sq.load_candidate(s, i, cache._reference.majors)


async def test_concurrent_cold_loads_share_statements(db):
    ids = [await add_candidate(db, id_number=n, numbers=(a,)) for n, a in
           (("310101199001011234", "011520100001"), ("310115198506120042", "011520100002"))]
    cache = sq.ReadCache(db)
    await cache.reference()
    got = await asyncio.gather(*(cache.candidate(i) for i in ids * 3))
    assert cache.stats["candidate_batches"] < len(ids) * 3
    async with db.session() as s:
        for i, data in zip(ids * 3, got):
            assert data == await sq.load_candidate(s, i, cache._reference.majors)
