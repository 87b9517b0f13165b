"""The console's 外省转入 pages: admins list records, move a record's status and 现场确认 slot and mark
its courses, through storage.transfers (the path of the import and `zikao-bot transfer-in status`)."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from storage import models as m
from storage import transfers as tr
from storage.db import Database
from storage.importer import import_directory
from storage.models_transfers import TransferIn
from tests.console_fixtures import ADMIN, EXEMPTION_REVIEWER
from tests.test_console import audit_rows, browser, settings, world  # noqa: F401 (fixtures)
from tests.test_import import EXAMPLES
from tests.test_transfers import OPENID, SUN_ADMISSION, bind, pushes

REF = "ZR2026000001"
RECORD = f"/console/transfers-in/{REF}"


@pytest.fixture
async def reviewing(db: Database, world, tmp_path: Path) -> int:
    """A record like the documented example, but still 审核中 (no 现场确认 yet), its candidate bound."""
    files = tmp_path / "transfer"
    files.mkdir()
    for name in ("transfers_in.csv", "transfer_in_courses.csv"):
        text = (EXAMPLES / name).read_text(encoding="utf-8").replace("ZR2024000017", REF)
        (files / name).write_text(text, encoding="utf-8")
    csv = files / "transfers_in.csv"
    header, line = csv.read_text(encoding="utf-8").splitlines()[:2]
    cells = line.split(",")
    cells[7:12] = ["审核中", "", "", "", ""]
    csv.write_text("\n".join([header, ",".join(cells)]) + "\n", encoding="utf-8")
    report = await import_directory(db, files)
    assert report.ok, report.format()
    cid = await bind(db)
    async with db.session() as s, s.begin():  # the record's own push on import is not what is tested
        await s.execute(m.Outbox.__table__.delete().where(m.Outbox.openid == OPENID))
    return cid


async def record(db: Database) -> TransferIn:
    async with db.session() as s:
        return await s.scalar(select(TransferIn).where(TransferIn.reference == REF))


STATUS_FORM = {"status": "confirming", "reason": "", "confirm_at": "2026-12-03T09:00", "confirm_until": "2026-12-03T11:30",
               "place": "上海市教育考试院一楼服务大厅", "bring": "身份证原件；转出成绩单原件"}


async def test_admin_sets_a_confirmation_slot_and_the_push_and_audit_are_written(browser, world, reviewing,
                                                                                  db: Database) -> None:
    admin = await browser()
    await admin.login(ADMIN)
    listing = await admin.get("/console/transfers-in")
    assert listing.status == 200 and REF in listing.body_text and "孙浩" in listing.body_text
    page = await admin.get(RECORD)
    assert page.status == 200 and "江苏省" in page.body_text and "360118200345" in page.body_text
    assert "3101**********1238" in page.body_text and "310101198801011238" not in page.body_text  # ID masked
    assert "课程内容与本市考试计划不一致" in page.body_text

    r = await admin.post(f"{RECORD}/status", STATUS_FORM, follow=True)
    assert r.status == 200 and "待现场确认" in r.body_text and "已通知考生（1 条推送待发送）" in r.body_text
    row = await record(db)
    assert row.status == "confirming" and row.confirm_place == "上海市教育考试院一楼服务大厅"
    assert row.confirm_at.isoformat() == "2026-12-03T01:00:00+00:00"  # 09:00 Beijing
    [push] = await pushes(db)
    assert "2026年12月03日 09:00" in push.payload["text"] and "一楼服务大厅" in push.payload["text"]

    [entry] = await audit_rows(db, "transfer_in_status")
    assert entry.username == ADMIN and entry.target == f"transfer_in:{REF}"
    assert entry.before["status"] == "reviewing" and entry.before["confirm_at"] is None
    assert entry.after["status"] == "confirming" and entry.after["confirm_at"].startswith("2026-12-03T01:00")
    assert entry.after["pushes"] == 1
    assert "审核中 → 待现场确认" in (await admin.get(RECORD)).body_text  # in the record's history


@pytest.mark.parametrize("form, why", [
    ({"status": "reviewing"}, "状态不能从“待现场确认”退回“审核中”"),
    ({"status": "rejected", "reason": "  "}, "未通过的转入须填写原因（考生会看到）"),
    ({"confirm_at": "明天上午"}, "格式不对"),
])
async def test_a_refused_move_says_why_and_changes_nothing(browser, world, reviewing, db: Database,
                                                            form: dict, why: str) -> None:
    admin = await browser()
    await admin.login(ADMIN)
    await admin.get(RECORD)
    assert (await admin.post(f"{RECORD}/status", STATUS_FORM)).status == 302
    before = await record(db)
    r = await admin.post(f"{RECORD}/status", STATUS_FORM | form)
    assert r.status == 400 and why in r.body_text
    after = await record(db)
    assert (after.status, after.reason, after.confirm_at, after.status_changes) == (
        before.status, before.reason, before.confirm_at, before.status_changes)
    assert len(await pushes(db)) == 1 and len(await audit_rows(db, "transfer_in_status")) == 1


async def test_a_reviewer_cannot_open_or_move_a_transfer(browser, world, reviewing, db: Database) -> None:
    reviewer = await browser()
    await reviewer.login(EXEMPTION_REVIEWER)
    for path in ("/console/transfers-in", RECORD):
        r = await reviewer.get(path)
        assert r.status == 403 and "只有管理员" in r.body_text and "孙浩" not in r.body_text
    await reviewer.get("/console/")
    assert "外省转入" not in (await reviewer.get("/console/")).body_text  # not in the menu either
    r = await reviewer.post(f"{RECORD}/status", STATUS_FORM)
    assert r.status == 403
    assert (await record(db)).status == "reviewing" and await pushes(db) == []


async def test_without_a_session_the_transfer_pages_redirect_to_sign_in(browser, world, reviewing, db: Database) -> None:
    anon = await browser()
    for path in ("/console/transfers-in", RECORD):
        r = await anon.client.get(path, allow_redirects=False)
        assert r.status == 302 and r.headers["Location"].startswith("/console/login?next=")
    r = await anon.client.post(f"{RECORD}/status", data=STATUS_FORM | {"_csrf": "x"}, allow_redirects=False)
    assert r.status == 302 and r.headers["Location"].startswith("/console/login")
    assert (await record(db)).status == "reviewing"


async def test_a_move_without_the_csrf_token_is_refused(browser, world, reviewing, db: Database) -> None:
    admin = await browser()
    await admin.login(ADMIN)
    await admin.get(RECORD)
    assert (await admin.post(f"{RECORD}/status", STATUS_FORM, csrf="-")).status == 403
    assert (await record(db)).status == "reviewing" and await pushes(db) == []


async def test_courses_are_marked_and_a_rejection_needs_its_reason(browser, world, reviewing, db: Database) -> None:
    admin = await browser()
    await admin.login(ADMIN)
    await admin.get(RECORD)
    r = await admin.post(f"{RECORD}/course", {"course": "03709", "verdict": "reject", "note": ""})
    assert r.status == 400 and "不认定的课程须写明原因" in r.body_text
    r = await admin.post(f"{RECORD}/course", {"course": "03709", "verdict": "reject", "note": "成绩单无公章"}, follow=True)
    assert r.status == 200 and "课程 03709：不认定" in r.body_text
    [view] = await tr.list_transfers_in(db, reference=REF)
    assert {c.course_code: (c.accepted, c.note) for c in view.courses}["03709"] == (False, "成绩单无公章")
    [entry] = await audit_rows(db, "transfer_in_course")
    assert entry.before == {"course": "03709", "accepted": True, "note": None}
    assert entry.after["accepted"] is False and entry.after["note"] == "成绩单无公章"

    # Completed: the accepted courses become results; one accepted afterwards is credited at once.
    await admin.post(f"{RECORD}/status", STATUS_FORM | {"status": "completed"})
    assert (await record(db)).status == "completed"
    await admin.post(f"{RECORD}/course", {"course": "00051", "verdict": "accept", "note": ""})
    async with db.session() as s:
        credited = set(await s.scalars(select(m.ScoreRecord.course_code).where(
            m.ScoreRecord.admission_number == SUN_ADMISSION, m.ScoreRecord.kind == "transfer")))
    assert credited == {"00015", "00051"}


async def test_the_list_filters_by_status_and_by_name_or_admission_number(browser, world, reviewing,
                                                                          db: Database) -> None:
    admin = await browser()
    await admin.login(ADMIN)
    assert REF in (await admin.get("/console/transfers-in?status=reviewing")).body_text
    assert REF not in (await admin.get("/console/transfers-in?status=completed")).body_text
    for who, found in (("孙", True), ("0124241", True), ("王", False), ("9999", False)):
        await admin.get("/console/transfers-in")
        r = await admin.post("/console/transfers-in/filter", {"who": who, "status": ""}, follow=True)
        assert (REF in r.body_text) == found, who
    assert "孙" not in str(r.url) and "0124241" not in str(r.url)  # kept in the session, not in the URL
