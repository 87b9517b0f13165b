"""Candidate lookups (dialogs.queries over storage.queries) against data imported for the test.

The data below is not the demo set: every figure a reply shows (credits, counts, scores, dates)
is checked against it. Runs on SQLite and PostgreSQL.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import event, select, text

from bot.paging import TEXT_LIMIT_BYTES, paginate
from dialogs import queries as dq
from dialogs.fields import Invalid
from storage import models as m
from storage import queries as sq
from storage.db import Database
from storage.identifiers import id_check_digit
from storage.importer import ImportReport, RawTable, import_tables
from storage.models_service import Feedback, NoticeRead, Order

UTC = dt.timezone.utc
SH = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2025, 5, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai; 2025年04月 results not yet released
AFTER_RELEASE = dt.datetime(2025, 5, 10, 2, 0, tzinfo=UTC)


def _id(first17: str) -> str:
    return first17 + id_check_digit(first17)


ID_A = _id("31010119850101123")
ID_B = _id("31010219900202234")
A1, A2, B1 = "012301000001", "012201000002", "012401000003"


def _at(days: float, hour: int = 9) -> str:
    day = (NOW.astimezone(SH) + dt.timedelta(days=days)).date()
    return f"{day.isoformat()} {hour:02d}:00"


TABLES = {
    "sittings.csv": [
        {"code": "202304", "exam_date": "2023-04-15", "scores_released_at": "2023-05-12 10:00"},
        {"code": "202310", "exam_date": "2023-10-21", "scores_released_at": "2023-11-17 10:00"},
        {"code": "202404", "exam_date": "2024-04-13", "scores_released_at": "2024-05-10 10:00"},
        {"code": "202410", "exam_date": "2024-10-26", "scores_released_at": "2024-11-22 10:00"},
        {"code": "202504", "exam_date": "2025-04-12", "scores_released_at": "2025-05-09 10:00"},
    ],
    "courses.csv": [
        {"code": "00015", "name": "英语(二)", "kind": "理论"},
        {"code": "03708", "name": "中国近现代史纲要", "kind": "理论"},
        {"code": "03709", "name": "马克思主义基本原理概论", "kind": "理论"},
        {"code": "04184", "name": "线性代数(经管类)", "kind": "理论"},
        {"code": "02198", "name": "线性代数", "kind": "理论"},
        {"code": "00054", "name": "管理学原理", "kind": "理论"},
        {"code": "00052", "name": "管理系统中计算机应用(实践)", "kind": "实践"},
        {"code": "00079", "name": "保险学原理", "kind": "理论"},
        {"code": "00261", "name": "行政法学", "kind": "理论"},
        {"code": "07999", "name": "金融学毕业论文", "kind": "论文"},
        {"code": "00018", "name": "计算机应用基础", "kind": "理论"},
    ],
    "majors.csv": [
        {"code": "020301K", "name": "金融学(专升本)", "level": "专升本", "required_credits": "40",
         "university": "上海财经大学", "notes": "测试用专业说明：毕业论文合格，不计学分。",
         "graduation_rules": '{"thesis": true, "extra_exam_options": [{"label": "已通过行政法学", "courses": []},'
                             ' {"label": "须加考行政法学", "courses": ["00261"]}]}'},
        {"code": "690206", "name": "行政管理(专科)", "level": "专科", "required_credits": "10",
         "graduation_rules": '{"thesis": false}'},
    ],
    "plan_courses.csv": [
        {"major_code": "020301K", "course_code": c, "credits": str(cr), "category": cat}
        for c, cr, cat in [("03708", 2, "必考"), ("03709", 4, "必考"), ("00015", 14, "必考"), ("04184", 4, "必考"),
                           ("00052", 1, "必考"), ("00054", 6, "选考"), ("00079", 4, "选考"), ("00261", 5, "加考"),
                           ("07999", 0, "必考")]
    ] + [
        {"major_code": "690206", "course_code": "00018", "credits": "6", "category": "必考"},
        {"major_code": "690206", "course_code": "00054", "credits": "4", "category": "必考"},
    ],
    "textbooks.csv": [
        {"course_code": "00015", "title": "英语（二）", "publisher": "外语教学与研究出版社", "editor": "张敬源",
         "edition": "2012年版", "syllabus_name": "英语（二）自学考试大纲", "syllabus_author": "全国考委",
         "syllabus_version": "2012年版"},
        {"course_code": "03708", "title": "纲要甲", "publisher": "出版社甲", "editor": "主编甲", "edition": "2018年版"},
        {"course_code": "03708", "title": "纲要乙", "publisher": "出版社乙", "editor": "主编乙", "edition": "2023年版",
         "syllabus_name": "考纲乙", "syllabus_author": "编写单位乙", "syllabus_version": "2023年版"},
    ],
    "candidates.csv": [
        {"id_number": ID_A, "name": "测试甲"},
        {"id_number": ID_B, "name": "测试乙"},
    ],
    "admission_numbers.csv": [
        {"admission_number": A1, "id_number": ID_A, "major_codes": "020301K"},
        {"admission_number": A2, "id_number": ID_A, "major_codes": "690206"},
        {"admission_number": B1, "id_number": ID_B, "major_codes": "020301K"},
    ],
    "scores.csv": [
        {"admission_number": A1, "course_code": "00015", "sitting": "202304", "score": "52"},
        {"admission_number": A1, "course_code": "00015", "sitting": "202310", "score": "63"},
        {"admission_number": A1, "course_code": "03708", "kind": "transfer", "score": "78", "passed_on": "2022年04月",
         "note": "江苏省转入"},
        {"admission_number": A1, "course_code": "04184", "kind": "exemption", "passed_on": "2023-09-20",
         "note": "CET-4"},
        {"admission_number": A1, "course_code": "00054", "kind": "backfill", "score": "70", "passed_on": "2001-06-30"},
        {"admission_number": A1, "course_code": "00052", "sitting": "202404", "score": "合格"},
        {"admission_number": A1, "course_code": "00079", "sitting": "202404", "score": "缺考"},
        {"admission_number": A1, "course_code": "03709", "sitting": "202404", "score": "81.5"},
        {"admission_number": A1, "course_code": "00079", "sitting": "202504", "score": "80"},
        {"admission_number": A2, "course_code": "00018", "sitting": "202310", "score": "59"},
        {"admission_number": A2, "course_code": "00018", "sitting": "202404", "score": "66"},
        {"admission_number": B1, "course_code": "03708", "sitting": "202404", "score": "60"},
    ],
    "business_windows.csv": [
        {"kind": "exemption", "title": "测试申请免考", "opens_at": _at(-5), "closes_at": _at(10, 16)},
        {"kind": "graduation", "title": "测试申请毕业", "opens_at": _at(20), "closes_at": _at(30, 16)},
        {"kind": "thesis", "title": "测试论文", "opens_at": _at(-60, 7), "closes_at": _at(-10, 22)},
        {"kind": "backfill", "title": "上次成绩补登", "opens_at": _at(-30), "closes_at": _at(-20, 16)},
        {"kind": "backfill", "title": "下次成绩补登", "opens_at": _at(40), "closes_at": _at(50, 16)},
        {"kind": "transfer_out", "title": "很久以前的转出", "opens_at": _at(-400), "closes_at": _at(-380, 16)},
        {"kind": "graduation_fee", "title": "测试毕业审定费缴费", "opens_at": _at(25), "closes_at": _at(35, 16)},
    ],
    "orders.csv": [
        {"order_number": "GF0000000001", "admission_number": A2, "major_code": "690206", "amount": "80.5",
         "status": "已缴费", "created_at": "2024-12-01 09:00", "paid_at": "2024-12-02 15:30"},
        {"order_number": "GF0000000002", "admission_number": A1, "major_code": "020301K", "amount": "150",
         "status": "待缴费", "created_at": "2025-04-20 10:00"},
    ],
}


async def load(db: Database, tables: dict | None = None) -> ImportReport:
    raw = {name: RawTable.from_records(name, rows) for name, rows in (tables or TABLES).items()}
    report = await import_tables(db, raw, ImportReport("test"))
    assert report.committed, report.format()
    return report


async def ids(db: Database) -> dict[str, int]:
    async with db.session() as s:
        return {idn: cid for idn, cid in await s.execute(select(m.Candidate.id_number, m.Candidate.id))}


@pytest.fixture
async def data(db: Database) -> dict[str, int]:
    await load(db)
    return await ids(db)


def viewer_a(data: dict[str, int], openid: str = "o_a") -> dq.Viewer:
    return dq.Viewer(openid, data[ID_A], A1)


def lines(reply) -> list[str]:
    return reply.text.split("\n")


# --- 当次成绩 / 历史成绩 ------------------------------------------------------------------------------


async def test_latest_scores_show_the_latest_released_sitting_with_type_credits_and_result(db, data) -> None:
    text = (await dq.latest_scores(db, viewer_a(data), now=NOW)).text
    assert "【当次成绩】2024年04月" in text
    # Every record of that sitting, credits from the plan of the major under its 准考证号.
    block = text[text.index("【当次成绩】"):text.index("本次通过")]
    assert "00052 管理系统中计算机应用(实践)\n　实践｜1学分｜合格" in block
    assert "00079 保险学原理\n　理论｜4学分｜缺考" in block
    assert "03709 马克思主义基本原理概论\n　理论｜4学分｜81.5分 通过" in block
    assert "00018 计算机应用基础\n　理论｜6学分｜66分 通过" in block  # 690206's credits, not 020301K's
    assert block.count("学分｜") == 4
    assert "本次通过 3 门，未通过 1 门。" in text
    # 2025年04月 is not released at NOW: nothing of it shows.
    assert "80分" not in text and "2025年04月" not in text


async def test_latest_scores_say_a_newer_released_sitting_has_no_results_for_the_candidate(db, data) -> None:
    text = (await dq.latest_scores(db, viewer_a(data), now=NOW)).text
    assert text.startswith("2024年10月的成绩已发布，暂无您的成绩记录。\n以下是您最近一次考试的成绩。")


async def test_latest_scores_after_the_release_time_show_the_new_sitting(db, data) -> None:
    text = (await dq.latest_scores(db, viewer_a(data), now=AFTER_RELEASE)).text
    assert text.startswith("【当次成绩】2025年04月\n准考证号 0123****0001\n00079 保险学原理\n　理论｜4学分｜80分 通过")
    assert "本次通过 1 门，未通过 0 门。" in text
    assert "已考课程 5/9｜免考 1｜转入 1\n已得学分 35｜毕业要求 40" in text


async def test_score_summaries_count_exams_backfills_exemptions_transfers_and_credits(db, data) -> None:
    text = (await dq.latest_scores(db, viewer_a(data), now=NOW)).text
    # 020301K: passed by exam 00015, 03709, 00052 and by 补登 00054 -> 4 of 9; 04184 免考; 03708 转入;
    # credits 14 + 4 + 1 + 6 + 4 + 2 = 31.
    assert "金融学(专升本)\n已考课程 4/9｜免考 1｜转入 1\n已得学分 31｜毕业要求 40" in text
    # 690206: 00018 by exam (6) and 00054 by 补登 (4 in this plan).
    assert "行政管理(专科)\n已考课程 2/2｜免考 0｜转入 0\n已得学分 10｜毕业要求 10" in text


async def test_all_scores_list_every_visible_record_newest_sitting_first_then_other_kinds(db, data) -> None:
    text = (await dq.all_scores(db, viewer_a(data), now=NOW)).text
    assert text.startswith("【历史成绩】共 10 条\n")  # 11 records of 甲, one held back until its release
    headers = [ln for ln in lines(await dq.all_scores(db, viewer_a(data), now=NOW)) if ln.startswith("〔")]
    assert headers == ["〔2024年04月〕", "〔2023年10月〕", "〔2023年04月〕", "〔补登〕", "〔转入〕", "〔免考〕"]
    assert "〔2023年10月〕\n00015 英语(二)\n　理论｜14学分｜63分 通过\n00018 计算机应用基础\n　理论｜6学分｜59分 未通过" in text
    assert "〔2023年04月〕\n00015 英语(二)\n　理论｜14学分｜52分 未通过" in text
    assert "〔补登〕\n00054 管理学原理\n　理论｜6学分｜补登 70分｜2001-06-30" in text
    assert "〔转入〕\n03708 中国近现代史纲要\n　理论｜2学分｜转入 78分｜2022-04-01" in text
    assert "〔免考〕\n04184 线性代数(经管类)\n　理论｜4学分｜免考｜2023-09-20" in text
    assert "400-0960-990" in text


async def test_scores_of_another_candidate_never_show(db, data) -> None:
    text = (await dq.all_scores(db, dq.Viewer("o_b", data[ID_B], B1), now=NOW)).text
    assert text.startswith("【历史成绩】共 1 条\n\n〔2024年04月〕\n03708 中国近现代史纲要\n　理论｜2学分｜60分 通过")
    assert "00015 英语" not in text and "已考课程 1/9｜免考 0｜转入 0\n已得学分 2｜毕业要求 40" in text


async def test_unbound_follower_is_asked_to_bind_for_personal_queries(db, data) -> None:
    anon = dq.Viewer("o_anon")
    for reply in (await dq.latest_scores(db, anon), await dq.all_scores(db, anon), await dq.plan(db, anon, "020301K"),
                  await dq.progress(db, anon, "020301K"), await dq.orders(db, anon),
                  await dq.course_score(db, anon, "英语二考了多少分")):
        assert reply.text == dq.BIND_FIRST
    assert await dq.majors(db, anon) == []


async def test_candidate_without_results_is_told_so(db, data) -> None:
    await load(db, {"candidates.csv": [{"id_number": _id("31010319950303345"), "name": "测试丙"}],
                    "admission_numbers.csv": [{"admission_number": "012501000004",
                                               "id_number": _id("31010319950303345"), "major_codes": "690206"}]})
    cid = (await ids(db))[_id("31010319950303345")]
    text = (await dq.latest_scores(db, dq.Viewer("o_c", cid), now=NOW)).text
    assert "您还没有考试成绩。" in text and "已考课程 0/2｜免考 0｜转入 0\n已得学分 0｜毕业要求 10" in text


# --- One course in free text ------------------------------------------------------------------------


@pytest.mark.parametrize("question, code", [
    ("英语二考了多少分", "00015"), ("00015成绩", "00015"), ("英语2过了吗", "00015"),
    ("线代过了吗", "04184"), ("马原", "03709"), ("近代史成绩", "03708"), ("管理学原理", "00054"),
])
async def test_free_text_question_about_a_course_answers_that_course(db, data, question, code) -> None:
    reply = await dq.course_score(db, viewer_a(data), question, now=NOW)
    assert reply is not None and reply.text.startswith(code)


async def test_course_answer_shows_every_attempt_and_the_pass(db, data) -> None:
    text = (await dq.course_score(db, viewer_a(data), "英语二考了多少分", now=NOW)).text
    assert text == ("00015 英语(二)｜理论｜14学分\n已通过：63分（2023年10月）\n"
                    "历次成绩：\n　2023年04月　52分 未通过\n　2023年10月　63分 通过")
    assert (await dq.course_score(db, viewer_a(data), "线代过了吗", now=NOW)).text == \
        "04184 线性代数(经管类)｜理论｜4学分\n已免考（2023-09-20）"
    assert (await dq.course_score(db, viewer_a(data), "近代史成绩", now=NOW)).text == \
        "03708 中国近现代史纲要｜理论｜2学分\n已转入：78分（2022-04-01）"


async def test_course_answer_for_a_course_not_yet_passed_or_not_in_the_plan(db, data) -> None:
    text = (await dq.course_score(db, viewer_a(data), "保险学原理成绩", now=NOW)).text
    assert text == "00079 保险学原理｜理论｜4学分\n还未通过。\n历次成绩：\n　2024年04月　缺考"
    text = (await dq.course_score(db, dq.Viewer("o_b", data[ID_B]), "计算机应用基础成绩", now=NOW)).text
    assert text == "00018 计算机应用基础｜理论\n这门课程不在您的考试计划中，也没有成绩记录。"


@pytest.mark.parametrize("text", ["帮助", "你好", "论文", "免考", "成绩", "下一页", "12345成绩", "",
                                  "英语二考试时间是什么时候", "毕业论文什么时候交", "线代用哪本教材"])
async def test_text_naming_no_course_is_left_to_the_router(db, data, text) -> None:
    assert await dq.course_score(db, viewer_a(data), text, now=NOW) is None


async def test_course_lookup_by_code_name_and_common_abbreviation(db, data) -> None:
    names = lambda found: [c.code for c in found]  # noqa: E731
    assert names(await sq.find_courses(db, "00015")) == ["00015"]
    assert names(await sq.find_courses(db, "英语(二)")) == ["00015"]
    assert names(await sq.find_courses(db, "英语（二）")) == ["00015"]
    assert names(await sq.find_courses(db, "马原")) == ["03709"]
    # Two courses are called 线性代数: the shorter name first, both offered.
    assert names(await sq.find_courses(db, "线代")) == ["02198", "04184"]
    assert names(await sq.find_courses(db, "线代", {"04184"})) == ["04184"]
    assert names(await sq.find_courses(db, "保险学园理")) == ["00079"]  # a near miss
    assert names(await sq.find_courses(db, "保险学园理", loose=False)) == []


# --- 考试计划, 教材, 专业说明, 毕业进度 ------------------------------------------------------------


async def test_majors_of_the_candidate_with_the_active_admission_number_first(db, data) -> None:
    assert await dq.majors(db, dq.Viewer("o", data[ID_A], A1)) == [("020301K", "金融学(专升本)"), ("690206", "行政管理(专科)")]
    assert await dq.majors(db, dq.Viewer("o", data[ID_A], A2)) == [("690206", "行政管理(专科)"), ("020301K", "金融学(专升本)")]
    enrolments = await sq.candidate_majors(db, data[ID_A])
    assert {(e.major_code, e.admission_number) for e in enrolments} == {("020301K", A1), ("690206", A2)}


async def test_plan_shows_the_summary_and_each_course_with_status_result_and_date(db, data) -> None:
    text = (await dq.plan(db, viewer_a(data), "020301K", now=NOW)).text
    assert text.startswith("【考试计划】金融学(专升本) 020301K\n准考证号 0123****0001\n"
                           "已考课程 4/9｜免考 1｜转入 1\n已得学分 31｜毕业要求 40\n")
    expected = [
        "〔必考课程〕",
        "03708 中国近现代史纲要", "　2学分｜转入｜78分｜2022-04-01",
        "03709 马克思主义基本原理概论", "　4学分｜已通过｜81.5分｜2024-04-13",
        "00015 英语(二)", "　14学分｜已通过｜63分｜2023-10-21",
        "04184 线性代数(经管类)", "　4学分｜免考｜2023-09-20",
        "00052 管理系统中计算机应用(实践)", "　1学分｜已通过｜合格｜2024-04-13",
        "07999 金融学毕业论文", "　不计学分｜-",
        "",
        "〔选考课程〕",
        "00054 管理学原理", "　6学分｜补登｜70分｜2001-06-30",
        "00079 保险学原理", "　4学分｜未通过｜缺考",
        "",
        "〔加考课程〕",
        "00261 行政法学", "　5学分｜-",
    ]
    got = lines(await dq.plan(db, viewer_a(data), "020301K", now=NOW))
    start = got.index("〔必考课程〕")
    assert got[start:start + len(expected)] == expected


async def test_plan_rows_take_the_first_pass_and_otherwise_the_latest_attempt(db, data) -> None:
    view = await sq.plan(db, data[ID_A], "020301K", now=NOW)
    rows = {r.course_code: r for r in view.rows}
    assert (rows["00015"].status, rows["00015"].score, rows["00015"].passed_on, rows["00015"].attempts) == \
        ("已通过", Decimal("63.0"), dt.date(2023, 10, 21), 2)
    assert (rows["00079"].status, rows["00079"].grade, rows["00079"].passed_on) == ("未通过", "缺考", None)
    after = {r.course_code: r for r in (await sq.plan(db, data[ID_A], "020301K", now=AFTER_RELEASE)).rows}
    assert (after["00079"].status, after["00079"].score, after["00079"].sitting_code) == ("已通过", Decimal("80.0"), "202504")
    assert view.summary == sq.PlanSummary("020301K", "金融学(专升本)", 9, 4, 1, 1, 31, 40)


async def test_plan_of_a_major_the_candidate_is_not_in_says_so(db, data) -> None:
    assert (await dq.plan(db, dq.Viewer("o_b", data[ID_B]), "690206", now=NOW)).text == dq.NOT_ENROLLED.format(code="690206")


async def test_textbooks_by_code_or_name_show_every_given_field(db, data) -> None:
    text = (await dq.textbooks(db, "03708")).text
    assert text == ("【教材考纲】03708 中国近现代史纲要\n"
                    "1.《纲要甲》\n　出版社：出版社甲\n　主编：主编甲\n　版次：2018年版\n"
                    "2.《纲要乙》\n　出版社：出版社乙\n　主编：主编乙\n　版次：2023年版\n"
                    "　考纲名称：考纲乙\n　编写单位：编写单位乙\n　考纲版本：2023年版")
    assert (await dq.textbooks(db, "英语二")).text.startswith("【教材考纲】00015 英语(二)\n《英语（二）》\n　出版社：外语教学与研究出版社")
    assert (await dq.textbooks(db, "00079")).text == "【教材考纲】00079 保险学原理\n这门课程暂无教材考纲信息。"
    assert "没有找到课程“不存在的课”" in (await dq.textbooks(db, "不存在的课")).text
    assert (await dq.textbooks(db, "线代")).text.startswith("找到多门课程")
    assert dq.textbook_query("教材 03708") == "03708" and dq.textbook_query("教材英语二") == "英语二"
    assert dq.textbook_query("成绩") is None


async def test_major_notes_show_level_university_credits_and_the_office_text(db, data) -> None:
    assert (await dq.major_notes(db, "020301K")).text == (
        "【专业说明】金融学(专升本) 020301K\n层次：专升本\n主考院校：上海财经大学\n毕业最低学分：40\n\n"
        "测试用专业说明：毕业论文合格，不计学分。")
    assert (await dq.major_notes(db, "690206")).text == "【专业说明】行政管理(专科) 690206\n层次：专科\n毕业最低学分：10"


async def test_progress_lists_what_is_missing_from_the_data(db, data) -> None:
    text = (await dq.progress(db, viewer_a(data), "020301K", now=NOW)).text
    assert text == (
        "【毕业进度】金融学(专升本) 020301K\n"
        "已得学分 31｜毕业要求 40｜还差 9\n\n"
        "选考课程还需至少 9 学分，可选：\n· 00079 保险学原理 4学分（未通过）\n\n"
        "毕业论文：未取得成绩\n\n"
        "加考（视您的前置专科专业而定）：\n· 已通过行政法学：无需加考\n· 须加考行政法学：\n　00261 行政法学 未通过"
    )
    done = (await dq.progress(db, viewer_a(data), "690206", now=NOW)).text
    assert done.startswith("【毕业进度】行政管理(专科) 690206\n已得学分 10｜毕业要求 10\n您已满足本专业的课程、学分要求。")


async def test_long_replies_page_within_the_limit_without_losing_a_line(db, data) -> None:
    rows = TABLES["courses.csv"] + [{"code": f"9{i:04d}", "name": f"测试课程第{i}门（很长的课程名称用来占满一页）",
                                     "kind": "理论"} for i in range(60)]
    plan = [{"major_code": "690206", "course_code": f"9{i:04d}", "credits": "3", "category": "选考"} for i in range(60)]
    await load(db, {"courses.csv": rows, "plan_courses.csv": plan})
    reply = await dq.plan(db, viewer_a(data), "690206", now=NOW)
    pages = paginate(reply.text)
    assert len(pages) > 1
    assert all(len(p.encode()) <= TEXT_LIMIT_BYTES for p in pages)
    joined = "\n".join(pages)
    assert all(f"9{i:04d} 测试课程第{i}门" in joined for i in range(60))


# --- 业务办理时间 -----------------------------------------------------------------------------------


async def test_windows_open_now_with_closing_time_and_keyword_and_when_closed_ones_open(db, data) -> None:
    text = (await dq.windows(db, NOW)).text
    assert text == (
        "【近期可办理的业务】\n"
        "· 测试申请免考\n　截止 2025年05月11日 16:00\n　回复“免考”办理\n\n"
        "【未开放办理的业务】\n"
        "· 测试申请毕业\n　2025年05月21日 09:00 开始\n　2025年05月31日 16:00 截止\n"
        "· 测试毕业审定费缴费\n　2025年05月26日 09:00 开始\n　2025年06月05日 16:00 截止\n"
        "· 下次成绩补登\n　2025年06月10日 09:00 开始\n　2025年06月20日 16:00 截止\n"
        "· 测试论文\n　已于 2025年04月21日 22:00 截止\n　错过的请在下一次办理时间内申请"
    )
    # A window closed over a year ago with nothing after it is not shown.
    assert "很久以前的转出" not in text


async def test_every_open_business_names_the_keyword_of_its_flow(db, data) -> None:
    assert {k: dq.keyword_for(k) for k in ("exemption", "backfill", "thesis", "graduation", "degree", "transfer_out",
                                           "transfer_in")} == {
        "exemption": "免考", "backfill": "成绩补登", "thesis": "论文", "graduation": "申请毕业", "degree": "学位",
        "transfer_out": "转出", "transfer_in": "转入"}
    text = (await dq.windows(db, dt.datetime.fromisoformat(_at(21) + ":00+08:00"))).text
    assert "· 测试申请毕业\n　截止 2025年05月31日 16:00\n　回复“申请毕业”办理" in text
    assert "【近期可办理的业务】\n目前没有正在办理的业务。" in (await dq.windows(db, NOW + dt.timedelta(days=11))).text


# --- 站内消息, 新闻通知 ------------------------------------------------------------------------------


async def _notices(db: Database) -> None:
    def n(title: str, days: float, audience: str = "all", value: str | None = None, category: str = "站内消息"):
        at = NOW + dt.timedelta(days=days)
        return m.Notice(category=category, title=title, body=f"{title}的正文。", publish_at=at, audience=audience,
                        audience_value=value, push=False, created_at=at)
    async with db.session() as s, s.begin():
        s.add_all([
            n("全体通知", -3), n("金融学专业通知", -2, "major", "020301K"), n("别的专业通知", -2.5, "major", "120402"),
            n("2024年04月考生通知", -1, "sitting", "202404"), n("明天的通知", 1),
            n("新闻一", -5, category="新闻通知"), n("新闻二", -1, category="新闻通知"),
        ])


async def test_messages_newest_first_for_this_candidate_with_unread_marks(db, data) -> None:
    await _notices(db)
    v = viewer_a(data)
    assert (await dq.messages(db, v, now=NOW)).text == (
        "【站内消息】共 3 条，未读 3 条\n"
        "1. ［未读］2024年04月考生通知\n　2025-04-30\n"
        "2. ［未读］金融学专业通知\n　2025-04-29\n"
        "3. ［未读］全体通知\n　2025-04-28\n\n"
        "回复“消息 序号”查看全文，如“消息 1”。"
    )
    anon = (await dq.messages(db, dq.Viewer("o_anon"), now=NOW)).text
    assert "全体通知" in anon and "专业通知" not in anon and "考生通知" not in anon


async def test_opening_a_message_shows_it_in_full_and_marks_it_read_once(db, data) -> None:
    await _notices(db)
    v = viewer_a(data)
    detail = (await dq.message_detail(db, v, 2, now=NOW)).text
    assert detail == "【站内消息】金融学专业通知\n2025年04月29日 10:00\n\n金融学专业通知的正文。"
    await dq.message_detail(db, v, 2, now=NOW + dt.timedelta(hours=1))
    listing = (await dq.messages(db, v, now=NOW)).text
    assert "共 3 条，未读 2 条" in listing and "2. 金融学专业通知" in listing
    async with db.session() as s:
        reads = (await s.scalars(select(NoticeRead))).all()
    assert [(r.openid, r.read_at) for r in reads] == [("o_a", NOW)]
    # Read marks belong to the follower who read.
    assert "未读 3 条" in (await dq.messages(db, dq.Viewer("o_other", data[ID_A]), now=NOW)).text
    assert (await dq.message_detail(db, v, 4, now=NOW)).text.startswith("没有第 4 条消息（共 3 条）")


async def test_news_lists_the_latest_items_and_shows_one_in_full(db, data) -> None:
    await _notices(db)
    assert (await dq.news(db, now=NOW)).text == (
        "【新闻通知】共 2 条\n1. 新闻二\n　2025-04-30\n2. 新闻一\n　2025-04-26\n\n回复“新闻 序号”查看全文，如“新闻 1”。")
    assert (await dq.news(db, 2, now=NOW)).text == "【新闻通知】新闻一\n2025年04月26日 10:00\n\n新闻一的正文。"
    assert dq.numbered("消息 2") == ("消息", 2) and dq.numbered("新闻通知3") == ("新闻", 3)
    assert dq.numbered("样例 １") == ("样例", 1) and dq.numbered("消息") is None


# --- 我的订单 ---------------------------------------------------------------------------------------


async def test_orders_show_number_item_major_amount_state_and_times(db, data) -> None:
    text = (await dq.orders(db, viewer_a(data), now=NOW)).text
    assert text == (
        "【我的订单】\n"
        "订单号：GF0000000002\n项目：毕业审定费\n专业：金融学(专升本)\n准考证号：0123****0001\n"
        "金额：150.00 元\n状态：待缴费\n下单时间：2025年04月20日 10:00\n\n"
        "订单号：GF0000000001\n项目：毕业审定费\n专业：行政管理(专科)\n准考证号：0122****0002\n"
        "金额：80.50 元\n状态：已缴费\n下单时间：2024年12月01日 09:00\n缴费时间：2024年12月02日 15:30\n\n"
        "缴费时间：2025年05月26日 09:00 至 2025年06月05日 16:00\n"
        "届时请登录考籍管理服务平台，在“我的订单”中按支付提示完成缴费。"
    )
    during = (await dq.orders(db, viewer_a(data), now=NOW + dt.timedelta(days=26))).text
    assert "缴费时间：即日起至 2025年06月05日 16:00" in during
    assert (await dq.orders(db, dq.Viewer("o_b", data[ID_B]), now=NOW)).text.startswith("【我的订单】\n您目前没有订单。")


async def test_orders_import_validates_and_updates_the_state(db, data) -> None:
    raw = {"orders.csv": RawTable.from_records("orders.csv", [
        {"order_number": "GF0000000002", "admission_number": A1, "major_code": "020301K", "amount": "150",
         "status": "已缴费", "paid_at": "2025-05-27 08:30"},
        {"order_number": "GF0000000003", "admission_number": "012399999999", "major_code": "020301K", "amount": "1"},
        {"order_number": "GF0000000004", "admission_number": A1, "major_code": "020301K", "amount": "1.005"},
        {"order_number": "GF0000000005", "admission_number": A1, "major_code": "020301K", "amount": "1",
         "status": "paid"},
    ])}
    report = await import_tables(db, raw, ImportReport("bad"))
    assert not report.committed
    assert [str(e) for e in report.errors] == [
        "orders.csv 第 4 行: 金额“1.005”应为不小于 0 的数字，最多两位小数",
        "orders.csv 第 5 行: 已缴费的订单必须填写缴费时间",
        "orders.csv 第 3 行: 准考证号 012399999999 不存在（admission_numbers.csv 和数据库中都没有）",
    ]
    raw["orders.csv"].rows = raw["orders.csv"].rows[:1]
    report = await import_tables(db, raw, ImportReport("good"))
    assert report.committed and (report.files[0].inserted, report.files[0].updated) == (0, 1), report.format()
    async with db.session() as s:
        order = await s.scalar(select(Order).where(Order.order_number == "GF0000000002"))
    assert (order.status, order.paid_at, order.created_at) == (
        "paid", dt.datetime(2025, 5, 27, 0, 30, tzinfo=UTC), dt.datetime(2025, 4, 20, 2, 0, tzinfo=UTC))


# --- 技术咨询, 反馈建议 ------------------------------------------------------------------------------


def test_contacts_give_the_phone_and_the_qq_numbers_of_both_manuals() -> None:
    text = dq.contacts().text
    assert "电话：400-0960-990" in text
    for qq in ("2082017394", "670625194", "1638601693", "669845594"):
        assert qq in text


async def test_feedback_is_stored_for_staff_with_optional_contact(db, data) -> None:
    reply = await dq.save_feedback(db, viewer_a(data), title=" 成绩查询 ", body="希望增加补考提醒。",
                                   contact_name="测试甲", contact_phone_number="138 1234 5678", now=NOW)
    async with db.session() as s:
        fb = (await s.scalars(select(Feedback))).one()
    assert (fb.openid, fb.candidate_id, fb.title, fb.body, fb.contact_name, fb.contact_phone, fb.handled, fb.created_at) == \
        ("o_a", data[ID_A], "成绩查询", "希望增加补考提醒。", "测试甲", "13812345678", False, NOW)
    assert reply.text == f"已收到您的反馈，谢谢！\n编号：{fb.id}\n标题：成绩查询\n我们会尽快通过 138****5678 与您联系。"
    anon = await dq.save_feedback(db, dq.Viewer("o_anon"), title="建议", body="内容", contact_phone_number="021-64321234")
    assert "021-64321234" in anon.text
    async with db.session() as s:
        fb2 = await s.scalar(select(Feedback).where(Feedback.openid == "o_anon"))
    assert fb2.candidate_id is None and fb2.contact_name is None and fb2.contact_phone == "021-64321234"


@pytest.mark.parametrize("fields, reason", [
    ({"title": "", "body": "x"}, "标题不能为空"),
    ({"title": "x" * 65, "body": "x"}, "标题请控制在 64 字以内"),
    ({"title": "x", "body": " "}, "意见或建议不能为空"),
    ({"title": "x", "body": "y" * 1001}, "意见或建议请控制在 1000 字以内"),
    ({"title": "x", "body": "y", "contact_phone_number": "12345"}, "联系电话应为11位手机号码"),
])
async def test_feedback_with_a_bad_field_is_refused_and_not_stored(db, fields, reason) -> None:
    with pytest.raises(Invalid, match=reason):
        await dq.save_feedback(db, dq.Viewer("o"), **fields)
    async with db.session() as s:
        assert (await s.scalars(select(Feedback))).all() == []


# --- The read cache ------------------------------------------------------------------------------


class Statements:
    """Counts the statements a block sends to the database."""

    def __init__(self, db: Database) -> None:
        self.db, self.n = db, 0

    def _count(self, *_args) -> None:
        self.n += 1

    def __enter__(self) -> "Statements":
        event.listen(self.db.engine.sync_engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *_exc) -> None:
        event.remove(self.db.engine.sync_engine, "before_cursor_execute", self._count)


async def test_repeated_score_query_of_a_bound_user_needs_no_database_round_trip(db, data) -> None:
    with Statements(db) as first:
        await dq.latest_scores(db, viewer_a(data), now=NOW)
    assert 1 <= first.n <= 8  # stamps, reference data (6), the candidate (1): only when cold
    with Statements(db) as warm:
        for _ in range(20):
            await dq.latest_scores(db, viewer_a(data), now=NOW)
    assert warm.n == 0
    with Statements(db) as other:
        await dq.latest_scores(db, dq.Viewer("o_b", data[ID_B]), now=NOW)
    assert other.n == 1  # a new candidate: enrolments and results in one statement on indexed candidate_id


async def test_an_import_is_seen_by_the_next_query_of_this_process(db, data) -> None:
    assert "80分" not in (await dq.all_scores(db, viewer_a(data), now=NOW)).text
    await load(db, {"scores.csv": [{"admission_number": A1, "course_code": "00261", "sitting": "202404", "score": "88"}],
                    "courses.csv": [{"code": "00261", "name": "行政法学(新)", "kind": "理论"}]})
    text = (await dq.all_scores(db, viewer_a(data), now=NOW)).text
    assert "00261 行政法学(新)\n　理论｜5学分｜88分 通过" in text


async def test_another_process_change_is_seen_once_the_stamps_are_rechecked(db, data) -> None:
    cache = sq.cache_for(db)
    cache.recheck_seconds = 3600
    before = (await dq.latest_scores(db, viewer_a(data), now=NOW)).text
    # Another process: a score corrected and the stamp bumped, both behind this process's back.
    async with db.session() as s, s.begin():
        await s.execute(text("UPDATE score_records SET score = 90 WHERE course_code = '03709' AND sitting_code = '202404'"))
        await s.execute(text("UPDATE key_values SET value = :v WHERE key = :k"),
                        {"v": '{"stamp": "from-elsewhere"}', "k": sq.RESULTS_KEY})
    assert (await dq.latest_scores(db, viewer_a(data), now=NOW)).text == before  # within the recheck interval
    cache.recheck_seconds = 0
    assert "03709 马克思主义基本原理概论\n　理论｜4学分｜90分 通过" in (await dq.latest_scores(db, viewer_a(data), now=NOW)).text


async def test_importing_unchanged_files_leaves_the_version_stamps_alone(db, data) -> None:
    async with db.session() as s:
        before = dict((await s.execute(select(m.KeyValue.key, m.KeyValue.value))).all())
    assert set(before) >= {sq.REFERENCE_KEY, sq.RESULTS_KEY}
    await load(db)
    async with db.session() as s:
        assert dict((await s.execute(select(m.KeyValue.key, m.KeyValue.value))).all()) == before


async def test_reference_data_changed_without_a_stamp_is_reloaded_after_its_maximum_age(db, data) -> None:
    cache = sq.cache_for(db)
    cache.recheck_seconds = 0
    assert (await dq.textbooks(db, "00079")).text.endswith("暂无教材考纲信息。")
    async with db.session() as s, s.begin():
        await s.execute(text("INSERT INTO textbooks (course_code, title, edition) VALUES ('00079', '保险学原理', '2015年版')"))
    assert (await dq.textbooks(db, "00079")).text.endswith("暂无教材考纲信息。")  # no stamp: still cached
    cache.reference_ttl = 0
    assert (await dq.textbooks(db, "00079")).text == "【教材考纲】00079 保险学原理\n《保险学原理》\n　版次：2015年版"


def test_summaries_without_rows_equal_summarize_of_plan_rows() -> None:
    """The cold 成绩 path counts summaries from the passed records only (storage.queries._summaries);
    they must equal summarize(plan_rows(...)) for any mix of kinds, dates and repeated passes."""
    import random

    rnd = random.Random(15)
    courses = [f"{n:05d}" for n in range(1, 13)]
    majors = {code: sq.MajorInfo(code, f"专业{code}", "本科", 70, None, None, {}) for code in ("A01", "B02")}
    plans = {code: tuple(sq.PlanEntry(code, c, f"课程{c}", "理论", rnd.randint(2, 8), "必考", i)
                         for i, c in enumerate(rnd.sample(courses, 8))) for code in majors}
    ref = sq.Reference({}, majors, plans, {}, {}, ())
    kinds = ("exam", "exam", "exam", "backfill", "exemption", "transfer", "other")
    for _ in range(300):
        results = [sq.Result("0123", rnd.choice(courses), rnd.choice(kinds), rnd.choice(("202304", "202310", "")),
                             Decimal(rnd.randint(0, 99)), None, rnd.random() < 0.6,
                             rnd.choice((None, dt.date(2023, 4, 20), dt.date(2023, 10, 20))), None)
                   for _ in range(rnd.randint(0, 14))]
        enrolments = tuple(sq.Enrolment(code, code, "本科", "0123")
                           for code in rnd.sample(sorted(majors) + ["Z99"], rnd.randint(0, 3)))
        data = sq.CandidateData(enrolments, tuple(results))
        expected = tuple(sq._plan_view(ref, e, results).summary for e in enrolments)
        assert sq._summaries(ref, data, results) == expected
