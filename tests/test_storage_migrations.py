"""Alembic migrations produce exactly the schema of storage.models, on SQLite and PostgreSQL."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect, text

from storage import migrate
from storage.db import Database
from storage.models import Base

ROOT = Path(__file__).resolve().parents[1]


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_migrated_schema_equals_the_models(db_url: str) -> None:
    assert await migrate.schema_diff_async(db_url) == []


async def test_migrated_database_is_at_head_with_every_table(db: Database, db_url: str) -> None:
    assert await migrate.current_revision_async(db_url) == migrate.head_revision()
    assert await _tables(db) == set(Base.metadata.tables) | {"alembic_version"}


async def test_upgrade_twice_is_a_no_op(db: Database, db_url: str) -> None:
    async with db.session() as s:
        await s.execute(text("INSERT INTO courses (code, name, kind) VALUES ('00015', '英语(二)', '理论')"))
        await s.commit()
    await db.dispose()
    migrate.upgrade(db_url)  # the sync API, called from inside a running event loop
    async with db.session() as s:
        assert (await s.execute(text("SELECT name FROM courses"))).scalar_one() == "英语(二)"


async def test_downgrade_to_base_then_upgrade_again(db: Database, db_url: str) -> None:
    await db.dispose()
    await migrate.downgrade_async(db_url, "base")
    assert await _tables(db) == {"alembic_version"}
    assert await migrate.current_revision_async(db_url) is None
    await migrate.upgrade_async(db_url)
    assert await migrate.schema_diff_async(db_url) == []


async def test_a_model_change_without_migration_shows_up_as_a_diff(db: Database, db_url: str) -> None:
    # The comparison is not vacuous: drop an index behind Alembic's back and it is reported.
    async with db.session() as s:
        await s.execute(text("DROP INDEX ix_score_records_candidate_course"))
        await s.commit()
    try:
        diff = await migrate.schema_diff_async(db_url)
        assert any(d[0] == "add_index" and d[1].name == "ix_score_records_candidate_course" for d in diff)
    finally:
        # The PostgreSQL test database lives for the whole session: put the index back.
        async with db.session() as s:
            await s.execute(text("CREATE INDEX ix_score_records_candidate_course ON score_records (candidate_id, course_code)"))
            await s.commit()
    assert await migrate.schema_diff_async(db_url) == []


def test_migrate_cli_works_outside_the_source_tree(tmp_path: Path) -> None:
    # Scripts are found through the package path, not the working directory.
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "storage.migrate", "upgrade", url], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert f"revision {migrate.head_revision()}" in run.stdout
    check = subprocess.run(
        [sys.executable, "-m", "storage.migrate", "check", url], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_migration_scripts_are_package_data() -> None:
    assert migrate.MIGRATIONS_DIR == ROOT / "storage" / "migrations"
    assert (migrate.MIGRATIONS_DIR / "env.py").is_file()
    assert list((migrate.MIGRATIONS_DIR / "versions").glob("*.py"))
