"""Backups of the database and the photos under MEDIA_DIR, and their restore.

A backup is a directory:

    manifest.json          format, when, backend, schema revision, sha256 of every file
    database.sqlite3       SQLite: a consistent copy taken with SQLite's online backup API
    database.pgdump        PostgreSQL: `pg_dump --format=custom` (pg_dump must be on PATH)
    media/...              a copy of MEDIA_DIR (evidence photos are stored once by sha256)

The database is copied first, then the media: photos are written before the rows that name them
are committed, so every photo the copied database refers to is in the copied media (a photo saved
meanwhile is merely extra). Both can run while the service runs.

Restore puts both back: the database replaced as a whole (SQLite through the backup API into the
configured file; PostgreSQL with `pg_restore --clean --if-exists`), the media files copied into
MEDIA_DIR after their sha256 is checked against the manifest, then the schema migrated to this
code's head. It refuses a database that already holds candidates unless `force` is given: stop
the service first (docs/deploy.md).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite3"
PG_FILE = "database.pgdump"
MEDIA = "media"


class BackupError(Exception):
    """One line for the operator: what went wrong and what to do."""


@dataclass
class Manifest:
    backend: str
    revision: str | None
    created_at: str
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "backend": self.backend, "revision": self.revision,
                           "created_at": self.created_at, "files": self.files}, ensure_ascii=False, indent=2)

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST
        if not path.is_file():
            raise BackupError(f"{directory}: no {MANIFEST}; not a zikao-bot backup")
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise BackupError(f"{path}: backup format {data.get('format')!r}, this version reads {FORMAT}")
        return cls(data["backend"], data.get("revision"), data["created_at"], dict(data["files"]))

    @property
    def media_files(self) -> int:
        return sum(1 for p in self.files if p.startswith(MEDIA + "/"))


def _backend(database_url: str) -> str:
    name = make_url(database_url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise BackupError(f"unsupported database {name!r}")
    return name


def _sqlite_path(database_url: str) -> Path:
    path = make_url(database_url).database
    if not path or path == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _libpq(database_url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password (which would show in `ps`) and the environment carrying it."""
    u = make_url(database_url)
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    plain = u.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(cmd: list[str], env: dict[str, str]) -> None:
    if shutil.which(cmd[0]) is None:
        raise BackupError(f"{cmd[0]} not found: install the PostgreSQL client (e.g. apt-get install postgresql-client)")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise BackupError(f"{cmd[0]} failed ({done.returncode}): {last}")


def _revision(database_url: str) -> str | None:
    from storage.migrate import current_revision

    return current_revision(database_url)


def backup(database_url: str, media_dir: str | os.PathLike[str], target: str | os.PathLike[str],
           now: dt.datetime | None = None) -> Manifest:
    """Write a backup of the database and MEDIA_DIR into `target` (new or empty directory)."""
    out = Path(target)
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out}: not empty; give a new directory for each backup")
    backend = _backend(database_url)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(backend, _revision(database_url), (now or dt.datetime.now(dt.timezone.utc)).isoformat())
    if backend == "sqlite":
        source = _sqlite_path(database_url)
        if not source.is_file():
            raise BackupError(f"{source}: no such database file")
        db_file = out / SQLITE_FILE
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        dst = sqlite3.connect(db_file)
        try:
            with dst:
                src.backup(dst)  # the online backup API: consistent even while the service writes
        finally:
            dst.close()
            src.close()
    else:
        url, env = _libpq(database_url)
        db_file = out / PG_FILE
        _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={db_file}", f"--dbname={url}"], env)
    manifest.files[db_file.name] = _sha256(db_file)
    media = Path(media_dir)
    if media.is_dir():
        for path in sorted(p for p in media.rglob("*") if p.is_file()):
            rel = path.relative_to(media)
            dest = out / MEDIA / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
            manifest.files[f"{MEDIA}/{rel.as_posix()}"] = _sha256(dest)
    (out / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    return manifest


def verify(source: str | os.PathLike[str]) -> Manifest:
    """Read the manifest and check every file's sha256; BackupError names the first bad one."""
    src = Path(source)
    manifest = Manifest.read(src)
    for rel, digest in manifest.files.items():
        path = src / rel
        if not path.is_file():
            raise BackupError(f"{path}: missing from the backup")
        if _sha256(path) != digest:
            raise BackupError(f"{path}: damaged (sha256 differs from the manifest)")
    return manifest


def _holds_data(database_url: str) -> bool:
    from sqlalchemy import create_engine, inspect, text

    u = make_url(database_url)
    if u.get_backend_name() == "sqlite":
        if not _sqlite_path(database_url).exists():
            return False
        u = u.set(drivername="sqlite")
    else:
        u = u.set(drivername="postgresql+psycopg2")
    engine = create_engine(u)
    try:
        with engine.connect() as conn:
            if "candidates" not in inspect(conn).get_table_names():
                return False
            return conn.execute(text("SELECT EXISTS (SELECT 1 FROM candidates)")).scalar() in (True, 1)
    finally:
        engine.dispose()


def restore(source: str | os.PathLike[str], database_url: str, media_dir: str | os.PathLike[str],
            *, force: bool = False) -> Manifest:
    """Put a backup back into the configured database and MEDIA_DIR; migrate to head."""
    src = Path(source)
    manifest = verify(src)
    backend = _backend(database_url)
    if manifest.backend != backend:
        raise BackupError(f"the backup is of a {manifest.backend} database, DATABASE_URL is {backend}")
    if backend == "sqlite":
        _sqlite_path(database_url).parent.mkdir(parents=True, exist_ok=True)
    if not force and _holds_data(database_url):
        raise BackupError("the database already holds candidates; stop the service and give --force to replace it")
    if backend == "sqlite":
        src_conn = sqlite3.connect(f"file:{src / SQLITE_FILE}?mode=ro", uri=True)
        dst_conn = sqlite3.connect(_sqlite_path(database_url), timeout=30)
        try:
            with dst_conn:
                src_conn.backup(dst_conn)  # replaces every page of the target, under its lock
        finally:
            dst_conn.close()
            src_conn.close()
    else:
        url, env = _libpq(database_url)
        _run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
              f"--dbname={url}", str(src / PG_FILE)], env)
    media = Path(media_dir)
    for rel in manifest.files:
        if not rel.startswith(MEDIA + "/"):
            continue
        dest = media / rel[len(MEDIA) + 1:]
        if dest.is_file() and _sha256(dest) == manifest.files[rel]:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dest)
    from storage.migrate import upgrade

    upgrade(database_url)  # a backup of an older version comes back at this code's schema
    return manifest
