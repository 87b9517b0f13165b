"""Applications with evidence: the life-cycle table, eligibility and date rules, drafts, decisions."""
from __future__ import annotations

import datetime as dt
import itertools
import json
from dataclasses import dataclass
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from storage import applications as apps
from storage import models as m
from storage import outbox
from storage.applications import (
    ApplicationData,
    EvidenceData,
    EvidenceTypeInfo,
    ItemData,
    PlanCourseInfo,
)
from storage.db import Database
from storage.importer import import_directory
from storage.models_applications import Application, ApplicationItem, EvidenceType, Photo
from tests.test_outbox import EXAMPLES, ZHAO, add_user, candidate_id

UTC = dt.timezone.utc
TODAY = dt.date(2026, 11, 23)
ZHAO_ADMISSION = "012424100318"  # docs/examples: major 120402; 03708, 03709, 00052 passed, 00015 exempted
OPENID = "o_zhao"

TYPES = {
    "cet4": EvidenceTypeInfo("cet4", "大学英语四级（CET-4）成绩单", position=50),
    "diploma": EvidenceTypeInfo("diploma", "毕业证书", needs_companion=True, position=70),
    "chsi_record": EvidenceTypeInfo("chsi_record", "教育部学历证书电子注册备案表", companion=True, position=80),
    "cdgdc_report": EvidenceTypeInfo("cdgdc_report", "中国高等教育学历认证报告", companion=True, position=90),
    "score_proof": EvidenceTypeInfo("score_proof", "成绩证明材料", for_exemption=False, position=100),
}


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


def evidence(type_code: str = "cet4", photo_ids: list[int] | None = None, **kw) -> EvidenceData:
    values = {"number": "CET4-2018-000123", "obtained_month": "2018-06", "province": "上海市"} | kw
    return EvidenceData(type_code=type_code, photo_ids=[1] if photo_ids is None else photo_ids, **values)


# --- The transition table ----------------------------------------------------------------------------


ALLOWED = {
    ("draft", "save"): "draft",
    ("draft", "submit"): "submitted",
    ("submitted", "submit"): "submitted",
    ("submitted", "approve"): "approved",
    ("submitted", "reject"): "rejected",
    ("rejected", "save"): "rejected",
    ("rejected", "submit"): "submitted",
}


@pytest.mark.parametrize("status, action", list(itertools.product(apps.STATUS_LABELS, apps.ACTIONS)))
def test_transition_table_allows_exactly_the_life_cycle(status: str, action: str) -> None:
    if (status, action) in ALLOWED:
        assert apps.next_status(status, action) == ALLOWED[(status, action)]
    else:
        with pytest.raises(apps.TransitionRefused) as e:
            apps.next_status(status, action)
        assert e.value.message.endswith("。")


@pytest.mark.parametrize("status, action, words", [
    ("draft", "approve", "草稿"),
    ("approved", "submit", "审核通过"),
    ("approved", "reject", "审核通过"),
    ("rejected", "approve", "重新提交"),
    ("submitted", "save", "直接提交"),
])
def test_refused_transitions_say_why(status: str, action: str, words: str) -> None:
    with pytest.raises(apps.TransitionRefused, match=words):
        apps.next_status(status, action)


def test_unknown_status_or_action_is_a_programming_error() -> None:
    with pytest.raises(ValueError) as e:
        apps.next_status("paid", "submit")
    assert not isinstance(e.value, apps.TransitionRefused)
    with pytest.raises(ValueError):
        apps.next_status("draft", "withdraw")


# --- Windows -------------------------------------------------------------------------------------------


@dataclass
class W:
    kind: str
    title: str
    opens_at: dt.datetime
    closes_at: dt.datetime
    id: int = 0


def at(y: int, mo: int, d: int, h: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, tzinfo=UTC)


def test_window_is_open_from_opening_until_just_before_closing() -> None:
    w = W("exemption", "申请免考", at(2026, 9, 1, 1), at(2026, 9, 13, 8))
    assert apps.check_window([w], "exemption", at(2026, 9, 1, 1)).is_open
    assert apps.check_window([w], "exemption", at(2026, 9, 13, 7)).is_open
    assert not apps.check_window([w], "exemption", at(2026, 9, 13, 8)).is_open
    assert not apps.check_window([w], "backfill", at(2026, 9, 5)).is_open


def test_closed_window_tells_when_the_next_one_opens_in_beijing_time() -> None:
    windows = [
        W("exemption", "上半年", at(2026, 3, 1, 1), at(2026, 3, 10, 8)),
        W("exemption", "下半年", at(2026, 9, 1, 1), at(2026, 9, 13, 8)),
        W("exemption", "明年", at(2027, 3, 1, 1), at(2027, 3, 10, 8)),
        W("backfill", "补登", at(2026, 6, 1, 1), at(2026, 6, 10, 8)),
    ]
    check = apps.check_window(windows, "exemption", at(2026, 5, 1))
    assert not check.is_open and check.next.title == "下半年"
    text = apps.window_closed_text(check)
    assert "申请免考现在不在办理时间内" in text and "2026年09月01日 09:00" in text and "2026年09月13日 16:00" in text
    none_next = apps.check_window(windows, "exemption", at(2027, 4, 1))
    assert "还没有公布" in apps.window_closed_text(none_next)


