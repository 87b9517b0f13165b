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
from storage.models import InboundMessage, InboundNonce, WechatUser, utcnow

log = logging.getLogger("zikao.dedupe")

# (connection of the claim's transaction, openids of the claimed messages) -> one value per openid.
Prefetch = Callable[[Any, list[str]], Awaitable[list[Any]]]

POLL_SECONDS = 0.05
# Replies of read-only messages are written this long after the first of a batch arrived.
WRITE_BEHIND_SECONDS = 0.2
# last_interaction_at (WeChat's 48-hour window) is rewritten when this process's last write of it
# for the user is older than this; the window is 48 hours, a minute's lag changes nothing.
INTERACTION_REFRESH_SECONDS = 60.0
_SEEN_MEMORY = 200_000  # users whose last write this process remembers
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


class Deduper:
    """Claims and replies go through group commit (storage.batch): under load, one transaction
    carries the marks of many messages instead of two transactions per message."""

    def __init__(self, db: Database, *, prefetch: Optional[Prefetch] = None, lease_seconds: float = 6.0,
                 write_behind_seconds: float = WRITE_BEHIND_SECONDS,
                 interaction_refresh_seconds: float = INTERACTION_REFRESH_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
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
        self._replies: Coalescer[tuple[str, str, str | None], None] = Coalescer(self._store_replies, parallel=parallel)
        # Replies written behind: nobody waits for them, so no wait for the WAL flush either.
        self._behind_replies: Coalescer[tuple[str, str, str | None], None] = Coalescer(
            lambda items: self._store_replies(items, relaxed=True), parallel=parallel)
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
        self._running: dict[str, asyncio.Future[Optional[Reply]]] = {}
        # Replies answered but not written yet (write-behind): a retry reaching this process gets
        # them from here.
        self._unwritten: dict[str, Reply] = {}
        self._behind: list[tuple[str, str, str | None]] = []
        self._behind_task: Optional[asyncio.Task] = None
        self._seen: dict[str, float] = {}  # openid -> when this process last wrote its interaction

    async def claim(self, key: str, openid: str, wait_seconds: float, *, nonce: Optional[str] = None) -> Claim:
        """Become the owner of `key`, or get the owner's reply (waiting up to `wait_seconds`).

        `nonce` (bot.freshness.nonce_key of the request): recorded in the same transaction as the
        claim; a pair seen before makes the claim a `replay` and nothing is claimed."""
        fut = self._running.get(key)
        known = self._unwritten.get(key)
        if fut is not None or known is not None:
            # A retry of a message this process has (or had) in hand. Its nonce still counts.
            if nonce is not None and (await self._claims.submit((None, openid, nonce)))[0] == "replay":
                return Claim(False, replay=True)
            return Claim(False, known if fut is None else await _wait(fut, wait_seconds))
        fut = asyncio.get_running_loop().create_future()
        self._running[key] = fut
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
        # Another process has it: read its reply from the database (or take it over).
        try:
            taken, reply = await self._poll(key, wait_seconds)
        except BaseException:
            self._release(key, None)
            raise
        if taken:
            return Claim(owner=True, taken_over=True)  # finish() releases the future
        self._release(key, reply)
        return Claim(False, reply)

    def _release(self, key: str, reply: Optional[Reply]) -> None:
        fut = self._running.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(reply)

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

    async def _poll(self, key: str, wait_seconds: float) -> tuple[bool, Optional[Reply]]:
        """(True, None) when this attempt took the message over; else (False, the reply or None)."""
        deadline = time.monotonic() + wait_seconds
        while True:
            async with self.db.session() as s:
                row = (await s.execute(
                    select(InboundMessage.status, InboundMessage.reply, InboundMessage.lease_until)
                    .where(InboundMessage.key == key))).first()
            if row is not None and row.status == "done":
                return False, decode_reply(row.reply)
            if row is not None and (row.lease_until is None or row.lease_until < utcnow()) and await self._take_over(key):
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
        if not durable:
            self._unwritten[key] = reply
            self._release(key, reply)
            self._behind.append((key, encode_reply(reply), openid))
            if self._behind_task is None:
                self._behind_task = asyncio.create_task(self._write_behind())
            return
        try:
            await self._replies.submit((key, encode_reply(reply), openid))
        finally:
            self._release(key, reply)

    async def _write_behind(self) -> None:
        try:
            await asyncio.sleep(self.write_behind_seconds)
        finally:
            self._behind_task = None
            await self.flush()

    async def flush(self) -> None:
        """Write the replies held behind now (shutdown, tests)."""
        while self._behind:
            batch, self._behind = self._behind[:5000], self._behind[5000:]
            try:
                await self._behind_replies.submit_many(batch)
            except Exception:  # the rows stay `processing`: a retry after the lease re-runs a query
                log.exception("could not write %d replies behind", len(batch))
            finally:
                for key, _, _ in batch:
                    self._unwritten.pop(key, None)

    def _stale(self, openids: list[str], mono: float) -> list[str]:
        if self.interaction_refresh <= 0:
            return openids
        out = [o for o in openids if mono - self._seen.get(o, float("-inf")) >= self.interaction_refresh]
        if len(self._seen) > _SEEN_MEMORY:
            self._seen.clear()  # forgetting only costs a write each
        return out

    async def _store_replies(self, items: list[tuple[str, str, str | None]], *, relaxed: bool = False) -> list[None]:
        now, mono = utcnow(), self.monotonic()
        # One row per user per batch: PostgreSQL refuses to upsert a row twice in one statement.
        openids = self._stale(sorted({o for _, _, o in items if o}), mono)
        engine = self.db.relaxed_engine if relaxed else self.db.engine
        async with engine.begin() as conn:
            if self._pg:
                await conn.execute(self._reply_stmt, {"keys": [k for k, _, _ in items],
                                                      "replies": [r for _, r, _ in items], "at": now})
            else:
                await conn.execute(self._reply_stmt, [{"b_key": k, "b_reply": r, "b_at": now} for k, r, _ in items])
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
