"""The followers of the account (wechat_users) as the dialogs need them: who each one is and where
their conversation is (read for every message), following and unfollowing, the notice opt-out."""
from __future__ import annotations

import datetime as dt
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

from sqlalchemy import ARRAY, String, any_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.db import Database
from storage.models import DialogState, WechatUser, utcnow

log = logging.getLogger("zikao.followers")


@dataclass(frozen=True)
class Peek:
    """A follower's binding and dialog state, as read in one statement for a batch of openids."""

    openid: str
    candidate_id: Optional[int]
    admission_number: Optional[str]
    has_state: bool  # a dialog_states row exists
    flow: Optional[str]
    step: Optional[str]
    data: dict[str, Any]
    expires_at: Optional[dt.datetime]

    @property
    def idle(self) -> bool:
        """No conversation in progress: no flow, nothing paused, no one-shot question pending."""
        return self.flow is None and not self.data.get("paused") and not self.data.get("pending")


# Built once: this runs for every message. Every follower has a wechat_users row from their first
# message on (the edge records each interaction); a dialog state without one is read under the
# step lock anyway.
def _peek(ids):
    return (
        select(WechatUser.openid, WechatUser.candidate_id, WechatUser.active_admission_number,
               DialogState.openid.is_not(None).label("has_state"), DialogState.flow, DialogState.step,
               DialogState.data, DialogState.expires_at)
        .outerjoin(DialogState, DialogState.openid == WechatUser.openid)
        .where(ids(WechatUser.openid))
    )


# An expanding IN on SQLite; `= ANY(array)` on PostgreSQL: one statement text for every batch
# size, so asyncpg prepares it once per connection.
_PEEK = {
    "sqlite": _peek(lambda col: col.in_(bindparam("ids", expanding=True))),
    "postgresql": _peek(lambda col: col == any_(bindparam("ids", type_=ARRAY(String)))),
}


