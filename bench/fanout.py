"""Fan-out benchmark: queue N pushes, deliver them to the WeChat emulator, count every message.

    python -m bench.fanout --count 100000                                   # SQLite, 5% errors, a kill at 30%
    python -m bench.fanout --count 100000 --database-url postgresql://postgres@127.0.0.1:5432/test
    python -m bench.fanout --count 2000 --error-rate 0 --kill-after 0       # no faults

What it does:
1. a fresh database (a temporary SQLite file, or a new database on the PostgreSQL server of
   --database-url), migrated; N subscribed users and N outbox rows (an exam notice by template
   message, priority 5) inserted in bulk;
2. the emulator in its own process (`python -m bench.fanout --serve-emulator`: the emulated API
   plus a counter of every delivered message per openid and of every call per endpoint and
   errcode; the emulator's own lists keep only the newest records, so they are not used);
3. faults through the emulator's control API (POST /_emu/faults): --error-rate of the template
   sends answer -1 or 45009 (half each), optionally --drop-rate hang-ups and --slow-rate slow
   answers;
4. the delivery worker as a separate process (`python -m bot.delivery`; --workers N: N of them
   at once on the same database, sharing --rate), the first SIGKILLed once --kill-after of the
   rows have reached the emulator and started again; the new worker takes the dead one's
   claims over when their lease (--lease) expires;
5. when the worker has emptied the outbox: the emulator's counts against the outbox.

Printed: queued, delivered, lost (sent rows the emulator never got, and rows never finished),
duplicated (a row's message delivered more than once), failed, elapsed, deliveries/s, and
send calls against deliveries. --rate is set high (1000/s) to measure throughput; production
runs at PUSH_RATE_PER_SECOND (20). No test asserts these figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APP_ID = "wxfanout000000001"
APP_SECRET = "fanout-bench-secret"
TEMPLATE_ID = "TM_EXAM_NOTICE"
USER_PREFIX = "o_fan_"


def openid_of(i: int) -> str:
    return f"{USER_PREFIX}{i:07d}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {seconds}s")


def _http(method: str, url: str, body: dict | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


# --- the emulator process ---------------------------------------------------------------------


def serve_emulator(port: int, users: int, seed: int) -> int:
    """The emulated WeChat API with counters the bench reads at the end (GET /_bench/...)."""
    from aiohttp import web

    from emulator.api import EmulatorState, add_api_routes

    state = EmulatorState(APP_ID, APP_SECRET, seed=seed, template_daily_quota=max(100_000, 10 * users))
    state.max_records = 1000  # the bench counts on its own; keep the emulator's lists small
    for i in range(users):
        state.set_subscribed(openid_of(i), True)
    delivered: Counter[str] = Counter()
    calls: Counter[str] = Counter()

    # Raw send calls per row (one row per openid here), before WeChat's client_msg_id dedupe:
    # every accepted call beyond a row's first would be a duplicate for a customer-service message.
    row_calls: Counter[str] = Counter()
    row_ok: Counter[str] = Counter()

    @web.middleware
    async def count_calls(request: web.Request, handler: Any) -> web.StreamResponse:
        touser = None
        if request.path.endswith("/message/template/send"):
            try:
                touser = (await request.json()).get("touser")
            except (ValueError, AttributeError):
                touser = None
        resp = await handler(request)
        if request.path.startswith("/cgi-bin/"):
            endpoint = request.path[len("/cgi-bin/"):]
            body = getattr(resp, "body", None)
            try:
                errcode = json.loads(body).get("errcode", 0) if body else "hang-up"
            except (ValueError, AttributeError, TypeError):
                errcode = "other"
            calls[f"{endpoint} {errcode}"] += 1
            if touser:
                row_calls[touser] += 1
                if errcode == 0:
                    row_ok[touser] += 1
        return resp

    async def drain(app: web.Application) -> Any:
        q = state.listen()

        async def run() -> None:
            while True:
                item = await q.get()
                delivered[item["openid"]] += 1

        task = asyncio.create_task(run())
        yield
        task.cancel()

    async def stats(request: web.Request) -> web.Response:
        resent = {o: n - 1 for o, n in row_ok.items() if n > 1}
        return web.json_response({"delivered": sum(delivered.values()), "unique": len(delivered),
                                  "calls": dict(calls),
                                  "rows_called": len(row_calls),
                                  "max_calls_per_row": max(row_calls.values(), default=0),
                                  "calls_per_row": dict(Counter(row_calls.values())),
                                  "resent_ok_calls": sum(resent.values()), "resent_rows": len(resent)})

    async def per_openid(request: web.Request) -> web.Response:
        return web.json_response({"delivered": dict(delivered)})

    app = web.Application(middlewares=[count_calls])
    add_api_routes(app, state)
    app.cleanup_ctx.append(drain)
    app.router.add_get("/_bench/stats", stats)
    app.router.add_get("/_bench/delivered", per_openid)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, shutdown_timeout=1.0)
    return 0


# --- the database -----------------------------------------------------------------------------


def _notice_payload(i: int) -> dict[str, Any]:
    return {
        "text": "【考试通知】上海市2025年上半年高等教育自学考试将于4月12日至13日举行，请提前打印准考证。",
        "template": {"kind": "exam_notice",
                     "data": {"thing1": "2025年上半年自学考试", "time2": "2025-04-12 08:30", "thing3": "见准考证"}},
        "url": f"https://zikao.example/notice/{i % 7 + 1}",
    }


async def _create_postgres(server_url: str) -> str:
    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"zikao_fanout_{os.getpid()}_{secrets.token_hex(3)}"
    server = make_url(server_url).set(drivername="postgresql")
    conn = await asyncpg.connect(server.render_as_string(hide_password=False))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def _drop_postgres(url: str, server_url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    server = make_url(server_url).set(drivername="postgresql")
    conn = await asyncpg.connect(server.render_as_string(hide_password=False))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def seed(url: str, count: int) -> None:
    """N subscribed users and N pending outbox rows, inserted with executemany in chunks."""
    from sqlalchemy import insert

    from storage.db import Database
    from storage.models import Outbox, WechatUser, utcnow

    db = Database(url)
    now = utcnow()
    try:
        for start in range(0, count, 10_000):
            chunk = range(start, min(count, start + 10_000))
            async with db.engine.begin() as conn:
                await conn.execute(insert(WechatUser), [
                    {"openid": openid_of(i), "subscribed": True, "subscribed_at": now, "notices_opt_out": False}
                    for i in chunk])
                await conn.execute(insert(Outbox), [
                    {"openid": openid_of(i), "kind": "notice", "payload": _notice_payload(i),
                     "client_msg_id": f"fanout-{i}", "status": "pending", "attempts": 0, "priority": 5,
                     "due_at": now, "created_at": now}
                    for i in chunk])
    finally:
        await db.dispose()


async def outbox_summary(url: str) -> dict[str, Any]:
    from sqlalchemy import func, select

    from storage.db import Database
    from storage.models import Outbox

    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            statuses = dict((await conn.execute(select(Outbox.status, func.count()).group_by(Outbox.status))).all())
            attempts = (await conn.execute(select(func.sum(Outbox.attempts)))).scalar_one() or 0
            reasons = dict((await conn.execute(
                select(Outbox.last_error, func.count()).where(Outbox.status == "failed").group_by(Outbox.last_error)
            )).all())
            sent = {r.openid for r in await conn.execute(select(Outbox.openid).where(Outbox.status == "sent"))}
            unfinished = {r.openid for r in await conn.execute(
                select(Outbox.openid).where(Outbox.status.in_(("pending", "claimed", "waiting"))))}
            owners = dict((await conn.execute(
                select(Outbox.claimed_by, func.count()).where(Outbox.status == "sent").group_by(Outbox.claimed_by))).all())
    finally:
        await db.dispose()
    return {"statuses": statuses, "attempts": int(attempts), "failed_reasons": reasons, "sent": sent,
            "unfinished": unfinished, "sent_by_worker": owners}


# --- the run ----------------------------------------------------------------------------------


def _start_worker(url: str, api_base: str, args: dict[str, Any], log_dir: Path, n: int) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "bot.delivery", "--database-url", url, "--api-base", api_base,
        "--app-id", APP_ID, "--app-secret", APP_SECRET, "--rate", str(args["rate"] / args["workers"]),
        "--daily-cap", str(10 * args["count"] + 1000), "--lease", str(args["lease"]),
        "--batch-size", str(args["batch_size"]), "--template", f"exam_notice={TEMPLATE_ID}",
        "--owner", f"worker-{n}", "--log-level", "WARNING", "--timeout", str(args["api_timeout"]),
    ]
    if args.get("concurrency"):
        cmd += ["--concurrency", str(args["concurrency"])]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPLATE_", "PUSH_"))}
    out = open(log_dir / f"worker-{n}.out", "wb")
    err = open(log_dir / f"worker-{n}.err", "wb")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)


def run_bench(
    count: int,
    *,
    database_url: str | None = None,
    fresh_database: bool = True,
    error_rate: float = 0.05,
    drop_rate: float = 0.0,
    slow_rate: float = 0.0,
    kill_after: float = 0.3,
    rate: float = 1000.0,
    lease: float = 10.0,
    batch_size: int = 100,
    concurrency: int | None = None,
    workers: int = 1,
    api_timeout: float = 2.0,
    timeout: float = 1800.0,
    seed_value: int = 7,
    keep: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Runs the whole benchmark and returns its figures (see the module docstring).

    database_url: None for a temporary SQLite file; a PostgreSQL URL names the server on which a
    fresh database is created and dropped (fresh_database=False: use that database as it is)."""
    from storage.migrate import upgrade

    def say(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="zikao-fanout-"))
    is_pg = bool(database_url) and database_url.startswith("postgres")
    url = database_url or f"sqlite:///{tmp}/fanout.sqlite3"
    created_pg = False
    emulator = None
    procs: dict[int, subprocess.Popen] | None = None
    runs: list[dict[str, Any]] = []
    opts = dict(count=count, rate=rate, lease=lease, batch_size=batch_size, concurrency=concurrency,
                api_timeout=api_timeout, workers=workers)
    try:
        if is_pg and fresh_database:
            url = asyncio.run(_create_postgres(database_url))
            created_pg = True
        upgrade(url)
        t0 = time.monotonic()
        asyncio.run(seed(url, count))
        seeded = time.monotonic() - t0
        say(f"queued {count} pushes in {seeded:.1f}s ({'PostgreSQL' if is_pg else 'SQLite'})")

        port = _free_port()
        emulator = subprocess.Popen(
            [sys.executable, "-m", "bench.fanout", "--serve-emulator", "--port", str(port), "--count", str(count),
             "--seed", str(seed_value)],
            cwd=ROOT, stdout=open(tmp / "emulator.out", "wb"), stderr=open(tmp / "emulator.err", "wb"))
        _wait_port(port, emulator, seconds=60)
        emu = f"http://127.0.0.1:{port}"
        faults = []
        if error_rate:  # rules are tried in order: the second sees what the first let through
            faults.append({"errcode": -1, "probability": error_rate / 2})
            faults.append({"errcode": 45009, "probability": (error_rate / 2) / (1 - error_rate / 2)})
        if drop_rate:
            faults.append({"drop": True, "probability": drop_rate})
        if slow_rate:
            faults.append({"delay": api_timeout * 1.5, "probability": slow_rate})
        for f in faults:
            _http("POST", f"{emu}/_emu/faults", {"endpoint": "message/template/send", **f})

        runs: list[dict[str, Any]] = []
        procs = {}
        started = time.monotonic()
        for n in range(1, workers + 1):
            procs[n] = _start_worker(url, emu, opts, tmp, n)
            runs.append({"n": n, "started": 0.0})
        killed = kill_after <= 0
        deadline = started + timeout
        last_note = 0.0
        while procs:
            stats = _http("GET", f"{emu}/_bench/stats")
            now = time.monotonic()
            if progress and now - last_note >= 5:
                last_note = now
                say(f"  {now - started:6.1f}s delivered {stats['unique']}/{count}")
            for n, proc in list(procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                del procs[n]
                runs[n - 1].update(ended=round(now - started, 2), exit_code=code)
                if code != 0:
                    raise RuntimeError(f"worker {n} exited with {code}; see {tmp}/worker-{n}.err")
            if not killed and stats["unique"] >= kill_after * count and 1 in procs:
                procs[1].send_signal(signal.SIGKILL)
                procs.pop(1).wait()
                killed = True
                runs[0].update(killed_at=round(now - started, 2), delivered_when_killed=stats["unique"])
                say(f"  {now - started:6.1f}s SIGKILL worker 1 at {stats['unique']} delivered; starting another")
                n = len(runs) + 1
                procs[n] = _start_worker(url, emu, opts, tmp, n)
                runs.append({"n": n, "started": round(time.monotonic() - started, 2)})
            if now > deadline:
                raise RuntimeError(f"not finished after {timeout}s")
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        worker_summary = {}
        for w in runs:
            if "killed_at" not in w:
                out = (tmp / f"worker-{w['n']}.out").read_text().strip().splitlines()
                worker_summary[f"worker-{w['n']}"] = json.loads(out[-1]) if out else None

        delivered: dict[str, int] = _http("GET", f"{emu}/_bench/delivered")["delivered"]
        stats = _http("GET", f"{emu}/_bench/stats")
        calls: dict[str, int] = stats["calls"]
        box = asyncio.run(outbox_summary(url))
    finally:
        for proc in [*procs.values(), emulator] if procs is not None else [emulator]:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if created_pg and not keep:
            asyncio.run(_drop_postgres(url, database_url))
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)

    queued = {openid_of(i) for i in range(count)}
    got = {o for o, n in delivered.items() if n > 0}
    sent_not_received = box["sent"] - got
    unfinished = box["unfinished"]
    duplicates = {o: n for o, n in delivered.items() if n > 1}
    failed = box["statuses"].get("failed", 0)
    template_calls = {k.split(" ", 1)[1]: v for k, v in calls.items() if k.startswith("message/template/send ")}
    send_calls = sum(template_calls.values())
    figures = {
        "database": "PostgreSQL" if is_pg else "SQLite",
        "queued": count,
        "delivered": len(got & queued),
        "lost": len(sent_not_received) + len(unfinished),
        "lost_sent_not_received": len(sent_not_received),
        "lost_never_finished": len(unfinished),
        "duplicated": sum(n - 1 for n in duplicates.values()),
        "duplicated_rows": len(duplicates),
        "failed": failed,
        "failed_reasons": box["failed_reasons"],
        "delivered_not_marked_sent": len(got - box["sent"]),
        "outbox_statuses": box["statuses"],
        "elapsed_s": round(elapsed, 2),
        "deliveries_per_s": round(len(got) / elapsed, 1) if elapsed else 0.0,
        "seed_s": round(seeded, 2),
        "send_calls": send_calls,
        "send_calls_by_errcode": template_calls,
        "retried_calls": send_calls - len(got),
        # Raw calls per row: how many rows took 1, 2, ... send calls; and the calls WeChat accepted
        # beyond a row's first (answered by its client_msg_id dedupe here, a duplicate message
        # for a customer-service send, which has no such id).
        "send_calls_per_row": {str(k): v for k, v in sorted(stats["calls_per_row"].items(), key=lambda kv: int(kv[0]))},
        "max_send_calls_per_row": stats["max_calls_per_row"],
        "resent_after_acceptance": stats["resent_ok_calls"],
        "rows_resent_after_acceptance": stats["resent_rows"],
        "attempts_recorded": box["attempts"],
        "rate_limit_per_s": rate,
        "worker_processes": workers,
        "lease_s": lease,
        "error_rate": error_rate,
        "drop_rate": drop_rate,
        "slow_rate": slow_rate,
        "kill_after": kill_after,
        "workers": runs,
        "sent_by_worker": box["sent_by_worker"],
        "worker_runs": worker_summary,
    }
    return figures


