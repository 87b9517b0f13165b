"""Results day: 100,000 bound candidates ask "成绩", once or twice each; and the whole table.

    python -m bench.results_day                      # the table of docs/performance.md (~6 min)
    python -m bench.results_day --quick              # 2 s per run, 20,000 candidates: a smoke test
    python -m bench.results_day --no-postgres        # SQLite only

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
open loop at 1,000 msg/s, on SQLite and on PostgreSQL, with the server's resident memory after
each run. Every row comes from this one run, so ratios are read within it.
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
import tempfile
import time
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select

from storage import models as m
from storage import queries as sq
from storage.db import Database
from storage.demo import DEMO_DIR
from storage.importer import ImportReport, import_tables, read_directory
from storage.migrate import upgrade_async

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
    from storage import keys

    if not keys.configured():  # the bench's bot runs with ZIKAO_MODE=demo: the same demo key
        keys.configure(keys.DEMO_SECRET_KEY)
    await upgrade_async(url)
    db = Database(url)
    try:
        report = ImportReport("bench")
        tables = read_directory(DEMO_DIR, report)
        keep = ("sittings.csv", "courses.csv", "majors.csv", "plan_courses.csv", "textbooks.csv")
        report = await import_tables(db, {k: v for k, v in tables.items() if k in keep}, report)
        if not report.committed:
            raise SystemExit(report.format())
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