async def peek_on(conn: AsyncConnection, openids: Sequence[str]) -> dict[str, Peek]:
    """The followers among `openids`, on the caller's connection (the edge's dedupe round trip)."""
    stmt = _PEEK["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    rows = (await conn.execute(stmt, {"ids": list(dict.fromkeys(openids))})).all()
    return {r.openid: Peek(r.openid, r.candidate_id, r.active_admission_number, bool(r.has_state), r.flow, r.step,
                           dict(r.data or {}), r.expires_at) for r in rows}


async def peek(db: Database, openids: Sequence[str]) -> dict[str, Peek]:
    # A Core connection, not an ORM session: this runs for every message.
    async with db.engine.connect() as conn:
        return await peek_on(conn, openids)


async def set_subscribed(db: Database, openid: str, subscribed: bool, *, now: Optional[dt.datetime] = None) -> None:
    """Record a follow or an unfollow (the row is created on a first follow)."""
    now = now or utcnow()
    values = {"subscribed": subscribed, ("subscribed_at" if subscribed else "unsubscribed_at"): now}
    stmt = db.insert(WechatUser).values(openid=openid, **values)
    async with db.session() as s, s.begin():
        await s.execute(stmt.on_conflict_do_update(index_elements=["openid"], set_=values))


async def set_notices_opt_out(db: Database, openid: str, opt_out: bool) -> bool:
    """Store the choice; returns whether it changed (a follower starts with notices on)."""
    table = WechatUser.__table__
    async with db.session() as s, s.begin():
        before = await s.scalar(select(table.c.notices_opt_out).where(table.c.openid == openid).with_for_update())
        # An upsert: the follower's row may be written concurrently by the edge (last interaction).
        await s.execute(
            db.insert(table).values(openid=openid, notices_opt_out=opt_out)
            .on_conflict_do_update(index_elements=["openid"], set_={"notices_opt_out": opt_out})
        )
    return bool(before) != opt_out


# --- The router's view of idle followers, kept in memory (issue 15) -----------------------------
#
# A follower with no conversation in progress is by far the common case on results day, and what
# the router needs to know of them (who they are bound to) changes only when they bind, unbind,
# switch 准考证号 or start a conversation. Those writes go through this module's `changed` after
# their commit; the edge (bot/dedupe.py) then answers such a follower's query from this copy
# without awaiting the database (docs/delivery.md, "The warm path").
#
# Validity is a generation per follower: this process's own writes bump a local counter; with
# Redis (several processes) every writer also INCRs `zikao:view:<openid>`, which the edge reads in
# the same pipeline as its claim. A copy is kept only together with the generations read *before*
# the database read that produced it, so a write committed meanwhile invalidates it.

VIEW_TTL_SECONDS = 60.0  # a writer that bypasses `changed` is seen within this (like the results cache)
MAX_VIEWS = 200_000
VIEW_KEY = "zikao:view:"
VIEW_KEY_TTL = 86_400  # generations outlive every copy (a vanished key reads None: a miss, never stale)


@dataclass(frozen=True)
class Token:
    """The generations of one follower read before a database read of them."""

    local: int
    remote: Any = None  # the Redis generation (bytes or None) when Redis is used


class Views:
    """This process's copies of idle followers' `Peek` (see above). Not thread-safe: one loop."""

    def __init__(self, *, ttl: float = VIEW_TTL_SECONDS, max_views: int = MAX_VIEWS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_views = max_views
        self.monotonic = monotonic
        self.redis: Any = None  # set by the service when REDIS_URL is configured
        self._local: dict[str, int] = {}
        self._views: dict[str, tuple[Peek, Token, float]] = {}
        self.stats = {"hits": 0, "kept": 0, "dropped": 0}

    def token(self, openid: str, remote: Any = None) -> Token:
        return Token(self._local.get(openid, 0), remote)

    def keep(self, peek: Peek, token: Token) -> None:
        """Keep `peek` (read after `token` was taken) if the follower is idle and nothing changed since."""
        if not peek.idle or token.local != self._local.get(peek.openid, 0):
            return
        if len(self._views) >= self.max_views:
            self._views.clear()  # forgetting only costs a database read each
        self._views[peek.openid] = (peek, token, self.monotonic())
        self.stats["kept"] += 1

    def get(self, openid: str, remote: Any = None) -> Optional[Peek]:
        """The kept copy, if still valid for the current generations (`remote`: Redis's, if used)."""
        hit = self._views.get(openid)
        if hit is None:
            return None
        peek, token, at = hit
        if (token.local != self._local.get(openid, 0) or token.remote != remote
                or self.monotonic() - at >= self.ttl):
            del self._views[openid]
            return None
        self.stats["hits"] += 1
        return peek

    def bump(self, openids: Iterable[str]) -> None:
        for o in openids:
            self._local[o] = self._local.get(o, 0) + 1
            if self._views.pop(o, None) is not None:
                self.stats["dropped"] += 1
        if len(self._local) > 4 * self.max_views:
            # Forgetting generations would let an old copy look current: drop the copies with them.
            self._local.clear()
            self._views.clear()


_views: "weakref.WeakKeyDictionary[Database, Views]" = weakref.WeakKeyDictionary()


def views_for(db: Database) -> Views:
    """This process's `Views` of `db` (created on first use)."""
    v = _views.get(db)
    if v is None:
        v = _views[db] = Views()
    return v


async def changed(db: Database, openids: Iterable[str]) -> None:
    """After committing a change to followers' binding or conversation: drop this process's copies
    and, with Redis, every other process's (INCR of their generation). A Redis failure is logged;
    the other processes' copies then last at most VIEW_TTL_SECONDS."""
    openids = [o for o in dict.fromkeys(openids) if o]
    if not openids:
        return
    views = views_for(db)
    views.bump(openids)
    if views.redis is None:
        return
    try:
        async with views.redis.pipeline(transaction=False) as pipe:
            for o in openids:
                pipe.incr(VIEW_KEY + o)
                pipe.expire(VIEW_KEY + o, VIEW_KEY_TTL)
            await pipe.execute()
    except Exception:
        log.warning("could not publish a follower's change to Redis; other processes see it within %.0f s",
                    VIEW_TTL_SECONDS, exc_info=True)
