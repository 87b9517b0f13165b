"""Freshness of inbound requests: a timestamp window and a cache of nonces already seen.

WeChat's `signature` covers only (token, timestamp, nonce); in plaintext mode the body is not
signed, so a request URL that was logged anywhere could be replayed with any body. Every POST
must therefore carry a timestamp close to our clock, and a (timestamp, nonce) pair is accepted
once: the pair is remembered while its timestamp is inside the window, in Redis when REDIS_URL is
set (`SET NX EX`), in the `inbound_nonces` table otherwise (an INSERT ... ON CONFLICT DO NOTHING,
group-committed like the dedupe claims). One round trip either way.

WeChat's retries of one message each carry their own timestamp and nonce, so they pass; the
retry itself is recognised by FromUserName + MsgId (bot/dedupe.py).
"""
from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any, Callable, Optional, Protocol

from sqlalchemy import delete

from storage.batch import Coalescer
from storage.db import Database
from storage.models import InboundNonce, utcnow

Clock = Callable[[], float]  # seconds since the epoch, like time.time

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# WeChat's nonces are decimal digits; a little more latitude, never more than the key holds.
_NONCE = re.compile(r"[0-9A-Za-z_-]{1,64}")


def freshness_problem(timestamp: str, nonce: str, now: float, max_age: float) -> Optional[str]:
    """Why the (timestamp, nonce) of a request cannot be accepted, or None when it can."""
    if not _TIMESTAMP.fullmatch(timestamp or ""):
        return "timestamp missing or not a number"
    if not _NONCE.fullmatch(nonce or ""):
        return "nonce missing or malformed"
    skew = int(timestamp) - now
    if skew < -max_age:
        return f"timestamp {int(-skew)} s old (window {max_age:g} s)"
    if skew > max_age:
        return f"timestamp {int(skew)} s in the future (window {max_age:g} s)"
    return None


def nonce_key(timestamp: str, nonce: str) -> str:
    return f"{timestamp}:{nonce}"


class NonceStore(Protocol):
    async def first_use(self, timestamp: str, nonce: str) -> bool:
        """True the first time a pair is seen inside the window, False for a replay."""
        ...


class RedisNonces:
    """Nonces in Redis: SET NX with an expiry of twice the window (a timestamp may be up to one
    window in the future and stays acceptable one window after that)."""

    def __init__(self, redis: Any, max_age: float, prefix: str = "zikao:nonce:") -> None:
        self.redis = redis
        self.ttl = max(1, int(2 * max_age))
        self.prefix = prefix

    async def first_use(self, timestamp: str, nonce: str) -> bool:
        return bool(await self.redis.set(self.prefix + nonce_key(timestamp, nonce), b"1", nx=True, ex=self.ttl))


class DatabaseNonces:
    """Nonces in `inbound_nonces`; concurrent checks share one transaction (storage.batch)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        table = InboundNonce.__table__
        self._stmt = db.insert(table).on_conflict_do_nothing(index_elements=["key"]).returning(table.c.key)
        self._batch: Coalescer[str, bool] = Coalescer(self._insert, parallel=1 if db.is_sqlite else 4)

    async def first_use(self, timestamp: str, nonce: str) -> bool:
        return await self._batch.submit(nonce_key(timestamp, nonce))

    async def _insert(self, keys: list[str]) -> list[bool]:
        now = utcnow()
        unique = list(dict.fromkeys(keys))
        async with self.db.engine.begin() as conn:
            inserted = set((await conn.execute(self._stmt, [{"key": k, "seen_at": now} for k in unique])).scalars())
        # The same pair twice in one batch: only its first occurrence is fresh.
        out, taken = [], set()
        for k in keys:
            out.append(k in inserted and k not in taken)
            taken.add(k)
        return out


async def purge_nonces(db: Database, max_age: float) -> int:
    """Forget pairs older than twice the window: their timestamps are refused by now anyway."""
    async with db.session() as s, s.begin():
        result = await s.execute(
            delete(InboundNonce).where(InboundNonce.seen_at < utcnow() - dt.timedelta(seconds=2 * max_age)))
    return result.rowcount or 0


def system_clock() -> float:
    return time.time()
