"""省际转考, storage side: the rules (provinces, 准考证号, transitions, reminder time, which results
may leave), 外省转入 records by import and by the staff command with their pushes, the 现场确认
reminder, and accepted courses counting as 转入."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from storage import models as m
from storage import queries as q
from storage import transfers as tr
from storage.db import Database
from storage.importer import import_directory
from storage.models_transfers import TransferIn, TransferInCourse
from tests.test_import import EXAMPLES, copy_examples, has_error, write

SUN = "310101198801011238"
SUN_ADMISSION = "012424100392"
OPENID = "o_sun_transfer"
UTC = dt.timezone.utc
SH = dt.timezone(dt.timedelta(hours=8))

# --- plain rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize("typed, full", [
    ("江苏", "江苏省"), ("江苏省", "江苏省"), (" 广西 ", "广西壮族自治区"), ("内蒙古", "内蒙古自治区"),
    ("新疆", "新疆维吾尔自治区"), ("北京", "北京市"), ("上海", "上海市"),
])
def test_province_names_short_or_full_are_recognised(typed: str, full: str) -> None:
    assert tr.province_of(typed) == full


@pytest.mark.parametrize("typed", ["江南", "香港", "", "苏", "Jiangsu"])
def test_a_province_that_does_not_exist_is_not_recognised(typed: str) -> None:
    assert tr.province_of(typed) is None


def test_province_choices_leave_shanghai_out() -> None:
    assert "上海市" not in tr.province_choices() and len(tr.province_choices()) == 30


@pytest.mark.parametrize("typed, expected", [
    ("360118200345", "360118200345"), ("３６０１１８２００３４５", "360118200345"), ("3601 1820 0345", "360118200345"),
    ("0123456789", "0123456789"), ("123456789012345", "123456789012345"),
])
def test_plausible_admission_numbers_of_other_provinces_are_accepted(typed: str, expected: str) -> None:
    assert tr.target_admission_number(typed) == expected


@pytest.mark.parametrize("typed, why", [
    ("36011820034A", "全部是数字"), ("123456789", "10到15位"), ("1234567890123456", "10到15位"),
    ("000000000000", "看起来不对"), ("", "请输入"),
])
def test_malformed_admission_numbers_are_refused_with_the_reason(typed: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        tr.target_admission_number(typed)


@pytest.mark.parametrize("before, after, ok", [
    (None, "confirming", True), ("pending", "reviewing", True), ("pending", "completed", True),
    ("reviewing", "rejected", True), ("confirming", "rejected", True), ("rejected", "pending", True),
    ("rejected", "reviewing", True), ("reviewing", "reviewing", True),
    ("confirming", "reviewing", False), ("completed", "rejected", False), ("completed", "pending", False),
    ("rejected", "completed", False), ("pending", "lost", False),
])
def test_transfer_in_transitions(before, after, ok) -> None:
    assert (tr.transition_problem(before, after) is None) == ok


def test_a_record_waiting_for_confirmation_needs_time_and_place_and_a_rejection_a_reason() -> None:
    assert len(tr.record_problems("confirming", reason=None, confirm_at=None, place=" ")) == 2
    assert tr.record_problems("rejected", reason="", confirm_at=None, place=None) == ["未通过的转入须填写原因（考生会看到）"]
    assert tr.record_problems("reviewing", reason=None, confirm_at=None, place=None) == []


def test_reminder_is_due_from_nine_the_day_before_until_the_slot() -> None:
    slot = dt.datetime(2026, 12, 3, 9, 0, tzinfo=SH)
    assert tr.reminder_due(slot) == dt.datetime(2026, 12, 2, 1, 0, tzinfo=UTC)  # 09:00 Shanghai
    assert not tr.reminder_is_due(slot, dt.datetime(2026, 12, 2, 8, 59, tzinfo=SH))
    assert tr.reminder_is_due(slot, dt.datetime(2026, 12, 2, 9, 0, tzinfo=SH))
    assert tr.reminder_is_due(slot, dt.datetime(2026, 12, 3, 8, 59, tzinfo=SH))
    assert not tr.reminder_is_due(slot, dt.datetime(2026, 12, 3, 9, 0, tzinfo=SH))


def _r(code, kind="exam", course_kind="理论", passed=True, on=dt.date(2020, 10, 1), score=Decimal(70)):
    return tr.ResultInfo(code, f"课程{code}", course_kind, kind, passed, score, None, on)


def test_transferable_results_follow_the_rules_with_reasons() -> None:
    results = [_r("00015"), _r("00015", on=dt.date(2019, 4, 1), score=Decimal(55), passed=False),
               _r("03708", kind="exemption", score=None), _r("03709", kind="transfer"),
               _r("07998", course_kind="论文", score=None), _r("00320", kind="backfill", on=dt.date(2001, 10, 1)),
               _r("00051"), _r("00052", course_kind="实践"), _r("00034", passed=False)]
    rules = tr.TransferOutRules(exclude_courses={"00052": "本市自设实践课程不能转出"})
    got = {c.course_code: (c.eligible, c.why_not) for c in tr.transfer_out_choices(results, rules, pending=["00051"])}
    assert got == {
        "00015": (True, None), "00320": (True, None),
        "03708": (False, "免考课程不能转出"), "03709": (False, "外省转入的成绩不能再转出"),
        "07998": (False, "毕业论文（设计）成绩不能转出"), "00051": (False, "已在另一份转出申请中，等待审核"),
        "00052": (False, "本市自设实践课程不能转出"),
    }
    older = tr.TransferOutRules(earliest_month="2003-01")
    assert not {c.course_code: c for c in tr.transfer_out_choices(results, older)}["00320"].eligible


def test_office_rules_round_trip_and_bad_rules_are_refused() -> None:
    rules = tr.TransferOutRules.from_dict({"exclude_kinds": {"exemption": "免考课程不能转出"},
                                           "exclude_course_kinds": {"实践": "实践课程不能转出"}})
    assert tr.TransferOutRules.from_dict(rules.to_dict()) == rules
    assert "transfer" not in rules.exclude_kinds  # the office allowed transferred-in results to leave
    for bad in ({"exclude_kinds": {"exam": ""}}, {"exclude_courses": {"15": "x"}}, {"earliest_month": "2003"},
                {"min_score": 60}, {"exclude_course_kinds": {"选修": "x"}}):
        with pytest.raises(ValueError):
            tr.TransferOutRules.from_dict(bad)


def test_transfer_out_problems_name_every_missing_field_and_refused_course() -> None:
    choices = tr.transfer_out_choices([_r("00015"), _r("03708", kind="exemption")], tr.TransferOutRules())
    details = tr.TransferOutDetails(province="上海市", admission_number="12", level="硕士")
    problems = tr.transfer_out_problems(["00015", "03708", "00099"], details, choices)
    assert "转入地应为上海以外的省份。" in problems
    assert any("10到15位" in p for p in problems)
    assert "请选择转入层次（专科或本科）。" in problems
    assert {"请填写转入专业。", "请填写转出原因。", "请填写联系电话。"} <= set(problems)
    assert "课程03708：免考课程不能转出。" in problems
    assert "00099：没有这门课程的合格成绩，不能转出。" in problems
    ok = tr.TransferOutDetails("江苏省", "360118200345", "本科", "行政管理", "工作调动", "13812345678")
    assert tr.transfer_out_problems(["00015"], ok, choices) == []


def test_reference_number_and_approval_detail_carry_no_scores() -> None:
    ref = tr.reference_number(12, dt.datetime(2026, 12, 31, 17, 0, tzinfo=UTC))  # already 2027 in Shanghai
    assert ref == "ZC2027000012"
    text = tr.approval_detail(ref, [("00015", "英语(二)"), ("00320", "领导科学")])
    assert "ZC2027000012" in text and "英语(二)、领导科学（共2门）" in text and "分" not in text


# --- 外省转入 in the database --------------------------------------------------------------------------


async def bind(db: Database, openid: str = OPENID, id_number: str = SUN) -> int:
    async with db.session() as s, s.begin():
        cid = await s.scalar(select(m.Candidate.id).where(m.Candidate.with_id_number(id_number)))
        s.add(m.WechatUser(openid=openid, candidate_id=cid, subscribed=True, bound_at=m.utcnow()))
    return cid


async def pushes(db: Database, openid: str = OPENID) -> list[m.Outbox]:
    async with db.session() as s:
        return list((await s.execute(select(m.Outbox).where(m.Outbox.openid == openid).order_by(m.Outbox.id))).scalars())


async def test_example_record_imports_with_its_courses_and_slot(db: Database) -> None:
    report = await import_directory(db, EXAMPLES)
    assert report.ok, report.format()
    async with db.session() as s:
        cid = await s.scalar(select(m.Candidate.id).where(m.Candidate.with_id_number(SUN)))
    [view] = await tr.transfers_in_of(db, cid)
    assert (view.reference, view.status_label, view.from_province, view.major_name) == (
        "ZR2024000017", "待现场确认", "江苏省", "行政管理(专升本)")
    assert view.confirm_at == dt.datetime(2024, 11, 20, 1, 0, tzinfo=UTC)
    assert "漕溪北路" in view.confirm_place and "身份证原件" in view.confirm_bring
    assert [(c.course_code, c.accepted) for c in view.courses] == [("03709", True), ("00015", True), ("00051", False)]
    assert view.courses[2].note.startswith("课程内容") and view.courses[1].source_name == "英语（二）"


async def test_bad_transfer_rows_are_reported_by_line_and_nothing_is_imported(db: Database, tmp_path: Path) -> None:
    d = copy_examples(tmp_path)
    write(d, {
        "transfers_in.csv": (
            "reference,admission_number,from_province,from_admission_number,major_code,status,reason,confirm_at,confirm_place\n"
            "ZR1,012424100392,江南,360118200345,120402,待审核,,,\n"
            "ZR2,012424100392,上海,360118200345,120402,审核中,,,\n"
            "ZR3,012424100392,江苏,36011820034A,120402,审核中,,,\n"
            "ZR4,012424100392,浙江,330118200345,120402,待现场确认,,,\n"
            "ZR5,012424100392,浙江,330118200346,120402,未通过,,,\n"
            "ZR6,999999999999,浙江,330118200347,120402,已撤销,,,\n"
        ),
        "transfer_in_courses.csv": (
            "reference,course_code,score,accepted,note\n"
            "ZR1,00015,70,否,\n"
            "ZR9,00015,70,是,\n"
            "ZR1,00320,45,是,\n"
            "ZR1,99999,70,是,\n"
        ),
    })
    report = await import_directory(db, d)
    assert not report.ok and not report.committed
    assert has_error(report, "transfers_in.csv", 2, "来源省“江南”不是省份名称")
    assert has_error(report, "transfers_in.csv", 3, "来源省不能是上海")
    assert has_error(report, "transfers_in.csv", 4, "准考证号应全部是数字")
    assert has_error(report, "transfers_in.csv", 5, "须填写现场确认时间")
    assert has_error(report, "transfers_in.csv", 5, "须填写现场确认地点")
    assert has_error(report, "transfers_in.csv", 6, "未通过的转入须填写原因")
    assert has_error(report, "transfers_in.csv", 7, "状态“已撤销”应为")
    assert has_error(report, "transfer_in_courses.csv", 2, "“不认定原因”列：不认定的课程须写明原因")
    assert has_error(report, "transfer_in_courses.csv", 3, "转入编号 ZR9 不存在")
    assert has_error(report, "transfer_in_courses.csv", 4, "只能是已合格的成绩")
    assert has_error(report, "transfer_in_courses.csv", 5, "课程代码 99999 不存在")
    async with db.session() as s:
        assert (await s.execute(select(TransferIn))).first() is None


async def test_import_pushes_each_status_change_once(db: Database, tmp_path: Path) -> None:
    d = write(tmp_path / "base", {})
    assert (await import_directory(db, EXAMPLES)).ok
    await bind(db)
    row = "ZR2025000001,012424100392,浙江,330118200345,120402,{status},{reason}\n"
    head = "reference,admission_number,from_province,from_admission_number,major_code,status,reason\n"
    write(d, {"transfers_in.csv": head + row.format(status="待审核", reason="")})
    assert (await import_directory(db, d)).ok
    first = await pushes(db)
    assert [p.payload["template"]["data"]["phrase2"] for p in first] == ["待审核"]
    assert "回复“转入”" in first[0].payload["text"]
    assert (await import_directory(db, d)).ok  # the same file again: nothing new
    assert len(await pushes(db)) == 1
    write(d, {"transfers_in.csv": head + row.format(status="审核中", reason="")})
    assert (await import_directory(db, d)).ok
    write(d, {"transfers_in.csv": head + row.format(status="待审核", reason="")})
    back = await import_directory(db, d)
    assert has_error(back, "transfers_in.csv", 2, "状态不能从“审核中”退回“待审核”")
    write(d, {"transfers_in.csv": head + row.format(status="未通过", reason="来源准考证号与转出省记录不一致")})
    assert (await import_directory(db, d)).ok
    got = await pushes(db)
    assert [p.payload["template"]["data"]["phrase2"] for p in got] == ["待审核", "审核中", "未通过"]
    assert all(p.kind == "review_outcome" and p.priority == 0 for p in got)
    assert "来源准考证号" not in got[-1].payload["text"]  # a push never carries the reason


async def test_completed_transfer_counts_accepted_courses_as_transfer_in_plan(db: Database) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    cid = await bind(db)
    now = dt.datetime(2024, 11, 21, 2, 0, tzinfo=UTC)
    before = await q.plan(db, cid, "120402", now=now)
    assert before.summary.transferred == 0
    change = await tr.set_status(db, "ZR2024000017", "completed", now=now)
    assert change.pushes == 1 and change.transfer.status_label == "已完成"
    plan = await q.plan(db, cid, "120402", now=now)
    status = {r.course_code: r.status for r in plan.rows}
    assert plan.summary.transferred == 2
    assert status["03709"] == "转入" and status["00015"] == "转入" and status["00051"] != "转入"
    async with db.session() as s:
        rec = await s.scalar(select(m.ScoreRecord).where(m.ScoreRecord.candidate_id == cid,
                                                          m.ScoreRecord.course_code == "03709"))
        assert (rec.kind, rec.score, rec.passed_on, rec.note) == ("transfer", Decimal("72.0"), dt.date(2019, 10, 1),
                                                                 "自江苏省转入")
    [push] = [p for p in await pushes(db) if p.payload["template"]["data"]["phrase2"] == "已完成"]
    assert "已计入您的成绩" in push.payload["text"]
    with pytest.raises(tr.TransferError, match="已办理完成"):
        await tr.set_status(db, "ZR2024000017", "rejected", reason="x", now=now)


async def test_set_status_checks_the_record_and_writes_nothing_when_refused(db: Database) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    await bind(db)
    with pytest.raises(tr.TransferError, match="须填写原因"):
        await tr.set_status(db, "ZR2024000017", "rejected")
    with pytest.raises(tr.TransferError, match="不能从“待现场确认”退回“审核中”"):
        await tr.set_status(db, "ZR2024000017", "reviewing")
    with pytest.raises(tr.TransferError, match="不存在"):
        await tr.set_status(db, "ZR404", "reviewing")
    assert await pushes(db) == []
    moved = dt.datetime(2024, 11, 27, 13, 30, tzinfo=SH)
    change = await tr.set_status(db, "ZR2024000017", "confirming", confirm_at=moved, place="徐汇区漕溪北路 331 号")
    [push] = await pushes(db)
    assert change.pushes == 1 and "2024年11月27日 13:30" in push.payload["text"]


async def test_confirmation_reminder_fires_once_the_day_before(db: Database) -> None:
    assert (await import_directory(db, EXAMPLES)).ok  # slot 2024-11-20 09:00 Shanghai
    await bind(db)
    early = dt.datetime(2024, 11, 19, 8, 0, tzinfo=SH)
    assert await tr.confirmation_reminders(db, early) == {}
    due = dt.datetime(2024, 11, 19, 9, 5, tzinfo=SH)
    async with db.session() as s:
        tid = await s.scalar(select(TransferIn.id))
    assert await tr.confirmation_reminders(db, due) == {tid: 1}
    assert await tr.confirmation_reminders(db, due + dt.timedelta(minutes=5)) == {tid: 0}
    assert await tr.confirmation_reminders(db, dt.datetime(2024, 11, 20, 9, 0, tzinfo=SH)) == {}
    [push] = await pushes(db)
    assert push.kind == "reminder" and "2024年11月20日 09:00" in push.payload["text"]
    assert "漕溪北路" in push.payload["text"] and "回复“转入”" in push.payload["text"]


async def test_a_moved_slot_is_reminded_again(db: Database) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    await bind(db)
    await tr.confirmation_reminders(db, dt.datetime(2024, 11, 19, 10, 0, tzinfo=SH))
    new_slot = dt.datetime(2024, 11, 22, 9, 0, tzinfo=SH)
    await tr.set_status(db, "ZR2024000017", "confirming", confirm_at=new_slot,
                        now=dt.datetime(2024, 11, 19, 11, 0, tzinfo=SH))
    assert list((await tr.confirmation_reminders(db, dt.datetime(2024, 11, 21, 9, 0, tzinfo=SH))).values()) == [1]
    kinds = [p.kind for p in await pushes(db)]
    assert kinds == ["reminder", "review_outcome", "reminder"]


async def test_courses_accepted_after_completion_become_results_on_reimport(db: Database, tmp_path: Path) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    cid = await bind(db)
    await tr.set_status(db, "ZR2024000017", "completed")
    d = write(tmp_path / "late", {"transfer_in_courses.csv":
                                  "reference,course_code,accepted,note\nZR2024000017,00051,是,复核后认定\n"})
    assert (await import_directory(db, d)).ok
    async with db.session() as s:
        kinds = set((await s.execute(select(m.ScoreRecord.course_code).where(
            m.ScoreRecord.candidate_id == cid, m.ScoreRecord.kind == "transfer"))).scalars())
        assert kinds == {"03709", "00015", "00051"}
        assert (await s.scalar(select(TransferInCourse.note).where(TransferInCourse.course_code == "00051"))) == "复核后认定"


# --- 本市转出 applications through the decision path ------------------------------------------------------

ZHAO = "310105199307074567"
ZHAO_ADMISSION = "012424100318"  # docs/examples: 03708, 03709, 00052 passed, 00015 exempted


async def transfer_out_world(db: Database) -> int:
    from storage import models as mm

    assert (await import_directory(db, EXAMPLES)).ok
    cid = await bind(db, openid="o_zhao_out", id_number=ZHAO)
    now = m.utcnow()
    async with db.session() as s, s.begin():
        s.add(mm.BusinessWindow(kind="transfer_out", title="2026年下半年本市转出", opens_at=now - dt.timedelta(days=1),
                                closes_at=now + dt.timedelta(days=10)))
    return cid


GOOD = tr.TransferOutDetails("浙江省", "330118200345", "本科", "行政管理", "工作调动", "13764219053")


async def test_results_offered_for_transfer_out_say_why_some_cannot_leave(db: Database) -> None:
    cid = await transfer_out_world(db)
    choices = {c.course_code: c for c in await tr.transfer_out_results(db, cid)}
    assert set(choices) == {"03708", "03709", "00052", "00015"}
    assert choices["03709"].eligible and choices["03709"].result.score == Decimal("65.0")  # the passing attempt
    assert not choices["00015"].eligible and choices["00015"].why_not == "免考课程不能转出"
    await tr.save_rules(db, tr.TransferOutRules(exclude_course_kinds={"实践": "实践课程成绩不能转出"}))
    choices = {c.course_code: c for c in await tr.transfer_out_results(db, cid)}
    assert choices["00052"].why_not == "实践课程成绩不能转出"


async def test_transfer_out_is_refused_then_rejected_resubmitted_and_approved_with_reference(db: Database) -> None:
    from storage import applications as apps

    cid = await transfer_out_world(db)
    draft = await apps.open_draft(db, kind="transfer_out", candidate_id=cid, openid="o_zhao_out",
                                  admission_number=ZHAO_ADMISSION)
    draft.items = [apps.ItemData("03708"), apps.ItemData("00015")]
    draft.details = tr.TransferOutDetails(province="浙江省").to_dict()
    draft = await apps.save_draft(db, draft)
    assert draft.details == {"province": "浙江省"}
    with pytest.raises(apps.SubmissionRefused) as refused:
        await apps.submit(db, draft)
    assert "英语(二)：免考课程不能转出。" in refused.value.problems and "请填写联系电话。" in refused.value.problems
    draft.items = [apps.ItemData("03708"), apps.ItemData("03709")]
    draft.details = GOOD.to_dict()
    sent = await apps.submit(db, draft)
    assert sent.status == "submitted"
    # Pending in this application: another one cannot take the same results.
    assert {c.course_code: c.why_not for c in await tr.transfer_out_results(db, cid)}["03708"] == \
        "已在另一份转出申请中，等待审核"
    rejected = (await apps.reject(db, sent.id, reason="转入准考证号与浙江省记录不符", by="张老师")).application
    again = await apps.submit(db, rejected)
    done = await apps.approve(db, again.id, by="张老师")
    ref = done.application.details["reference"]
    assert ref == tr.reference_number(again.id, done.application.decided_at) and done.score_records == 0
    got = [p.payload["text"] for p in await pushes(db, "o_zhao_out")]
    assert got[0] == "您的本市转出申请审核结果：未通过。\n回复“转出”查看原因并重新提交。"
    assert got[1].startswith("您的本市转出申请审核结果：已通过。\n转出编号：" + ref)
    assert "中国近现代史纲要、马克思主义基本原理概论（共2门）" in got[1] and got[1].endswith("回复“转出”查看详情。")
    assert "分" not in got[1].replace("共2门", "")
    assert {c.course_code: c.why_not for c in await tr.transfer_out_results(db, cid)}["03708"] == "已办理转出"
