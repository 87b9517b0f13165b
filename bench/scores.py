"""The score-query scenario: bound users asking "成绩" on results day.

`seed(url, users)` fills a migrated database with the demo plans and `users` bound followers
(openids o_bench_000000 ...), each with about 15 results over five sittings; bench/loadgen.py
uses it with `--scenario scores`. `python -m bench.scores` calls dialogs.queries.latest_scores
in-process, without HTTP, to see what the query itself costs:

    python -m bench.scores --users 2000 --duration 5                        # SQLite, every mode
    python -m bench.scores --database-url postgresql://postgres@127.0.0.1/zikao_bench --mode cached

Modes: `cached` (the service's path: reference data and candidates served from memory),
`reference` (reference data cached, the candidate's one indexed statement every time) and
`uncached` (five statements per call that fetch just what the answer needs, no cache at all).
It prints calls/s, latency and statements per call. No figure here is asserted by a test.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from decimal import Decimal

from sqlalchemy import event, insert, select

from dialogs import queries as dq
from storage import models as m
from storage import queries as sq
from storage.db import Database
from storage.demo import DEMO_DIR
from storage.importer import ImportReport, import_tables, read_directory
from storage.migrate import upgrade_async

MAJOR = "020301K"
SITTINGS = ("202304", "202310", "202404", "202410", "202504")
OPENID = "o_bench_{:06d}"


async def reference_database(url: str) -> Database:
    """Migrate `url` and import the demo's reference data (sittings, courses, majors, plans,
    textbooks); the benches then add their own candidates."""
    from storage import keys

    if not keys.configured():  # the bench's bot runs with ZIKAO_MODE=demo: the same demo key
        keys.configure(keys.DEMO_SECRET_KEY)
    await upgrade_async(url)
    db = Database(url)
    report = ImportReport("bench")
    tables = read_directory(DEMO_DIR, report)
    keep = ("sittings.csv", "courses.csv", "majors.csv", "plan_courses.csv", "textbooks.csv")
    report = await import_tables(db, {k: v for k, v in tables.items() if k in keep}, report)
    if not report.committed:
        await db.dispose()
        raise SystemExit(report.format())
    return db


async def seed(url: str, users: int, *, rng: random.Random | None = None) -> dict[str, tuple[int, str]]:
    """Migrate, import the demo plans, add `users` bound candidates with results.

    Returns openid -> (candidate_id, admission number). Candidates are inserted directly (no
    password hashing: nobody logs in during the bench).
    """
    rng = rng or random.Random(7)
    db = await reference_database(url)
    try:
        async with db.session() as s:
            plan = [(pc.course_code, pc.credits) for pc in await s.scalars(
                select(m.PlanCourse).where(m.PlanCourse.major_code == MAJOR).order_by(m.PlanCourse.position))]
            exam_dates = {x.code: x.exam_date for x in await s.scalars(select(m.Sitting))}
        now = m.utcnow()
        out: dict[str, tuple[int, str]] = {}
        async with db.session() as s, s.begin():
            cand = [{"id_number": f"B{i:017d}", "id_type": "其他", "name": f"压测{i}", "password_hash": "!",
                     "created_at": now, "updated_at": now} for i in range(users)]
            res = await s.execute(insert(m.Candidate).returning(m.Candidate.id, m.Candidate.id_number), cand)
            ids = {idn: cid for cid, idn in res}
            numbers, majors, scores, followers = [], [], [], []
            for i in range(users):
                cid, number, openid = ids[f"B{i:017d}"], f"09{i:010d}", OPENID.format(i)
                numbers.append({"number": number, "candidate_id": cid})
                majors.append({"candidate_id": cid, "major_code": MAJOR, "admission_number": number})
                taken = rng.sample(plan, k=min(len(plan), 10))
                for j, (course, _) in enumerate(taken):
                    for sitting in SITTINGS[j % 3: j % 3 + 2]:
                        score = Decimal(rng.randrange(35, 96))
                        passed = score >= 60
                        scores.append({"candidate_id": cid, "admission_number": number, "course_code": course,
                                       "sitting_code": sitting, "kind": "exam", "score": score, "grade": None,
                                       "passed": passed, "passed_on": exam_dates[sitting] if passed else None})
                        if passed:
                            break
                followers.append({"openid": openid, "candidate_id": cid, "active_admission_number": number,
                                  "bound_at": now, "subscribed": True, "subscribed_at": now,
                                  "notices_opt_out": False})
                out[openid] = (cid, number)
            await s.execute(insert(m.AdmissionNumber), numbers)
            await s.execute(insert(m.CandidateMajor), majors)
            for i in range(0, len(scores), 5000):
                await s.execute(insert(m.ScoreRecord), scores[i:i + 5000])
            await s.execute(insert(m.WechatUser), followers)
            await sq.mark_changed(s)
        return out
    finally:
        await db.dispose()


async def uncached_latest(db: Database, candidate_id: int, now) -> str:
    """The same answer with no cache: five statements fetching just what it needs."""
    async with db.session() as s:
        data = await sq.load_candidate(s, candidate_id)
        codes = {r.course_code for r in data.results}
        majors = [e.major_code for e in data.enrolments]
        plans: dict[str, list[sq.PlanEntry]] = {}
        courses: dict[str, sq.CourseInfo] = {}
        for pc, c in await s.execute(select(m.PlanCourse, m.Course).join(m.Course)
                                     .where(m.PlanCourse.major_code.in_(majors))):
            plans.setdefault(pc.major_code, []).append(sq.PlanEntry(pc.major_code, c.code, c.name, c.kind, pc.credits,
                                                                    pc.category, pc.position))
            courses[c.code] = sq.CourseInfo(c.code, c.name, c.kind)
        for c in await s.scalars(select(m.Course).where(m.Course.code.in_(codes - set(courses)))):
            courses[c.code] = sq.CourseInfo(c.code, c.name, c.kind)
        sittings = {x.code: sq.SittingInfo(x.code, x.name, x.exam_date, x.scores_released_at)
                    for x in await s.scalars(select(m.Sitting))}
        major_rows = {x.code: sq.MajorInfo(x.code, x.name, x.level, x.required_credits, x.university, x.notes, {})
                      for x in await s.scalars(select(m.Major).where(m.Major.code.in_(majors)))}
    ref = sq.Reference(courses, major_rows, {k: tuple(sorted(v, key=lambda e: e.position)) for k, v in plans.items()},
                       {}, sittings, ())
    return dq.latest_text(sq.latest_sheet(ref, data, now))


async def run_direct(url: str, people: dict[str, tuple[int, str]], *, mode: str, duration: float,
                     concurrency: int) -> dict:
    db = Database(url)
    statements = 0

    def count(*_a) -> None:
        nonlocal statements
        statements += 1

    cache = sq.cache_for(db)
    if mode == "reference":
        cache.candidate_ttl = 0
    openids = list(people)
    latencies: list[float] = []
    now = m.utcnow()

    async def one(openid: str) -> None:
        cid, number = people[openid]
        t0 = time.perf_counter()
        if mode == "uncached":
            text = await uncached_latest(db, cid, now)
        else:
            text = (await dq.latest_scores(db, dq.Viewer(openid, cid, number), now=now)).text
        latencies.append(time.perf_counter() - t0)
        assert "【当次成绩】" in text

    try:
        for openid in openids:  # warm-up: every candidate once (a results-day crowd asks repeatedly)
            await one(openid)
        latencies.clear()
        event.listen(db.engine.sync_engine, "before_cursor_execute", count)
        deadline = time.perf_counter() + duration
        started = time.perf_counter()

        async def worker() -> None:
            while time.perf_counter() < deadline:
                await one(random.choice(openids))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await db.dispose()
    lat = sorted(latencies)
    n = len(lat)
    return {
        "mode": mode, "calls": n, "calls_per_s": round(n / elapsed, 1),
        "statements_per_call": round(statements / max(n, 1), 2),
        "mean_ms": round(statistics.fmean(lat) * 1000, 3), "p50_ms": round(lat[n // 2] * 1000, 3),
        "p99_ms": round(lat[min(n - 1, int(0.99 * n))] * 1000, 3), "concurrency": concurrency,
        "cache": dict(cache.stats),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", help="an empty database (default: a temporary SQLite file)")
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--mode", choices=("cached", "reference", "uncached", "all"), default="all")
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="zikao-scores-")
    url = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
    try:
        people = asyncio.run(seed(url, args.users))
        modes = ("uncached", "reference", "cached") if args.mode == "all" else (args.mode,)
        for mode in modes:
            figures = asyncio.run(run_direct(url, people, mode=mode, duration=args.duration,
                                             concurrency=args.concurrency))
            figures["database"] = "sqlite" if url.startswith("sqlite") else "postgresql"
            print(json.dumps(figures, ensure_ascii=False))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
