"""Results day: 100,000 bound candidates ask "成绩", once or twice each; and the whole table.

    python -m bench.results_day                      # the table of docs/performance.md (~6 min)
    python -m bench.results_day --quick              # 2 s per run, 20,000 candidates: a smoke test
    python -m bench.results_day --no-postgres        # SQLite only
    python -m bench.results_day --no-redis           # without the PostgreSQL + Redis rows

`seed(url, n)` fills a migrated database with the demo reference data (sittings, courses,
majors, plans: through the importer, as the office loads them) and `n` bound candidates, each
with an admission number, an enrolment in 020301K and eight results: five in older sittings and
three in the sitting just released (202510, "results day"). The candidates, admission numbers,
enrolments, results and followers are written with the driver's bulk path, not the importer
(which checks every row against the reference data and takes minutes for a million rows):
`executemany` of one prepared INSERT per table on SQLite, `COPY` on PostgreSQL. Candidates go
through SQLAlchemy so that their ID numbers are encrypted and blind-indexed like real ones. On a
quiet 2-core machine 100,000 candidates (800,000 results) take about 15 s on SQLite and 25 s on
PostgreSQL.

It returns, per openid, the strings its 成绩 reply must carry: for each of the three new
results the course (`"04184 线性代数(经管类)"`) and the score with its verdict (`"63分 通过"`),
so the load generator checks every reply against that candidate's real scores
(bench/loadgen.py, `--scenario scores`).

`main()` runs the table: the no-storage floor, "帮助", and "成绩" for cold candidates (first
question: their data is not in the process yet) and warm ones (second question), flat out and
open loop at 1,000 msg/s, on SQLite, on PostgreSQL, and on PostgreSQL with Redis (the warm path
across processes: claims, nonces and followers' generations in Redis; without Redis a PostgreSQL
service keeps the claim's database round trip), with the server's resident memory after each run.
Every row comes from this one run, so ratios are read within it.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select

from storage import models as m
from storage import queries as sq
from bench.scores import reference_database

MAJOR = "020301K"
OLD_SITTINGS = ("202304", "202310", "202404", "202410", "202504")
NEW_SITTING = "202510"  # released in the demo data: today's results
OPENID = "o_bench_{:06d}"
PER_CANDIDATE_OLD, PER_CANDIDATE_NEW = 5, 3
CHUNK = 20_000


def _sqlite_dt(t: dt.datetime) -> str:
    # What SQLAlchemy's DateTime stores on SQLite (naive UTC, microseconds always written).
    return t.astimezone(dt.timezone.utc).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


async def _bulk(conn: Any, is_sqlite: bool, table: str, columns: list[str], rows: list[tuple]) -> None:
    """The driver's bulk path: one prepared INSERT run by executemany (SQLite), or COPY (PostgreSQL)."""
    if is_sqlite:
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        for i in range(0, len(rows), CHUNK * 5):
            await conn.exec_driver_sql(sql, rows[i:i + CHUNK * 5])
    else:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(table, records=rows, columns=columns)


async def seed(url: str, n: int, *, rng: random.Random | None = None) -> dict[str, list[str]]:
    """Migrate, import the demo reference data, add `n` bound candidates with results.

    Returns openid -> the strings that candidate's 成绩 reply must contain.
    """
    rng = rng or random.Random(15)
    db = await reference_database(url)
    try:
        async with db.session() as s:
            plan = [(pc.course_code, c.name) for pc, c in await s.execute(
                select(m.PlanCourse, m.Course).join(m.Course, m.Course.code == m.PlanCourse.course_code)
                .where(m.PlanCourse.major_code == MAJOR, m.Course.kind == "理论").order_by(m.PlanCourse.position))]
            exam_dates = {x.code: x.exam_date for x in await s.scalars(select(m.Sitting))}
            first_id = (await s.scalar(select(m.Candidate.id).order_by(m.Candidate.id.desc()).limit(1)) or 0) + 1
        now = m.utcnow()
        sqlite = db.is_sqlite
        stamp: Any = _sqlite_dt(now) if sqlite else now.replace(tzinfo=None)
        day = (lambda d: d.isoformat()) if sqlite else (lambda d: d)
        score_value = (lambda v: float(v)) if sqlite else (lambda v: v)
        expected: dict[str, list[str]] = {}
        numbers, majors, scores, followers = [], [], [], []
        for i in range(n):
            cid, number, openid = first_id + i, f"09{i:010d}", OPENID.format(i)
            numbers.append((number, cid))
            majors.append((cid, MAJOR, number))
            taken = rng.sample(plan, k=PER_CANDIDATE_OLD + PER_CANDIDATE_NEW)
            want = []
            for j, (course, name) in enumerate(taken):
                sitting = NEW_SITTING if j >= PER_CANDIDATE_OLD else OLD_SITTINGS[j % len(OLD_SITTINGS)]
                score = rng.randrange(35, 96)
                passed = score >= 60
                scores.append((cid, number, course, sitting, "exam", score_value(Decimal(score)), passed,
                               day(exam_dates[sitting]) if passed else None))
                if sitting == NEW_SITTING:
                    want += [f"{course} {name}", f"{score}分 {'通过' if passed else '未通过'}"]
            followers.append((openid, cid, number, stamp, True, stamp, False))
            expected[openid] = want
        async with db.engine.begin() as conn:
            for i in range(0, n, CHUNK):
                await conn.execute(insert(m.Candidate.__table__), [
                    {"id": first_id + k, "id_number": f"B{k:017d}", "id_type": "其他", "name": f"压测{k}",
                     "password_hash": "!", "created_at": now, "updated_at": now}
                    for k in range(i, min(n, i + CHUNK))])
            await _bulk(conn, sqlite, "admission_numbers", ["number", "candidate_id"], numbers)
            await _bulk(conn, sqlite, "candidate_majors", ["candidate_id", "major_code", "admission_number"], majors)
            await _bulk(conn, sqlite, "score_records", ["candidate_id", "admission_number", "course_code",
                                                        "sitting_code", "kind", "score", "passed", "passed_on"], scores)
            await _bulk(conn, sqlite, "wechat_users", ["openid", "candidate_id", "active_admission_number", "bound_at",
                                                       "subscribed", "subscribed_at", "notices_opt_out"], followers)
            if not sqlite:  # COPY bypasses the sequence
                await conn.exec_driver_sql(
                    "SELECT setval(pg_get_serial_sequence('candidates', 'id'), (SELECT max(id) FROM candidates))")
        async with db.session() as s, s.begin():
            await sq.mark_changed(s)
        return expected
    finally:
        await db.dispose()