def _report(f: dict[str, Any]) -> str:
    kills = [w for w in f["workers"] if "killed_at" in w]
    kill = (f"a worker SIGKILLed at {kills[0]['killed_at']}s with {kills[0]['delivered_when_killed']} delivered, restarted"
            if kills else "no kill")
    faults = f"{f['error_rate']:.0%} errors (-1/45009)"
    if f["drop_rate"]:
        faults += f", {f['drop_rate']:.0%} hang-ups"
    if f["slow_rate"]:
        faults += f", {f['slow_rate']:.0%} answers after the timeout"
    lines = [
        f"fan-out on {f['database']}: {f['queued']} pushes, {f['worker_processes']} worker process(es), "
        f"rate limit {f['rate_limit_per_s']:.0f}/s in all, {faults}, {kill}",
        f"  delivered   {f['delivered']}",
        f"  lost        {f['lost']}  (sent but not received {f['lost_sent_not_received']}, "
        f"never finished {f['lost_never_finished']})",
        f"  duplicated  {f['duplicated']}",
        f"  failed      {f['failed']}  {f['failed_reasons'] or ''}",
        f"  elapsed     {f['elapsed_s']} s  ->  {f['deliveries_per_s']} deliveries/s",
        f"  send calls  {f['send_calls']} for {f['delivered']} deliveries "
        f"({f['retried_calls']} retried: {f['send_calls_by_errcode']})",
        f"  per row     calls per row -> rows {f['send_calls_per_row']}; accepted again after a first "
        f"acceptance {f['resent_after_acceptance']} calls on {f['rows_resent_after_acceptance']} rows "
        f"(client_msg_id dedupe; a customer-service message would have gone twice)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--database-url", help="PostgreSQL server URL (a fresh database is made on it); default SQLite")
    p.add_argument("--error-rate", type=float, default=0.05, help="share of template sends answered -1 or 45009")
    p.add_argument("--drop-rate", type=float, default=0.0, help="share of template sends hung up on")
    p.add_argument("--slow-rate", type=float, default=0.0, help="share of template sends answered after the timeout")
    p.add_argument("--kill-after", type=float, default=0.3, help="SIGKILL the worker at this share delivered (0: never)")
    p.add_argument("--rate", type=float, default=1000.0, help="the worker's rate limit (sends/s)")
    p.add_argument("--lease", type=float, default=10.0, help="claim lease seconds")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--concurrency", type=int, help="sends in flight per worker (default from the rate)")
    p.add_argument("--workers", type=int, default=1, help="worker processes at once on the database (share --rate)")
    p.add_argument("--api-timeout", type=float, default=2.0)
    p.add_argument("--keep", action="store_true", help="keep the database and the logs")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_emulator:
        return serve_emulator(args.port, args.count, args.seed)
    figures = run_bench(
        args.count, database_url=args.database_url, error_rate=args.error_rate, drop_rate=args.drop_rate,
        slow_rate=args.slow_rate, kill_after=args.kill_after, rate=args.rate, lease=args.lease,
        batch_size=args.batch_size, concurrency=args.concurrency, workers=args.workers, api_timeout=args.api_timeout,
        keep=args.keep, seed_value=args.seed,
    )
    print(_report(figures))
    print(json.dumps(figures, ensure_ascii=False, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, ensure_ascii=False, indent=2))
    return 0 if figures["lost"] == 0 and figures["duplicated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
