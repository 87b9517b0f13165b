"""The shared WeChat access_token: one refresher across all processes, in the database or Redis.

WeChat keeps one valid access_token per app (a new one ends the old), so every process must use
the same token and only one may fetch a new one at a time. A store keeps the token and a short
lease: whoever wins the lease fetches and stores, the others keep using a token that is still
valid, or wait and read again. `get_or_refresh` is that protocol; the stores only know storage.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Awaitable, Callable, Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from storage.db import Database
from storage.models import AccessToken, utcnow

REFRESH_MARGIN = 300.0  # refresh a token this many seconds before it expires
LEASE_SECONDS = 10.0
POLL_SECONDS = 0.05

StoredToken = tuple[str, dt.datetime]
Fetch = Callable[[], Awaitable[tuple[str, int]]]


class TokenStore(Protocol):
    async def get(self, app_id: str) -> StoredToken | None:
        """The stored token and when it expires (aware UTC), or None."""

    async def try_lease(self, app_id: str, owner: str, seconds: float) -> bool:
        """Takes the refresh lease unless another owner holds an unexpired one."""

    async def put(self, app_id: str, token: str, expires_at: dt.datetime, owner: str) -> None:
        """Stores a fetched token and ends `owner`'s lease."""

    async def release(self, app_id: str, owner: str) -> None:
        """Ends `owner`'s lease without storing (the fetch failed)."""


async def get_or_refresh(
    store: TokenStore,
    app_id: str,
    fetch: Fetch,
    force: bool = False,
    *,
    rejected: str | None = None,
    margin: float = REFRESH_MARGIN,
    lease: float = LEASE_SECONDS,
    poll: float = POLL_SECONDS,
    max_wait: float | None = None,
) -> StoredToken:
    """A token valid for more than `margin` seconds, fetched by at most one caller at a time.

    `fetch()` returns (token, expires_in seconds). `force` asks for a token other than
    `rejected` (the one WeChat refused; by default the one stored now): when another caller has
    already replaced it, that replacement is used and nothing is fetched.
    Raises TimeoutError when no token appears within `max_wait` (default: three leases).
    """
    owner = uuid.uuid4().hex
    if force and rejected is None:
        current = await store.get(app_id)
        rejected = current[0] if current else None

    def usable(cur: StoredToken | None, keep: float) -> bool:
        return cur is not None and cur[0] != rejected and (cur[1] - utcnow()).total_seconds() > keep

    loop = asyncio.get_running_loop()
    deadline = loop.time() + (3 * lease if max_wait is None else max_wait)
    while True:
        current = await store.get(app_id)
        if usable(current, margin):
            return current  # type: ignore[return-value]
        if await store.try_lease(app_id, owner, lease):
            try:
                # Another caller may have stored a token between our read and the lease.
                current = await store.get(app_id)
                if usable(current, margin):
                    await store.release(app_id, owner)
                    return current  # type: ignore[return-value]
                token, expires_in = await fetch()
            except BaseException:
                await asyncio.shield(store.release(app_id, owner))
                raise
            expires_at = utcnow() + dt.timedelta(seconds=expires_in)
            await store.put(app_id, token, expires_at, owner)
            return token, expires_at
        # Someone else is refreshing: a token close to expiry is still good meanwhile.
        if usable(current, 0):
            return current  # type: ignore[return-value]
        if loop.time() >= deadline:
            raise TimeoutError(f"no access_token for {app_id} after waiting for another refresher")
        await asyncio.sleep(poll)


