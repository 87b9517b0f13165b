"""One scheduler leader among processes, a persistent job store, and the jobs doing their work."""
from __future__ import annotations

import asyncio
import datetime as dt
import socket
import threading
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from sqlalchemy import func, select, text

from bot import jobs
from bot.app import DB, SCHEDULER, create_app
from bot.config import Settings, load_settings
from bot.scheduler import JOB_TABLE, Leadership, SchedulerOptions, ServiceScheduler, owner_id, sync_url
from emulator.app import start_emulator
from storage import models as m
from storage import outbox
from storage.db import Database
from tests.test_outbox import ZHAO, add_candidate, add_user, rows

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


class Clock:
    def __init__(self, t: dt.datetime = T0) -> None:
        self.t = t

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += dt.timedelta(seconds=seconds)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0, what: str = "condition") -> None:
    """Wait for `check()` to hold (a bound on waiting, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def two_engines(db_url):
    """Two Database objects on one database: two processes as far as the database can tell."""
    a, b = Database(db_url), Database(db_url)
    try:
        yield a, b
    finally:
        await a.dispose()
        await b.dispose()


# --- the lease -------------------------------------------------------------------------------------


def test_owner_ids_are_unique_and_fit_the_column() -> None:
    a, b = owner_id(), owner_id()
    assert a != b and len(a) <= 64 and a.split(":")[0] == socket.gethostname()[:len(a.split(":")[0])]


def test_job_store_urls_use_sync_drivers() -> None:
    assert sync_url("sqlite:///var/zikao.sqlite3") == "sqlite:///var/zikao.sqlite3"
    assert sync_url("sqlite+aiosqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert sync_url("postgresql://u:p@h:5432/d") == "postgresql+psycopg2://u:p@h:5432/d"
    assert sync_url("postgresql+asyncpg://u@h/d") == "postgresql+psycopg2://u@h/d"


async def test_only_one_leads_and_another_takes_over_when_the_lease_expires(two_engines) -> None:
    clock = Clock()
    a = Leadership(two_engines[0], owner="host-a:1:x", lease_seconds=15, clock=clock)
    b = Leadership(two_engines[1], owner="host-b:2:y", lease_seconds=15, clock=clock)
    assert await a.acquire() and a.leading
    assert not await b.acquire() and not b.leading
    clock.advance(5)
    assert await a.acquire() and not await b.acquire()  # renewed
    clock.advance(14)
    assert not await b.acquire()  # a's renewed lease runs until T0 + 20
    clock.advance(2)  # a died after its last renewal
    assert not a.leading
    assert await b.acquire() and b.leading
    assert not await a.acquire() and not a.leading  # back from the dead: b holds it now


async def test_a_released_lease_is_taken_at_once(two_engines) -> None:
    clock = Clock()
    a = Leadership(two_engines[0], owner="a", clock=clock)
    b = Leadership(two_engines[1], owner="b", clock=clock)
    assert await a.acquire() and not await b.acquire()
    await a.release()
    assert not a.leading and await b.acquire()


async def test_racing_for_an_expired_lease_exactly_one_wins(two_engines) -> None:
    clock = Clock()
    first = Leadership(two_engines[0], owner="first", lease_seconds=10, clock=clock)
    assert await first.acquire()
    racers = [Leadership(two_engines[i % 2], owner=f"racer-{i}", lease_seconds=10, clock=clock) for i in range(6)]
    for _ in range(3):
        clock.advance(11)  # whoever holds it has died
        won = await asyncio.gather(*(r.acquire() for r in racers))
        assert sum(won) == 1, won


async def test_a_leader_that_cannot_renew_steps_down_before_anyone_may_take_over(two_engines, monkeypatch) -> None:
    clock = Clock()
    a = Leadership(two_engines[0], owner="a", lease_seconds=15, clock=clock)
    b = Leadership(two_engines[1], owner="b", lease_seconds=15, clock=clock)
    assert await a.acquire()

    def unreachable():
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(two_engines[0], "session", unreachable)
    clock.advance(5)
    assert await a.acquire()  # still within its lease
    clock.advance(5.5)
    assert not await a.acquire() and not a.leading  # stepped down with 4.5 s of lease left
    assert not await b.acquire()  # ... during which nobody else leads either
    clock.advance(5)
    assert await b.acquire()


# --- the scheduler -----------------------------------------------------------------------------------


async def stored_jobs(db: Database) -> list[str]:
    async with db.session() as s:
        return sorted((await s.execute(text(f"SELECT id FROM {JOB_TABLE}"))).scalars())


def options(**kw) -> SchedulerOptions:
    return SchedulerOptions(**({"deliver": False, "grace_seconds": 1.0} | kw))


async def test_the_leader_runs_the_scheduler_with_jobs_in_the_database(two_engines, db_url) -> None:
    a_db, b_db = two_engines
    clock = Clock(dt.datetime.now(UTC))
    jobs.register("proc-a", jobs.Runtime(db=a_db, settings=Settings()))
    jobs.register("proc-b", jobs.Runtime(db=b_db, settings=Settings()))
    a = ServiceScheduler(a_db, db_url, "proc-a", options(), clock=clock)
    b = ServiceScheduler(b_db, db_url, "proc-b", options(), clock=clock)
    try:
        assert await a.tick() and a.leading and a.scheduler.running
        assert not await b.tick() and not b.leading
        wanted = sorted([jobs.FAN_OUT_NOTICES, jobs.WINDOW_REMINDERS, jobs.CONFIRMATION_REMINDERS, jobs.PURGE_DEDUPE,
                         jobs.CLOSE_UNPAID_ORDERS])
        assert await stored_jobs(a_db) == wanted
        assert await a.tick() and a.scheduler is not None  # renewing keeps the same scheduler
        await a.stop()
        assert not a.leading and await stored_jobs(a_db) == wanted  # persisted across leaders
        assert await b.tick() and b.leading
        assert await stored_jobs(b_db) == wanted  # replaced, not duplicated
        args = await asyncio.to_thread(lambda: {j.id: j.args for j in b.scheduler.get_jobs()})
        assert args == {j: ("proc-b",) for j in wanted}
    finally:
        await a.stop()
        await b.stop()
        jobs.unregister("proc-a")
        jobs.unregister("proc-b")


async def test_a_leader_that_loses_its_lease_stops_its_scheduler(two_engines, db_url) -> None:
    clock = Clock(dt.datetime.now(UTC))
    a = ServiceScheduler(two_engines[0], db_url, "proc-a", options(lease_seconds=15), clock=clock)
    b = ServiceScheduler(two_engines[1], db_url, "proc-b", options(lease_seconds=15), clock=clock)
    try:
        assert await a.tick()
        clock.advance(16)  # a was stalled past its lease; b takes over
        assert await b.tick() and b.leading
        assert not await a.tick() and not a.leading and a.scheduler is None
    finally:
        await a.stop()
        await b.stop()


async def test_job_store_io_never_runs_on_the_event_loop_thread(db: Database, db_url, monkeypatch) -> None:
    """On SQLite a sync job-store write on the loop could wait for a lock only the loop can free."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    threads: list[str] = []
    for name in ("start", "add_job", "update_job", "get_due_jobs", "get_next_run_time", "shutdown"):
        real = getattr(SQLAlchemyJobStore, name)

        def spy(self, *args, _real=real, **kwargs):
            threads.append(threading.current_thread().name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(SQLAlchemyJobStore, name, spy)
    jobs.register("proc-io", jobs.Runtime(db=db, settings=Settings()))
    sched = ServiceScheduler(db, db_url, "proc-io", options(notices_every=0.05))
    try:
        assert await sched.tick()

        async def several_passes() -> bool:
            return threads.count(threads[-1]) > 5 if threads else False

        await eventually(several_passes, what="scheduler passes")
    finally:
        await sched.stop()
        jobs.unregister("proc-io")
    loop_thread = threading.current_thread().name
    assert threads and loop_thread not in threads and all(t.startswith("jobstore") for t in threads), set(threads)


async def test_jobs_fan_out_due_notices_and_purge_old_dedupe_records(db: Database, db_url) -> None:
    cid = await add_candidate(db, ZHAO)
    await add_user(db, "o_1", cid)
    async with db.session() as s, s.begin():
        s.add(m.Notice(title="考试日程安排表", body="……", publish_at=dt.datetime.now(UTC) - dt.timedelta(minutes=1)))
        s.add(m.InboundMessage(key="o_1:1", openid="o_1", status="done", reply="",
                               received_at=dt.datetime.now(UTC) - dt.timedelta(days=3)))
        s.add(m.InboundMessage(key="o_1:2", openid="o_1", status="done", reply=""))

    class Deduper:  # the endpoint's deduper, as far as the purge job needs one
        async def purge(self, older_than: dt.timedelta) -> int:
            from bot.dedupe import Deduper as Real
            return await Real(db).purge(older_than)

    jobs.register("proc-jobs", jobs.Runtime(db=db, settings=Settings(), deduper=Deduper()))
    sched = ServiceScheduler(db, db_url, "proc-jobs", options(purge_every=0.2))
    try:
        assert await sched.tick()

        async def fanned_out() -> bool:
            async with db.session() as s:
                return (await s.scalar(select(m.Notice.fanned_out_at))) is not None

        async def purged() -> bool:
            async with db.session() as s:
                return list((await s.execute(select(m.InboundMessage.key))).scalars()) == ["o_1:2"]

        await eventually(fanned_out, what="fan-out of the due notice")
        await eventually(purged, what="purge of the old dedupe record")
        assert [r.openid for r in await rows(db)] == ["o_1"]
    finally:
        await sched.stop()
        jobs.unregister("proc-jobs")


# --- the service -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start(app: web.Application) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", free_port()).start()
    return runner


async def test_two_services_one_leads_and_the_other_takes_over_when_it_stops(db_url) -> None:
    settings = load_settings({"DATABASE_URL": db_url})
    fast = options(renew_seconds=0.1, lease_seconds=5)
    apps = [create_app(settings, scheduler=fast), create_app(settings, scheduler=fast)]
    runners = [await start(app) for app in apps]
    try:
        async def one_leads() -> bool:
            return sum(app[SCHEDULER].leading for app in apps) == 1

        await eventually(one_leads, what="a leader")
        leader = next(i for i, app in enumerate(apps) if app[SCHEDULER].leading)
        for _ in range(5):  # renewals keep the same leader
            await asyncio.sleep(0.1)
            assert await one_leads() and apps[leader][SCHEDULER].leading
        await runners[leader].cleanup()
        other = apps[1 - leader]

        async def other_leads() -> bool:
            return other[SCHEDULER].leading

        await eventually(other_leads, what="take-over by the other service")
    finally:
        for r in runners:
            await r.cleanup()


async def test_disabled_scheduler_never_leads(db_url) -> None:
    app = create_app(load_settings({"DATABASE_URL": db_url}), scheduler=SchedulerOptions(enabled=False))
    runner = await start(app)
    try:
        await asyncio.sleep(0.2)
        assert not app[SCHEDULER].leading
        async with app[DB].session() as s:
            assert await s.scalar(select(func.count()).select_from(m.Lease)) == 0
    finally:
        await runner.cleanup()


TOKEN, APP_ID, SECRET = "schedtoken", "wxsched000000000001", "sched-secret"


async def test_a_review_outcome_reaches_the_phone_as_a_template_and_its_report_comes_back(db_url) -> None:
    bot_port, emu_port = free_port(), free_port()
    emu, state = await start_emulator("127.0.0.1", emu_port, bot_url=f"http://127.0.0.1:{bot_port}/wechat",
                                      token=TOKEN, app_id=APP_ID, app_secret=SECRET, aes_key=None, mode="plain")
    settings = load_settings({
        "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID, "WECHAT_APP_SECRET": SECRET, "DATABASE_URL": db_url,
        "WECHAT_API_BASE": f"http://127.0.0.1:{emu_port}", "TEMPLATE_REVIEW_RESULT": "TM_REVIEW_RESULT",
        "TEMPLATE_EXAM_NOTICE": "TM_EXAM_NOTICE",
    })
    app = create_app(settings, scheduler=SchedulerOptions(deliver_every=0.2, notices_every=0.2, grace_seconds=1.0))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", bot_port).start()
    try:
        db = app[DB]
        openid = "o_sched_phone_0000000000001"
        state.set_subscribed(openid, True)
        cid = await add_candidate(db, ZHAO, "赵敏")
        await add_user(db, openid, cid)
        async with db.session() as s, s.begin():
            await outbox.review_outcome(s, candidate_id=cid, business="申请免考", approved=False,
                                        decided_at=dt.datetime(2026, 12, 1, 2, 30, tzinfo=UTC), application_ref="EX-9")

        async def reported() -> bool:
            got = await rows(db, kind="review_outcome")
            return bool(got) and got[0].status == "sent" and got[0].delivery_status == "success"

        await eventually(reported, what="delivery and its TEMPLATESENDJOBFINISH report")
        [sent] = [o for o in state.outbound if o["openid"] == openid and o["type"] == "template"]
        assert sent["template_id"] == "TM_REVIEW_RESULT"
        assert sent["data"] == {"thing1": "申请免考", "phrase2": "未通过", "time3": "2026年12月01日 10:30",
                                "thing4": "回复“免考”查看原因"}
    finally:
        await runner.cleanup()
        await emu.cleanup()
