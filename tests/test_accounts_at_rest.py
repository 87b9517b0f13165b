"""Accounts at rest: SECRET_KEY keys the blind index and encrypts ID numbers and mobiles; the
migration encrypts existing rows; old-cost password hashes are replaced on login; the audit log."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text, update

from bot.config import ConfigError, apply_secret_key, load_settings
from storage import accounts, keys, migrate
from storage.db import Database
from storage.models import AccountEvent, Candidate
from storage.passwords import hash_password
from tests.conftest import TEST_SECRET_KEY
from tests.dialog_fixtures import ID_NUMBER, MOBILE, PASSWORD, add_candidate, bind_on_page

ROOT = Path(__file__).resolve().parent.parent
OPENID = "o_at_rest_00000000000000001"


@pytest.fixture
def other_key():
    """Run a block under another SECRET_KEY, then restore the suite's."""
    yield lambda: keys.configure("another-secret-key-for-this-test-only-0123")
    keys.configure(TEST_SECRET_KEY)


def test_blind_index_changes_with_the_secret_key(other_key):
    # Finding 6: the index was an HMAC under a constant key in the source.
    ours = keys.id_index(ID_NUMBER)
    assert ours == keys.id_index(ID_NUMBER.lower()) and len(ours) == 64 and ID_NUMBER not in ours
    other_key()
    assert keys.id_index(ID_NUMBER) != ours


def test_encryption_is_randomised_and_needs_the_key(other_key):
    a, b = keys.encrypt(ID_NUMBER), keys.encrypt(ID_NUMBER)
    assert a != b and ID_NUMBER not in a and keys.decrypt(a) == keys.decrypt(b) == ID_NUMBER
    other_key()
    with pytest.raises(keys.KeyNotConfigured):
        keys.decrypt(a)


def test_an_encrypted_column_refuses_comparison_with_a_value():
    with pytest.raises(TypeError, match="blind index"):
        select(Candidate.id).where(Candidate.id_number == ID_NUMBER)


async def test_id_numbers_and_mobiles_are_not_in_the_database_file_in_clear(sqlite_db: Database):
    cid = await add_candidate(sqlite_db, verified=True)
    async with sqlite_db.session() as s, s.begin():
        await s.execute(update(Candidate).where(Candidate.id == cid).values(emergency_mobile="13911112222"))
    await bind_on_page(sqlite_db, OPENID)
    path = Path(sqlite_db.engine.url.database)
    await sqlite_db.dispose()  # the WAL is folded into the file
    raw = path.read_bytes() + (path.with_name(path.name + "-wal").read_bytes()
                               if path.with_name(path.name + "-wal").exists() else b"")
    for clear in (ID_NUMBER, MOBILE, "13911112222"):
        assert clear.encode() not in raw, clear
    # ... while the application reads them back.
    db = Database(f"sqlite:///{path}")
    try:
        async with db.session() as s:
            c = await s.scalar(select(Candidate).where(Candidate.with_id_number(ID_NUMBER)))
        assert (c.id_number, c.mobile, c.emergency_mobile) == (ID_NUMBER, MOBILE, "13911112222")
        async with db.engine.connect() as conn:
            stored = (await conn.execute(text("SELECT id_number, mobile FROM candidates"))).first()
        assert stored[0].startswith("v1:") and stored[1].startswith("v1:")
    finally:
        await db.dispose()


async def test_core_inserts_get_the_blind_index_too(db: Database):
    async with db.session() as s, s.begin():
        await s.execute(insert(Candidate).values(id_number=ID_NUMBER, name="王小明", password_hash="x"))
    async with db.session() as s:
        assert await s.scalar(select(Candidate.name).where(Candidate.with_id_number(ID_NUMBER))) == "王小明"


async def test_login_with_an_old_cost_hash_rehashes_at_todays_cost(db: Database):
    cid = await add_candidate(db, verified=True)
    old = hash_password(PASSWORD, n=2**11)
    async with db.session() as s, s.begin():
        await s.execute(update(Candidate).where(Candidate.id == cid).values(password_hash=old))
    assert await accounts.check_login(db, ID_NUMBER, "wrong", OPENID) is None
    async with db.session() as s:
        assert await s.scalar(select(Candidate.password_hash).where(Candidate.id == cid)) == old
    assert await accounts.check_login(db, ID_NUMBER, PASSWORD, OPENID) is not None
    async with db.session() as s:
        new = await s.scalar(select(Candidate.password_hash).where(Candidate.id == cid))
    from storage import passwords

    assert new != old and new.split("$")[1] == str(passwords.current_cost())
    assert await accounts.verify_candidate_password(db, cid, PASSWORD)


