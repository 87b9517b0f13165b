"""The shared access_token: one fetch for many callers, leases that expire, on every store."""
from __future__ import annotations

import asyncio
import datetime as dt
import secrets

import pytest

from bot.token_store import DatabaseTokenStore, MemoryTokenStore, RedisTokenStore, get_or_refresh
from storage.models import utcnow

APP = "wx0000000000000000"


class Fetcher:
    """A fake stable_token: counts calls, answers after `delay`, each time a new token."""

    def __init__(self, delay: float = 0.05, expires_in: int = 7200, fail: int = 0) -> None:
        self.calls = 0
        self.delay = delay
        self.expires_in = expires_in
        self.fail = fail

    async def __call__(self) -> tuple[str, int]:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.calls <= self.fail:
            raise RuntimeError("stable_token failed")
        return f"token-{self.calls}", self.expires_in


@pytest.fixture
async def redis_store(redis_client):
    """A RedisTokenStore under a random key prefix; skipped when Redis is not running."""
    prefix = f"test:{secrets.token_hex(6)}:"
    yield RedisTokenStore(redis_client, prefix=prefix)
    keys = [k async for k in redis_client.scan_iter(match=prefix + "*")]
    if keys:
        await redis_client.delete(*keys)


@pytest.fixture(params=["memory", "redis"])
def kv_store(request):
    """The stores that need no database."""
    return MemoryTokenStore() if request.param == "memory" else request.getfixturevalue("redis_store")


# --- scenarios, run on every store -------------------------------------------------------------


async def concurrent_callers_fetch_once(store) -> None:
    fetch = Fetcher(delay=0.1)
    results = await asyncio.gather(*(get_or_refresh(store, APP, fetch, poll=0.01) for _ in range(25)))
    assert fetch.calls == 1
    assert {token for token, _ in results} == {"token-1"}
    token, expires_at = await store.get(APP)
    assert token == "token-1" and expires_at.tzinfo is not None
    assert 7100 < (expires_at - utcnow()).total_seconds() <= 7200


async def stored_token_is_reused_until_margin(store) -> None:
    fetch = Fetcher(delay=0, expires_in=1000)
    assert (await get_or_refresh(store, APP, fetch))[0] == "token-1"
    assert (await get_or_refresh(store, APP, fetch))[0] == "token-1"
    assert fetch.calls == 1
    # 1000 s left is inside a 1200 s margin: refresh.
    assert (await get_or_refresh(store, APP, fetch, margin=1200))[0] == "token-2"
    assert fetch.calls == 2


async def force_replaces_rejected_token_once(store) -> None:
    fetch = Fetcher(delay=0.05)
    await get_or_refresh(store, APP, fetch)
    # Many callers saw token-1 refused at the same time: one new token, one fetch.
    results = await asyncio.gather(
        *(get_or_refresh(store, APP, fetch, force=True, rejected="token-1", poll=0.01) for _ in range(10))
    )
    assert {t for t, _ in results} == {"token-2"} and fetch.calls == 2
    # A caller reporting a token already replaced gets the current one, with no fetch.
    assert (await get_or_refresh(store, APP, fetch, force=True, rejected="token-1"))[0] == "token-2"
    # Force without naming a token replaces the stored one.
    assert (await get_or_refresh(store, APP, fetch, force=True))[0] == "token-3"
    assert fetch.calls == 3


async def abandoned_lease_expires(store) -> None:
    # A process took the lease and died: the next caller waits for the lease to lapse, then fetches.
    assert await store.try_lease(APP, "crashed-process", 0.3)
    fetch = Fetcher(delay=0)
    assert (await get_or_refresh(store, APP, fetch, poll=0.02, max_wait=5))[0] == "token-1"
    assert fetch.calls == 1


async def failed_fetch_frees_the_lease(store) -> None:
    fetch = Fetcher(delay=0, fail=1)
    with pytest.raises(RuntimeError):
        await get_or_refresh(store, APP, fetch)
    assert await store.try_lease(APP, "next", 10)  # not held by the failed caller any more
    await store.release(APP, "next")
    assert (await get_or_refresh(store, APP, fetch))[0] == "token-2"


async def waiters_use_a_still_valid_token_during_refresh(store) -> None:
    await store.try_lease(APP, "setup", 10)
    await store.put(APP, "old", utcnow() + dt.timedelta(seconds=100), "setup")  # inside the margin
    assert await store.try_lease(APP, "refresher", 10)
    fetch = Fetcher(delay=0)
    assert (await get_or_refresh(store, APP, fetch))[0] == "old"
    assert fetch.calls == 0


async def waiters_give_up_after_max_wait(store) -> None:
    assert await store.try_lease(APP, "stuck", 10)
    with pytest.raises(TimeoutError):
        await get_or_refresh(store, APP, Fetcher(delay=0), poll=0.01, max_wait=0.1)


async def lease_release_only_by_owner(store) -> None:
    assert await store.try_lease(APP, "a", 10)
    assert not await store.try_lease(APP, "b", 10)
    await store.release(APP, "b")  # not the owner: no effect
    assert not await store.try_lease(APP, "b", 10)
    await store.release(APP, "a")
    assert await store.try_lease(APP, "b", 10)


SCENARIOS = [
    concurrent_callers_fetch_once,
    stored_token_is_reused_until_margin,
    force_replaces_rejected_token_once,
    abandoned_lease_expires,
    failed_fetch_frees_the_lease,
    waiters_use_a_still_valid_token_during_refresh,
    waiters_give_up_after_max_wait,
    lease_release_only_by_owner,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
async def test_database_store(db, scenario):
    await scenario(DatabaseTokenStore(db))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
async def test_kv_store(kv_store, scenario):
    await scenario(kv_store)


async def test_database_store_shared_by_two_engines(db):
    """Two `Database` objects on one URL stand for two processes: still one fetch."""
    from storage.db import Database

    other = Database(db.url)
    try:
        stores = [DatabaseTokenStore(db), DatabaseTokenStore(other)]
        fetch = Fetcher(delay=0.1)
        results = await asyncio.gather(*(get_or_refresh(stores[i % 2], APP, fetch, poll=0.01) for i in range(20)))
        assert fetch.calls == 1 and {t for t, _ in results} == {"token-1"}
    finally:
        await other.dispose()


async def test_redis_store_expires_token_with_it(redis_store):
    await redis_store.try_lease(APP, "me", 10)
    await redis_store.put(APP, "short", utcnow() + dt.timedelta(milliseconds=200), "me")
    assert (await redis_store.get(APP))[0] == "short"
    assert await redis_store.try_lease(APP, "other", 10)  # put ended the lease
    await asyncio.sleep(0.5)
    assert await redis_store.get(APP) is None