# --- Eligibility and evidence -----------------------------------------------------------------------------


PLAN = [
    PlanCourseInfo("03708", "中国近现代史纲要", 2), PlanCourseInfo("00015", "英语(二)", 14),
    PlanCourseInfo("00320", "领导科学", 6), PlanCourseInfo("00051", "管理系统中计算机应用", 3),
    PlanCourseInfo("00052", "管理系统中计算机应用(实践)", 1, "实践"),
    PlanCourseInfo("07998", "行政管理学毕业论文", 0, "论文"),
]


def test_exemption_courses_exclude_passed_exempted_pending_and_thesis() -> None:
    states = {"03708": "passed", "00015": "exempted", "00051": "pending", "00052": "transferred"}
    choices = {c.code: c for c in apps.exemption_choices(PLAN, states)}
    assert [c for c, ch in choices.items() if ch.eligible] == ["00320"]
    assert choices["03708"].why_not == "已通过"
    assert choices["00015"].why_not == "已免考"
    assert choices["00051"].why_not == "已在申请中，等待审核"
    assert choices["00052"].why_not == "已转入"
    assert "论文" in choices["07998"].why_not
    assert choices["00015"].label() == "00015 英语(二)（已免考）"


def test_graduation_certificate_needs_a_second_evidence() -> None:
    alone = apps.companion_problem([evidence("diploma")], TYPES)
    assert alone == "使用毕业证书申请免考，还须提供教育部学历证书电子注册备案表或中国高等教育学历认证报告。"
    assert apps.companion_problem([evidence("diploma"), evidence("cet4")], TYPES) == alone
    assert apps.companion_problem([evidence("diploma"), evidence("chsi_record")], TYPES) is None
    assert apps.companion_problem([evidence("cdgdc_report"), evidence("diploma")], TYPES) is None
    assert apps.companion_problem([evidence("cet4")], TYPES) is None
    item = ItemData("00015", evidences=[evidence("diploma")])
    assert any("备案表" in p for p in apps.exemption_item_problems(item, "英语(二)", TYPES, TODAY))


@pytest.mark.parametrize("month, problem", [
    ("2026-11", None),
    ("2026-12", "获取凭证时间不能晚于本月。"),
    ("2031-01", "获取凭证时间不能晚于本月。"),
    ("2018-13", "获取凭证时间格式不对，应为年月，如 2018年6月。"),
    ("1949-12", "获取凭证时间太早了，请核对。"),
    (None, "请填写获取凭证时间。"),
])
def test_evidence_time_is_a_real_month_not_in_the_future(month: str | None, problem: str | None) -> None:
    assert apps.month_problem(month, TODAY, "获取凭证时间") == problem


def test_incomplete_evidence_lists_every_missing_field() -> None:
    bare = EvidenceData("cet4")
    problems = apps.evidence_problems(bare, TYPES, TODAY)
    assert problems == [
        "大学英语四级（CET-4）成绩单：请填写凭证编号。",
        "大学英语四级（CET-4）成绩单：请填写获取凭证时间。",
        "大学英语四级（CET-4）成绩单：请填写获取凭证的省份。",
        "大学英语四级（CET-4）成绩单：请上传凭证照片。",
    ]
    assert apps.evidence_problems(evidence(), TYPES, TODAY) == []
    assert apps.evidence_problems(evidence("score_proof"), TYPES, TODAY) == ["请从列表中选择凭证类型。"]
    assert apps.evidence_problems(evidence("nonsense"), TYPES, TODAY) == ["请从列表中选择凭证类型。"]
    too_many = evidence(photo_ids=list(range(1, apps.MAX_PHOTOS_PER_EVIDENCE + 2)))
    assert apps.evidence_problems(too_many, TYPES, TODAY) == ["大学英语四级（CET-4）成绩单：照片最多9张。"]


def test_photo_sent_twice_is_recognised_within_an_application() -> None:
    data = ApplicationData("exemption", 1, OPENID, ZHAO_ADMISSION,
                           items=[ItemData("00320", evidences=[evidence(photo_ids=[7, 8])])])
    assert apps.photo_in_application(data, 8)
    assert not apps.photo_in_application(data, 9)


# --- 成绩补登 date limits --------------------------------------------------------------------------------


@pytest.mark.parametrize("month, ok", [("2002-12", True), ("1998-04", True), ("2003-01", False), ("2010-06", False)])
def test_backfilled_theory_results_must_be_2002_or_earlier(month: str, ok: bool) -> None:
    problem = apps.backfill_date_problem("theory", month, TODAY)
    assert (problem is None) == ok
    if not ok:
        assert "2002年12月及以前" in problem


@pytest.mark.parametrize("kind, month, ok, points_to", [
    ("exemption", "2019-12", True, None),
    ("exemption", "2020-01", False, "申请免考"),
    ("exemption", "2024-06", False, "申请免考"),
    ("transfer", "2019-12", True, None),
    ("transfer", "2020-01", False, "外省转入"),
])
def test_backfilled_exemptions_and_transfers_must_be_before_2020(kind: str, month: str, ok: bool,
                                                                points_to: str | None) -> None:
    problem = apps.backfill_date_problem(kind, month, TODAY)
    assert (problem is None) == ok
    if points_to:
        assert "2020年以前" in problem and f"“{points_to}”" in problem


