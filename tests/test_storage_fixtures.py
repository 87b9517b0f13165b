"""The database fixtures: both backends, migrated, empty for every test, shareable with a second process."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from storage.db import Database
from storage.models import Course, KeyValue

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("round_", [1, 2])
async def test_every_test_starts_empty_with_identities_restarted(db: Database, round_: int) -> None:
    # Runs twice on each backend: the second run would see the first one's rows if cleaning failed.
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Course)) == 0
        s.add(Course(code="00015", name="英语(二)"))
        s.add(KeyValue(key="k", value={"round": round_}))
        await s.commit()
        res = await s.execute(
            text("INSERT INTO outbox (openid, kind, payload, client_msg_id, status, attempts, due_at, created_at) "
                 "VALUES ('o', 'notice', '{}', :c, 'pending', 0, :t, :t) RETURNING id"),
            {"c": f"c{round_}", "t": dt.datetime(2025, 1, 1)},
        )
        assert res.scalar_one() == 1  # sequences restart on PostgreSQL, SQLite starts from a fresh file
        await s.commit()


async def test_db_url_is_the_same_database_as_db(db: Database, db_url: str) -> None:
    async with db.session() as s:
        s.add(Course(code="03708", name="中国近现代史纲要"))
        await s.commit()
    other = Database(db_url)
    try:
        async with other.session() as s:
            assert await s.scalar(select(Course.name)) == "中国近现代史纲要"
    finally:
        await other.dispose()


async def test_a_second_process_sees_the_same_database(db: Database, db_url: str) -> None:
    async with db.session() as s:
        s.add(Course(code="04183", name="概率论与数理统计(经管类)"))
        await s.commit()
    code = (
        "import asyncio, sys\n"
        "from sqlalchemy import text\n"
        "from storage.db import Database\n"
        "async def main():\n"
        "    d = Database(sys.argv[1])\n"
        "    async with d.session() as s:\n"
        "        print((await s.execute(text('SELECT name FROM courses'))).scalar_one())\n"
        "        await s.execute(text(\"INSERT INTO courses (code, name, kind) VALUES ('04184', 'x', '理论')\"))\n"
        "        await s.commit()\n"
        "    await d.dispose()\n"
        "asyncio.run(main())\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, db_url], env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "概率论与数理统计(经管类)"
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Course)) == 2


async def test_sqlite_db_is_sqlite_and_empty(sqlite_db: Database) -> None:
    assert sqlite_db.dialect == "sqlite"
    async with sqlite_db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Course)) == 0


def test_db_url_is_a_plain_url(db_url: str) -> None:
    assert db_url.startswith(("sqlite:///", "postgresql://"))


def test_postgres_is_skipped_or_required_as_configured(tmp_path: Path) -> None:
    # A nested run of the fixture test above with no server: skipped normally, failed when required.
    env = {k: v for k, v in os.environ.items() if k not in ("REQUIRE_POSTGRES", "TEST_POSTGRES_DEFAULT_URL")}
    env.update(PYTHONPATH=str(ROOT), TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:1/test")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
           str(Path(__file__)) + "::test_db_url_is_a_plain_url"]
    # An explicitly configured but unreachable server is an error, never a silent skip.
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode != 0 and "1 passed" in run.stdout and "error" in run.stdout.lower(), run.stdout

    env.pop("TEST_POSTGRES_URL")
    env["TEST_POSTGRES_DEFAULT_URL"] = "postgresql://postgres@127.0.0.1:1/test"
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0 and "1 passed, 1 skipped" in run.stdout, run.stdout

    env["REQUIRE_POSTGRES"] = "1"
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode != 0 and "REQUIRE_POSTGRES=1" in run.stdout, run.stdout
