"""Delivery of the outbox: pushes to candidates sent exactly once, under a rate and a daily cap.

Every push is an `Outbox` row written in the same transaction as its cause. `Deliverer.run_once`
claims due rows (an atomic UPDATE ... RETURNING; on PostgreSQL the subselect takes its rows
FOR UPDATE SKIP LOCKED), sends each one through the WeChat API, and writes the outcome:

- a template message when the row has a template and its kind has a configured template id
  (`client_msg_id` = the row's, so WeChat delivers a resend once);
- otherwise a customer-service message when the user's 48-hour window is open;
- otherwise the row waits ("waiting") until the user's next message releases it
  (`release_waiting`, called by bot.dedupe in the transaction that records the message).

A claim is a lease (`claimed_by`, `claimed_until`): a process that dies mid-batch leaves its rows
to be claimed again once the lease has expired. Leases are renewed while rows are held.
See docs/delivery.md for the whole argument, the failure reasons and the measured figures.

    python -m bot.delivery --database-url URL --api-base URL --rate 20   # until nothing is left
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import math
import os
import random
import signal
import socket
import sys
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence

from sqlalchemy import Integer, String, any_, bindparam, case, exists, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot import metrics
from bot.wechat_client import (
    TEXT_MAX_BYTES,
    MediaExpired,
    WeChatAPIError,
    WeChatArgumentError,
    WeChatBusy,
    WeChatNetworkError,
)
from storage import outbox
from storage.batch import Coalescer
from storage.db import Database
from storage.models import Outbox, WechatUser, utcnow

log = logging.getLogger("zikao.delivery")

SHANGHAI = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")  # no DST: a fixed offset is exact
CS_WINDOW = dt.timedelta(hours=48)
TEMPLATE_VALUE_MAX = 20
TEMPLATE_KINDS = ("review_result", "exam_notice", "score_release", "business_reminder")
CHANNEL_TEMPLATE = "template"
CHANNEL_CUSTOM = "custom"
# Customer-service sends that may have reached WeChat (a timeout) are resent for these kinds
# (at-least-once: messages addressed to this candidate alone, which a loss would hurt more than a
# duplicate) and not for the others (at-most-once bulk pushes); see docs/delivery.md.
RESEND_MAYBE_DELIVERED = frozenset({"review_outcome", "reply", "feedback_reply", "account", "payment_receipt"})
UNCONFIRMED = "unconfirmed"  # delivery_status of a CS message whose send timed out, not resent

WAIT_ERRCODES = frozenset({45015, 45047})  # reply window passed / CS count exceeded: wait for the user
INVALID_TEMPLATE = 40037
# Refusals that a later try would get again (besides MediaExpired and WeChatArgumentError).
PERMANENT_ERRCODES: dict[int, str] = {
    40003: "invalid openid",
    40008: "invalid message type",
    43004: "not subscribed",
    44004: "empty content",
    45002: "content too long",
    47001: "data format error",
    47003: "template argument invalid",
    48001: "api unauthorized",
}

Clock = Callable[[], dt.datetime]


# --- small pieces ---------------------------------------------------------------------------


@dataclass
class DeliveryStats:
    """What one `run_once` did. `calls` counts API calls made (retries included)."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    waiting: int = 0
    released: int = 0  # claimed but not attempted (time up, cap reached, stop): back to pending
    lost_claims: int = 0  # rows another process took over after our lease ran out
    calls: int = 0
    capped: bool = False
    seconds: float = 0.0

    def add(self, other: "DeliveryStats") -> None:
        for name, value in asdict(other).items():
            if name == "capped":
                self.capped = self.capped or value
            else:
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seconds"] = round(self.seconds, 3)
        return d


class TokenBucket:
    """At most `rate` acquisitions per second on average, bursts of at most `burst`.

    Any interval of t seconds sees at most `burst + rate * t` acquisitions. The clock and the
    sleep are injectable, so tests check the pacing without waiting."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate / 10))
        self._monotonic = monotonic
        self._sleep = sleep
        self._tokens = self.burst
        self._at = monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # first come, first served
            while True:
                now = self._monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
                self._at = now
                if self._tokens >= 1 - 1e-9:  # float tolerance: a sleep may land a hair short
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                await self._sleep((1 - self._tokens) / self.rate)


def shanghai_midnight(now: dt.datetime) -> dt.datetime:
    """The start of `now`'s day in Beijing time, as aware UTC (WeChat's quotas reset then)."""
    local = now.astimezone(SHANGHAI)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(dt.timezone.utc)


def fit_template_value(value: Any) -> str:
    """WeChat's rule since 2023-05: at most 20 characters, no line breaks."""
    text = " ".join(str(value).split()) if value is not None else ""
    if len(text) > TEMPLATE_VALUE_MAX:
        text = text[: TEMPLATE_VALUE_MAX - 1] + "…"
    return text