def test_backfill_dates_cannot_be_in_the_future() -> None:
    assert apps.backfill_date_problem("transfer", "2027-01", TODAY) == "办理转入时间不能晚于本月。"


def test_backfilled_theory_result_needs_a_passing_score_and_a_photo() -> None:
    item = ItemData("03708", entry_kind="theory", passed_month="2001-10", score=Decimal("55"))
    problems = apps.backfill_item_problems(item, "中国近现代史纲要", TYPES, TODAY)
    assert problems == ["中国近现代史纲要：只能补登合格的成绩（60分及以上，或“合格”“通过”）。",
                        "中国近现代史纲要：请上传成绩证明的照片。"]
    good = ItemData("03708", entry_kind="theory", passed_month="2001-10", grade="合格",
                    evidences=[EvidenceData("score_proof", photo_ids=[3])])
    assert apps.backfill_item_problems(good, "中国近现代史纲要", TYPES, TODAY) == []


def test_backfilled_transfer_needs_its_source() -> None:
    item = ItemData("00320", entry_kind="transfer", passed_month="2015-04")
    assert apps.backfill_item_problems(item, "领导科学", TYPES, TODAY) == ["请填写来源省（转出省）。", "请填写来源准考证号。"]


@pytest.mark.parametrize("type_code, number, ok", [
    ("cet4", "CET4-2018-000123", True), ("cet4", "沪字第12号", True), ("cet4", "abc", False),
    ("cet4", "😀😀", False), ("cet4", "2018年6月", False), ("cet4", "201806", False), ("cet4", "2018-06-01", False),
    ("chsi_record", "320120150801", True), ("chsi_record", "BA-3201-2015", False), ("chsi_record", "12345", False),
])
def test_evidence_numbers_are_checked_per_type(type_code: str, number: str, ok: bool) -> None:
    assert (apps.evidence_number_problem(type_code, number) is None) == ok


def test_evidence_months_cannot_come_before_school_age_or_after_what_they_led_to() -> None:
    assert "6周岁" in apps.evidence_month_problem("1998-06", born="1993-07")
    assert apps.evidence_month_problem("1999-07", born="1993-07") is None
    assert "办理免考时间（2015年12月）" in apps.evidence_month_problem("2016-06", not_after="2015-12",
                                                                    not_after_label="办理免考时间")
    item = ItemData("00051", entry_kind="exemption", passed_month="2015-12",
                    evidences=[EvidenceData("cet4", "CET4-1", "2016-06", "浙江省")])
    assert any("不能晚于办理免考时间" in p for p in apps.backfill_item_problems(item, "管理系统", TYPES, TODAY))


@pytest.mark.parametrize("text, value", [("85", (Decimal("85"), None)), ("60.5", (Decimal("60.5"), None)),
                                         ("合格", (None, "合格")), (" 通过 ", (None, "通过"))])
def test_scores_are_numbers_or_grades(text: str, value) -> None:
    assert apps.parse_score(text) == value


@pytest.mark.parametrize("text", ["101", "-1", "八十", "60.55", "nan"])
def test_impossible_scores_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        apps.parse_score(text)


def test_application_data_survives_a_json_round_trip() -> None:
    data = ApplicationData(
        "backfill", 3, OPENID, ZHAO_ADMISSION, major_code="120402", id=9, status="rejected", version=4,
        submitted_at=at(2026, 9, 2, 3), reason="照片不清楚",
        items=[ItemData("03708", entry_kind="theory", passed_month="2001-10", score=Decimal("75.5"), note="说明",
                        evidences=[EvidenceData("score_proof", photo_ids=[1, 2])])],
    )
    assert ApplicationData.from_dict(json.loads(json.dumps(data.to_dict()))) == data


# --- In the database -------------------------------------------------------------------------------------


@dataclass
class World:
    candidate: int
    exemption_window: int
    backfill_window: int
    photos: list[int]


async def world(db: Database, *, bound: bool = True) -> World:
    """docs/examples imported, 赵敏 bound to OPENID, windows of 申请免考 and 成绩补登 open now, photos."""
    report = await import_directory(db, EXAMPLES)
    assert report.ok, report.format()
    cid = await candidate_id(db, ZHAO)
    if bound:
        await add_user(db, OPENID, cid)
    t = now()
    async with db.session() as s, s.begin():
        ex = m.BusinessWindow(kind="exemption", title="2026年下半年申请免考", opens_at=t - dt.timedelta(days=1),
                              closes_at=t + dt.timedelta(days=10))
        bf = m.BusinessWindow(kind="backfill", title="2026年下半年成绩补登", opens_at=t - dt.timedelta(days=1),
                              closes_at=t + dt.timedelta(days=10))
        pics = [Photo(sha256=f"{n:064x}", size=1000 + n, width=1200, height=900, content_type="image/jpeg",
                      storage_key=f"00/{n:064x}.jpg") for n in range(1, 7)]
        s.add_all([ex, bf, *pics])
        await s.flush()
        return World(cid, ex.id, bf.id, [p.id for p in pics])


