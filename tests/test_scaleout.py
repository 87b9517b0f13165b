"""Three service processes on one port, on PostgreSQL and Redis, one SIGKILLed under load.

The harness is bench/scaleout.py (which also runs it bigger and prints figures); here it runs
at a size CI affords and every check is asserted: each message answered exactly once, each
user's messages claimed in order, the scheduler's leadership taken over by a survivor within one
renew interval of the dead leader's lease expiring, every push delivered exactly once. All waits
are bounded polls on observable state (the database, the emulator's records), never sleeps.
"""
from __future__ import annotations

import os
import socket

import pytest

from bench import scaleout
from bot import dedupe
from storage.models import InboundMessage

# A message whose process dies after claiming it can only be answered if a WeChat retry may take
# the claim over once its lease ran out (bot/dedupe.py). Where claims have no lease yet, those
# messages (and only those: each met the kill as a broken connection) may go unanswered; every
# other check holds either way, and with the lease none is excused.
TAKEOVER = hasattr(dedupe.Claim, "taken_over") or hasattr(InboundMessage, "lease_until")

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> str:
    from sqlalchemy.engine import make_url

    u = make_url(REDIS_URL.replace("redis://", "redis+x://", 1))
    try:
        socket.create_connection((u.host or "127.0.0.1", u.port or 6379), timeout=1).close()
    except OSError:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(f"REQUIRE_REDIS=1 but Redis does not answer at {REDIS_URL}", pytrace=False)
        pytest.skip(f"Redis does not answer at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
def pg_url(_postgres, _fixture_loop) -> str:
    _fixture_loop.run(_postgres.clean)
    return _postgres.url


async def test_three_processes_survive_a_sigkill_of_the_leader(pg_url, redis_url, tmp_path):
    result = await scaleout.run(pg_url, redis_url, processes=3, users=40, messages=6, pushes=150,
                                push_rate=20.0, work_dir=tmp_path, wait_seconds=180.0)
    assert result.killed_pid and result.new_leader_pid in result.survivor_pids
    assert result.problems(takeover_margin=10.0, in_flight_may_be_lost=not TAKEOVER) == [], result.figures()
    # /metrics of one survivor sums every process's counters (PROMETHEUS_MULTIPROC_DIR), the dead
    # one's included: each message was counted by whichever process handled it.
    assert result.messages_counted >= result.sent_messages - len(result.lost), result.figures()