async def test_the_migration_encrypts_existing_rows(db_url: str):
    await migrate.downgrade_async(db_url, "0005")
    db = Database(db_url)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO candidates (id_number, id_type, name, password_hash, mobile, emergency_mobile, created_at, updated_at) "
                "VALUES (:i, '身份证', '王小明', 'x', :m, NULL, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                {"i": ID_NUMBER, "m": MOBILE})
        await migrate.upgrade_async(db_url)
        async with db.engine.connect() as conn:
            row = (await conn.execute(text("SELECT id_number, id_index, mobile, emergency_mobile FROM candidates"))).one()
        assert row.id_number.startswith("v1:") and row.mobile.startswith("v1:") and row.emergency_mobile is None
        assert row.id_index == keys.id_index(ID_NUMBER)
        async with db.session() as s:
            c = await s.scalar(select(Candidate).where(Candidate.with_id_number(ID_NUMBER)))
        assert c.id_number == ID_NUMBER and c.mobile == MOBILE
        # And back: the downgrade decrypts, the upgrade encrypts again.
        await db.dispose()
        await migrate.downgrade_async(db_url, "0005")
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT id_number, mobile FROM candidates"))).one() == (ID_NUMBER, MOBILE)
        await migrate.upgrade_async(db_url)
        assert await migrate.schema_diff_async(db_url) == []
    finally:
        await db.dispose()


def test_production_start_up_refuses_a_missing_or_short_secret_key(tmp_path):
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3"}
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "migrate"], env=env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "SECRET_KEY: required in production" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "migrate"], env={**env, "SECRET_KEY": "short"},
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "SECRET_KEY: at least 32 characters" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "migrate"], env={**env, "SECRET_KEY": "k" * 40},
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "k" * 40 not in str(load_settings({"SECRET_KEY": "k" * 40}).describe())


def test_demo_mode_uses_the_demo_key_and_production_refuses_it():
    with pytest.raises(ConfigError, match="demo key cannot be used in production"):
        apply_secret_key(load_settings({"SECRET_KEY": keys.DEMO_SECRET_KEY}))
    apply_secret_key(load_settings({"ZIKAO_MODE": "demo"}))  # keeps the suite's key: already configured
    assert keys.id_index(ID_NUMBER) == keys.blind_index("id", ID_NUMBER)


# --- the audit log ---------------------------------------------------------------------------------


async def test_account_events_are_audited_masked(db: Database):
    await add_candidate(db, verified=True)
    await bind_on_page(db, OPENID)
    await accounts.unbind(db, OPENID)
    events = await accounts.audit_events(db)
    assert [e.event for e in events] == ["unbind", "password_change", "bind"]
    assert {e.subject for e in events} == {"3101**********1234"}
    assert {e.openid_tag for e in events} == {keys.openid_tag(OPENID)} and OPENID not in repr(events)
    async with db.session() as s:
        rows = (await s.scalars(select(AccountEvent))).all()
    assert all(ID_NUMBER not in repr((r.subject, r.detail)) for r in rows)


async def test_a_lockout_is_audited(db: Database):
    await add_candidate(db, verified=True)
    for i in range(5):
        await accounts.record_failure(db, ID_NUMBER, OPENID)
    [event] = await accounts.audit_events(db, event="lockout")
    assert event.subject == "3101**********1234" and event.detail == {"scope": "pair"}


def test_audit_list_command_prints_the_log(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "DATABASE_URL", "ZIKAO_", "SECRET_KEY"))}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path}/audit.sqlite3", SECRET_KEY=TEST_SECRET_KEY)
    code = f"""
import asyncio
from bot.config import apply_secret_key, load_settings
from storage.db import Database
from storage.migrate import upgrade
from storage import accounts
from tests.dialog_fixtures import add_candidate
apply_secret_key(load_settings())
upgrade("sqlite:///{tmp_path}/audit.sqlite3")
async def main():
    db = Database("sqlite:///{tmp_path}/audit.sqlite3")
    cid = await add_candidate(db, verified=True)
    await accounts.bind(db, "{OPENID}", cid)
    await accounts.update_contacts(db, cid, {{"email": "a@example.com"}}, openid="{OPENID}")
    await db.dispose()
asyncio.run(main())
"""
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, timeout=120)
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "audit", "list"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "contact_change" in lines[0] and "fields=['email']" in lines[0] and "bind " in lines[1]
    assert "3101**********1234" in lines[1] and ID_NUMBER not in proc.stdout and OPENID not in proc.stdout
    only = subprocess.run([sys.executable, "-m", "bot.cli", "audit", "list", "--event", "bind", "--id-number", ID_NUMBER],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert only.returncode == 0 and len(only.stdout.strip().splitlines()) == 1
