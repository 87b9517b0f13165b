"""Exactly-once handling of inbound messages: WeChat retries a message up to three times.

The first attempt inserts an "in progress" row before any side effect; a retry finds the row
and waits for (or reads) the first attempt's reply. Rows live in the database so a retry that
reaches another process behaves the same.

The "in progress" row carries a lease (`lease_until`): a live owner always marks the message done
within the reply budget (with the answer, or "正在处理" while the work goes on), so a row still
`processing` after its lease belongs to a process that died (kill -9, OOM, power). The next
WeChat retry then takes the message over with one conditional UPDATE and answers it; only one
retry can win. Rows (with the reply texts, which may be personal) are kept only while WeChat may
retry: DEDUPE_RETENTION_MINUTES, purged every minute by the scheduler's leader.

One round trip per message on the hot path (docs/delivery.md, "Exactly once on the message
path"): the claim carries the request's nonce (replay check, `inbound_nonces`) and the dialog
layer's read (`prefetch`) in the same batched transaction. The reply of a *read-only* message
(a query: answering it twice changes nothing) is written behind, in timed batches nobody waits
for; the reply of a message that changed something is stored before it is sent. The user's
`last_interaction_at` (and the release of their waiting pushes) is written only when this
process has not written it for INTERACTION_REFRESH_SECONDS.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional

from sqlalchemy import ARRAY, String, Text, bindparam, delete, or_, select, text, update

from bot.delivery import release_waiting_statement
from dialogs.types import Reply
from storage.batch import Coalescer
from storage.db import Database
from storage.followers import VIEW_KEY
from storage.models import InboundMessage, InboundNonce, WechatUser, utcnow

log = logging.getLogger("zikao.dedupe")

# (connection, openids[, their followers.Token: the warm path's cold reads]) -> one value per openid.
Prefetch = Callable[..., Awaitable[list[Any]]]
# A reply to store: (key, reply, openid whose interaction it counts as, (openid, arrival) if claimed
# in memory: no row yet).
_Stored = tuple[str, str, Optional[str], Optional[tuple[str, dt.datetime]]]

POLL_SECONDS = 0.05
# Replies of read-only messages are written this long after the first of a batch arrived.
WRITE_BEHIND_SECONDS = 0.2
# last_interaction_at (WeChat's 48-hour window) is rewritten when this process's last write of it
# for the user is older than this; the window is 48 hours, a minute's lag changes nothing.
INTERACTION_REFRESH_SECONDS = 60.0
_SEEN_MEMORY = 200_000  # users whose last write this process remembers
# The warm path (memory claims): keys this process handled are remembered this long, so that a
# WeChat retry (three attempts within about 15 s) is recognised without the database.
RECENT_SECONDS = 30.0
CLAIM_PREFIX = "zikao:claim:"
NONCE_PREFIX = "zikao:nonce:"  # the same keys as bot.freshness.RedisNonces
# KEYS: the nonce, the claim, the follower's generation; ARGV: nonce TTL s, claim TTL ms, has nonce.
_REDIS_CLAIM = """
if ARGV[3] == '1' then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return {0, 0, false} end
end
local won = redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2])
return {1, won and 1 or 0, redis.call('GET', KEYS[3])}
"""
# How long a claim holds a message before a retry may take it over: longer than the reply budget
# (a live owner marks the row done by then) plus the time that write can take under load.
LEASE_MARGIN_SECONDS = 1.5


def message_key(openid: str, msg_id: str | None, create_time: str | None, event: str | None, msg_type: str) -> str:
    """FromUserName+MsgId for messages; FromUserName+CreateTime+Event for events (MsgId alone collides)."""
    if msg_id:
        return f"{openid}:{msg_id}"
    return f"{openid}:{create_time or ''}:{event or msg_type}"


def encode_reply(reply: Reply) -> str:
    if reply.empty:
        return ""
    return json.dumps({"text": reply.text, "image": reply.image_media_id}, ensure_ascii=False)


def decode_reply(stored: str | None) -> Reply:
    if not stored:
        return Reply()
    data = json.loads(stored)
    return Reply(text=data.get("text") or "", image_media_id=data.get("image"))


@dataclass
class Claim:
    owner: bool  # True: this attempt handles the message
    reply: Optional[Reply] = None  # for a duplicate: the first attempt's reply, None if still running
    prefetched: Any = None  # for the owner: what `Deduper.prefetch` read for this message
    taken_over: bool = False  # owner because the first holder's lease ran out (it died)
    replay: bool = False  # the request's (timestamp, nonce) was used before: refuse it, process nothing


class SeenPairs:
    """The (timestamp, nonce) pairs of the requests this process accepted, by timestamp.

    A pair is acceptable only while its timestamp is within the window of the clock, so a bucket
    whose timestamp is older than the newest seen minus twice the window can never match again
    and is dropped (no wall clock involved: tests sign with fixed timestamps)."""

    def __init__(self, window_seconds: float) -> None:
        self.span = int(2 * window_seconds) + 1
        self._by_ts: dict[int, set[str]] = {}
        self._newest = 0

    def __len__(self) -> int:
        return sum(len(b) for b in self._by_ts.values())

    def first_use(self, pair: str) -> bool:
        ts_text, _, nonce = pair.partition(":")
        ts = int(ts_text) if ts_text.isdigit() else 0
        bucket = self._by_ts.get(ts)
        if bucket is None:
            bucket = self._by_ts[ts] = set()
            if ts > self._newest:
                self._newest = ts
                oldest = ts - self.span
                for old in [t for t in self._by_ts if t < oldest]:
                    del self._by_ts[old]
        if nonce in bucket:
            return False
        bucket.add(nonce)
        return True


class Deduper:
    """Claims and replies go through group commit (storage.batch): under load, one transaction
    carries the marks of many messages instead of two transactions per message."""

    def __init__(self, db: Database, *, prefetch: Optional[Prefetch] = None, lease_seconds: float = 6.0,
                 write_behind_seconds: float = WRITE_BEHIND_SECONDS,
                 interaction_refresh_seconds: float = INTERACTION_REFRESH_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic,
                 cached: Optional[Callable[[str, Any], Any]] = None, views: Any = None,
                 nonce_window_seconds: float = 300.0, redis: Any = None) -> None:
        self.db = db
        self.lease = dt.timedelta(seconds=lease_seconds)
        # Reads the dialog layer needs for each claimed message, done in the claim's round trip
        # (one statement per batch) instead of a batch of its own.
        self.prefetch = prefetch
        self.write_behind_seconds = write_behind_seconds
        self.interaction_refresh = interaction_refresh_seconds
        self.monotonic = monotonic  # when interaction times were written (tests inject a clock)
        parallel = 1 if db.is_sqlite else 4
        self._claims: Coalescer[tuple[Optional[str], str, Optional[str]], tuple[str, Any]] = Coalescer(
            self._insert_claims, parallel=parallel)
        # (key, stored reply, openid whose interaction it is, openid when claimed in memory)
        self._replies: Coalescer[_Stored, None] = Coalescer(self._store_replies, parallel=parallel)
        table = InboundMessage.__table__
        self._claim_stmt = (
            db.insert(table).on_conflict_do_nothing(index_elements=["key"]).returning(table.c.key)
        )
        nonces = InboundNonce.__table__
        self._nonce_stmt = db.insert(nonces).on_conflict_do_nothing(index_elements=["key"]).returning(nonces.c.key)
        # PostgreSQL: one statement text whatever the batch size (arrays through unnest), so
        # asyncpg prepares each once per connection instead of once per batch size.
        self._pg = db.dialect == "postgresql"
        self._reply_stmt: Any = (
            table.update().where(table.c.key == bindparam("b_key"))
            .values(status="done", reply=bindparam("b_reply"), finished_at=bindparam("b_at"))
        )
        if self._pg:
            at = table.c.received_at.type
            self._nonce_stmt = text(
                "INSERT INTO inbound_nonces (key, seen_at) SELECT k, :at FROM unnest(:keys) AS k "
                "ON CONFLICT (key) DO NOTHING RETURNING key"
            ).bindparams(bindparam("keys", type_=ARRAY(String)), bindparam("at", type_=at))
            self._claim_stmt = text(
                "INSERT INTO inbound_messages (key, openid, status, received_at, lease_until) "
                "SELECT k, o, 'processing', :at, :until FROM unnest(:keys, :openids) AS t(k, o) "
                "ON CONFLICT (key) DO NOTHING RETURNING key"
            ).bindparams(bindparam("keys", type_=ARRAY(String)), bindparam("openids", type_=ARRAY(String)),
                         bindparam("at", type_=at), bindparam("until", type_=at))
            self._seen_pg = text(
                "INSERT INTO wechat_users (openid, last_interaction_at, subscribed, notices_opt_out) "
                "SELECT o, :at, true, false FROM unnest(:openids) AS o ON CONFLICT (openid) "
                "DO UPDATE SET last_interaction_at = excluded.last_interaction_at"
            ).bindparams(bindparam("openids", type_=ARRAY(String)), bindparam("at", type_=at))
            self._reply_stmt = text(
                "UPDATE inbound_messages AS m SET status = 'done', reply = v.r, finished_at = :at "
                "FROM unnest(:keys, :replies) AS v(k, r) WHERE m.key = v.k"
            ).bindparams(bindparam("keys", type_=ARRAY(String)), bindparam("replies", type_=ARRAY(Text)),
                         bindparam("at", type_=at))
        seen = db.insert(WechatUser.__table__)
        # Opens WeChat's 48-hour customer-service window.
        self._seen_stmt = seen.on_conflict_do_update(
            index_elements=["openid"], set_={"last_interaction_at": seen.excluded.last_interaction_at}
        )
        # ... so pushes that waited for it (outbox status "waiting") are due now.
        self._release_stmt = release_waiting_statement(db.dialect)
        # Keys this process is handling; a same-process retry waits on the future, no polling.
        # None until a retry waits for it: most messages never meet a retry, so no future is made.
        self._running: dict[str, Optional[asyncio.Future[Optional[Reply]]]] = {}
        # Replies answered but not written yet (write-behind): a retry reaching this process gets
        # them from here.
        self._unwritten: dict[str, Reply] = {}
        self._behind: list[_Stored] = []
        self._behind_task: Optional[asyncio.Task] = None
        self._seen: dict[str, float] = {}  # openid -> when this process last wrote its interaction
        # The warm path (docs/delivery.md): with `cached` (the router's kept view of an idle
        # follower) a message of such a follower is claimed in memory, its nonce too, and both are
        # written behind. Only for one process per database, or across processes with Redis.
        self.cached = cached
        self.views = views  # storage.followers.Views: generations taken before each prefetch
        self.memory = cached is not None
        self.nonce_window = nonce_window_seconds
        self._pairs = SeenPairs(nonce_window_seconds)
        self._pairs_loaded = False
        self._pairs_lock = asyncio.Lock()
        self._behind_nonces: list[str] = []
        self._recent: dict[str, float] = {}  # key -> when this process finished it (memory mode)
        # key -> (openid, when it arrived): claimed in memory (or in Redis), no row yet
        self._memory_keys: dict[str, tuple[str, dt.datetime]] = {}
        # With Redis (several processes): nonces, claims and followers' generations there.
        self.redis = redis if self.memory else None
        self._redis_script: Any = None
        # Cold messages on the warm path: no claim to insert, only the router's read (batched).
        self._reads: Coalescer[tuple[str, Any], Any] = Coalescer(self._read_batch, parallel=parallel)
        self._redis_claims: Coalescer[tuple[str, str, Optional[str]], tuple[bool, bool, Any]] = Coalescer(
            self._redis_batch, parallel=2)
        self._redis_done: list[str] = []  # claims to keep while WeChat may retry (written behind)
        table = InboundMessage.__table__
        if self._pg:
            self._insert_reply_stmt: Any = text(
                "INSERT INTO inbound_messages (key, openid, status, received_at, finished_at, reply) "
                "SELECT k, o, 'done', t, :at, r FROM unnest(:keys, :openids, :received, :replies) AS v(k, o, t, r) "
                "ON CONFLICT (key) DO UPDATE SET status = 'done', reply = excluded.reply, "
                "finished_at = excluded.finished_at"
            ).bindparams(bindparam("keys", type_=ARRAY(String)), bindparam("openids", type_=ARRAY(String)),
                         bindparam("received", type_=ARRAY(table.c.received_at.type)),
                         bindparam("replies", type_=ARRAY(Text)), bindparam("at", type_=table.c.received_at.type))
        else:
            ins = db.insert(table).values(key=bindparam("b_key"), openid=bindparam("b_openid"), status="done",
                                          received_at=bindparam("b_received"), finished_at=bindparam("b_at"),
                                          reply=bindparam("b_reply"))
            self._insert_reply_stmt = ins.on_conflict_do_update(
                index_elements=["key"], set_={"status": "done", "reply": ins.excluded.reply,
                                              "finished_at": ins.excluded.finished_at})

    async def claim(self, key: str, openid: str, wait_seconds: float, *, nonce: Optional[str] = None) -> Claim:
        """Become the owner of `key`, or get the owner's reply (waiting up to `wait_seconds`).

        `nonce` (bot.freshness.nonce_key of the request): recorded in the same transaction as the
        claim; a pair seen before makes the claim a `replay` and nothing is claimed."""
        if self.memory:
            return await self._claim_warm(key, openid, wait_seconds, nonce)
        return await self._claim_db(key, openid, wait_seconds, nonce)

    async def _claim_warm(self, key: str, openid: str, wait_seconds: float, nonce: Optional[str]) -> Claim:
        """The warm path's claim: in memory (one process per database) or in Redis (several)."""
        remote, won = None, True
        if self.redis is not None:
            # One Redis round trip: the nonce, the claim and the follower's generation.
            fresh, won, remote = await self._redis_claim(key, openid, nonce)
            if not fresh:
                return Claim(False, replay=True)
        elif nonce is not None:
            if not self._pairs_loaded:
                await self._load_pairs()
            if not self._pairs.first_use(nonce):
                return Claim(False, replay=True)
            self._behind_nonces.append(nonce)  # durable in the next timed batch
            self._schedule_behind()
        if key in self._running or key in self._unwritten:
            # A retry of a message this process has (or had) in hand.
            return Claim(False, await self._in_hand(key, wait_seconds))
        if not won:
            # Another process holds it (or finished it a moment ago): its reply is in the database.
            self._running[key] = None
            return await self._from_other(key, wait_seconds, openid)
        if key in self._recent:
            # Answered here a moment ago and its row is written: the claim finds the stored reply.
            return await self._claim_db(key, openid, wait_seconds, None)
        self._running[key] = None
        self._memory_keys[key] = (openid, utcnow())  # the row is inserted with the reply
        view = self.cached(openid, remote)  # type: ignore[misc]
        if view is not None:
            # Warm: an idle follower this process has read, and nothing has changed since.
            return Claim(owner=True, prefetched=view)
        # Cold: the claim is already this process's (in memory, or Redis's); only the router's
        # read is left, batched with every other cold message of the moment.
        token = self.views.token(openid, remote) if self.views is not None else None
        try:
            prefetched = await self._reads.submit((openid, token)) if self.prefetch is not None else None
        except BaseException:
            self._memory_keys.pop(key, None)
            self._release(key, None)
            raise
        return Claim(owner=True, prefetched=prefetched)

    async def _read_batch(self, items: list[tuple[str, Any]]) -> list[Any]:
        async with self.db.relaxed_engine.connect() as conn:
            return await self.prefetch(conn, [o for o, _ in items], [t for _, t in items])  # type: ignore[misc]

    async def _redis_claim(self, key: str, openid: str, nonce: Optional[str]) -> tuple[bool, bool, Any]:
        """(nonce fresh, claim won, the follower's generation) in one script: a replayed pair
        claims nothing. Concurrent claims share one pipelined round trip (and one connection)."""
        return await self._redis_claims.submit((key, openid, nonce))

    async def _redis_batch(self, items: list[tuple[str, str, Optional[str]]]) -> list[tuple[bool, bool, Any]]:
        if self._redis_script is None:
            self._redis_script = self.redis.register_script(_REDIS_CLAIM)
        lease_ms = int(self.lease.total_seconds() * 1000)
        ttl = int(2 * self.nonce_window) or 1
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, openid, nonce in items:
                await self._redis_script(keys=[NONCE_PREFIX + (nonce or ""), CLAIM_PREFIX + key, VIEW_KEY + openid],
                                         args=[ttl, lease_ms, 1 if nonce else 0], client=pipe)
            results = await pipe.execute()
        return [(bool(fresh), bool(won), gen) for fresh, won, gen in results]

    async def _claim_db(self, key: str, openid: str, wait_seconds: float, nonce: Optional[str]) -> Claim:
        if key in self._running or key in self._unwritten:
            # A retry of a message this process has (or had) in hand. Its nonce still counts.
            if nonce is not None and (await self._claims.submit((None, openid, nonce)))[0] == "replay":
                return Claim(False, replay=True)
            return Claim(False, await self._in_hand(key, wait_seconds))
        self._running[key] = None
        try:
            status, prefetched = await self._claims.submit((key, openid, nonce))
        except BaseException:
            self._release(key, None)
            raise
        if status == "owner":
            return Claim(owner=True, prefetched=prefetched)
        if status == "replay":
            self._release(key, None)
            return Claim(False, replay=True)
        return await self._from_other(key, wait_seconds)

    async def _from_other(self, key: str, wait_seconds: float, openid: str = "") -> Claim:
        """Another process has the message: read its reply from the database (or take it over)."""
        try:
            taken, reply = await self._poll(key, wait_seconds, openid)
        except BaseException:
            self._release(key, None)
            raise
        if taken:
            return Claim(owner=True, taken_over=True)  # finish() releases the future
        self._release(key, reply)
        return Claim(False, reply)

    async def _in_hand(self, key: str, wait_seconds: float) -> Optional[Reply]:
        """The reply of a message this process is handling (waiting for it) or has just answered."""
        if key not in self._running:
            return self._unwritten.get(key)
        fut = self._running[key]
        if fut is None:
            fut = self._running[key] = asyncio.get_running_loop().create_future()
        return await _wait(fut, wait_seconds)

    def _release(self, key: str, reply: Optional[Reply]) -> None:
        fut = self._running.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(reply)
        if self.memory:
            now = self.monotonic()
            self._recent[key] = now
            # Oldest first (insertion order): drop what WeChat can no longer retry.
            while self._recent:
                first = next(iter(self._recent))
                if now - self._recent[first] < RECENT_SECONDS:
                    break
                del self._recent[first]

    async def _load_pairs(self) -> None:
        """Once, before the first nonce check in memory: the pairs recorded in the database inside
        the window (this process may be a restart; a replay of a request answered before must
        still be refused)."""
        async with self._pairs_lock:
            if self._pairs_loaded:
                return
            since = utcnow() - dt.timedelta(seconds=2 * self.nonce_window)
            nonces = InboundNonce.__table__
            async with self.db.engine.connect() as conn:
                for (k,) in (await conn.execute(select(nonces.c.key).where(nonces.c.seen_at >= since))).all():
                    self._pairs.first_use(k)
            self._pairs_loaded = True

    async def _insert_claims(self, items: list[tuple[Optional[str], str, Optional[str]]]) -> list[tuple[str, Any]]:
        """One transaction for a batch: the nonces, then the claims of requests whose nonce was
        fresh, then the dialog layer's read for the claims won. Statuses: owner / taken / replay."""
        # executemany of one cached statement: a multi-VALUES insert would be compiled anew for
        # every batch size, which profiling showed to be most of the cost.
        now = utcnow()
        out: list[tuple[str, Any]] = [("taken", None)] * len(items)
        # Committed without waiting for PostgreSQL's WAL flush: lost only if the database server
        # itself crashes, and then a retry re-runs the message, which the step's own record
        # (applied_key) keeps from being applied twice (docs/delivery.md).
        async with self.db.relaxed_engine.begin() as conn:
            fresh = [True] * len(items)
            nonces = list(dict.fromkeys(n for _, _, n in items if n is not None))
            if nonces:
                params: Any = ({"keys": nonces, "at": now} if self._pg
                               else [{"key": n, "seen_at": now} for n in nonces])
                new = set((await conn.execute(self._nonce_stmt, params)).scalars())
                taken: set[str] = set()
                for i, (_, _, n) in enumerate(items):
                    if n is not None:
                        # The same pair twice in one batch: only its first occurrence is fresh.
                        fresh[i] = n in new and n not in taken
                        taken.add(n)
            claims = [(i, k, o) for i, (k, o, _) in enumerate(items) if fresh[i] and k is not None]
            inserted: set[str] = set()
            if claims:
                if self._pg:
                    params = {"keys": [k for _, k, _ in claims], "openids": [o for _, _, o in claims], "at": now,
                              "until": now + self.lease}
                else:
                    params = [{"key": k, "openid": o, "status": "processing", "received_at": now,
                               "lease_until": now + self.lease} for _, k, o in claims]
                result = await conn.execute(self._claim_stmt, params)
                inserted = set(result.scalars())
            owned = [(i, o) for i, k, o in claims if k in inserted]
            prefetched: list[Any] = [None] * len(owned)
            if self.prefetch is not None and owned:
                prefetched = await self.prefetch(conn, [o for _, o in owned])
        for i, (k, _, _) in enumerate(items):
            if not fresh[i]:
                out[i] = ("replay", None)
            elif k is None:
                out[i] = ("nonce", None)
        for (i, _), value in zip(owned, prefetched, strict=True):
            out[i] = ("owner", value)
        return out

    async def _poll(self, key: str, wait_seconds: float, openid: str = "") -> tuple[bool, Optional[Reply]]:
        """(True, None) when this attempt took the message over; else (False, the reply or None)."""
        deadline = time.monotonic() + wait_seconds
        while True:
            async with self.db.session() as s:
                row = (await s.execute(
                    select(InboundMessage.status, InboundMessage.reply, InboundMessage.lease_until)
                    .where(InboundMessage.key == key))).first()
            if row is not None and row.status == "done":
                return False, decode_reply(row.reply)
            if self.redis is not None:
                # The claim is Redis's: once the holder's lease ran out (it died) the key is gone,
                # and whoever sets it again owns the message, row or no row (a warm claim has none).
                if await self.redis.set(CLAIM_PREFIX + key, b"1", nx=True, px=int(self.lease.total_seconds() * 1000)):
                    if row is None:
                        # finish() inserts the row
                        self._memory_keys[key] = (openid or key.split(":", 1)[0], utcnow())
                    return True, None
            elif row is not None and (row.lease_until is None or row.lease_until < utcnow()) and await self._take_over(key):
                return True, None
            if time.monotonic() + POLL_SECONDS > deadline:
                return False, None
            await asyncio.sleep(POLL_SECONDS)

    async def _take_over(self, key: str) -> bool:
        """Claim a message whose holder's lease ran out; of concurrent retries only one wins."""
        now = utcnow()
        table = InboundMessage.__table__
        async with self.db.engine.begin() as conn:
            won = await conn.execute(
                update(table)
                .where(table.c.key == key, table.c.status == "processing",
                       or_(table.c.lease_until.is_(None), table.c.lease_until < now))
                .values(lease_until=now + self.lease)
            )
        return won.rowcount == 1

    async def finish(self, key: str, reply: Reply, openid: str | None = None, *, durable: bool = True) -> None:
        """Store the reply the first attempt gave; also note the user's interaction time.

        `durable=False` (a read-only message): the reply is answered from memory to a retry
        reaching this process and written in the next timed batch; nothing waits for it."""
        owner = self._memory_keys.pop(key, None)  # claimed in memory: the row is inserted, not updated
        if not durable:
            self._unwritten[key] = reply
            self._release(key, reply)
            self._behind.append((key, encode_reply(reply), openid, owner))
            self._schedule_behind()
            return
        try:
            await self._replies.submit((key, encode_reply(reply), openid, owner))
            self._keep_claim([key])
        finally:
            self._release(key, reply)

    def _keep_claim(self, keys: list[str]) -> None:
        """With Redis: once a message's row (with its reply) is written, keep its claim while WeChat
        may retry, so that a retry reaching another process reads the reply instead of running the
        message again. Never before the row: a claim kept for a row a crash lost would leave the
        retry nothing to read and nothing to take over."""
        if self.redis is not None:
            self._redis_done.extend(keys)
            self._schedule_behind()

    def _schedule_behind(self) -> None:
        if self._behind_task is None:
            self._behind_task = asyncio.create_task(self._write_behind())

    async def _write_behind(self) -> None:
        try:
            await asyncio.sleep(self.write_behind_seconds)
        except asyncio.CancelledError:
            return  # close() writes them
        if self._behind_task is asyncio.current_task():
            self._behind_task = None  # what arrives during this flush schedules the next one
        await self.flush()

    async def close(self) -> None:
        """At shutdown: write what is held behind now and stop the timer that would have."""
        task, self._behind_task = self._behind_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        await self.flush()

    async def flush(self) -> None:
        """Write the replies (and warm-path nonces) held behind now (shutdown, tests)."""
        while self._behind or self._behind_nonces:
            batch, self._behind = self._behind[:5000], self._behind[5000:]
            pairs, self._behind_nonces = self._behind_nonces[:5000], self._behind_nonces[5000:]
            try:
                # One transaction for the replies and the warm path's nonces of the moment.
                await self._store_replies(batch, relaxed=True, nonces=pairs)
                self._keep_claim([key for key, _, _, _ in batch])
            except Exception:  # no row (or `processing`): a retry after the lease re-runs a query;
                # the nonces: this process still refuses them, only a restart forgets them
                log.exception("could not write %d replies and %d nonces behind", len(batch), len(pairs))
            finally:
                for key, _, _, _ in batch:
                    self._unwritten.pop(key, None)
        while self._redis_done:
            done, self._redis_done = self._redis_done[:5000], self._redis_done[5000:]
            try:
                # The claim outlives the lease while WeChat may retry: a retry elsewhere then
                # reads the stored reply instead of running the message again.
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key in done:
                        pipe.expire(CLAIM_PREFIX + key, int(RECENT_SECONDS))
                    await pipe.execute()
            except Exception:
                log.warning("could not extend %d claims in Redis", len(done), exc_info=True)

    def _stale(self, openids: list[str], mono: float) -> list[str]:
        if self.interaction_refresh <= 0:
            return openids
        out = [o for o in openids if mono - self._seen.get(o, float("-inf")) >= self.interaction_refresh]
        if len(self._seen) > _SEEN_MEMORY:
            self._seen.clear()  # forgetting only costs a write each
        return out

    async def _store_replies(self, items: list[_Stored], *, relaxed: bool = False,
                             nonces: list[str] | tuple[str, ...] = ()) -> list[None]:
        now, mono = utcnow(), self.monotonic()
        # One row per user per batch: PostgreSQL refuses to upsert a row twice in one statement.
        openids = self._stale(sorted({o for _, _, o, _ in items if o}), mono)
        engine = self.db.relaxed_engine if relaxed else self.db.engine
        claimed = [(k, r) for k, r, _, owner in items if owner is None]
        fresh = [(k, r, owner[0], owner[1]) for k, r, _, owner in items if owner is not None]  # warm: no row yet
        async with engine.begin() as conn:
            if nonces:
                unique = list(dict.fromkeys(nonces))
                await conn.execute(self._nonce_stmt, {"keys": unique, "at": now} if self._pg
                                   else [{"key": n, "seen_at": now} for n in unique])
            if claimed:
                if self._pg:
                    await conn.execute(self._reply_stmt, {"keys": [k for k, _ in claimed],
                                                          "replies": [r for _, r in claimed], "at": now})
                else:
                    await conn.execute(self._reply_stmt, [{"b_key": k, "b_reply": r, "b_at": now} for k, r in claimed])
            if fresh:
                if self._pg:
                    await conn.execute(self._insert_reply_stmt, {
                        "keys": [f[0] for f in fresh], "openids": [f[2] for f in fresh],
                        "received": [f[3] for f in fresh], "replies": [f[1] for f in fresh], "at": now})
                else:
                    await conn.execute(self._insert_reply_stmt, [
                        {"b_key": k, "b_openid": o, "b_reply": r, "b_received": t, "b_at": now} for k, r, o, t in fresh])
            if openids:
                if self._pg:
                    await conn.execute(self._seen_pg, {"openids": openids, "at": now})
                else:
                    await conn.execute(self._seen_stmt, [{"openid": o, "last_interaction_at": now} for o in openids])
                # Same transaction: a push never waits for a message that has already arrived.
                # One statement for the batch (IN / = ANY): measured cheaper than an executemany.
                await conn.execute(self._release_stmt, {"b_openids": openids, "b_due": now})
        for o in openids:
            self._seen[o] = mono
        return [None] * len(items)

    async def purge(self, older_than: dt.timedelta) -> int:
        """Drop dedupe rows (and their reply texts) older than the retention; WeChat stops
        retrying after ~15 s."""
        async with self.db.session() as s, s.begin():
            result = await s.execute(delete(InboundMessage).where(InboundMessage.received_at < utcnow() - older_than))
        return result.rowcount or 0


async def _wait(fut: asyncio.Future[Optional[Reply]], seconds: float) -> Optional[Reply]:
    try:
        return await asyncio.wait_for(asyncio.shield(fut), seconds)
    except asyncio.TimeoutError:
        return None
