"""The fan-out benchmark's machinery on a small run: real processes (emulator, delivery worker),
5% errors, the worker SIGKILLed mid-run and restarted; nothing lost, nothing duplicated.
Figures (rates, durations) are printed by the bench, never asserted here."""
from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from bench.fanout import openid_of, run_bench
from storage.db import Database
from storage.models import Outbox


def test_small_fanout_with_errors_and_a_kill_loses_and_duplicates_nothing(db_url):
    count = 300
    f = run_bench(
        count, database_url=db_url, fresh_database=False, error_rate=0.05, kill_after=0.3,
        rate=150.0, lease=2.0, batch_size=20, api_timeout=2.0, timeout=180, progress=False,
    )
    assert f["queued"] == count
    assert f["delivered"] == count and f["lost"] == 0 and f["duplicated"] == 0 and f["failed"] == 0
    assert f["delivered_not_marked_sent"] == 0 and f["outbox_statuses"] == {"sent": count}
    # The kill happened mid-run, and both workers delivered part of the outbox.
    first, second = f["workers"]
    assert 0 < first["delivered_when_killed"] < count and second["exit_code"] == 0
    assert set(f["sent_by_worker"]) <= {"worker-1", "worker-2"} and f["sent_by_worker"].get("worker-2")
    # Errors were injected and answered with retries: more calls than deliveries.
    assert f["send_calls"] > count and f["retried_calls"] == f["send_calls"] - count


def test_the_bench_counts_what_the_outbox_says(db_url):
    """The bench's own bookkeeping: rows queued are the rows in the database."""
    f = run_bench(40, database_url=db_url, fresh_database=False, error_rate=0.0, kill_after=0.0,
                  rate=500.0, lease=2.0, timeout=120, progress=False)
    assert f["delivered"] == 40 and f["send_calls"] == 40 and f["retried_calls"] == 0

    async def check() -> tuple[int, set[str]]:
        db = Database(db_url)
        try:
            async with db.session() as s:
                n = (await s.execute(select(func.count()).select_from(Outbox))).scalar_one()
                ids = set((await s.execute(select(Outbox.openid))).scalars())
            return n, ids
        finally:
            await db.dispose()

    n, ids = asyncio.run(check())
    assert n == 40 and ids == {openid_of(i) for i in range(40)}