async def close_windows(db: Database, kind: str, *, reopen_in: dt.timedelta | None = None) -> None:
    t = now()
    async with db.session() as s, s.begin():
        for w in (await s.execute(select(m.BusinessWindow).where(m.BusinessWindow.kind == kind))).scalars():
            if w.closes_at > t:
                w.opens_at, w.closes_at = t - dt.timedelta(days=10), t - dt.timedelta(hours=1)
        if reopen_in:
            s.add(m.BusinessWindow(kind=kind, title="下一次", opens_at=t + reopen_in,
                                   closes_at=t + reopen_in + dt.timedelta(days=7)))


async def exemption_draft(db: Database, w: World, courses: dict[str, list[EvidenceData]]) -> ApplicationData:
    draft = await apps.open_draft(db, kind="exemption", candidate_id=w.candidate, openid=OPENID,
                                  admission_number=ZHAO_ADMISSION, major_code="120402")
    draft.items = [ItemData(code, evidences=evs) for code, evs in courses.items()]
    return await apps.save_draft(db, draft)


async def scores(db: Database, course: str) -> list[m.ScoreRecord]:
    """赵敏's records of a course."""
    async with db.session() as s:
        return list((await s.execute(
            select(m.ScoreRecord).where(m.ScoreRecord.course_code == course,
                                        m.ScoreRecord.admission_number == ZHAO_ADMISSION)
            .order_by(m.ScoreRecord.kind))).scalars())


async def pushes(db: Database) -> list[m.Outbox]:
    async with db.session() as s:
        return list((await s.execute(select(m.Outbox).order_by(m.Outbox.id))).scalars())


async def test_evidence_types_are_seeded_and_the_office_can_add_more(db: Database) -> None:
    offered = [t.name for t in await apps.evidence_types(db, for_exemption=True)]
    assert offered == ["PETS-2 合格证书", "PETS-2 成绩通知单", "PETS-3 合格证书", "PETS-3 成绩通知单",
                       "大学英语四级（CET-4）成绩单", "大学英语六级（CET-6）成绩单", "毕业证书",
                       "教育部学历证书电子注册备案表", "中国高等教育学历认证报告"]
    by_code = {t.code: t for t in await apps.evidence_types(db)}
    assert by_code["diploma"].needs_companion and by_code["chsi_record"].companion and by_code["cdgdc_report"].companion
    added = await apps.add_evidence_type(db, "全国计算机等级考试合格证书")
    assert [t.name for t in await apps.evidence_types(db, for_exemption=True)][-1] == "全国计算机等级考试合格证书"
    assert added.code.startswith("custom") and added.active
    with pytest.raises(apps.ApplicationError, match="已存在"):
        await apps.add_evidence_type(db, "全国计算机等级考试合格证书")


async def test_exemption_courses_come_from_the_plan_without_passed_or_exempted_ones(db: Database) -> None:
    w = await world(db)
    choices = await apps.exemption_courses(db, w.candidate, "120402")
    assert [c.code for c in choices if c.eligible] == ["00320", "00051"]
    why = {c.code: c.why_not for c in choices}
    assert why["03708"] == "已通过" and why["03709"] == "已通过" and why["00015"] == "已免考"


async def test_a_draft_survives_leaving_and_a_restart(db: Database, db_url: str) -> None:
    w = await world(db)
    saved = await exemption_draft(db, w, {"00320": [evidence(photo_ids=[w.photos[0], w.photos[1]])]})
    assert saved.status == "draft" and saved.version > 1
    await db.dispose()
    fresh = Database(db_url)  # as after a restart of the service
    try:
        again = await apps.open_draft(fresh, kind="exemption", candidate_id=w.candidate, openid=OPENID,
                                      admission_number=ZHAO_ADMISSION)
        assert again == saved
        assert again.items[0].evidences[0].photo_ids == [w.photos[0], w.photos[1]]
        assert await apps.find_draft(fresh, w.candidate, "exemption") == saved
    finally:
        await fresh.dispose()


async def test_one_draft_per_candidate_and_business(db: Database) -> None:
    w = await world(db)
    first = await apps.open_draft(db, kind="exemption", candidate_id=w.candidate, openid=OPENID,
                                  admission_number=ZHAO_ADMISSION)
    second = await apps.open_draft(db, kind="exemption", candidate_id=w.candidate, openid=OPENID,
                                   admission_number=ZHAO_ADMISSION)
    other = await apps.open_draft(db, kind="backfill", candidate_id=w.candidate, openid=OPENID,
                                  admission_number=ZHAO_ADMISSION)
    assert first.id == second.id != other.id
    async with db.session() as s:  # the database refuses a second draft too
        s.add(Application(kind="exemption", candidate_id=w.candidate, openid=OPENID,
                          admission_number=ZHAO_ADMISSION, status="draft"))
        with pytest.raises(IntegrityError):
            await s.flush()


