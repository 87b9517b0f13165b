"""Where each user is in a conversation, kept in `dialog_states` so any process can continue it.

A message that may change the state runs under the user's step lock: an asyncio lock inside the
process, and a lease on the row (`locked_by` / `locked_until`) across processes, taken with one
conditional UPDATE ... RETURNING that also reads the state. Two messages of one user therefore
never run a flow step at the same time, whichever processes they reach; a crashed holder's lease
simply runs out.
"""
from __future__ import annotations

import asyncio
import copy
import datetime as dt
import os
import secrets
import weakref
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Optional

from storage import dialog_states
from storage.db import Database

LEASE_SECONDS = 15.0


class Busy(Exception):
    """Another message of this user still holds the step lock."""


@dataclass
class Conversation:
    """A copy of the user's row: the active flow, its step and its data (answers, scratch, paused flows)."""

    openid: str
    flow: Optional[str] = None
    step: Optional[str] = None
    data: dict[str, Any] = field(default_factory=dict)
    expires_at: Optional[dt.datetime] = None
    exists: bool = False

    @property
    def active(self) -> bool:
        return self.flow is not None

    @property
    def paused(self) -> list[dict[str, Any]]:
        return self.data.setdefault("paused", [])

    @property
    def pending(self) -> Optional[dict[str, Any]]:
        """A one-shot question outside any flow (e.g. "你是不是想问" numbers)."""
        return self.data.get("pending")

    def expired(self, now: dt.datetime) -> bool:
        return self.active and self.expires_at is not None and self.expires_at <= now

    def snapshot(self) -> tuple:
        return (self.flow, self.step, copy.deepcopy(self.data), self.expires_at)


class StateStore:
    def __init__(self, db: Database, *, owner: str | None = None, wait_seconds: float = 4.0) -> None:
        self.db = db
        self.owner = owner or f"{os.getpid()}-{secrets.token_hex(4)}"
        self.wait_seconds = wait_seconds
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @asynccontextmanager
    async def locked(self, openid: str) -> AsyncIterator[Conversation]:
        """Hold the user's step lock; the conversation yielded is saved on a normal exit."""
        lock = self._locks.get(openid)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[openid] = lock
        async with lock:
            conv = await self._acquire(openid)
            before = conv.snapshot()
            try:
                yield conv
            except BaseException:
                await self._release(openid, None)
                raise
            await self._release(openid, conv if conv.snapshot() != before else None)

    async def _acquire(self, openid: str) -> Conversation:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_seconds
        delay = 0.01
        while True:
            row = await dialog_states.take_lease(self.db, openid, self.owner, LEASE_SECONDS)
            if row is not None:
                return Conversation(openid, row.flow, row.step, dict(row.data or {}), row.expires_at, exists=True)
            if loop.time() >= deadline:
                raise Busy(openid)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def _release(self, openid: str, conv: Conversation | None) -> None:
        state = None
        if conv is not None:
            state = {"flow": conv.flow, "step": conv.step, "data": conv.data, "expires_at": conv.expires_at}
        await dialog_states.release(self.db, openid, self.owner, state)
