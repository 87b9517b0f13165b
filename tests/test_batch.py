"""Group commit: every submitted item is flushed, in batches, and errors reach their callers."""
import asyncio

import pytest

from storage.batch import Coalescer


async def test_submit_right_after_a_flush_finishes_is_not_lost():
    async def flush(items):
        return [i * 2 for i in items]

    c = Coalescer(flush)
    assert await c.submit(1) == 2
    # The first runner has just finished its loop; this submit must start a new one. (Not
    # wait_for: it would run the submit in a new task, one loop turn later, hiding the race.)
    async with asyncio.timeout(2):
        assert await c.submit(2) == 4


async def test_concurrent_submits_share_batches():
    batches = []

    async def flush(items):
        batches.append(list(items))
        await asyncio.sleep(0.01)
        return items

    c = Coalescer(flush)
    results = await asyncio.wait_for(asyncio.gather(*(c.submit(i) for i in range(50))), 5)
    assert results == list(range(50))
    assert len(batches) < 50 and sorted(sum(batches, [])) == list(range(50))


async def test_a_failed_batch_raises_in_each_caller_and_later_batches_still_run():
    calls = 0

    async def flush(items):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk full")
        return items

    c = Coalescer(flush)
    with pytest.raises(RuntimeError):
        await c.submit("a")
    assert await asyncio.wait_for(c.submit("b"), 2) == "b"


async def test_a_submitter_that_submits_again_as_the_runner_exits_gets_a_runner():
    """The delivery engine's outcome writer does exactly this; the 100k fan-out bench hung on it."""

    async def flush(items):
        await asyncio.sleep(0)
        return items

    c = Coalescer(flush)

    async def twice():
        await c.submit(1)
        return await c.submit(2)

    async with asyncio.timeout(10):  # a guard against a hang, not a timing
        assert await twice() == 2
        assert await asyncio.gather(*(c.submit(i) for i in range(5))) == [0, 1, 2, 3, 4]