async def test_another_candidates_admission_number_is_refused(db: Database) -> None:
    w = await world(db)
    with pytest.raises(apps.ApplicationError, match="准考证号不属于"):
        await apps.open_draft(db, kind="exemption", candidate_id=w.candidate, openid=OPENID,
                              admission_number="012424100392")


async def test_submit_moves_a_complete_draft_to_pending(db: Database) -> None:
    w = await world(db)
    draft = await exemption_draft(db, w, {
        "00320": [evidence("diploma", [w.photos[0]]), evidence("chsi_record", [w.photos[1]], number="A1234567890B")],
        "00051": [evidence("cet4", [w.photos[2]])],
    })
    done = await apps.submit(db, draft)
    assert (done.status, done.status_label) == ("submitted", "待审核")
    assert done.submitted_at is not None and done.window_id == w.exemption_window
    assert [i.course_code for i in done.items] == ["00320", "00051"]
    assert [e.action for e in await apps.application_events(db, done.id)] == ["create", "submit"]
    assert (await apps.find_draft(db, w.candidate, "exemption")) is None


async def test_incomplete_application_is_refused_with_every_problem_and_stays_a_draft(db: Database) -> None:
    w = await world(db)
    draft = await exemption_draft(db, w, {
        "00320": [evidence("diploma", [w.photos[0]])],
        "00051": [EvidenceData("cet4", obtained_month="2018-06")],
    })
    with pytest.raises(apps.SubmissionRefused) as e:
        await apps.submit(db, draft)
    assert e.value.problems == [
        "领导科学：使用毕业证书申请免考，还须提供教育部学历证书电子注册备案表或中国高等教育学历认证报告。",
        "管理系统中计算机应用：大学英语四级（CET-4）成绩单：请填写凭证编号。",
        "管理系统中计算机应用：大学英语四级（CET-4）成绩单：请填写获取凭证的省份。",
        "管理系统中计算机应用：大学英语四级（CET-4）成绩单：请上传凭证照片。",
    ]
    assert (await apps.load_application(db, draft.id)).status == "draft"
    assert await apps.submission_problems(db, draft) == e.value.problems


async def test_courses_passed_exempted_outside_the_plan_or_pending_elsewhere_cannot_be_submitted(db: Database) -> None:
    w = await world(db)
    first = await exemption_draft(db, w, {"00320": [evidence(photo_ids=[w.photos[0]])]})
    await apps.submit(db, first)
    second = await exemption_draft(db, w, {
        "00320": [evidence(photo_ids=[w.photos[1]])],
        "00015": [evidence(photo_ids=[w.photos[2]])],
        "03708": [evidence(photo_ids=[w.photos[3]])],
    })
    with pytest.raises(apps.SubmissionRefused) as e:
        await apps.submit(db, second)
    assert e.value.problems == ["领导科学：已在申请中，等待审核，不能再申请免考。",
                                "英语(二)：已免考，不能再申请免考。",
                                "中国近现代史纲要：已通过，不能再申请免考。"]
    choices = {c.code: c for c in await apps.exemption_courses(db, w.candidate, "120402",
                                                                exclude_application_id=second.id)}
    assert choices["00320"].why_not == "已在申请中，等待审核"


async def test_candidate_actions_need_an_open_window_and_say_when_it_opens(db: Database) -> None:
    w = await world(db)
    draft = await exemption_draft(db, w, {"00320": [evidence(photo_ids=[w.photos[0]])]})
    await close_windows(db, "exemption", reopen_in=dt.timedelta(days=30))
    with pytest.raises(apps.WindowClosed) as e:
        await apps.save_draft(db, draft)
    assert "不在办理时间内" in e.value.message and "下一次办理时间" in e.value.message
    assert e.value.check.next is not None
    with pytest.raises(apps.WindowClosed):
        await apps.submit(db, draft)
    with pytest.raises(apps.WindowClosed):
        await apps.open_draft(db, kind="exemption", candidate_id=w.candidate, openid=OPENID,
                              admission_number=ZHAO_ADMISSION)
    assert (await apps.load_application(db, draft.id)).status == "draft"  # kept for the next window


async def test_a_stale_copy_cannot_overwrite_a_newer_one(db: Database) -> None:
    w = await world(db)
    draft = await exemption_draft(db, w, {"00320": [evidence(photo_ids=[w.photos[0]])]})
    newer = await apps.save_draft(db, draft)  # e.g. from a second phone
    assert newer.version == draft.version + 1
    draft.items[0].evidences[0].number = "changed"
    with pytest.raises(apps.StaleApplication):
        await apps.save_draft(db, draft)
    assert (await apps.load_application(db, draft.id)).items[0].evidences[0].number == "CET4-2018-000123"


async def test_edit_while_pending_and_submit_again(db: Database) -> None:
    w = await world(db)
    pending = await apps.submit(db, await exemption_draft(db, w, {"00320": [evidence(photo_ids=[w.photos[0]])]}))
    with pytest.raises(apps.TransitionRefused):
        await apps.save_draft(db, pending)  # a pending application changes only by submitting it again
    pending.items[0].evidences[0].photo_ids = [w.photos[4]]  # replace a photo
    pending.items[0].evidences.append(evidence("cet4", [w.photos[5]], number="CET4-2"))  # add an evidence
    again = await apps.submit(db, pending)
    assert again.status == "submitted" and again.version > pending.version
    assert [e.photo_ids for e in again.items[0].evidences] == [[w.photos[4]], [w.photos[5]]]
    assert [e.action for e in await apps.application_events(db, again.id)] == ["create", "submit", "submit"]


