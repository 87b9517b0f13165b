"""Schema migrations: run Alembic (scripts shipped in storage/migrations) on a database URL."""
from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from storage.db import async_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

T = TypeVar("T")


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic Config without an ini file, pointing at the packaged scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url:
        # '%' would be taken for interpolation by ConfigParser.
        cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migration scripts found"
    return head


async def _with_connection(database_url: str, fn: Callable[[Connection], T]) -> T:
    url = async_url(database_url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:"):
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_fn())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coro_fn())).result()


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    """Bring the database at `database_url` up to `revision` (default: the newest)."""

    def go(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    await _with_connection(database_url, go)


def upgrade(database_url: str, revision: str = "head") -> None:
    """Synchronous form of `upgrade_async`, for the CLI and tests.

    Accepts plain URLs (sqlite:///var/zikao.sqlite3, postgresql://user@host/db); the async
    drivers (aiosqlite, asyncpg) are chosen by storage.db.async_url.
    """
    _run(lambda: upgrade_async(database_url, revision))


async def downgrade_async(database_url: str, revision: str) -> None:
    """Take the database back to `revision` ('base' drops every table)."""

    def go(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)

    await _with_connection(database_url, go)


def downgrade(database_url: str, revision: str) -> None:
    _run(lambda: downgrade_async(database_url, revision))


async def current_revision_async(database_url: str) -> str | None:
    return await _with_connection(database_url, lambda conn: MigrationContext.configure(conn).get_current_revision())


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None if it has never been migrated."""
    return _run(lambda: current_revision_async(database_url))


async def schema_diff_async(database_url: str) -> list[Any]:
    """Differences between the database and storage.models (empty when they agree)."""
    from storage.models import Base

    def go(conn: Connection) -> list[Any]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, Base.metadata)

    return await _with_connection(database_url, go)


def schema_diff(database_url: str) -> list[Any]:
    return _run(lambda: schema_diff_async(database_url))


async def new_revision_async(message: str, database_url: str) -> None:
    """Autogenerate a revision from the difference between `database_url` (at head) and the models."""

    def go(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True)

    await upgrade_async(database_url)
    await _with_connection(database_url, go)


def main(argv: list[str] | None = None) -> int:
    """python -m storage.migrate upgrade URL | current URL | check URL | revision MESSAGE [URL]"""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] not in ("upgrade", "current", "check", "revision"):
        print(main.__doc__, file=sys.stderr)
        return 2
    cmd, arg = args[0], args[1]
    import os

    from storage import keys

    if os.environ.get("SECRET_KEY") and not keys.configured():
        # Migration 0006b encrypts candidates' ID numbers and mobiles under SECRET_KEY.
        keys.configure(os.environ["SECRET_KEY"])
    if cmd == "upgrade":
        upgrade(arg)
        print(f"database at revision {current_revision(arg)}")
    elif cmd == "current":
        print(current_revision(arg) or "(not migrated)")
    elif cmd == "check":
        diff = schema_diff(arg)
        for d in diff:
            print(d)
        return 1 if diff else 0
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            url = args[2] if len(args) > 2 else f"sqlite:///{tmp}/revision.sqlite3"
            _run(lambda: new_revision_async(arg, url))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
