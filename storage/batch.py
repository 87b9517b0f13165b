"""Group commit: writes from many concurrent messages committed together in one transaction.

Each statement through aiosqlite is a thread hop and each commit an fsync-class cost, so under
load the per-message writes (dedupe marks, interaction times) are the bottleneck. A Coalescer
lets callers submit items and await their own result; while one flush runs, later items gather
for the next. An idle service flushes at once, so a lone message waits for nothing.
`parallel` lets several batches be in flight where the database takes concurrent writers
(PostgreSQL); SQLite keeps one.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    def __init__(self, flush: Callable[[list[T]], Awaitable[Sequence[R]]], max_batch: int = 500, parallel: int = 1) -> None:
        self._flush = flush
        self._max = max_batch
        self._parallel = parallel
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._runners: set[asyncio.Task] = set()

    async def submit(self, item: T) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if len(self._runners) < self._parallel:
            self._runners.add(asyncio.create_task(self._run()))
        return await fut

    async def submit_many(self, items: list[T]) -> list[R]:
        """Several items at once (they go in the same or consecutive batches)."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self._pending.extend(zip(items, futures))
        if len(self._runners) < self._parallel:
            self._runners.add(asyncio.create_task(self._run()))
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        try:
            await self._drain()
        finally:
            # Leave the set in the same step as the loop ends (a done-callback runs a turn later,
            # and a submit in between would find no runner and wait forever).
            self._runners.discard(asyncio.current_task())

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max], self._pending[self._max :]
            try:
                results = await self._flush([item for item, _ in batch])
            except Exception as e:  # every caller of the failed batch sees the error
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