def split_text(text: str, limit: int = TEXT_MAX_BYTES) -> list[str]:
    """Customer-service texts over WeChat's ~2048 bytes, cut at line boundaries (a line longer
    than a message is cut between characters)."""
    if len(text.encode("utf-8")) <= limit:
        return [text]
    parts: list[str] = []
    cur = ""
    for line in text.split("\n"):
        pieces = [line]
        if len(line.encode("utf-8")) > limit:
            pieces, buf = [], ""
            for ch in line:
                if len((buf + ch).encode("utf-8")) > limit:
                    pieces.append(buf)
                    buf = ""
                buf += ch
            pieces.append(buf)
        for piece in pieces:
            joined = f"{cur}\n{piece}" if cur else piece
            if cur and len(joined.encode("utf-8")) > limit:
                parts.append(cur)
                cur = piece
            else:
                cur = joined
    if cur:
        parts.append(cur)
    return [p for p in parts if p.strip()]


def _reason(e: WeChatAPIError) -> str:
    """A short failure reason for last_error: errcode and meaning, never message text."""
    if isinstance(e, WeChatNetworkError):
        return f"-1 network: {e.errmsg}"[:255]
    if isinstance(e, MediaExpired):
        return f"{e.errcode} media_id unknown or expired"
    label = PERMANENT_ERRCODES.get(e.errcode) or e.errmsg.split(" rid:")[0]
    return f"{e.errcode} {label}"[:255]


# --- statements -----------------------------------------------------------------------------

_T = Outbox.__table__
_U = WechatUser.__table__
_TS = _T.c.due_at.type  # UTCDateTime: aware datetimes in, aware out


def release_waiting_statement(dialect: str = "sqlite"):
    """UPDATE the waiting rows of the users in b_openids to pending, due at b_due.

    One statement per batch of users, a round trip costing far more than the index lookups.
    PostgreSQL gets `openid = ANY(:array)`: one prepared statement whatever the batch size (an
    expanding IN would make asyncpg prepare a new one for every size: measured 35% fewer
    messages/s on the message path). SQLite gets an expanding IN."""
    if dialect == "postgresql":
        match = _T.c.openid == any_(bindparam("b_openids", type_=ARRAY(String(64))))
    else:
        match = _T.c.openid.in_(bindparam("b_openids", expanding=True))
    return (
        _T.update()
        .where(_T.c.status == "waiting", match)
        .values(status="pending", due_at=bindparam("b_due", type_=_TS))
    )


async def release_waiting(
    conn: AsyncConnection | AsyncSession, openids: Iterable[str], now: dt.datetime | None = None
) -> int:
    """Make the waiting rows of these users due now (they just wrote to us: the 48-hour
    customer-service window is open). Runs in the caller's transaction; returns rows released."""
    ids = sorted(set(openids))
    if not ids:
        return 0
    bind = conn.bind if isinstance(conn, AsyncSession) else conn
    stmt = release_waiting_statement(bind.dialect.name)
    result = await conn.execute(stmt, {"b_openids": ids, "b_due": now or utcnow()})
    return max(result.rowcount or 0, 0)


async def record_template_finish(db: Database, msgid: str | int, status: str) -> bool:
    """TEMPLATESENDJOBFINISH: store WeChat's Status on the row sent with this msgid.

    "success" only records it; "failed:user block" (the user refused template messages) and
    "failed: system failed" also mark the row failed with the reason. Returns False when no row
    has this msgid (not ours, or the send's outcome is not written yet)."""
    status = (status or "").strip()[:64]
    values: dict[str, Any] = {"delivery_status": status}
    if status.startswith("failed"):
        reason = status.split(":", 1)[1].strip() if ":" in status else status
        values.update(status="failed", last_error=f"template {reason or 'failed'}"[:255])
    async with db.session() as s, s.begin():
        result = await s.execute(_T.update().where(_T.c.wechat_msgid == str(msgid)).values(**values))
    found = (result.rowcount or 0) > 0
    if found and status != "success":
        log.warning("template msgid %s finished with status %r", msgid, status)
    return found


async def deliver_late_reply(db: Database, client: Any, openid: str, text: str, image: str | None) -> None:
    """A reply that missed the passive-reply budget, as customer-service messages now; what WeChat
    did not take waits in the outbox (until the user writes again when the 48-hour window or the
    quota refused it). Parts already sent are not queued again; an expired picture is dropped."""
    parts = split_text(text) if text else []
    try:
        while parts:
            await client.send_text(openid, parts[0])
            parts.pop(0)
        if image:
            await client.send_image(openid, image)
        metrics.LATE_REPLIES.labels("sent").inc()
        return
    except MediaExpired as e:  # the picture, after the texts went out: asking again will not help
        log.warning("late reply: its picture is gone (%s); not queued", _reason(e))
        return
    except WeChatAPIError as e:
        reason, wait = _reason(e), e.errcode in WAIT_ERRCODES
    except Exception as e:  # anything else: keep the reply rather than lose it
        reason, wait = f"unexpected {type(e).__name__}", True
    log.warning("customer-service send of a late reply failed (%s); queued in the outbox", reason)
    metrics.LATE_REPLIES.labels("queued").inc()
    await outbox.queue_reply(db, openid, text="\n".join(parts), image=image, reason=reason, wait=wait)