# --- the table ---------------------------------------------------------------------------------


def _reset_postgres(url: str) -> None:
    """Drop and create the database of `url` (a bench database: everything in it is lost)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    name = u.database

    async def run() -> None:
        admin = await asyncpg.connect(host=u.host or "127.0.0.1", port=u.port or 5432, user=u.username or "postgres",
                                      password=u.password, database="postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    asyncio.run(run())


def _floor(duration: float, concurrency: int, pin: bool) -> dict:
    from bench import loadgen as lg

    port = lg._free_port()
    cmd = [sys.executable, "-m", "bench.floor", "--port", str(port), "--token", lg.TOKEN]
    if pin:
        cmd = ["taskset", "-c", "0"] + cmd
    proc = subprocess.Popen(cmd)
    try:
        lg.wait_for_port(port, proc)
        url = f"http://127.0.0.1:{port}/wechat"
        traffic = lg.Traffic(lg.TOKEN, 2000, "帮助", None, lg.APP_ID)
        asyncio.run(lg.run_load(url, traffic, duration=1.0, rate=None, concurrency=concurrency))
        traffic.base += 10**9
        out = lg.measured(url, traffic, pid=proc.pid, duration=duration, rate=None, concurrency=concurrency)
        out.pop("_sent")
        out["server_rss_mb"] = lg.rss_mb(proc.pid)
        return out
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _flush_redis(url: str) -> None:
    """Empty the bench's Redis database (claims, nonces and generations of an earlier run)."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.flushdb()
    finally:
        client.close()


def _database_rows(label: str, database_url: str | None, *, candidates: int, duration: float, rate: float,
                   pin: bool, redis_url: str = "") -> list[dict]:
    from bench import loadgen as lg

    # The bot reads REDIS_URL from its environment (spawn_bot copies ours): with it, the warm path
    # claims in Redis (docs/delivery.md); without it, PostgreSQL runs the claim's round trip.
    os.environ.pop("REDIS_URL", None)
    if redis_url:
        os.environ["REDIS_URL"] = redis_url

    expected: dict[str, list[str]] = {}
    seeded: dict[str, float] = {}

    def prepare(url: str) -> None:
        started = time.perf_counter()
        expected.update(asyncio.run(seed(url, candidates)))
        seeded["seconds"] = round(time.perf_counter() - started, 1)

    proc, url, tmp = lg.spawn_bot(database_url, None, pin=pin, prepare=prepare, cold_jieba=True)
    traffic = lg.ScoresTraffic(lg.TOKEN, expected, None, lg.APP_ID)
    first = _first_reply(url, traffic, proc.started_at)  # type: ignore[attr-defined]
    _settle(proc.pid)  # jieba and the FAQ index finish building in their thread before measuring
    rows: list[dict] = []

    def add(what: str, mode: str, figures: dict) -> None:
        figures = dict(figures, what=what, database=label, mode=mode, server_rss_mb=lg.rss_mb(proc.pid))
        rows.append(figures)
        print(json.dumps(figures, ensure_ascii=False), file=sys.stderr, flush=True)

    try:
        print(f"{label}: {candidates} candidates seeded in {seeded.get('seconds')} s; first correct 成绩 reply "
              f"{first:.2f} s after the process started (empty jieba cache)", file=sys.stderr, flush=True)
        rows.append({"what": "first correct 成绩 reply after process start (empty jieba cache)", "database": label,
                     "seconds": round(first, 2)})
        helpt = lg.Traffic(lg.TOKEN, 2000, "帮助", None, lg.APP_ID)
        asyncio.run(lg.run_load(url, helpt, duration=1.0, rate=None, concurrency=32))
        for mode, r, conc in (("flat out", None, 32), (f"{rate:.0f}/s", rate, 256)):
            helpt.base += 10**9
            figures = lg.measured(url, helpt, pid=proc.pid, duration=duration, rate=r, concurrency=conc)
            figures.pop("_sent")
            add("帮助", mode, figures)
        for mode, r, conc, warmup in (("flat out", None, 32, 1.0), (f"{rate:.0f}/s", rate, 256, 0.0)):
            phases = lg.run_scores(url, traffic, duration=duration, rate=r, concurrency=conc, warmup=warmup,
                                   pid=proc.pid)
            add("成绩 cold", mode, phases["cold"])
            add("成绩 warm", mode, phases["warm"])
    finally:
        os.environ.pop("REDIS_URL", None)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _first_reply(url: str, traffic: Any, started_at: float) -> float:
    """Seconds from the process's start to the first 成绩 reply carrying the candidate's scores."""
    from bench import loadgen as lg

    traffic.warmup()
    deadline = time.monotonic() + 60

    async def ask() -> float:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            i = 0
            while time.monotonic() < deadline:
                res = lg.Result()
                await lg._send(session, url, traffic, i, res)
                i += 1
                if res.latencies and not res.errors:
                    return time.monotonic() - started_at
                await asyncio.sleep(0.01)
        raise SystemExit("no correct reply within 60 s of start")

    return asyncio.run(ask())