async def test_approving_an_exemption_writes_the_score_record_and_the_push_together(db: Database) -> None:
    w = await world(db)
    pending = await apps.submit(db, await exemption_draft(db, w, {"00320": [evidence(photo_ids=[w.photos[0]])]}))
    decided_at = now()
    done = await apps.approve(db, pending.id, by="张老师", now=decided_at)
    app = done.application
    assert (app.status, app.decided_by, app.decided_at, app.reason) == ("approved", "张老师", decided_at, None)
    assert (done.score_records, done.pushes) == (1, 1)
    [record] = await scores(db, "00320")
    assert (record.kind, record.passed, record.candidate_id, record.admission_number, record.sitting_code) == (
        "exemption", True, w.candidate, ZHAO_ADMISSION, "")
    assert record.passed_on == apps.today_in_shanghai(decided_at)
    assert "大学英语四级" in record.note
    [push] = await pushes(db)
    assert (push.openid, push.kind, push.priority) == (OPENID, "review_outcome", outbox.PRIORITY_OWN)
    assert push.payload["text"] == "您的免考申请审核结果：已通过。\n回复“免考”查看详情。"
    assert push.client_msg_id == f"review:app{app.id}:1:{OPENID}"
    # Now it counts as exempted wherever courses are listed.
    why = {c.code: c.why_not for c in await apps.exemption_courses(db, w.candidate, "120402")}
    assert why["00320"] == "已免考"
    assert [e.actor for e in await apps.application_events(db, app.id)][-1] == "张老师"


async def test_a_failing_push_rolls_back_the_whole_decision(db: Database, monkeypatch) -> None:
    w = await world(db)
    pending = await apps.submit(db, await exemption_draft(db, w, {"00320": [evidence(photo_ids=[w.photos[0]])]}))

    async def broken(*args, **kwargs):
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr(outbox, "review_outcome", broken)
    with pytest.raises(RuntimeError):
        await apps.approve(db, pending.id, by="张老师")
    after = await apps.load_application(db, pending.id)
    assert (after.status, after.decided_by, after.version) == ("submitted", None, pending.version)
    assert await scores(db, "00320") == []
    assert await pushes(db) == []


async def test_reject_with_reason_then_resubmit_while_the_window_is_open(db: Database) -> None:
    w = await world(db)
    pending = await apps.submit(db, await exemption_draft(db, w, {"00320": [evidence(photo_ids=[w.photos[0]])]}))
    with pytest.raises(apps.ApplicationError, match="原因"):
        await apps.reject(db, pending.id, reason="  ", by="张老师")
    rejected = (await apps.reject(db, pending.id, reason="成绩单照片不清晰，请重新拍摄。", by="张老师")).application
    assert (rejected.status, rejected.reason, rejected.decided_by) == ("rejected", "成绩单照片不清晰，请重新拍摄。", "张老师")
    assert await scores(db, "00320") == []
    [push] = await pushes(db)
    assert push.payload["text"] == "您的免考申请审核结果：未通过。\n回复“免考”查看原因并重新提交。"
    # 重新提交: rework over several visits, then submit.
    rejected.items[0].evidences[0].photo_ids = [w.photos[3]]
    reworked = await apps.save_draft(db, rejected)
    assert reworked.status == "rejected" and reworked.reason == "成绩单照片不清晰，请重新拍摄。"
    resubmitted = await apps.submit(db, reworked)
    assert (resubmitted.status, resubmitted.reason, resubmitted.decided_by) == ("submitted", None, None)
    second = await apps.approve(db, resubmitted.id, by="李老师")
    assert second.application.status == "approved"
    assert [p.client_msg_id for p in await pushes(db)] == [f"review:app{pending.id}:1:{OPENID}",
                                                         f"review:app{pending.id}:2:{OPENID}"]
    actions = [(e.action, e.reason) for e in await apps.application_events(db, pending.id)]
    assert actions == [("create", None), ("submit", None), ("reject", "成绩单照片不清晰，请重新拍摄。"),
                       ("submit", None), ("approve", None)]


async def test_resubmitting_after_the_window_closed_is_refused(db: Database) -> None:
    w = await world(db)
    pending = await apps.submit(db, await exemption_draft(db, w, {"00320": [evidence(photo_ids=[w.photos[0]])]}))
    rejected = (await apps.reject(db, pending.id, reason="编号不符", by="张老师")).application
    await close_windows(db, "exemption")
    with pytest.raises(apps.WindowClosed, match="下一次办理时间还没有公布"):
        await apps.submit(db, rejected)
    assert (await apps.load_application(db, pending.id)).status == "rejected"


