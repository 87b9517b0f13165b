"""Database engine and sessions, tuned per backend (SQLite: one writer connection, WAL)."""
from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

DEFAULT_SQLITE_PATH = "var/zikao.sqlite3"


def async_url(url: str) -> str:
    """Give a plain database URL its async driver: sqlite -> aiosqlite, postgresql -> asyncpg."""
    u = make_url(url)
    if u.drivername in ("sqlite", "sqlite+pysqlite"):
        u = u.set(drivername="sqlite+aiosqlite")
    elif u.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


class Database:
    """Owns the engine; `session()` opens a unit of work.

    SQLite fails under concurrent writers from one pool ("database is locked", see
    shared/PERFORMANCE.md), so it gets exactly one pooled connection per process: writes are
    serialised in-process and WAL plus a busy timeout handles other processes.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        # hide_parameters: statement parameters (ID numbers, password hashes) never reach error
        # messages or logs.
        self.url = async_url(url)
        u = make_url(self.url)
        self.is_sqlite = u.get_backend_name() == "sqlite"
        if self.is_sqlite:
            memory = u.database in (None, "", ":memory:")
            if not memory:
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs: dict = {"connect_args": {"timeout": 30}, "hide_parameters": True}
            if memory:
                kwargs["poolclass"] = StaticPool
            else:
                kwargs.update(pool_size=1, max_overflow=0, pool_timeout=30)
            self.engine: AsyncEngine = create_async_engine(self.url, echo=echo, **kwargs)
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            # No ping before every checkout (DB_POOL_PRE_PING=1 brings it back): it is one more
            # round trip for every transaction of the message path. A connection the server
            # dropped fails its one transaction and is replaced (SQLAlchemy invalidates the pool
            # on a disconnect error); connections are recycled every 30 minutes anyway.
            self.engine = create_async_engine(
                self.url, echo=echo, hide_parameters=True, pool_size=int(os.environ.get("DB_POOL_SIZE", "10")),
                max_overflow=10, pool_pre_ping=os.environ.get("DB_POOL_PRE_PING", "0") == "1", pool_recycle=1800,
            )
        self.session: async_sessionmaker[AsyncSession] = async_sessionmaker(self.engine, expire_on_commit=False)
        self._relaxed: AsyncEngine | None = None

    @property
    def relaxed_engine(self) -> AsyncEngine:
        """For writes whose loss in a *database server* crash is harmless (the message path's
        dedupe claims and nonces, replies written behind: docs/delivery.md): on PostgreSQL a
        small pool whose sessions commit without waiting for the WAL flush
        (`synchronous_commit=off`: visible to everyone at once, durable ~0.6 s later). SQLite:
        the one engine."""
        if self.is_sqlite:
            return self.engine
        if self._relaxed is None:
            self._relaxed = create_async_engine(
                self.url, hide_parameters=True, pool_size=4, max_overflow=4, pool_recycle=1800,
                pool_pre_ping=os.environ.get("DB_POOL_PRE_PING", "0") == "1",
                connect_args={"server_settings": {"synchronous_commit": "off"}},
            )
        return self._relaxed

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def insert(self, table):
        """A dialect INSERT, for `on_conflict_do_nothing` / `on_conflict_do_update` on either backend."""
        return (pg_insert if self.dialect == "postgresql" else sqlite_insert)(table)

    async def dispose(self) -> None:
        if self._relaxed is not None:
            await self._relaxed.dispose()
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    """Per-connection settings. The busy timeout comes first so that the rest wait for
    a lock instead of failing; switching to WAL is only attempted when the file is not
    in WAL already (the switch needs an exclusive lock, which SQLite may refuse at once
    without calling the busy handler while another connection holds the file)."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=10000")
    for attempt in range(50):
        try:
            cur.execute("PRAGMA journal_mode")
            mode = cur.fetchone()[0]
            if str(mode).lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            break
        except Exception as exc:  # the driver adapter may wrap sqlite3.OperationalError
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.02 * (attempt + 1))
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
