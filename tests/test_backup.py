"""`zikao-bot backup DIR` / `restore DIR`: the database and the photos come back as they were."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bot.cli import main
from storage.db import Database
from storage.demo import load_demo

TABLES = ("candidates", "courses", "notices", "business_windows", "score_records", "plan_courses")


def sync_engine(db_url: str):
    u = make_url(db_url)
    return create_engine(u.set(drivername="sqlite" if u.get_backend_name() == "sqlite" else "postgresql+psycopg2"))


def snapshot(db_url: str) -> dict:
    engine = sync_engine(db_url)
    try:
        with engine.connect() as conn:
            counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in TABLES}
            ids = conn.execute(text("SELECT id_number, name FROM candidates ORDER BY id_number")).all()
        return {"counts": counts, "candidates": [tuple(r) for r in ids]}
    finally:
        engine.dispose()


def execute(db_url: str, sql: str) -> None:
    engine = sync_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


@pytest.fixture
def service(db_url, tmp_path, monkeypatch):
    """The demo's data in the database and two photos under MEDIA_DIR, configured as for the CLI."""
    media = tmp_path / "media"
    (media / "photos" / "ab").mkdir(parents=True)
    (media / "photos" / "ab" / "abcdef.jpg").write_bytes(b"\xff\xd8photo-one\xff\xd9")
    (media / "photos" / "cd").mkdir()
    (media / "photos" / "cd" / "cdef01.png").write_bytes(b"\x89PNG photo-two")
    for k in ("ZIKAO_CONFIG", "REDIS_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("MEDIA_DIR", str(media))

    async def load() -> None:
        db = Database(db_url)
        try:
            await load_demo(db)
        finally:
            await db.dispose()

    asyncio.run(load())
    return db_url, media


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_backup_and_restore_round_trip(service, tmp_path, capsys):
    db_url, media = service
    before, photos = snapshot(db_url), files_under(media)
    assert before["counts"]["candidates"] > 0
    target = tmp_path / "backup-1"
    assert main(["backup", str(target)]) == 0
    assert "2 media files" in capsys.readouterr().out
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["revision"] and len(manifest["files"]) == 3

    # Disaster: rows gone, a photo gone, another damaged.
    execute(db_url, "DELETE FROM score_records")
    execute(db_url, "UPDATE candidates SET name = 'X'")
    (media / "photos" / "ab" / "abcdef.jpg").unlink()
    (media / "photos" / "cd" / "cdef01.png").write_bytes(b"garbage")

    assert main(["restore", str(target)]) == 1
    assert "--force" in capsys.readouterr().err  # a database with candidates is not replaced by accident
    assert main(["restore", str(target), "--force"]) == 0
    assert snapshot(db_url) == before
    assert files_under(media) == photos


def test_restore_into_an_empty_place(service, tmp_path, monkeypatch):
    db_url, media = service
    if not db_url.startswith("sqlite"):
        pytest.skip("a new SQLite file; on PostgreSQL the round trip above covers it")
    before, photos = snapshot(db_url), files_under(media)
    assert main(["backup", str(tmp_path / "b")]) == 0
    new_db, new_media = tmp_path / "new" / "zikao.sqlite3", tmp_path / "new" / "media"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{new_db}")
    monkeypatch.setenv("MEDIA_DIR", str(new_media))
    assert main(["restore", str(tmp_path / "b")]) == 0
    assert snapshot(f"sqlite:///{new_db}") == before
    assert files_under(new_media) == photos


def test_backup_refuses_a_used_directory_and_restore_a_damaged_backup(service, tmp_path, capsys):
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("x")
    assert main(["backup", str(used)]) == 1
    assert "not empty" in capsys.readouterr().err
    good = tmp_path / "good"
    assert main(["backup", str(good)]) == 0
    (good / "media" / "photos" / "ab" / "abcdef.jpg").write_bytes(b"tampered")
    assert main(["restore", str(good), "--force"]) == 1
    assert "damaged" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "nothing-here")]) == 1