def _settle(pid: int, quiet: float = 0.5, limit: float = 30.0) -> None:
    """Wait until the process has used almost no CPU for `quiet` seconds (start-up work done)."""
    from bench import loadgen as lg

    deadline = time.monotonic() + limit
    last = lg.cpu_seconds(pid) or 0.0
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = lg.cpu_seconds(pid) or 0.0
        if now - last < 0.05 * quiet:
            return
        last = now


def _table(rows: list[dict], floor: float) -> str:
    out = ["| what | database | load | msg/s | % of floor | p50 ms | p99 ms | max ms | errors | server CPU ms/msg "
           "| server RSS MB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "msg_per_s" not in r:
            continue
        share = f"{100 * r['msg_per_s'] / floor:.0f} %" if floor else "-"
        errors = sum(r["errors"].values())
        out.append(f"| {r['what']} | {r['database']} | {r['mode']} | {r['msg_per_s']:,.0f} | {share} | "
                   f"{r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {errors} | {r.get('server_cpu_ms_per_msg', '-')} "
                   f"| {r.get('server_rss_mb') or '-'} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidates", type=int, default=100_000)
    p.add_argument("--duration", type=float, default=8.0, help="seconds per measured run")
    p.add_argument("--rate", type=float, default=1000.0, help="the open-loop rate")
    p.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/zikao_bench",
                   help="a PostgreSQL database the bench may drop and create")
    p.add_argument("--no-postgres", action="store_true")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/7",
                   help="a Redis database the bench may empty: PostgreSQL is measured once more with it (the warm "
                        "path across processes)")
    p.add_argument("--no-redis", action="store_true")
    p.add_argument("--quick", action="store_true", help="2 s runs, 20,000 candidates (a smoke test)")
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--json", help="also write every row to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.candidates = 2.0, 20_000
    pin = not args.no_pin and bool(shutil.which("taskset")) and (os.cpu_count() or 1) > 1
    if pin:
        os.sched_setaffinity(0, {1})  # the generator; servers run on core 0
    started = time.perf_counter()
    floor = _floor(args.duration, 32, pin)
    floor.update(what="no-storage floor", database="-", mode="flat out")
    rows = [floor]
    print(json.dumps(floor, ensure_ascii=False), file=sys.stderr, flush=True)
    rows += _database_rows("SQLite", None, candidates=args.candidates, duration=args.duration, rate=args.rate, pin=pin)
    if not args.no_postgres:
        try:
            _reset_postgres(args.postgres_url)
        except Exception as e:  # no server: the SQLite rows still stand
            print(f"PostgreSQL skipped: {e}", file=sys.stderr)
        else:
            rows += _database_rows("PostgreSQL", args.postgres_url, candidates=args.candidates,
                                   duration=args.duration, rate=args.rate, pin=pin)
            if not args.no_redis:
                try:
                    _flush_redis(args.redis_url)
                except Exception as e:
                    print(f"PostgreSQL + Redis skipped: {e}", file=sys.stderr)
                else:
                    _reset_postgres(args.postgres_url)
                    rows += _database_rows("PostgreSQL + Redis", args.postgres_url, candidates=args.candidates,
                                           duration=args.duration, rate=args.rate, pin=pin, redis_url=args.redis_url)
    print(f"\n{args.candidates:,} candidates, {args.duration:g} s per run, 32 connections flat out, "
          f"256 at {args.rate:.0f}/s; whole run {time.perf_counter() - started:.0f} s\n")
    print(_table(rows, floor["msg_per_s"]))
    for r in rows:
        if "seconds" in r and "msg_per_s" not in r:
            print(f"\n{r['database']}: {r['what']}: {r['seconds']} s", end="")
    print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, ensure_ascii=False, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
