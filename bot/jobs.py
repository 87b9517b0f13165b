"""The scheduled jobs, and the registry through which they find the running service's resources.

APScheduler's persistent job store pickles each job with a textual reference to its function
("bot.jobs:deliver_outbox") and its arguments, so jobs are module-level functions whose only
argument is the key of a `Runtime` registered by the app at start-up. Two apps in one process
(tests) register under different keys; the leader's jobs carry its own key.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Optional

from bot.config import Settings
from bot.freshness import purge_nonces
from storage import outbox
from storage.db import Database
from storage.models import utcnow

log = logging.getLogger("zikao.jobs")

# Fixed ids: a restarted or new leader replaces these jobs instead of adding copies.
DELIVER = "deliver_outbox"
FAN_OUT_NOTICES = "fan_out_notices"
WINDOW_REMINDERS = "window_reminders"
PURGE_DEDUPE = "purge_dedupe"
CONFIRMATION_REMINDERS = "confirmation_reminders"
CLOSE_UNPAID_ORDERS = "close_unpaid_orders"

# How long one delivery pass may run before giving the event loop and the scheduler a turn.
DELIVER_SLICE_SECONDS = 10.0


@dataclass
class Runtime:
    """What the jobs of one running service use."""

    db: Database
    settings: Settings
    deduper: Any = None  # bot.dedupe.Deduper
    deliverer: Any = None  # bot.delivery.Deliverer; None: this service does not deliver
    pay: Any = None  # bot.pay.PayService; None: WeChat Pay not configured


_RUNTIMES: dict[str, Runtime] = {}


def register(key: str, runtime: Runtime) -> None:
    _RUNTIMES[key] = runtime


def unregister(key: str) -> None:
    _RUNTIMES.pop(key, None)


def runtime(key: str) -> Optional[Runtime]:
    rt = _RUNTIMES.get(key)
    if rt is None:
        # A job left by another process's scheduler: the next leader replaces it with its own.
        log.warning("no runtime %r registered in this process; job skipped", key)
    return rt


def stopping(key: str) -> None:
    """The scheduler is stopping: ask a running delivery pass to end soon (claims are released)."""
    rt = _RUNTIMES.get(key)
    if rt is not None and rt.deliverer is not None:
        rt.deliverer.request_stop()


async def deliver_outbox(key: str) -> Any:
    """Send due outbox rows (bot.delivery does the work, within rate and daily limits)."""
    rt = runtime(key)
    if rt is None or rt.deliverer is None:
        return None
    return await rt.deliverer.run_once(max_seconds=DELIVER_SLICE_SECONDS)


async def fan_out_notices(key: str) -> dict[int, int]:
    """Fan out notices whose publish time has come."""
    rt = runtime(key)
    if rt is None:
        return {}
    return await outbox.fan_out_due_notices(rt.db, utcnow())


async def window_reminders(key: str) -> Optional[outbox.ReminderRun]:
    """Announce business windows that opened; remind draft holders a day before one closes."""
    rt = runtime(key)
    if rt is None:
        return None
    return await outbox.window_reminders(rt.db, utcnow())


async def confirmation_reminders(key: str) -> dict[int, int]:
    """Remind candidates of their 外省转入 现场确认 the day before (storage.transfers)."""
    from storage import transfers

    rt = runtime(key)
    if rt is None:
        return {}
    return await transfers.confirmation_reminders(rt.db, utcnow())


async def purge_dedupe(key: str) -> int:
    """Drop inbound dedupe records (with their reply texts) older than DEDUPE_RETENTION_MINUTES,
    and the nonces of requests whose timestamps have left the freshness window."""
    rt = runtime(key)
    if rt is None or rt.deduper is None:
        return 0
    purged = await rt.deduper.purge(dt.timedelta(minutes=rt.settings.dedupe_retention_minutes))
    nonces = await purge_nonces(rt.db, rt.settings.wechat_max_age_seconds)
    if purged or nonces:
        log.info("purged %d dedupe records and %d nonces", purged, nonces)
    return purged


async def close_unpaid_orders(key: str) -> int:
    """Close unpaid 毕业审定费 orders whose payment period ended (at WeChat Pay, then here)."""
    rt = runtime(key)
    if rt is None or rt.pay is None:
        return 0
    return await rt.pay.close_unpaid(utcnow())