async def test_decisions_are_refused_in_the_wrong_state_or_on_a_changed_application(db: Database) -> None:
    w = await world(db)
    draft = await exemption_draft(db, w, {"00320": [evidence(photo_ids=[w.photos[0]])]})
    with pytest.raises(apps.TransitionRefused, match="草稿"):
        await apps.approve(db, draft.id, by="张老师")
    pending = await apps.submit(db, draft)
    with pytest.raises(apps.StaleApplication):
        await apps.approve(db, pending.id, by="张老师", version=pending.version - 1)
    with pytest.raises(apps.ApplicationError, match="审核人"):
        await apps.approve(db, pending.id, by=" ")
    await apps.approve(db, pending.id, by="张老师", version=pending.version)
    with pytest.raises(apps.TransitionRefused, match="不能再次审核"):
        await apps.approve(db, pending.id, by="张老师")
    with pytest.raises(apps.TransitionRefused):
        await apps.reject(db, pending.id, reason="x", by="张老师")
    with pytest.raises(apps.ApplicationNotFound):
        await apps.approve(db, 999999, by="张老师")
    assert len(await pushes(db)) == 1


async def test_only_drafts_can_be_thrown_away(db: Database) -> None:
    w = await world(db)
    draft = await exemption_draft(db, w, {"00320": [evidence(photo_ids=[w.photos[0]])]})
    await apps.discard_draft(db, draft.id, candidate_id=w.candidate)
    assert await apps.find_draft(db, w.candidate, "exemption") is None
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(ApplicationItem)) == 0
    pending = await apps.submit(db, await exemption_draft(db, w, {"00320": [evidence(photo_ids=[w.photos[0]])]}))
    with pytest.raises(apps.TransitionRefused):
        await apps.discard_draft(db, pending.id, candidate_id=w.candidate)


async def backfill(db: Database, w: World, items: list[ItemData], major: str | None = None) -> ApplicationData:
    draft = await apps.open_draft(db, kind="backfill", candidate_id=w.candidate, openid=OPENID,
                                  admission_number=ZHAO_ADMISSION)
    draft.items, draft.major_code = items, major
    return await apps.save_draft(db, draft)


async def test_backfill_date_limits_are_enforced_on_submit(db: Database) -> None:
    w = await world(db)
    late = await backfill(db, w, [ItemData("00320", entry_kind="theory", passed_month="2003-04", score=Decimal(80),
                                           evidences=[EvidenceData("score_proof", photo_ids=[w.photos[0]])])])
    with pytest.raises(apps.SubmissionRefused, match="2002年12月及以前"):
        await apps.submit(db, late)
    late.items = [ItemData("00320", entry_kind="exemption", passed_month="2021-03",
                           evidences=[evidence("pets3_certificate", photo_ids=[])])]
    with pytest.raises(apps.SubmissionRefused, match="申请免考"):
        await apps.submit(db, late)


async def test_approved_backfills_become_score_records_of_their_kind(db: Database) -> None:
    w = await world(db)
    theory = await backfill(db, w, [ItemData(
        "00320", entry_kind="theory", passed_month="2001-10", score=Decimal("78"), note="当年成绩单",
        evidences=[EvidenceData("score_proof", photo_ids=[w.photos[0]])])])
    theory = await apps.submit(db, theory)
    await apps.approve(db, theory.id, by="张老师")
    exemption = await backfill(db, w, [ItemData(
        "00051", entry_kind="exemption", passed_month="2016-05",
        evidences=[evidence("pets3_certificate", photo_ids=[], number="P3-001", obtained_month="2015-09")])])
    await apps.approve(db, (await apps.submit(db, exemption)).id, by="张老师")
    transfer = await backfill(db, w, [
        ItemData("03709", entry_kind="transfer", passed_month="2012-03", from_province="江苏省",
                 from_admission_number="320100123456"),
    ], major="120402")
    with pytest.raises(apps.SubmissionRefused, match="已通过，无需补登"):
        await apps.submit(db, transfer)
    async with db.session() as s, s.begin():
        s.add(m.Course(code="00034", name="社会学概论", kind="理论"))
    transfer.items = [ItemData("00034", entry_kind="transfer", passed_month="2012-03", from_province="江苏省",
                               from_admission_number="320100123456")]
    await apps.approve(db, (await apps.submit(db, transfer)).id, by="张老师")
    [t] = await scores(db, "00320")
    assert (t.kind, t.score, t.passed, t.passed_on) == ("backfill", Decimal("78.0"), True, dt.date(2001, 10, 1))
    [e] = await scores(db, "00051")
    assert (e.kind, e.passed, e.passed_on) == ("exemption", True, dt.date(2016, 5, 1))
    assert "PETS-3 合格证书" in e.note
    [x] = await scores(db, "00034")
    assert (x.kind, x.passed, x.passed_on, x.note) == ("transfer", True, dt.date(2012, 3, 1), "成绩补登（自江苏省转入）")
    assert [p.payload["text"].splitlines()[0] for p in await pushes(db)] == ["您的成绩补登申请审核结果：已通过。"] * 3


async def test_one_backfill_registration_holds_one_kind(db: Database) -> None:
    w = await world(db)
    mixed = await backfill(db, w, [
        ItemData("00320", entry_kind="theory", passed_month="2001-10", score=Decimal(70),
                 evidences=[EvidenceData("score_proof", photo_ids=[w.photos[0]])]),
        ItemData("00051", entry_kind="transfer", passed_month="2012-03", from_province="江苏省",
                 from_admission_number="320100123456"),
    ], major="120402")
    with pytest.raises(apps.SubmissionRefused, match="一种补登类型"):
        await apps.submit(db, mixed)