# --- the deliverer --------------------------------------------------------------------------


@dataclass
class _Row:
    id: int
    openid: str
    kind: str
    payload: dict[str, Any]
    client_msg_id: str
    attempts: int  # including the current one (the claim counts it)
    priority: int
    due_at: dt.datetime
    until: dt.datetime  # our lease
    interaction: dt.datetime | None = None  # the user's last_interaction_at, read after the claim


@dataclass
class _Outcome:
    row_id: int
    status: str  # sent / pending / failed / waiting
    due_at: dt.datetime
    last_error: str | None = None
    sent_at: dt.datetime | None = None
    channel: str | None = None
    wechat_msgid: str | None = None
    delivery_status: str | None = None
    payload: dict[str, Any] | None = None  # when the customer-service progress changed
    since: dt.datetime | None = None  # waiting: the interaction time the decision was based on


@dataclass
class _Run:
    """The state of one run_once."""

    deadline: float
    stats: DeliveryStats = field(default_factory=DeliveryStats)
    queue: deque[_Row] = field(default_factory=deque)
    held: dict[int, _Row] = field(default_factory=dict)  # claimed by us and not finished
    busy: dict[str, asyncio.Event] = field(default_factory=dict)  # openids being sent to
    exhausted: bool = False  # the last claim found fewer rows than asked
    stopping: bool = False
    claim_task: asyncio.Task | None = None
    cap_left: int = 0
    cap_checked: float = 0.0
    renewing: asyncio.Lock = field(default_factory=asyncio.Lock)