class DatabaseTokenStore:
    """The `access_tokens` row per app; the lease is `refresh_owner` / `refresh_until`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, app_id: str) -> StoredToken | None:
        async with self.db.session() as s:
            row = (
                await s.execute(
                    select(AccessToken.token, AccessToken.expires_at).where(AccessToken.app_id == app_id)
                )
            ).first()
        if row is None or row.token is None or row.expires_at is None:
            return None
        return row.token, row.expires_at

    async def try_lease(self, app_id: str, owner: str, seconds: float) -> bool:
        now = utcnow()
        take = (
            update(AccessToken)
            .where(
                AccessToken.app_id == app_id,
                or_(AccessToken.refresh_until.is_(None), AccessToken.refresh_until < now),
            )
            .values(refresh_owner=owner, refresh_until=now + dt.timedelta(seconds=seconds))
        )
        async with self.db.session() as s, s.begin():
            if (await s.execute(take)).rowcount == 1:
                return True
            exists = await s.scalar(select(AccessToken.app_id).where(AccessToken.app_id == app_id))
            if exists is not None:
                return False
            dialect = postgresql if self.db.dialect == "postgresql" else sqlite
            await s.execute(
                dialect.insert(AccessToken).values(app_id=app_id).on_conflict_do_nothing(index_elements=["app_id"])
            )
            return (await s.execute(take)).rowcount == 1

    async def put(self, app_id: str, token: str, expires_at: dt.datetime, owner: str) -> None:
        async with self.db.session() as s, s.begin():
            await s.execute(
                update(AccessToken).where(AccessToken.app_id == app_id).values(token=token, expires_at=expires_at)
            )
            await s.execute(self._end_lease(app_id, owner))

    async def release(self, app_id: str, owner: str) -> None:
        async with self.db.session() as s, s.begin():
            await s.execute(self._end_lease(app_id, owner))

    @staticmethod
    def _end_lease(app_id: str, owner: str):
        return (
            update(AccessToken)
            .where(AccessToken.app_id == app_id, AccessToken.refresh_owner == owner)
            .values(refresh_owner=None, refresh_until=None)
        )


# Deletes the lock only if we still own it (it may have expired and been taken by another).
_RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class RedisTokenStore:
    """`{prefix}token:{app_id}` holds the token (expiring with it); `{prefix}lock:{app_id}` is the
    lease, taken with SET NX PX."""

    def __init__(self, redis, prefix: str = "zikao:wechat:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._release = redis.register_script(_RELEASE_SCRIPT)

    def _token_key(self, app_id: str) -> str:
        return f"{self.prefix}token:{app_id}"

    def _lock_key(self, app_id: str) -> str:
        return f"{self.prefix}lock:{app_id}"

    async def get(self, app_id: str) -> StoredToken | None:
        raw = await self.redis.get(self._token_key(app_id))
        if raw is None:
            return None
        value = json.loads(raw)
        return value["token"], dt.datetime.fromtimestamp(value["expires_at"], dt.timezone.utc)

    async def try_lease(self, app_id: str, owner: str, seconds: float) -> bool:
        return bool(await self.redis.set(self._lock_key(app_id), owner, nx=True, px=max(1, int(seconds * 1000))))

    async def put(self, app_id: str, token: str, expires_at: dt.datetime, owner: str) -> None:
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        value = json.dumps({"token": token, "expires_at": expires_at.timestamp()})
        ttl_ms = max(1, int((expires_at - utcnow()).total_seconds() * 1000))
        await self.redis.set(self._token_key(app_id), value, px=ttl_ms)
        await self.release(app_id, owner)

    async def release(self, app_id: str, owner: str) -> None:
        await self._release(keys=[self._lock_key(app_id)], args=[owner])


class MemoryTokenStore:
    """For a single process (tests, a demo without a database): the same protocol in a dict."""

    def __init__(self) -> None:
        self._tokens: dict[str, StoredToken] = {}
        self._leases: dict[str, tuple[str, float]] = {}

    async def get(self, app_id: str) -> StoredToken | None:
        return self._tokens.get(app_id)

    async def try_lease(self, app_id: str, owner: str, seconds: float) -> bool:
        now = asyncio.get_running_loop().time()
        held = self._leases.get(app_id)
        if held is not None and held[1] > now:
            return False
        self._leases[app_id] = (owner, now + seconds)
        return True

    async def put(self, app_id: str, token: str, expires_at: dt.datetime, owner: str) -> None:
        self._tokens[app_id] = (token, expires_at)
        await self.release(app_id, owner)

    async def release(self, app_id: str, owner: str) -> None:
        if self._leases.get(app_id, ("",))[0] == owner:
            del self._leases[app_id]