async def test_unknown_codes_are_refused_with_a_clear_message(db: Database) -> None:
    w = await world(db)
    draft = await exemption_draft(db, w, {})
    draft.items = [ItemData("99999")]
    with pytest.raises(apps.ApplicationError, match="课程代码 99999 不存在"):
        await apps.save_draft(db, draft)
    draft.items = [ItemData("00320", evidences=[evidence(photo_ids=[123456])])]
    with pytest.raises(apps.ApplicationError, match="照片"):
        await apps.save_draft(db, draft)


async def test_courses_are_found_by_their_first_characters_or_code(db: Database) -> None:
    await world(db)
    assert await apps.find_courses(db, "中国") == [("03708", "中国近现代史纲要")]
    assert await apps.find_courses(db, "0005") == [("00051", "管理系统中计算机应用"), ("00052", "管理系统中计算机应用(实践)")]
    assert await apps.find_courses(db, "近现代") == [("03708", "中国近现代史纲要")]  # no prefix match: contains
    assert await apps.find_courses(db, "毕业论文") == []  # a thesis is not backfilled
    assert await apps.find_courses(db, "%") == []


async def test_list_shows_a_candidates_registrations_newest_first(db: Database) -> None:
    w = await world(db)
    first = await apps.submit(db, await exemption_draft(db, w, {"00320": [evidence(photo_ids=[w.photos[0]])]}))
    draft = await backfill(db, w, [])
    listed = await apps.list_applications(db, candidate_id=w.candidate)
    assert [a.id for a in listed] == [draft.id, first.id]
    assert [a.id for a in await apps.list_applications(db, status="submitted")] == [first.id]
    assert [a.id for a in await apps.list_applications(db, kind="backfill")] == [draft.id]


async def test_closing_reminder_reaches_candidates_with_an_application_draft(db: Database) -> None:
    w = await world(db)
    await add_user(db, "o_other", None)
    await exemption_draft(db, w, {"00320": []})
    t = now()
    async with db.session() as s, s.begin():
        for win in (await s.execute(select(m.BusinessWindow).where(m.BusinessWindow.kind == "exemption"))).scalars():
            if win.id == w.exemption_window:
                win.closes_at = t + dt.timedelta(hours=5)
    run = await outbox.window_reminders(db, t)
    assert run.closing.get(w.exemption_window) == 1
    [row] = [p for p in await pushes(db) if p.client_msg_id.startswith("closing:")]
    assert row.openid == OPENID and "免考申请还没有提交" in row.payload["text"]


async def test_migration_seeds_the_shipped_evidence_types(sqlite_db: Database) -> None:
    from storage.models_applications import DEFAULT_EVIDENCE_TYPES

    async with sqlite_db.session() as s:
        rows = (await s.execute(select(EvidenceType).order_by(EvidenceType.position))).scalars().all()
    assert [(t.code, t.name, t.position, t.for_exemption, t.needs_companion, t.companion) for t in rows] == list(
        DEFAULT_EVIDENCE_TYPES)


async def test_an_emptied_evidence_type_list_gets_the_shipped_types_back(db: Database) -> None:
    async with db.session() as s, s.begin():
        await s.execute(EvidenceType.__table__.delete())
    assert len(await apps.evidence_types(db, for_exemption=True)) == 9


def test_the_major_must_be_one_of_the_candidates() -> None:
    def problems(kind: str, major: str | None, items: list[ItemData]) -> list[str]:
        data = ApplicationData(kind, 1, OPENID, ZHAO_ADMISSION, major_code=major, items=items)
        return apps.application_problems(data, course_names={"00320": "领导科学"}, types=TYPES, states={},
                                         majors=["120402"], today=TODAY)

    complete = [ItemData("00320", evidences=[evidence()])]
    assert problems("exemption", "120402", complete) == []
    assert problems("exemption", None, complete) == ["请选择专业。"]
    assert problems("exemption", "020301K", complete) == ["所选专业不是您报考的专业。"]
    transfer = [ItemData("00320", entry_kind="transfer", passed_month="2012-03", from_province="江苏省",
                         from_admission_number="320100123456")]
    assert problems("backfill", "120402", transfer) == []
    assert problems("backfill", "020301K", transfer) == ["转入专业应为您报考的专业。"]
    assert problems("exemption", "120402", []) == ["请至少选择一门课程。"]


async def test_every_save_moves_the_version_even_at_the_same_instant(db: Database) -> None:
    w = await world(db)
    t = now()
    draft = await apps.open_draft(db, kind="exemption", candidate_id=w.candidate, openid=OPENID,
                                  admission_number=ZHAO_ADMISSION, now=t)
    first = await apps.save_draft(db, draft, now=t)
    second = await apps.save_draft(db, first, now=t)
    assert draft.version < first.version < second.version
    with pytest.raises(apps.StaleApplication):
        await apps.save_draft(db, first, now=t)