class Deliverer:
    """Sends due outbox rows. Safe to run in any number of processes at once."""

    def __init__(
        self,
        db: Database,
        client: Any,
        *,
        templates: Mapping[str, str],
        rate_per_second: float = 20.0,
        daily_cap: int = 90000,
        lease_seconds: float = 60.0,
        owner: str | None = None,
        batch_size: int = 100,
        max_attempts: int = 8,
        backoff_base: float = 2.0,
        backoff_max: float = 600.0,
        clock: Clock = utcnow,
        concurrency: int | None = None,
        resend_maybe_delivered: Iterable[str] = RESEND_MAYBE_DELIVERED,
        cap_refresh_seconds: float = 10.0,
        sweep_seconds: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.client = client
        self.templates = {k: v for k, v in templates.items() if v}
        self.rate = float(rate_per_second)
        self.daily_cap = int(daily_cap)
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.owner = (owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")[:64]
        self.batch_size = max(1, batch_size)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.clock = clock
        self.concurrency = concurrency or max(4, min(64, math.ceil(self.rate / 5)))
        self.resend_maybe_delivered = frozenset(resend_maybe_delivered)
        self.cap_refresh_seconds = cap_refresh_seconds
        self.sweep_seconds = sweep_seconds
        self._monotonic = monotonic
        self._random = rng or random.Random()
        self.bucket = TokenBucket(self.rate, monotonic=monotonic, sleep=sleep)
        # Rows claimed at once: small enough that the lease is never close to being outlived.
        self.claim_size = max(1, min(self.batch_size, int(self.rate * lease_seconds / 4)))
        # Renew held leases when less than this is left: the longest one send can take (the
        # client's timeout on every try, its backoffs, a token fetch), at most half the lease.
        self.renew_margin = dt.timedelta(seconds=min(lease_seconds / 2, self._send_budget(client) + 1))
        self._stop = asyncio.Event()
        self._one_run = asyncio.Lock()  # runs of one Deliverer never overlap (the scheduler's job may)
        self._bad_templates: set[str] = set()
        self._last_reclaim = -math.inf
        self._last_sweep = -math.inf
        self._build_statements()
        self._writer = Coalescer(self._write_outcomes, max_batch=500)

    @classmethod
    def from_settings(cls, db: Database, client: Any, settings: Any, **kwargs: Any) -> "Deliverer":
        templates = {kind: getattr(settings, f"template_{kind}", "") for kind in TEMPLATE_KINDS}
        return cls(
            db, client, templates=templates, rate_per_second=settings.push_rate_per_second,
            daily_cap=settings.push_daily_cap, lease_seconds=settings.push_lease_seconds, **kwargs,
        )

    @staticmethod
    def _send_budget(client: Any) -> float:
        timeout = float(getattr(client, "timeout", 5.0))
        retries = int(getattr(client, "max_retries", 3))
        backoff_max = float(getattr(client, "backoff_max", 8.0))
        backoff_base = float(getattr(client, "backoff_base", 0.5))
        backoffs = sum(min(backoff_max, backoff_base * 2**i) for i in range(retries))
        return 2 * timeout * (retries + 1) + backoffs  # a token fetch may come first

    def request_stop(self) -> None:
        """End the current run_once soon: unsent claimed rows are released, outcomes written."""
        self._stop.set()

    # statements, built once so SQLAlchemy's cache serves every execution

    def _build_statements(self) -> None:
        now = bindparam("now", type_=_TS)
        n = bindparam("n", type_=Integer)
        returning = (_T.c.id, _T.c.openid, _T.c.kind, _T.c.payload, _T.c.client_msg_id, _T.c.attempts,
                     _T.c.priority, _T.c.due_at)
        claim_values = dict(status="claimed", claimed_by=bindparam("owner"), claimed_until=bindparam("until", type_=_TS),
                            attempts=_T.c.attempts + 1)
        pg = not self.db.is_sqlite
        # SQLite's index entries end with the rowid (= id), so the index serves all three keys;
        # on PostgreSQL adding id would sort the whole bulk of equal due_at on every claim
        # (measured: 25 ms instead of 0.1 ms per claim at 100,000 rows), so ties follow the index.
        order = (_T.c.priority, _T.c.due_at) if pg else (_T.c.priority, _T.c.due_at, _T.c.id)
        due = select(_T.c.id).where(_T.c.status == "pending", _T.c.due_at <= now).order_by(*order).limit(n)
        expired = (select(_T.c.id).where(_T.c.status == "claimed", _T.c.claimed_until < now)
                   .order_by(_T.c.priority, _T.c.due_at).limit(n))
        if pg:
            due = due.with_for_update(skip_locked=True)
            expired = expired.with_for_update(skip_locked=True)
        self._sql_claim_due = _T.update().where(_T.c.id.in_(due)).values(**claim_values).returning(*returning)
        self._sql_claim_expired = _T.update().where(_T.c.id.in_(expired)).values(**claim_values).returning(*returning)
        self._sql_users = select(_U.c.openid, _U.c.last_interaction_at).where(_U.c.openid.in_(bindparam("openids", expanding=True)))
        self._sql_renew = (
            _T.update()
            .where(_T.c.id.in_(bindparam("ids", expanding=True)), _T.c.claimed_by == bindparam("owner"), _T.c.status == "claimed")
            .values(claimed_until=bindparam("until", type_=_TS))
            .returning(_T.c.id)
        )
        self._sql_unclaim = (
            _T.update()
            .where(_T.c.id.in_(bindparam("ids", expanding=True)), _T.c.claimed_by == bindparam("owner"), _T.c.status == "claimed")
            .values(status="pending", claimed_by=None, claimed_until=None, attempts=_T.c.attempts - 1)
        )
        mine = (_T.c.id == bindparam("b_id"), _T.c.claimed_by == bindparam("b_owner"), _T.c.status == "claimed")
        self._sql_finish = (
            _T.update().where(*mine).values(
                status=bindparam("b_status"), due_at=bindparam("b_due", type_=_TS), last_error=bindparam("b_error"),
                sent_at=bindparam("b_sent", type_=_TS), channel=bindparam("b_channel"),
                wechat_msgid=bindparam("b_msgid"), delivery_status=bindparam("b_ds"), claimed_until=None,
            )
        )
        # Waiting, unless the user wrote to us after the interaction the decision was based on
        # (their message's release may have run while the row was claimed): then due at once.
        wrote_since = exists(
            select(literal(1)).where(_U.c.openid == _T.c.openid, _U.c.last_interaction_at > bindparam("b_since", type_=_TS))
        )
        self._sql_wait = (
            _T.update().where(*mine).values(
                status=case((wrote_since, "pending"), else_="waiting"), due_at=bindparam("b_due", type_=_TS),
                last_error=bindparam("b_error"), channel=None, claimed_until=None,
            )
        )
        self._sql_progress = _T.update().where(_T.c.id == bindparam("b_id")).values(payload=bindparam("b_payload", type_=_T.c.payload.type))
        self._sql_sent_today = select(func.count()).select_from(_T).where(_T.c.sent_at >= bindparam("since", type_=_TS))
        # Repairs a release that raced with a claim on PostgreSQL: waiting rows (due_at = since
        # when) whose user has written since, within the window.
        self._sql_sweep = (
            _T.update()
            .where(_T.c.status == "waiting", exists(select(literal(1)).where(
                _U.c.openid == _T.c.openid, _U.c.last_interaction_at > _T.c.due_at,
                _U.c.last_interaction_at > bindparam("window_start", type_=_TS))))
            .values(status="pending", due_at=bindparam("now", type_=_TS))
        )

    # --- one run ------------------------------------------------------------------------------

    async def run_once(self, *, max_seconds: float = 10.0) -> DeliveryStats:
        """Deliver due rows until none is due, `max_seconds` have passed, the daily cap is
        reached or `request_stop()` is called. Returns what was done."""
        async with self._one_run:
            return await self._run_once(max_seconds)

    async def _run_once(self, max_seconds: float) -> DeliveryStats:
        started = self._monotonic()
        run = _Run(deadline=started + max_seconds)
        self._stop.clear()
        self._last_reclaim = -math.inf  # every run first takes over rows whose lease has expired
        await self._sweep_waiting()
        await self._refresh_cap(run)
        if run.cap_left <= 0:
            run.stats.capped = True
            log.warning("push daily cap of %d reached; deliveries resume after midnight (Beijing time)", self.daily_cap)
        else:
            workers = [asyncio.create_task(self._worker(run)) for _ in range(self.concurrency)]
            try:
                await asyncio.gather(*workers)
            except BaseException:
                for w in workers:
                    w.cancel()
                if run.claim_task is not None:
                    run.claim_task.cancel()
                raise
            if run.claim_task is not None:
                await asyncio.gather(run.claim_task, return_exceptions=True)
            leftover = [r.id for r in run.held.values()]
            if leftover:  # claimed but never attempted: others may take them at once
                async with self.db.engine.begin() as conn:
                    await conn.execute(self._sql_unclaim, {"ids": leftover, "owner": self.owner})
                run.stats.released += len(leftover)
                run.held.clear()
        run.stats.seconds = self._monotonic() - started
        s = run.stats
        if s.claimed or s.capped:
            log.info("delivery run: claimed=%d sent=%d failed=%d retried=%d waiting=%d released=%d calls=%d capped=%s in %.1fs",
                     s.claimed, s.sent, s.failed, s.retried, s.waiting, s.released, s.calls, s.capped, s.seconds)
        return s

    def _should_stop(self, run: _Run) -> bool:
        if run.stopping:
            return True
        if self._stop.is_set() or self._monotonic() >= run.deadline:
            run.stopping = True
        return run.stopping

    async def _worker(self, run: _Run) -> None:
        while True:
            row = await self._next_row(run)
            if row is None:
                return
            event = run.busy.get(row.openid)
            while event is not None:  # one message at a time per user, in queue order
                await event.wait()
                event = run.busy.get(row.openid)
            run.busy[row.openid] = done = asyncio.Event()
            try:
                await self._deliver(row, run)
            finally:
                del run.busy[row.openid]
                done.set()

    async def _next_row(self, run: _Run) -> _Row | None:
        while True:
            if run.cap_left <= 0:
                run.stats.capped = True
                return None
            if self._should_stop(run):
                return None
            if len(run.queue) <= self.claim_size // 2 and not run.exhausted and run.claim_task is None:
                run.claim_task = asyncio.create_task(self._claim(run))  # prefetch the next batch
            if run.queue:
                return run.queue.popleft()
            if run.claim_task is None:
                return None  # nothing left to claim
            task = run.claim_task
            await asyncio.shield(task)

    async def _claim(self, run: _Run) -> None:
        try:
            now = self.clock()
            until = now + self.lease
            params = {"now": now, "owner": self.owner, "until": until}
            size = max(1, min(self.claim_size, run.cap_left))
            rows: list[Any] = []
            async with self.db.engine.begin() as conn:
                if self._monotonic() - self._last_reclaim >= min(5.0, self.lease.total_seconds() / 4):
                    self._last_reclaim = self._monotonic()
                    rows += (await conn.execute(self._sql_claim_expired, {**params, "n": size})).all()
                if len(rows) < size:
                    rows += (await conn.execute(self._sql_claim_due, {**params, "n": size - len(rows)})).all()
                users: dict[str, dt.datetime | None] = {}
                if rows:
                    openids = sorted({r.openid for r in rows})
                    users = {u.openid: u.last_interaction_at for u in await conn.execute(self._sql_users, {"openids": openids})}
            if len(rows) < size:
                run.exhausted = True
            claimed = sorted(
                (_Row(r.id, r.openid, r.kind, dict(r.payload or {}), r.client_msg_id, r.attempts, r.priority, r.due_at,
                      until, users.get(r.openid)) for r in rows),
                key=lambda r: (r.priority, r.due_at, r.id),
            )
            for row in claimed:
                run.held[row.id] = row
                run.queue.append(row)
            run.stats.claimed += len(claimed)
            if claimed:
                log.debug("claimed %d rows (ids %d..%d)", len(claimed), claimed[0].id, claimed[-1].id)
        except Exception:
            log.exception("claiming outbox rows failed")
            run.exhausted = True
        finally:
            run.claim_task = None

    async def _refresh_cap(self, run: _Run) -> None:
        """Rows sent since Beijing midnight by every process, minus our sends in flight."""
        async with self.db.engine.connect() as conn:
            sent = (await conn.execute(self._sql_sent_today, {"since": shanghai_midnight(self.clock())})).scalar_one()
        in_flight = len(run.busy)
        run.cap_left = self.daily_cap - sent - in_flight
        run.cap_checked = self._monotonic()

    async def _sweep_waiting(self) -> None:
        if self._monotonic() - self._last_sweep < self.sweep_seconds:
            return
        self._last_sweep = self._monotonic()
        now = self.clock()
        async with self.db.engine.begin() as conn:
            result = await conn.execute(self._sql_sweep, {"now": now, "window_start": now - CS_WINDOW})
        if result.rowcount:
            log.info("released %d waiting rows whose users have written since", result.rowcount)

    async def _renew(self, run: _Run) -> None:
        now = self.clock()
        until = now + self.lease
        ids = list(run.held)
        async with self.db.engine.begin() as conn:
            kept = set((await conn.execute(self._sql_renew, {"ids": ids, "owner": self.owner, "until": until})).scalars())
        for row_id in ids:
            row = run.held.get(row_id)
            if row is None:
                continue
            if row_id in kept:
                row.until = until
            else:  # our lease ran out and another process took the row over
                run.held.pop(row_id, None)
                row.until = now - dt.timedelta(seconds=1)
                run.stats.lost_claims += 1
        lost = [r for r in run.queue if r.id not in kept]
        for r in lost:
            run.queue.remove(r)
        if len(kept) < len(ids):
            log.warning("lease renewal: %d of %d rows were taken over by another process", len(ids) - len(kept), len(ids))

    # --- one row ------------------------------------------------------------------------------

    async def _deliver(self, row: _Row, run: _Run) -> None:
        if self._monotonic() - run.cap_checked >= self.cap_refresh_seconds:
            run.cap_checked = self._monotonic()  # one worker refreshes, the others go on
            await self._refresh_cap(run)
        if self.clock() + self.renew_margin >= row.until:
            async with run.renewing:
                if row.id in run.held and self.clock() + self.renew_margin >= row.until:
                    await self._renew(run)
            if row.id not in run.held:
                return
        payload = row.payload
        template = payload.get("template") if isinstance(payload.get("template"), dict) else None
        template_id = self.templates.get(template.get("kind", "")) if template else None
        now = self.clock()
        cs_open = row.interaction is not None and now - row.interaction < CS_WINDOW

        if not template_id and not cs_open:
            await self._finish(row, run, self._waiting(row, "outside the 48-hour window"))
            return
        if run.cap_left <= 0:
            run.stats.capped = True
            return  # stays held: released to pending at the end of the run
        run.cap_left -= 1
        try:
            outcome = None
            if template_id:
                outcome = await self._send_template(row, run, template_id, template)
                if outcome is None and not cs_open:  # invalid template id, and no window
                    outcome = self._waiting(row, "40037 invalid template id; outside the 48-hour window")
            if outcome is None:
                outcome = await self._send_custom(row, run)
        except asyncio.CancelledError:
            run.cap_left += 1
            raise
        except Exception as e:  # a bug or a surprise from the client: try again later, keep going
            log.exception("outbox row %d: unexpected error while sending", row.id)
            outcome = self._retry(row, f"unexpected {type(e).__name__}")
        if outcome.status != "sent":
            run.cap_left += 1
        await self._finish(row, run, outcome)

    async def _call(self, run: _Run, send: Callable[[], Awaitable[Any]]) -> Any:
        """One API call, paced by the token bucket."""
        await self.bucket.acquire()
        run.stats.calls += 1
        return await send()

    async def _send_template(self, row: _Row, run: _Run, template_id: str, template: dict[str, Any]) -> _Outcome | None:
        """The outcome, or None to fall back to a customer-service message (40037)."""
        data = {str(k): fit_template_value(v) for k, v in (template.get("data") or {}).items()}
        url = row.payload.get("url") or None
        try:
            msgid = await self._call(run, lambda: self.client.send_template(
                row.openid, template_id, data, url=url, client_msg_id=row.client_msg_id))
        except WeChatAPIError as e:
            if e.errcode == INVALID_TEMPLATE:
                metrics.DELIVERY_ERRORS.labels(str(e.errcode)).inc()
                if template_id not in self._bad_templates:  # once, not once per row of a big notice
                    self._bad_templates.add(template_id)
                    log.error("template id %r for %s refused (40037): check TEMPLATE_%s; falling back to "
                              "customer-service text (first row %d)", template_id, template.get("kind"),
                              str(template.get("kind", "")).upper(), row.id)
                return None
            return self._failure(row, e)
        return _Outcome(row.id, "sent", due_at=row.due_at, sent_at=self.clock(), channel=CHANNEL_TEMPLATE,
                        wechat_msgid=str(msgid))

    async def _send_custom(self, row: _Row, run: _Run) -> _Outcome:
        payload = row.payload
        items: list[tuple[str, str]] = [("text", p) for p in split_text(payload.get("text") or "")]
        if payload.get("image"):
            items.append(("image", str(payload["image"])))
        if not items:
            return _Outcome(row.id, "failed", due_at=row.due_at, last_error="nothing to send (no text, no template)")
        done = int(payload.get("cs_done", 0))
        unconfirmed: str | None = None
        for i in range(done, len(items)):
            what, value = items[i]
            try:
                if what == "text":
                    await self._call(run, lambda: self.client.send_text(row.openid, value))
                else:
                    await self._call(run, lambda: self.client.send_image(row.openid, value))
            except WeChatAPIError as e:
                if isinstance(e, WeChatNetworkError) and e.maybe_delivered and row.kind not in self.resend_maybe_delivered:
                    unconfirmed = _reason(e)  # at most once: taken as delivered, never sent twice
                    continue
                outcome = self._failure(row, e)
                if i > done:
                    outcome.payload = {**payload, "cs_done": i}  # what went out is not sent again
                return outcome
        return _Outcome(row.id, "sent", due_at=row.due_at, sent_at=self.clock(), channel=CHANNEL_CUSTOM,
                        delivery_status=UNCONFIRMED if unconfirmed else None, last_error=unconfirmed)

    def _failure(self, row: _Row, e: WeChatAPIError) -> _Outcome:
        metrics.DELIVERY_ERRORS.labels(str(e.errcode)).inc()
        reason = _reason(e)
        if isinstance(e, WeChatBusy):  # busy, frequency limits, timeouts, network errors
            return self._retry(row, reason)
        if e.errcode in WAIT_ERRCODES:
            return self._waiting(row, reason)
        if isinstance(e, (MediaExpired, WeChatArgumentError)) or e.errcode in PERMANENT_ERRCODES:
            return _Outcome(row.id, "failed", due_at=row.due_at, last_error=reason)
        # Token trouble, anything unknown: try again later.
        return self._retry(row, reason)

    def _retry(self, row: _Row, reason: str) -> _Outcome:
        if row.attempts >= self.max_attempts:
            return _Outcome(row.id, "failed", due_at=row.due_at,
                            last_error=f"gave up after {row.attempts} attempts: {reason}"[:255])
        return _Outcome(row.id, "pending", due_at=self.clock() + dt.timedelta(seconds=self.backoff(row.attempts)),
                        last_error=reason[:255])

    def _waiting(self, row: _Row, reason: str) -> _Outcome:
        now = self.clock()
        return _Outcome(row.id, "waiting", due_at=now, last_error=reason[:255],
                        since=row.interaction or (now - CS_WINDOW))

    def backoff(self, attempt: int) -> float:
        """Seconds before try `attempt + 1`: exponential, capped, half of it random."""
        cap = min(self.backoff_max, self.backoff_base * 2 ** max(0, attempt - 1))
        return cap / 2 + self._random.uniform(0, cap / 2)

    async def _finish(self, row: _Row, run: _Run, outcome: _Outcome) -> None:
        run.held.pop(row.id, None)
        stats = run.stats
        if outcome.status == "sent":
            stats.sent += 1
        elif outcome.status == "failed":
            stats.failed += 1
            log.warning("outbox row %d (%s) failed: %s", row.id, row.kind, outcome.last_error)
        elif outcome.status == "waiting":
            stats.waiting += 1
        else:
            stats.retried += 1
        if not await self._writer.submit(outcome):
            stats.lost_claims += 1
            log.warning("outbox row %d: outcome %s not written, another process holds the row now", row.id, outcome.status)

    async def _write_outcomes(self, outcomes: list[_Outcome]) -> list[bool]:
        """One transaction for a batch of outcomes; True where the row was still ours."""
        finish = [(i, o) for i, o in enumerate(outcomes) if o.status != "waiting"]
        wait = [(i, o) for i, o in enumerate(outcomes) if o.status == "waiting"]
        progress = [o for o in outcomes if o.payload is not None]
        applied = [True] * len(outcomes)
        async with self.db.engine.begin() as conn:
            if progress:
                await conn.execute(self._sql_progress, [{"b_id": o.row_id, "b_payload": o.payload} for o in progress])
            if finish:
                params = [{"b_id": o.row_id, "b_owner": self.owner, "b_status": o.status, "b_due": o.due_at,
                           "b_error": o.last_error, "b_sent": o.sent_at, "b_channel": o.channel,
                           "b_msgid": o.wechat_msgid, "b_ds": o.delivery_status} for _, o in finish]
                if len(params) == 1:  # a lone row: its own rowcount tells whether it was ours
                    applied[finish[0][0]] = (await conn.execute(self._sql_finish, params[0])).rowcount == 1
                else:  # executemany: only the total is known
                    result = await conn.execute(self._sql_finish, params)
                    if result.rowcount is not None and 0 <= result.rowcount < len(params):
                        log.warning("%d of %d outcomes were for rows no longer ours", len(params) - result.rowcount, len(params))
            for i, o in wait:  # rare: one statement each, to know which ones applied
                result = await conn.execute(self._sql_wait, {"b_id": o.row_id, "b_owner": self.owner, "b_due": o.due_at,
                                                         "b_error": o.last_error, "b_since": o.since})
                applied[i] = result.rowcount == 1
        return applied


# --- python -m bot.delivery -------------------------------------------------------------------


async def pending_rows(db: Database) -> tuple[int, dt.datetime | None]:
    """How many rows are pending or claimed, and when the next pending one is due."""
    async with db.engine.connect() as conn:
        n = (await conn.execute(select(func.count()).select_from(_T).where(_T.c.status.in_(("pending", "claimed"))))).scalar_one()
        nxt = (await conn.execute(select(func.min(func.coalesce(_T.c.claimed_until, _T.c.due_at)))
                                  .where(_T.c.status.in_(("pending", "claimed"))))).scalar_one()
    if isinstance(nxt, str):  # SQLite: an aggregate loses the column type
        nxt = dt.datetime.fromisoformat(nxt)
    if nxt is not None and nxt.tzinfo is None:
        nxt = nxt.replace(tzinfo=dt.timezone.utc)
    return n, nxt


async def run_worker(args: argparse.Namespace) -> DeliveryStats:
    import aiohttp

    from bot.config import Settings, load_settings
    from bot.token_store import DatabaseTokenStore
    from bot.wechat_client import WeChatClient

    settings: Settings = load_settings()
    db = Database(args.database_url or settings.database_url)
    templates = {kind: getattr(settings, f"template_{kind}") for kind in TEMPLATE_KINDS}
    for item in args.template or []:
        kind, _, template_id = item.partition("=")
        if kind not in TEMPLATE_KINDS:
            raise SystemExit(f"--template: kind must be one of {', '.join(TEMPLATE_KINDS)}, got {kind!r}")
        templates[kind] = template_id
    rate = args.rate or settings.push_rate_per_second
    concurrency = args.concurrency or max(4, min(64, math.ceil(rate / 5)))
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    total = DeliveryStats()
    async with aiohttp.ClientSession(connector=connector) as session:
        client = WeChatClient(
            session, api_base=args.api_base or settings.wechat_api_base, app_id=args.app_id or settings.wechat_app_id,
            app_secret=args.app_secret or settings.wechat_app_secret, token_store=DatabaseTokenStore(db),
            timeout=args.timeout or settings.api_timeout_seconds, max_retries=args.client_retries,
        )
        deliverer = Deliverer(
            db, client, templates=templates, rate_per_second=rate,
            daily_cap=args.daily_cap or settings.push_daily_cap,
            lease_seconds=args.lease or settings.push_lease_seconds,
            batch_size=args.batch_size, concurrency=concurrency, owner=args.owner,
        )
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal() -> None:
            stop.set()
            deliverer.request_stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        log.info("delivery worker %s: rate %.0f/s, cap %d/day, lease %.0fs, %d concurrent sends",
                 deliverer.owner, rate, deliverer.daily_cap, deliverer.lease.total_seconds(), deliverer.concurrency)
        try:
            while not stop.is_set():
                stats = await deliverer.run_once(max_seconds=args.run_seconds)
                total.add(stats)
                if stats.claimed:
                    continue
                left, next_due = await pending_rows(db)
                if not left and not args.forever:
                    break
                wait = 1.0
                if stats.capped:
                    wait = 60.0
                elif next_due is not None:
                    wait = min(max((next_due - deliverer.clock()).total_seconds(), 0.05), 1.0)
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                except asyncio.TimeoutError:
                    pass
        finally:
            await db.dispose()
    return total


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bot.delivery",
        description="Deliver the outbox until no row is pending or claimed (--forever: keep polling). "
                    "Settings default to the environment (DATABASE_URL, WECHAT_API_BASE, TEMPLATE_*, PUSH_*).",
    )
    p.add_argument("--database-url")
    p.add_argument("--api-base")
    p.add_argument("--app-id")
    p.add_argument("--app-secret")
    p.add_argument("--rate", type=float, help="sends per second (default PUSH_RATE_PER_SECOND)")
    p.add_argument("--daily-cap", type=int, help="rows sent per Beijing day (default PUSH_DAILY_CAP)")
    p.add_argument("--lease", type=float, help="claim lease in seconds (default PUSH_LEASE_SECONDS)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--concurrency", type=int, help="sends in flight (default from the rate)")
    p.add_argument("--template", action="append", metavar="KIND=ID",
                   help="template id per kind (review_result, exam_notice, score_release, business_reminder)")
    p.add_argument("--client-retries", type=int, default=0,
                   help="retries inside the API client (default 0: every call is paced by the rate; "
                        "the outbox retries with backoff)")
    p.add_argument("--timeout", type=float, help="API timeout in seconds (default API_TIMEOUT_SECONDS)")
    p.add_argument("--run-seconds", type=float, default=10.0, help="length of one run_once")
    p.add_argument("--owner", help="name written to claimed_by (default host:pid:random)")
    p.add_argument("--forever", action="store_true", help="keep polling when the outbox is empty")
    p.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bot.wechat_client").setLevel(logging.ERROR)  # one line per retried call is noise here
    started = time.monotonic()
    total = asyncio.run(run_worker(args))
    summary = total.as_dict()
    summary["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
