"""Where each user is in a conversation, kept in `dialog_states` so any process can continue it.

A message that may change the state runs under the user's step lock: an asyncio lock inside the
process, and a lease on the row (`locked_by` / `locked_until`) across processes, taken with one
conditional UPDATE ... RETURNING that also reads the state. Two messages of one user therefore
never run a flow step at the same time, whichever processes they reach; a crashed holder's lease
simply runs out.

The lease is short (LEASE_SECONDS) and renewed while the step runs, so a live holder keeps it
however long its step takes, and a dead one (kill -9) blocks the user for at most LEASE_SECONDS.
That must fit the edge's takeover of a crashed message (bot/dedupe.py): the retry that takes the
message over waits up to `wait_seconds` for this lock, and the dead holder's lease ends before
that (the edge's lease is the reply budget + 1.5 s; see docs/security.md, "Crash recovery").
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

LEASE_SECONDS = 5.0


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
    # The message whose step last changed the row, and its reply (see StateStore.locked).
    applied_key: Optional[str] = None
    applied_reply: Optional[dict[str, Any]] = None
    # Set by the caller under the lock: (message key, reply) to record with this step's change.
    applied: Optional[tuple[str, dict[str, Any]]] = None

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
    def __init__(self, db: Database, *, owner: str | None = None, wait_seconds: float = 4.0,
                 lease_seconds: float = LEASE_SECONDS) -> None:
        self.db = db
        self.owner = owner or f"{os.getpid()}-{secrets.token_hex(4)}"
        self.wait_seconds = wait_seconds
        self.lease_seconds = lease_seconds
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @asynccontextmanager
    async def locked(self, openid: str) -> AsyncIterator[Conversation]:
        """Hold the user's step lock; the conversation yielded is saved on a normal exit.

        Exactly once: a caller that knows the message (its dedupe key) checks `applied_key` first
        (the step already ran and was saved: answer `applied_reply`) and sets `conv.applied` to
        (key, reply); when the step changed the conversation, both are written in one UPDATE."""
        lock = self._locks.get(openid)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[openid] = lock
        async with lock:
            conv = await self._acquire(openid)
            before = conv.snapshot()
            renewer = asyncio.create_task(self._renew(openid))
            try:
                yield conv
            except BaseException:
                renewer.cancel()
                await self._release(openid, None)
                raise
            renewer.cancel()
            await self._release(openid, conv if conv.snapshot() != before else None)

    async def _renew(self, openid: str) -> None:
        """Extend the lease while the step runs (a step that waits on WeChat or decodes a photo can
        take longer than the lease); stops when the lease was lost."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                held = await dialog_states.renew_lease(self.db, openid, self.owner, self.lease_seconds)
            except asyncio.CancelledError:
                raise
            except Exception:  # the next round tries again; the lease still has two thirds left
                continue
            if not held:
                return

    async def _acquire(self, openid: str) -> Conversation:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_seconds
        delay = 0.01
        while True:
            row = await dialog_states.take_lease(self.db, openid, self.owner, self.lease_seconds)
            if row is not None:
                return Conversation(openid, row.flow, row.step, dict(row.data or {}), row.expires_at, exists=True,
                                    applied_key=row.applied_key, applied_reply=row.applied_reply)
            if loop.time() >= deadline:
                raise Busy(openid)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def _release(self, openid: str, conv: Conversation | None) -> None:
        state = None
        if conv is not None:
            state = {"flow": conv.flow, "step": conv.step, "data": conv.data, "expires_at": conv.expires_at}
            if conv.applied is not None:
                # In the same statement as the change: either both are durable or neither is.
                state.update(applied_key=conv.applied[0], applied_reply=conv.applied[1])
        await dialog_states.release(self.db, openid, self.owner, state)
