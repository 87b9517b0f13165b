"""Scale-out under a crash: N service processes on one port, one of them SIGKILLed under load.

    python -m bench.scaleout                                  # 3 processes, 200 users x 10 messages, 1,000 pushes
    python -m bench.scaleout --users 40 --messages 6 --pushes 150   # the size tests/test_scaleout.py runs

What it does (PostgreSQL and Redis required: --database-url names the server, a fresh database
is created on it and dropped afterwards):
1. the WeChat emulator's API in this process, with a record of every message delivered to
   every openid; --pushes subscribed users with one exam-notice outbox row each (template
   message, client_msg_id per row);
2. --processes `zikao-bot serve --reuse-port` processes on one port (SO_REUSEPORT), sharing the
   database, Redis (access token) and PROMETHEUS_MULTIPROC_DIR; they elect a scheduler leader
   that delivers the pushes at PUSH_RATE_PER_SECOND;
3. --users users each sending --messages "帮助" one after the other, as WeChat posts them
   (signed, 5 s timeout, three attempts, a broken connection retried after the timeout);
4. once a third of the pushes and of the messages are through, the leader is SIGKILLed;
5. at the end, checks and prints: every message answered exactly once (its passive reply or,
   when it missed the budget, one customer-service message), each user's messages claimed in
   order, the new leader's takeover time against the dead one's lease, every push delivered
   exactly once, and the figures (messages/s, latency percentiles, retries, takeover seconds).

The exit status is 1 when a check fails. The figures are for reading, never asserted by a test;
tests/test_scaleout.py runs the same harness at a small size and asserts the checks.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "scaleouttoken"
APP_SECRET = "scaleout-secret"
TEMPLATE_ID = "TM_EXAM_NOTICE"
PROCESSING = "正在处理，请稍候"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for(what: str, check: Callable[[], Awaitable[Any]], seconds: float, every: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {seconds:g} s waiting for {what}")
        await asyncio.sleep(every)


@dataclass
class Result:
    """What the run observed; `problems()` lists what is wrong."""

    processes: int = 0
    users: int = 0
    messages_per_user: int = 0
    pushes: int = 0
    answers: dict[str, list[str]] = field(default_factory=dict)  # openid -> passive reply kinds in order
    late: Counter = field(default_factory=Counter)  # openid -> customer-service answers received
    lost: list[tuple[str, int]] = field(default_factory=list)  # (openid, message no.) with no answer at all
    broken: set[tuple[str, int]] = field(default_factory=set)  # messages that met a broken connection (the kill)
    out_of_order: list[str] = field(default_factory=list)
    claims: Counter = field(default_factory=Counter)  # inbound key -> rows (at most 1)
    push_deliveries: Counter = field(default_factory=Counter)  # push openid -> deliveries
    push_rows: Counter = field(default_factory=Counter)  # outbox status -> rows at the end
    killed_pid: int = 0
    old_lease_expiry: dt.datetime | None = None
    new_leader_since: dt.datetime | None = None
    new_leader_pid: int = 0
    survivor_pids: list[int] = field(default_factory=list)
    lease_seconds: float = 0.0
    renew_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    attempts: Counter = field(default_factory=Counter)
    elapsed: float = 0.0
    messages_counted: float = 0.0  # zikao_messages_total over all processes (the dead one included)
    at_kill: tuple[int, int] = (0, 0)  # messages answered, pushes delivered when the leader was killed

    @property
    def sent_messages(self) -> int:
        return self.users * self.messages_per_user

    @property
    def takeover_seconds(self) -> float | None:
        if self.old_lease_expiry is None or self.new_leader_since is None:
            return None
        return (self.new_leader_since - self.old_lease_expiry).total_seconds()

    def problems(self, takeover_margin: float, *, in_flight_may_be_lost: bool = False) -> list[str]:
        """What went wrong. `in_flight_may_be_lost`: a message the killed process had claimed may go
        unanswered (only where claims cannot be taken over); nothing else may."""
        out = []
        for openid, kinds in self.answers.items():
            got = kinds.count("help") + self.late[openid]
            excused = sum(1 for o, _ in self.lost if o == openid) if in_flight_may_be_lost else 0
            if got > self.messages_per_user or got + excused < self.messages_per_user:
                out.append(f"{openid}: {got} answers to {self.messages_per_user} messages ({kinds}, late {self.late[openid]})")
        lost = [m for m in self.lost if not (in_flight_may_be_lost and m in self.broken)]
        if lost:
            out.append(f"messages with no answer at all: {lost[:5]}")
        if self.out_of_order:
            out.append(f"messages claimed out of order: {self.out_of_order[:5]}")
        # One row per message at most. A row may be missing: on the warm path (docs/delivery.md) the
        # row of an answered query is written behind, and the killed process takes its last ~0.2 s
        # of them along; each of those messages was still answered once (checked above).
        if len(self.claims) > self.sent_messages or any(n != 1 for n in self.claims.values()):
            out.append(f"{len(self.claims)} dedupe rows for {self.sent_messages} messages")
        twice = {o: n for o, n in self.push_deliveries.items() if n != 1}
        if twice or len(self.push_deliveries) != self.pushes:
            out.append(f"pushes: {len(self.push_deliveries)} of {self.pushes} delivered; not once: {list(twice.items())[:5]}")
        if self.push_rows.get("sent", 0) != self.pushes:
            out.append(f"outbox at the end: {dict(self.push_rows)}")
        if self.new_leader_pid not in self.survivor_pids:
            out.append(f"no survivor took the scheduler over (leader pid {self.new_leader_pid})")
        t = self.takeover_seconds
        if t is None or t < -0.5 or t > self.renew_seconds + takeover_margin:
            out.append(f"leadership moved {t} s after the dead leader's lease expired "
                       f"(allowed: 0 .. {self.renew_seconds + takeover_margin:g})")
        return out

    def figures(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else 0.0

        return {
            "processes": self.processes, "messages": self.sent_messages, "pushes": self.pushes,
            "elapsed_s": round(self.elapsed, 1),
            "messages_per_s": round(self.sent_messages / self.elapsed, 1) if self.elapsed else 0,
            "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
            "attempts": dict(self.attempts),
            "late_answers": sum(self.late.values()), "unanswered": len(self.lost),
            "takeover_s_after_lease_expiry": round(self.takeover_seconds or -1, 2),
            "answered_and_pushed_at_kill": list(self.at_kill), "killed_pid": self.killed_pid, "new_leader_pid": self.new_leader_pid,
            "outbox": dict(self.push_rows), "messages_counted_by_metrics": self.messages_counted,
        }


class Cluster:
    """The service processes on one port, with their logs in `log_dir`."""

    def __init__(self, env: dict[str, str], port: int, log_dir: Path, count: int) -> None:
        self.env, self.port, self.log_dir, self.count = env, port, log_dir, count
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        for i in range(self.count):
            log = open(self.log_dir / f"bot-{i}.log", "wb")
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "serve", "--reuse-port"], env=self.env, cwd=ROOT,
                stdout=log, stderr=subprocess.STDOUT))
            log.close()

    def ready(self) -> bool:
        for i, p in enumerate(self.procs):
            if p.poll() is not None:
                raise AssertionError(f"bot process {i} exited with {p.returncode}:\n{self.log(i)[-3000:]}")
        return all("zikao-bot ready" in self.log(i) for i in range(len(self.procs)))

    def log(self, i: int) -> str:
        return (self.log_dir / f"bot-{i}.log").read_text(errors="replace")

    def by_pid(self, pid: int) -> subprocess.Popen | None:
        return next((p for p in self.procs if p.pid == pid), None)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def run(database_url: str, redis_url: str, *, processes: int = 3, users: int = 40, messages: int = 6,
              pushes: int = 150, push_rate: float = 20.0, kill_at: float = 0.33, work_dir: Path,
              say: Callable[[str], None] = lambda s: None, wait_seconds: float = 180.0) -> Result:
    """One run on an empty, migrated PostgreSQL database; returns what was observed."""
    import aiohttp
    from aiohttp import web
    from sqlalchemy import func, select

    from bot.scheduler import LEASE_NAME, LEASE_SECONDS, RENEW_SECONDS
    from dialogs import welcome
    from emulator.api import EmulatorState, add_api_routes
    from emulator.server import WeChatServer
    from storage import outbox as ob
    from storage.db import Database
    from storage.models import InboundMessage, Lease, Outbox, utcnow

    res = Result(processes=processes, users=users, messages_per_user=messages, pushes=pushes,
                 lease_seconds=LEASE_SECONDS, renew_seconds=RENEW_SECONDS)
    app_id = "wx5ca1e" + secrets.token_hex(6)  # own Redis keys: other runs may share the server
    # Openids of this run only: claims and nonces in Redis outlive a run by up to a few minutes,
    # and a message key (openid + MsgId) seen there is a WeChat retry, not a new message.
    run_tag = secrets.token_hex(3)
    msg_users = [f"o_so_user_{run_tag}_{i:05d}" for i in range(users)]
    push_users = [f"o_so_push_{i:05d}" for i in range(pushes)]

    # 1. WeChat's API, counting every delivered message.
    state = EmulatorState(app_id, APP_SECRET, template_daily_quota=10 * (pushes + 1000))
    state.max_records = 200
    for o in push_users:
        state.set_subscribed(o, True)
    delivered: list[dict[str, Any]] = []
    queue = state.listen()

    async def drain() -> None:
        while True:
            delivered.append(await queue.get())

    drain_task = asyncio.create_task(drain())
    emu_app = web.Application()
    add_api_routes(emu_app, state)
    emu_runner = web.AppRunner(emu_app, access_log=None)
    await emu_runner.setup()
    emu_port = free_port()
    await web.TCPSite(emu_runner, "127.0.0.1", emu_port).start()

    db = Database(database_url)

    async def queue_pushes() -> None:
        now = utcnow()
        async with db.session() as s, s.begin():
            for i, o in enumerate(push_users):
                text, data = f"【站内消息】扩容演练 {i}", {"thing1": f"扩容演练 {i}", "time2": ob.shanghai_time(now),
                                                      "thing3": "回复“站内消息”查看全文"}
                s.add(Outbox(openid=o, kind="notice", payload=ob.payload(text, "exam_notice", data),
                             client_msg_id=f"scaleout:{i}:{o}", status="pending", priority=5, due_at=now))

    # 2. The service processes.
    port = free_port()
    metrics_dir = work_dir / "metrics"
    metrics_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "TEMPLATE_", "PUSH_", "ZIKAO_"))}
    env.update({
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, "HOST": "127.0.0.1", "PORT": str(port),
        "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": app_id, "WECHAT_APP_SECRET": APP_SECRET,
        "WECHAT_API_BASE": f"http://127.0.0.1:{emu_port}", "TEMPLATE_EXAM_NOTICE": TEMPLATE_ID,
        "PUSH_RATE_PER_SECOND": str(push_rate), "PUSH_LEASE_SECONDS": "10", "LOG_FORMAT": "json",
        "MEDIA_DIR": str(work_dir / "media"), "FAQ_CACHE_DIR": str(work_dir / "jieba"),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "DB_POOL_SIZE": "5",
        # As deployed: production mode with a key of its own (one run, one key, shared by the processes).
        "SECRET_KEY": secrets.token_urlsafe(32),
    })
    cluster = Cluster(env, port, work_dir, processes)
    started = time.monotonic()
    try:
        cluster.start()

        async def ready() -> bool:
            return cluster.ready()

        await wait_for("every process to be ready", ready, wait_seconds)
        say(f"{processes} processes ready on port {port}: pids {[p.pid for p in cluster.procs]}")

        async def lease() -> Any:
            async with db.session() as s:
                return (await s.execute(select(Lease.owner, Lease.expires_at).where(Lease.name == LEASE_NAME))).first()

        def pid_of(owner: str) -> int:
            return int(owner.split(":")[-2])

        async def leader() -> Any:
            row = await lease()
            return row if row is not None and cluster.by_pid(pid_of(row.owner)) is not None else None

        first = await wait_for("a scheduler leader", leader, wait_seconds)
        say(f"leader: pid {pid_of(first.owner)}")

        # 3. The users.
        bot_url = f"http://127.0.0.1:{port}/wechat"
        answered = 0
        connector = aiohttp.TCPConnector(limit=0, force_close=True)  # a connection per post: spread by the kernel
        session = aiohttp.ClientSession(connector=connector)
        wx = WeChatServer(bot_url, TOKEN, app_id, session=session, timeout=5.0, wait_out_timeout=True)

        async def user(openid: str) -> None:
            nonlocal answered
            kinds: list[str] = []
            res.answers[openid] = kinds
            for n in range(messages):
                state.record_user_action(openid, "message")  # the customer-service window, as WeChat opens it
                r = await wx.send_text(openid, "帮助", msg_id=n + 1)  # increasing: the order check reads them
                res.latencies.append(r.latency)
                for a in r.attempts:
                    res.attempts[a.outcome] += 1
                    if a.outcome.startswith("connection error"):
                        res.broken.add((openid, n))
                content = r.reply.content if r.reply is not None else ""
                if content.startswith(welcome.HELP):
                    kinds.append("help")
                elif content.startswith(PROCESSING):
                    kinds.append("processing")
                else:
                    kinds.append(f"other:{(r.error or content or 'no reply')[:30]}")
                    res.lost.append((openid, n))
                answered += 1

        await queue_pushes()  # the leader delivers them while the users write
        load = asyncio.gather(*(user(o) for o in msg_users))

        # 4. Kill the leader under load, once `kill_at` of the messages are answered.
        def pushes_delivered() -> int:
            return sum(1 for d in delivered if d.get("type") == "template")

        async def far_enough() -> bool:  # and the leader is delivering
            return answered >= kill_at * res.sent_messages and pushes_delivered() >= min(10, pushes)

        await wait_for(f"{kill_at:.0%} of the messages and the first pushes", far_enough, wait_seconds, every=0.02)
        victim = await lease()
        res.killed_pid, res.old_lease_expiry = pid_of(victim.owner), victim.expires_at
        cluster.by_pid(res.killed_pid).send_signal(signal.SIGKILL)
        # The lease read just before the kill may have been renewed once more meanwhile.
        cluster.by_pid(res.killed_pid).wait()
        res.old_lease_expiry = (await lease()).expires_at
        res.survivor_pids = [p.pid for p in cluster.procs if p.pid != res.killed_pid]
        res.at_kill = (answered, pushes_delivered())
        say(f"SIGKILL pid {res.killed_pid} at {answered} messages, {pushes_delivered()} pushes")

        async def new_leader() -> Any:
            row = await lease()
            return row if row is not None and pid_of(row.owner) != res.killed_pid else None

        # The first time the new owner is seen its lease was taken at most one renew interval ago.
        row = await wait_for("a new scheduler leader", new_leader, wait_seconds, every=0.1)
        res.new_leader_pid = pid_of(row.owner)
        res.new_leader_since = row.expires_at - dt.timedelta(seconds=LEASE_SECONDS)
        say(f"new leader: pid {res.new_leader_pid}, {res.takeover_seconds:.2f} s after the old lease expired")

        await asyncio.wait_for(load, wait_seconds)
        res.elapsed = time.monotonic() - started

        # 5. Everything settles: late answers sent, pushes out.
        async def outbox_done() -> bool:
            async with db.session() as s:
                left = (await s.execute(select(func.count()).select_from(Outbox)
                                        .where(Outbox.status.in_(("pending", "claimed"))))).scalar()
            return left == 0

        await wait_for("the outbox to empty", outbox_done, wait_seconds)
        expected_late = sum(k.count("processing") for k in res.answers.values())

        def late_count() -> int:
            return sum(1 for d in delivered if d.get("type") == "text" and d["openid"] in res.answers
                       and d.get("content", "").startswith(welcome.HELP))

        async def late_done() -> bool:
            return late_count() >= expected_late

        await wait_for("late answers", late_done, wait_seconds)

        async with aiohttp.ClientSession() as plain:
            async with plain.get(f"http://127.0.0.1:{port}/metrics") as resp:
                for line in (await resp.text()).splitlines():
                    if line.startswith('zikao_messages_total{kind="text"}'):
                        res.messages_counted = float(line.split()[-1])
        await session.close()
    finally:
        cluster.stop()
        drain_task.cancel()
        await emu_runner.cleanup()

    for d in delivered:
        if d.get("type") == "template":
            res.push_deliveries[d["openid"]] += 1
        elif d.get("type") == "text" and d["openid"] in res.answers and d.get("content", "").startswith(welcome.HELP):
            res.late[d["openid"]] += 1
    async with db.session() as s:
        rows = (await s.execute(select(InboundMessage.key, InboundMessage.openid, InboundMessage.received_at)
                                .order_by(InboundMessage.received_at))).all()
        res.push_rows.update(dict((await s.execute(select(Outbox.status, func.count()).group_by(Outbox.status))).all()))
    await db.dispose()
    seen: dict[str, list[int]] = defaultdict(list)
    for key, openid, _at in rows:
        res.claims[key] += 1
        seen[openid].append(int(key.split(":")[1]))
    for openid, ids in seen.items():
        if ids != sorted(ids):
            res.out_of_order.append(openid)
    return res


async def create_database(server_url: str) -> str:
    import asyncpg
    from sqlalchemy.engine import make_url

    from storage.migrate import upgrade_async

    name = f"zikao_scaleout_{os.getpid()}_{secrets.token_hex(4)}"
    u = make_url(server_url)
    conn = await asyncpg.connect(u.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = u.set(database=name).render_as_string(hide_password=False)
    await upgrade_async(url)
    return url


async def drop_database(url: str, server_url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    conn = await asyncpg.connect(make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test",
                   help="a PostgreSQL server (a fresh database is created on it and dropped)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--processes", type=int, default=3)
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--messages", type=int, default=10, help="messages per user, one after the other")
    p.add_argument("--pushes", type=int, default=1000)
    p.add_argument("--push-rate", type=float, default=50.0)
    p.add_argument("--kill-at", type=float, default=0.33)
    args = p.parse_args(argv)

    async def go() -> Result:
        url = await create_database(args.database_url)
        try:
            with tempfile.TemporaryDirectory(prefix="zikao-scaleout-") as tmp:
                return await run(url, args.redis_url, processes=args.processes, users=args.users,
                                 messages=args.messages, pushes=args.pushes, push_rate=args.push_rate,
                                 kill_at=args.kill_at, work_dir=Path(tmp), say=lambda s: print(s, flush=True),
                                 wait_seconds=600)
        finally:
            await drop_database(url, args.database_url)

    res = asyncio.run(go())
    problems = res.problems(takeover_margin=10.0)
    print(json.dumps({"figures": res.figures(), "problems": problems}, ensure_ascii=False, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
