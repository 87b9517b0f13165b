"""Prometheus metrics (prometheus-client) and the health check.

Counters and histograms are process-wide and cheap: call sites add one line
(`metrics.MESSAGES.labels(kind).inc()`). What lives in the database (the outbox by state, who
holds the scheduler lease) is read when /metrics is scraped, so it is the same whichever process
answers.

Several service processes on one port (SO_REUSEPORT, deploy/) answer scrapes in turn. Set
PROMETHEUS_MULTIPROC_DIR to one empty directory shared by them (the systemd unit does): each
process then writes its values there and every scrape reports the sum over all processes
(prometheus-client's multiprocess mode). Without it a scrape shows the answering process's own.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
from typing import Any, Iterable, Optional

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from storage.db import Database
from storage.models import Lease, Outbox

MESSAGES = Counter("zikao_messages", "Inbound WeChat messages handled (first attempts), by kind", ["kind"])
REPLY_SECONDS = Histogram(
    "zikao_reply_seconds", "Time from receiving a WeChat POST to answering it",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 4.5, 5.0, 10.0),
)
DEDUPE_HITS = Counter("zikao_dedupe_hits", "WeChat retries answered from the first attempt (or still running)")
LATE_REPLIES = Counter(
    "zikao_late_replies", "Replies that missed the reply budget, sent later as customer-service messages; "
    "outcome=sent, or queued when WeChat refused and the reply waits in the outbox", ["outcome"])
DELIVERY_ERRORS = Counter("zikao_delivery_errors", "Failed WeChat sends of outbox rows, by errcode", ["errcode"])
FAQ_OUTCOMES = Counter("zikao_faq_outcomes", "Free-text consultations by outcome (answer, suggest, none)", ["outcome"])
APOLOGIES = Counter("zikao_apologies", "Unexpected errors answered with an apology and a reference code")

HEALTH_TIMEOUT_SECONDS = 2.0


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


class _Snapshot(Collector):
    """Values read from the database for one scrape."""

    def __init__(self, outbox: dict[str, int], leader: Optional[str], lease_left: float, ok: bool) -> None:
        self.outbox, self.leader, self.lease_left, self.ok = outbox, leader, lease_left, ok

    def collect(self) -> Iterable[Any]:
        up = GaugeMetricFamily("zikao_database_up", "1 when the scrape could read the database")
        up.add_metric([], 1.0 if self.ok else 0.0)
        yield up
        if not self.ok:
            return
        depth = GaugeMetricFamily("zikao_outbox_rows", "Outbox rows by status", labels=["status"])
        for status in ("pending", "claimed", "waiting", "sent", "failed"):
            depth.add_metric([status], float(self.outbox.get(status, 0)))
        yield depth
        leader = GaugeMetricFamily("zikao_scheduler_leader", "1 for the process (host:pid) holding the scheduler lease",
                                   labels=["owner"])
        if self.leader:
            leader.add_metric([self.leader], 1.0)
        yield leader
        left = GaugeMetricFamily("zikao_scheduler_lease_seconds_left", "Seconds until the scheduler lease expires "
                                 "unless renewed (negative: expired, nobody leads)")
        left.add_metric([], self.lease_left)
        yield left


async def _snapshot(db: Database) -> _Snapshot:
    from bot.scheduler import LEASE_NAME

    async def read() -> _Snapshot:
        async with db.session() as s:
            rows = (await s.execute(select(Outbox.status, func.count()).group_by(Outbox.status))).all()
            lease = (await s.execute(select(Lease.owner, Lease.expires_at).where(Lease.name == LEASE_NAME))).first()
        now = dt.datetime.now(dt.timezone.utc)
        left = (lease.expires_at - now).total_seconds() if lease else -1.0
        return _Snapshot({r[0]: r[1] for r in rows}, lease.owner if lease and left > 0 else None, left, True)

    try:
        return await asyncio.wait_for(read(), HEALTH_TIMEOUT_SECONDS)
    except Exception:
        return _Snapshot({}, None, -1.0, False)


async def render(db: Database) -> tuple[bytes, str]:
    """The body and content type of one scrape."""
    snapshot = await _snapshot(db)
    scrape = CollectorRegistry()
    base = _registry()
    scrape.register(_Forward(base))
    scrape.register(snapshot)
    return generate_latest(scrape), CONTENT_TYPE_LATEST


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Any]:
        return self.registry.collect()


# --- health --------------------------------------------------------------------------------------


async def check_health(db: Database, redis: Any = None, timeout: float = HEALTH_TIMEOUT_SECONDS) -> dict[str, str]:
    """{"database": "ok" | reason, "redis": ...}: each dependency answered a trivial query in time."""
    async def database() -> None:
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    checks = {"database": database}
    if redis is not None:
        checks["redis"] = redis.ping
    out: dict[str, str] = {}
    for name, probe in checks.items():
        try:
            await asyncio.wait_for(probe(), timeout)
            out[name] = "ok"
        except asyncio.TimeoutError:
            out[name] = f"no answer within {timeout:g} s"
        except Exception as e:  # the class only: a driver's text may hold a host or a user name
            out[name] = f"error ({type(e).__name__})"
    return out


class CountedFaq:
    """A FaqService whose `match` counts its outcome; everything else is passed through."""

    def __init__(self, service: Any) -> None:
        self._service = service

    def match(self, *args: Any, **kwargs: Any) -> Any:
        m = self._service.match(*args, **kwargs)
        FAQ_OUTCOMES.labels(str(m.kind)).inc()
        return m

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)
