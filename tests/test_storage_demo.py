"""Demo data: loads on both backends, is realistic enough to demo every flow, and reloads idempotently."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage import demo
from storage import models as m
from storage.db import Database
from storage.identifiers import valid_admission_number, valid_id_number, valid_mobile
from storage.passwords import initial_password, verify_password
from storage.vocab import WINDOW_KINDS

NOW = dt.datetime(2026, 3, 10, 6, 30, tzinfo=dt.timezone.utc)  # 14:30 in Shanghai


async def _count(db: Database, model) -> int:
    async with db.session() as s:
        return await s.scalar(select(func.count()).select_from(model))


async def _snapshot(db: Database) -> dict[str, list]:
    out = {}
    async with db.session() as s:
        for table in m.Base.metadata.sorted_tables:
            rows = (await s.execute(select(table).order_by(*table.primary_key.columns))).all()
            out[table.name] = [tuple(r) for r in rows]
    return out


async def test_demo_loads_and_reloading_changes_nothing(db: Database) -> None:
    await demo.load_demo(db, now=NOW)
    before = await _snapshot(db)
    assert len(before["candidates"]) == 5
    report = await demo.load_demo_report(db, now=NOW + dt.timedelta(hours=3))  # same day in Shanghai
    assert report.committed, report.format()
    assert all(r.inserted == 0 and r.updated == 0 for r in report.files), report.format()
    assert await _snapshot(db) == before


async def test_reloading_on_a_later_day_moves_the_windows_without_adding_rows(db: Database) -> None:
    await demo.load_demo(db, now=NOW)
    counts = {t: await _count(db, t) for t in (m.Candidate, m.ScoreRecord, m.BusinessWindow, m.Sitting)}
    report = await demo.load_demo_report(db, now=NOW + dt.timedelta(days=2))
    windows = next(r for r in report.files if r.file == "business_windows.csv")
    assert (windows.inserted, windows.updated) == (0, len(demo.WINDOWS))
    assert {t: await _count(db, t) for t in counts} == counts


async def test_demo_candidates_are_valid_and_log_in_with_the_initial_password(db: Database) -> None:
    await demo.load_demo(db, now=NOW)
    async with db.session() as s:
        people = (await s.scalars(select(m.Candidate))).all()
        numbers = defaultdict(list)
        for a in await s.scalars(select(m.AdmissionNumber)):
            numbers[a.candidate_id].append(a.number)
    assert {p.name: p.id_number for p in people} == demo.DEMO_CANDIDATES
    for p in people:
        assert valid_id_number(p.id_number) and p.id_number.startswith("310"), p.name
        assert valid_mobile(p.mobile) and valid_mobile(p.emergency_mobile)
        assert p.household_register.startswith("上海市") and p.mailing_address and len(p.postcode) == 6
        assert verify_password(initial_password(p.id_number), p.password_hash)
        assert all(valid_admission_number(n) for n in numbers[p.id])
    by_name = {p.name: p for p in people}
    assert len(numbers[by_name["张伟"].id]) == 2
    assert sum(len(v) for v in numbers.values()) == 6
    assert by_name["陈静"].id_number.endswith("X")  # a check digit X, for the login flow


async def test_demo_plans_are_complete_with_textbooks_and_a_thesis(db: Database) -> None:
    await demo.load_demo(db, now=NOW)
    async with db.session() as s:
        majors = {mj.code: mj for mj in await s.scalars(select(m.Major))}
        plan = defaultdict(list)
        for pc, course in await s.execute(select(m.PlanCourse, m.Course).join(m.Course)):
            plan[pc.major_code].append((pc, course))
        with_books = set(await s.scalars(select(m.Textbook.course_code)))
        book = await s.scalar(select(m.Textbook).where(m.Textbook.course_code == "03708", m.Textbook.editor != "本书编写组"))
    assert set(majors) == {"020301K", "120402", "120103", "690206"}
    assert majors["020301K"].name == "金融学(专升本)" and majors["690206"].level == "专科"
    for code, major in majors.items():
        counted = sum(pc.credits for pc, _ in plan[code] if pc.category != "加考")
        assert counted >= major.required_credits >= 70, code
        assert major.notes and major.university
        kinds = {c.kind for _, c in plan[code]}
        assert "实践" in kinds or code == "120402"
        if major.level == "专升本":
            assert "论文" in kinds and major.graduation_rules["thesis"] is True
            thesis = [pc for pc, c in plan[code] if c.kind == "论文"]
            assert thesis[0].credits == 0  # 不计学分
        positions = sorted(pc.position for pc, _ in plan[code])
        assert positions == list(range(1, len(positions) + 1))
        assert all(c.code in with_books for _, c in plan[code] if c.kind != "论文"), code
    credits = {c.code: pc.credits for pc, c in plan["020301K"]}
    assert credits["00015"] == 14 and credits["03708"] == 2 and credits["03709"] == 4 and credits["04183"] == 5
    assert (book.publisher, book.editor, book.edition) == ("高等教育出版社", "李捷 王顺生", "2018年版")
    assert book.syllabus_name and book.syllabus_author and book.syllabus_version
    assert majors["120402"].graduation_rules["extra_exam_options"][1]["courses"] == ["00261", "00277"]


async def test_demo_scores_cover_failures_grades_exemption_and_transfer(db: Database) -> None:
    await demo.load_demo(db, now=NOW)
    async with db.session() as s:
        records = (await s.execute(select(m.ScoreRecord, m.Course).join(m.Course))).all()
        sittings = set(await s.scalars(select(m.Sitting.code)))
    assert {"202304", "202310", "202404", "202410", "202504", "202510"} <= sittings
    kinds = defaultdict(list)
    for r, course in records:
        kinds[r.kind].append((r, course))
    assert len(kinds["exemption"]) >= 1 and len(kinds["transfer"]) >= 1
    assert all(r.passed and r.sitting_code == "" for r, _ in kinds["exemption"] + kinds["transfer"])
    exams = kinds["exam"]
    assert any(r.score is not None and r.score < 60 and not r.passed for r, _ in exams)
    assert any(c.kind == "实践" and r.grade == "合格" and r.passed for r, c in exams)
    assert any(c.kind == "论文" and r.passed for r, c in exams)
    assert any(r.grade == "缺考" for r, _ in exams)
    assert all((r.passed_on is not None) == r.passed for r, _ in exams)


async def test_demo_windows_are_open_closed_and_upcoming_around_now(db: Database) -> None:
    await demo.load_demo(db, now=NOW)
    async with db.session() as s:
        windows = (await s.scalars(select(m.BusinessWindow))).all()
        sittings = set(await s.scalars(select(m.Sitting.code)))
    assert {w.kind for w in windows} == set(WINDOW_KINDS) - {"transfer_in"}
    state = {w.kind: "open" if w.opens_at <= NOW < w.closes_at else "closed" if w.closes_at <= NOW else "upcoming"
             for w in windows}
    assert {k for k, v in state.items() if v == "open"} == {"exemption", "backfill", "graduation", "transfer_out"}
    assert {k for k, v in state.items() if v == "closed"} == {"thesis"}
    assert {k for k, v in state.items() if v == "upcoming"} == {"degree", "graduation_fee"}
    for w in windows:
        assert w.sitting_code in sittings
        assert w.notice.startswith("办理时间：") and "400-0960-990" in w.notice and len(w.notice) > 100
    # March 2026: the sitting just held is 2025年10月, the coming one 2026年04月.
    graduation = next(w for w in windows if w.kind == "graduation")
    exemption = next(w for w in windows if w.kind == "exemption")
    assert (graduation.sitting_code, graduation.title) == ("202510", "2025年下半年申请毕业")
    assert (exemption.sitting_code, exemption.title) == ("202604", "2026年上半年申请免考")
    assert "2026年3月5日 09:00 至 2026年3月20日 16:00" in exemption.notice


@pytest.mark.parametrize(
    "today, current, nxt",
    [
        (dt.date(2026, 3, 31), "202510", "202604"),
        (dt.date(2026, 4, 1), "202604", "202610"),
        (dt.date(2026, 9, 30), "202604", "202610"),
        (dt.date(2026, 10, 1), "202610", "202704"),
        (dt.date(2026, 12, 31), "202610", "202704"),
    ],
)
def test_half_year_sittings(today: dt.date, current: str, nxt: str) -> None:
    assert demo.half_year_sittings(today) == (current, nxt)


def test_exam_dates_are_saturdays_in_the_right_weeks() -> None:
    assert demo.exam_date("202604") == dt.date(2026, 4, 18)
    assert demo.exam_date("202610") == dt.date(2026, 10, 24)
    assert all(demo.exam_date(f"{y}{mo}").weekday() == 5 for y in range(2020, 2031) for mo in ("04", "10"))


async def test_load_demo_raises_with_the_report_when_data_is_broken(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "demo"
    broken.mkdir()
    for p in demo.DEMO_DIR.glob("*.csv"):
        (broken / p.name).write_bytes(p.read_bytes())
    (broken / "courses.csv").write_text("code,name,kind\n0001,坏课程,理论\n", "utf-8")
    monkeypatch.setattr(demo, "DEMO_DIR", broken)
    with pytest.raises(demo.DemoLoadError, match="courses.csv 第 2 行"):
        await demo.load_demo(sqlite_db, now=NOW)
    assert await _count(sqlite_db, m.Candidate) == 0


async def test_windows_now_opens_every_application_window_and_a_plain_reload_puts_them_back(db: Database) -> None:
    await demo.load_demo(db, now=NOW, windows_now=True)
    async with db.session() as s:
        windows = {w.kind: w for w in (await s.scalars(select(m.BusinessWindow))).all()}
    opened = {k for k, w in windows.items() if w.opens_at <= NOW < w.closes_at}
    assert opened == {"exemption", "backfill", "thesis", "graduation", "degree", "transfer_out"}
    assert windows["graduation_fee"].opens_at > NOW  # the payment period is --pay-now's
    thesis = windows["thesis"]
    assert thesis.closes_at - NOW >= dt.timedelta(days=7) - dt.timedelta(hours=1)
    assert thesis.notice.startswith("办理时间：2026年3月10日 13:00 至 2026年3月17日 14:00")
    await demo.load_demo(db, now=NOW)  # without it: the same rows, back to their usual times
    async with db.session() as s:
        again = {w.kind: w for w in (await s.scalars(select(m.BusinessWindow))).all()}
    assert len(again) == len(windows)
    assert again["thesis"].closes_at <= NOW and again["degree"].opens_at > NOW
