"""The service's scheduler: one leader among all processes runs APScheduler with a persistent job store.

Leadership is a row in `leases` (name "scheduler"): every process tries to take or renew it every
few seconds with one atomic UPDATE (... WHERE owner = me OR expires_at < now), inserting it when
missing. The holder runs the scheduler; when it dies, its lease expires and another process takes
over within LEASE_SECONDS. A process that cannot renew steps down before its lease can expire.
Hosts are assumed to keep their clocks in sync (NTP): skew must stay well below the lease.

The job store is APScheduler's SQLAlchemyJobStore on a sync engine over the service's database
(the `apscheduler_jobs` table comes from the Alembic migrations). Its I/O runs on a worker thread,
never on the event loop: on SQLite a sync write waiting for the lock held by an async transaction
would block the very loop that has to commit that transaction.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Callable, Optional

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from sqlalchemy import create_engine, delete, event, or_, update
from sqlalchemy.engine import Engine, make_url

from bot import jobs
from storage.db import Database
from storage.models import Lease, utcnow

log = logging.getLogger("zikao.scheduler")

LEASE_NAME = "scheduler"
LEASE_SECONDS = 15.0
RENEW_SECONDS = 3.0
JOB_TABLE = "apscheduler_jobs"

Clock = Callable[[], dt.datetime]


def owner_id() -> str:
    """host:pid:random, at most 64 characters (the column's width)."""
    tail = f":{os.getpid()}:{uuid.uuid4().hex[:12]}"
    return socket.gethostname()[: 64 - len(tail)] + tail


# --- Leadership ----------------------------------------------------------------------------------


class Leadership:
    """A named lease in `leases`, taken and renewed by `acquire()`, given up by `release()`."""

    def __init__(self, db: Database, *, name: str = LEASE_NAME, owner: str | None = None,
                 lease_seconds: float = LEASE_SECONDS, clock: Clock = utcnow) -> None:
        self.db = db
        self.name = name
        self.owner = owner or owner_id()
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.clock = clock
        # Until when this process may act as leader without renewing: measured from the moment
        # before the renewing statement was sent, and a third of the lease short of its expiry,
        # so a leader that cannot renew stops its jobs before anyone else may start theirs.
        self._valid_until: dt.datetime | None = None

    @property
    def leading(self) -> bool:
        return self._valid_until is not None and self.clock() < self._valid_until

    async def acquire(self) -> bool:
        """Take the lease if it is free or expired, renew it if ours; True when we hold it now.

        A database error keeps a current lease until it runs out (then we are no longer leader).
        """
        now = self.clock()
        until = now + self.lease
        table = Lease.__table__
        try:
            async with self.db.session() as s, s.begin():
                res = await s.execute(
                    update(table)
                    .where(table.c.name == self.name, or_(table.c.owner == self.owner, table.c.expires_at < now))
                    .values(owner=self.owner, expires_at=until)
                )
                held = res.rowcount == 1
                if not held:
                    res = await s.execute(
                        self.db.insert(table).values(name=self.name, owner=self.owner, expires_at=until)
                        .on_conflict_do_nothing(index_elements=["name"])
                    )
                    held = res.rowcount == 1
        except Exception as exc:
            log.warning("could not renew the %s lease: %s", self.name, exc)
            return self.leading
        self._valid_until = now + self.lease * 2 / 3 if held else None
        return held

    async def release(self) -> None:
        """Give the lease up at once (on shutdown), so another process need not wait for expiry."""
        self._valid_until = None
        try:
            async with self.db.session() as s, s.begin():
                await s.execute(delete(Lease).where(Lease.name == self.name, Lease.owner == self.owner))
        except Exception as exc:
            log.warning("could not release the %s lease: %s", self.name, exc)


# --- APScheduler with its job store off the event loop ---------------------------------------------


class _LoopExecutor(AsyncIOExecutor):
    """The asyncio executor, callable from the job-store thread: submissions hop onto the loop."""

    _closed = False

    def _do_submit_job(self, job, run_times):
        self._eventloop.call_soon_threadsafe(self._submit_on_loop, job, run_times)

    def _submit_on_loop(self, job, run_times) -> None:
        if not self._closed:
            super()._do_submit_job(job, run_times)

    def shutdown(self, wait=True):
        # Running jobs are drained by JobScheduler.drain on the loop; here only refuse new ones.
        self._closed = True

    def running(self) -> set[asyncio.Future]:
        return set(getattr(self, "_pending_futures", ()))  # none before start


class JobScheduler(AsyncIOScheduler):
    """AsyncIOScheduler whose job-store calls (start, job lookups, updates, shutdown) run on a
    single worker thread; jobs still run as tasks on the event loop."""

    def __init__(self, *, loop: asyncio.AbstractEventLoop, **options) -> None:
        super().__init__(event_loop=loop, **options)
        self._io = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jobstore")
        self._pass: Optional[asyncio.Future] = None
        self._again = False
        self.executor = _LoopExecutor()
        self.add_executor(self.executor, "default")

    async def begin(self) -> None:
        await self._eventloop.run_in_executor(self._io, self.start)

    def wakeup(self):
        loop = self._eventloop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._stop_timer()
        if self.state == STATE_STOPPED:
            return
        if self._pass is not None:  # a pass is running: run another right after it
            self._again = True
            return
        self._pass = self._eventloop.run_in_executor(self._io, self._process_jobs)
        self._pass.add_done_callback(self._passed)

    def _passed(self, fut: asyncio.Future) -> None:
        self._pass = None
        if fut.cancelled() or self.state == STATE_STOPPED:
            return
        try:
            wait = fut.result()
        except Exception:
            log.exception("scheduler pass failed; retrying in %s s", self.jobstore_retry_interval)
            wait = self.jobstore_retry_interval
        if self._again:
            self._again, wait = False, 0
        self._start_timer(wait)

    async def halt(self) -> None:
        """Stop scheduling: no job starts after this returns (running ones go on)."""
        if self.state == STATE_STOPPED:
            self._io.shutdown(wait=False)
            return
        self._stop_timer()
        await self._eventloop.run_in_executor(self._io, BaseScheduler.shutdown, self, False)
        self._io.shutdown(wait=False)
        await asyncio.sleep(0)  # let submissions already on their way reach the (closed) executor

    async def drain(self, grace_seconds: float = 5.0) -> None:
        """Let running jobs finish for `grace_seconds`, then cancel them."""
        running = self.executor.running()
        if running:
            _done, late = await asyncio.wait(running, timeout=grace_seconds)
            for f in late:
                f.cancel()
            if late:
                await asyncio.wait(late, timeout=grace_seconds)

    async def stop(self, grace_seconds: float = 5.0) -> None:
        await self.halt()
        await self.drain(grace_seconds)


def sync_url(url: str) -> str:
    """The service's database URL for a sync driver: SQLite -> pysqlite, PostgreSQL -> psycopg2."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        u = u.set(drivername="sqlite")
    elif u.get_backend_name() == "postgresql":
        u = u.set(drivername="postgresql+psycopg2")
    return u.render_as_string(hide_password=False)


def job_store_engine(url: str) -> Engine:
    u = make_url(sync_url(url))
    if u.get_backend_name() == "sqlite":
        engine = create_engine(u, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(u, pool_size=1, max_overflow=1, pool_pre_ping=True)


class _QuietSkips(logging.Filter):
    """The delivery job is meant to overlap its trigger (a pass may run for 10 s every 2 s):
    APScheduler's "maximum number of running instances reached" warning is noise for it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "maximum number of running instances" in str(record.msg) and record.args:
            return getattr(record.args[0], "id", None) != jobs.DELIVER
        return True


logging.getLogger("apscheduler.scheduler").addFilter(_QuietSkips())


# --- The service's scheduler --------------------------------------------------------------------


@dataclass(frozen=True)
class SchedulerOptions:
    """How the service schedules; tests turn parts off or speed them up."""

    enabled: bool = True
    deliver: bool = True  # run the delivery job (needs bot.delivery)
    lease_seconds: float = LEASE_SECONDS
    renew_seconds: float = RENEW_SECONDS
    deliver_every: float = 2.0
    notices_every: float = 30.0
    reminders_every: float = 300.0
    purge_every: float = 60.0  # reply texts are kept minutes (DEDUPE_RETENTION_MINUTES)
    orders_every: float = 300.0  # closing unpaid orders after their payment period
    grace_seconds: float = 5.0


class ServiceScheduler:
    """Leadership plus, while leading, the APScheduler that runs `bot.jobs` for `runtime_key`."""

    def __init__(self, db: Database, database_url: str, runtime_key: str,
                 options: SchedulerOptions = SchedulerOptions(), *, clock: Clock = utcnow) -> None:
        self.db = db
        self.database_url = database_url
        self.runtime_key = runtime_key
        self.options = options
        self.leadership = Leadership(db, owner=runtime_key, lease_seconds=options.lease_seconds, clock=clock)
        self.scheduler: Optional[JobScheduler] = None
        self._task: Optional[asyncio.Task] = None
        self._competing = False  # has tried for the lease: stop() gives it up

    @property
    def leading(self) -> bool:
        return self.scheduler is not None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"leadership {self.runtime_key}")

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("leadership round failed")
            await asyncio.sleep(self.options.renew_seconds)

    async def tick(self) -> bool:
        """One round: take or renew the lease, start or stop the scheduler to match."""
        self._competing = True
        held = await self.leadership.acquire()
        if held and self.scheduler is None:
            log.info("%s leads: starting the scheduler", self.runtime_key)
            await self._start_scheduler()
        elif not held and self.scheduler is not None:
            log.warning("%s lost the scheduler lease: stopping the scheduler", self.runtime_key)
            await self._stop_scheduler()
        return held

    async def stop(self) -> None:
        """Stop the scheduler (if leading) and give the lease up, so another process leads at once."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self._stop_scheduler()
        if self._competing:
            self._competing = False
            await self.leadership.release()

    def _jobs(self) -> list[tuple[str, str, float, bool]]:
        """(id, function, interval seconds, run at once on becoming leader)."""
        o = self.options
        out = [
            (jobs.FAN_OUT_NOTICES, "bot.jobs:fan_out_notices", o.notices_every, True),
            (jobs.WINDOW_REMINDERS, "bot.jobs:window_reminders", o.reminders_every, True),
            (jobs.CONFIRMATION_REMINDERS, "bot.jobs:confirmation_reminders", o.reminders_every, True),
            (jobs.PURGE_DEDUPE, "bot.jobs:purge_dedupe", o.purge_every, False),
            (jobs.CLOSE_UNPAID_ORDERS, "bot.jobs:close_unpaid_orders", o.orders_every, True),
        ]
        if o.deliver:
            out.insert(0, (jobs.DELIVER, "bot.jobs:deliver_outbox", o.deliver_every, True))
        return out

    async def _start_scheduler(self) -> None:
        sched = JobScheduler(
            loop=asyncio.get_running_loop(), timezone=dt.timezone.utc,
            jobstores={"default": SQLAlchemyJobStore(engine=job_store_engine(self.database_url), tablename=JOB_TABLE)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        )
        now = dt.datetime.now(dt.timezone.utc)
        wanted = self._jobs()
        for job_id, func, every, at_once in wanted:
            sched.add_job(func, "interval", seconds=every, id=job_id, name=job_id, args=[self.runtime_key],
                          replace_existing=True, next_run_time=now if at_once else now + dt.timedelta(seconds=every))
        try:
            await sched.begin()
            # Jobs an older version (or a leader with other options) stored and this one does not run.
            ids = {w[0] for w in wanted}
            stale = await asyncio.get_running_loop().run_in_executor(
                sched._io, lambda: [j.id for j in sched.get_jobs() if j.id not in ids])
            for job_id in stale:
                await asyncio.get_running_loop().run_in_executor(sched._io, sched.remove_job, job_id)
        except BaseException:
            await sched.stop(0)
            raise
        self.scheduler = sched

    async def _stop_scheduler(self) -> None:
        sched, self.scheduler = self.scheduler, None
        if sched is None:
            return
        await sched.halt()
        jobs.stopping(self.runtime_key)  # a delivery pass in progress ends soon, releasing its claims
        await sched.drain(self.options.grace_seconds)
