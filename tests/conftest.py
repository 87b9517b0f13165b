"""Database fixtures: every database test runs on SQLite and on PostgreSQL.

`db_url` / `db` are parametrised over the ids `sqlite` and `postgres`. The schema is migrated once
per session per backend (Alembic, as in production); each test then gets an empty database:
SQLite by copying a migrated template file, PostgreSQL by truncating a session-private database
(`zikao_test_<pid>_<random>`, created from the `test` database and dropped at the end).

PostgreSQL is used when TEST_POSTGRES_URL is set (then it must work) or when the default server
answers (postgresql://postgres@127.0.0.1:5432/test, or TEST_POSTGRES_DEFAULT_URL); otherwise its
tests are skipped, unless REQUIRE_POSTGRES=1, which turns the skip into a failure.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy.engine import make_url

from storage import keys, passwords
from storage.db import Database
from storage.migrate import upgrade_async
from storage.models import Base

# The suite's own SECRET_KEY (never a production one), and a cheap scrypt cost: production's
# N=2^17 is checked by tests/test_storage_passwords.py, the rest of the suite need not pay it.
TEST_SECRET_KEY = "test-suite-secret-key-0123456789-abcdef"
keys.configure(TEST_SECRET_KEY)
passwords.use_cost(2**10)
# Hermetic settings: commands run in-process never read a developer's var/zikao.env (the demo's).
os.environ.setdefault("ZIKAO_CONFIG", "")

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
TEST_DB_PREFIX = "zikao_test_"

T = TypeVar("T")


class _LoopThread:
    """One event loop on a helper thread for fixture plumbing (migrations, truncation).

    Sync fixtures must not call asyncio.run: it would replace the event loop pytest-asyncio has
    set for the test. Work submitted here runs on its own loop and thread instead.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="db-fixtures", daemon=True)
        self.thread.start()

    def run(self, fn: Callable[[], Awaitable[T]], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def _fixture_loop() -> Iterator[_LoopThread]:
    lt = _LoopThread()
    yield lt
    lt.close()


# --- SQLite --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory, _fixture_loop: _LoopThread) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    _fixture_loop.run(lambda: upgrade_async(f"sqlite:///{path}"))
    return path


def _fresh_sqlite(template: Path, tmp_path: Path) -> str:
    path = tmp_path / "zikao.sqlite3"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


# --- PostgreSQL ----------------------------------------------------------------------------------


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _port_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class _Postgres:
    """A private database for this session, with a held connection to empty it between tests."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        name = f"{TEST_DB_PREFIX}{os.getpid()}_{int(time.time())}_{secrets.token_hex(4)}"
        self.url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        self.name = name
        self.conn: Any = None
        self.dirty_sql = ""

    async def _server_conn(self) -> Any:
        import asyncpg

        return await asyncpg.connect(_asyncpg_dsn(self.server_url), timeout=10)

    async def create(self) -> None:
        import asyncpg

        conn = await self._server_conn()
        try:
            await self._drop_orphans(conn)
            await conn.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await conn.close()
        await upgrade_async(self.url)
        self.conn = await asyncpg.connect(_asyncpg_dsn(self.url), timeout=10)
        # One round trip tells which tables hold rows; only those are truncated (TRUNCATE costs
        # per table), and only sequences that were used are reset.
        probes = ", ".join(
            f"CASE WHEN EXISTS (SELECT 1 FROM \"{t.name}\") THEN '{t.name}' END" for t in Base.metadata.sorted_tables
        )
        self.dirty_sql = f"SELECT array_remove(ARRAY[{probes}], NULL)"

    async def _drop_orphans(self, conn: Any) -> None:
        """Drop databases left by crashed runs: over an hour old, nobody connected, process gone.

        A live run always holds a connection to its database, so other runs sharing the server
        (even from another PID namespace) are never touched.
        """
        rows = await conn.fetch(
            "SELECT datname FROM pg_database d WHERE datname LIKE $1 "
            "AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
            TEST_DB_PREFIX + "%",
        )
        for (name,) in rows:
            parts = name[len(TEST_DB_PREFIX):].split("_")
            if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()):
                continue
            if time.time() - int(parts[1]) < 3600 or _pid_alive(int(parts[0])):
                continue
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')  # fails if someone connected meanwhile
            except Exception:
                pass

    async def clean(self) -> None:
        # Connections a test left open (a second process, an undisposed engine) would block TRUNCATE.
        await self.conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            self.name,
        )
        tables = await self.conn.fetchval(self.dirty_sql)
        if tables:
            quoted = ", ".join(f'"{t}"' for t in tables)
            await self.conn.execute(f"TRUNCATE {quoted} CASCADE")
        await self.conn.execute(
            "SELECT setval(format('%I.%I', schemaname, sequencename)::regclass, 1, false) "
            "FROM pg_sequences WHERE schemaname = current_schema() AND last_value IS NOT NULL"
        )

    async def drop(self) -> None:
        if self.conn is not None:
            await self.conn.close()
        conn = await self._server_conn()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await conn.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _postgres_server_url() -> str:
    """The server to use, or skip (fail when REQUIRE_POSTGRES=1) when there is none."""
    explicit = os.environ.get("TEST_POSTGRES_URL")
    if explicit:
        return explicit
    default = os.environ.get("TEST_POSTGRES_DEFAULT_URL") or DEFAULT_POSTGRES_URL
    u = make_url(default)
    if _port_answers(u.host or "127.0.0.1", u.port or 5432):
        return default
    reason = f"PostgreSQL not reachable at {u.host}:{u.port} and TEST_POSTGRES_URL not set"
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail(f"REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def _postgres(_fixture_loop: _LoopThread) -> Iterator[_Postgres]:
    server = _postgres_server_url()
    pg = _Postgres(server)
    try:
        _fixture_loop.run(pg.create)
    except Exception as exc:  # a configured server that does not work is an error, never a skip
        try:
            _fixture_loop.run(pg.drop)
        except Exception:
            pass
        pytest.fail(f"cannot prepare PostgreSQL test database on {make_url(server)!r}: {exc!r}", pytrace=False)
    yield pg
    _fixture_loop.run(pg.drop)


# --- Public fixtures -----------------------------------------------------------------------------


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres")])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, _fixture_loop: _LoopThread) -> str:
    """Plain URL (sqlite:///... or postgresql://...) of a fresh, migrated, empty database."""
    if request.param == "sqlite":
        return _fresh_sqlite(request.getfixturevalue("_sqlite_template"), tmp_path)
    pg: _Postgres = request.getfixturevalue("_postgres")
    _fixture_loop.run(pg.clean)
    return pg.url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A `storage.db.Database` on `db_url` (so on both backends); disposed after the test."""
    database = Database(db_url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def sqlite_db(_sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh migrated SQLite `Database`, for tests that need not run on both backends."""
    database = Database(_fresh_sqlite(_sqlite_template, tmp_path))
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def redis_client() -> AsyncIterator[Any]:
    """A client of the Redis at 127.0.0.1:6379; the test is skipped when Redis is not running."""
    import redis.asyncio as aioredis

    client = aioredis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=0.5)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError):
        await client.aclose()
        pytest.skip("Redis not reachable at 127.0.0.1:6379")
    try:
        yield client
    finally:
        await client.aclose()
