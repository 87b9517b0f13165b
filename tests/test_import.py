"""CSV import: formats and encodings, validation, all-or-nothing, idempotent upserts, passwords."""
from __future__ import annotations

import datetime as dt
import logging
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, update

from storage import models as m
from storage.db import Database
from storage.importer import ImportReport, import_directory
from storage.passwords import verify_password

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"

ZHAO = "310105199307074567"
SUN = "310101198801011238"


def write(directory: Path, files: dict[str, str], encoding: str = "utf-8") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_bytes(content.encode(encoding))
    return directory


def copy_examples(tmp_path: Path, name: str = "import") -> Path:
    target = tmp_path / name
    shutil.copytree(EXAMPLES, target)
    return target


def counts(report: ImportReport) -> dict[str, tuple[int, int, int]]:
    return {r.file: (r.inserted, r.updated, r.unchanged) for r in report.files}


async def count(db: Database, model) -> int:
    async with db.session() as s:
        return await s.scalar(select(func.count()).select_from(model))


def issues(report: ImportReport) -> list[tuple[str, int, str]]:
    return [(i.file, i.line, i.message) for i in report.errors]


def has_error(report: ImportReport, file: str, line: int, fragment: str) -> bool:
    return any(f == file and n == line and fragment in msg for f, n, msg in issues(report))


# --- The documented examples -------------------------------------------------------------------


async def test_examples_import_then_reimport_changes_nothing(db: Database) -> None:
    first = await import_directory(db, EXAMPLES)
    assert first.ok and first.committed, first.format()
    assert counts(first) == {
        "sittings.csv": (2, 0, 0),
        "courses.csv": (7, 0, 0),
        "majors.csv": (1, 0, 0),
        "plan_courses.csv": (7, 0, 0),
        "textbooks.csv": (2, 0, 0),
        "candidates.csv": (2, 0, 0),
        "admission_numbers.csv": (2, 0, 0),
        "admission_numbers.csv(报考专业)": (2, 0, 0),
        "scores.csv": (7, 0, 0),
        "business_windows.csv": (2, 0, 0),
        "transfers_in.csv": (1, 0, 0),
        "transfer_in_courses.csv": (3, 0, 0),
        "degree_requirements.csv": (3, 0, 0),
    }
    second = await import_directory(db, EXAMPLES)
    assert second.ok, second.format()
    assert all(ins == 0 and upd == 0 for ins, upd, _ in counts(second).values()), second.format()
    assert sum(unch for _, _, unch in counts(second).values()) == sum(ins for ins, _, _ in counts(first).values())
    assert await count(db, m.ScoreRecord) == 7


async def test_examples_content_lands_as_typed_values(db: Database) -> None:
    report = await import_directory(db, EXAMPLES)
    assert report.ok, report.format()
    async with db.session() as s:
        sitting = await s.get(m.Sitting, "202410")
        assert sitting.name == "2024年10月" and sitting.exam_date == dt.date(2024, 10, 26)
        released = (await s.get(m.Sitting, "202404")).scores_released_at
        assert released == dt.datetime(2024, 5, 10, 2, 0, tzinfo=dt.timezone.utc)  # 10:00 Shanghai
        zhao = await s.scalar(select(m.Candidate).where(m.Candidate.with_id_number(ZHAO)))
        assert zhao.name == "赵敏" and zhao.full_time_student is False and zhao.postcode == "200051"
        numbers = (await s.scalars(select(m.AdmissionNumber.number).where(m.AdmissionNumber.candidate_id == zhao.id))).all()
        assert numbers == ["012424100318"]
        enrol = await s.scalar(select(m.CandidateMajor).where(m.CandidateMajor.candidate_id == zhao.id))
        assert (enrol.major_code, enrol.admission_number) == ("120402", "012424100318")
        scores = {
            (r.course_code, r.sitting_code, r.kind): r
            for r in await s.scalars(select(m.ScoreRecord).where(m.ScoreRecord.candidate_id == zhao.id))
        }
        assert scores[("03708", "202404", "exam")].score == Decimal("76.0")
        assert scores[("03708", "202404", "exam")].passed
        # A passed exam without 通过时间 gets the sitting's exam date.
        assert scores[("03708", "202404", "exam")].passed_on == dt.date(2024, 4, 13)
        assert not scores[("03709", "202404", "exam")].passed and scores[("03709", "202404", "exam")].passed_on is None
        practice = scores[("00052", "202410", "exam")]
        assert practice.score is None and practice.grade == "合格" and practice.passed
        exemption = scores[("00015", "", "exemption")]
        assert exemption.passed and exemption.passed_on == dt.date(2024, 9, 10) and "CET-4" in exemption.note
        sun_scores = {r.course_code: r for r in await s.scalars(
            select(m.ScoreRecord).where(m.ScoreRecord.admission_number == "012424100392"))}
        assert sun_scores["03708"].grade == "缺考" and not sun_scores["03708"].passed
        assert sun_scores["00320"].score == Decimal("81.5")
        plan = (await s.scalars(select(m.PlanCourse).where(m.PlanCourse.major_code == "120402")
                                .order_by(m.PlanCourse.position))).all()
        assert [p.course_code for p in plan][:3] == ["03708", "03709", "00015"]
        assert plan[-1].credits == 0 and plan[4].category == "选考"
        major = await s.get(m.Major, "120402")
        assert major.graduation_rules == {"thesis": True} and major.level == "专升本"
        window = await s.scalar(select(m.BusinessWindow).where(m.BusinessWindow.kind == "exemption"))
        assert window.opens_at == dt.datetime(2024, 9, 2, 1, 0, tzinfo=dt.timezone.utc)
        assert window.notice.count("\n") == 1 and window.sitting_code == "202410"


# --- Encodings and header forms ----------------------------------------------------------------


@pytest.mark.parametrize("encoding, label", [("utf-8-sig", "UTF-8-BOM"), ("gbk", "GBK"), ("utf-8", "UTF-8")])
async def test_utf8_with_or_without_bom_and_gbk_import_the_same(
    sqlite_db: Database, tmp_path: Path, encoding: str, label: str
) -> None:
    directory = tmp_path / encoding
    directory.mkdir()
    for p in EXAMPLES.glob("*.csv"):
        (directory / p.name).write_bytes(p.read_text("utf-8").encode(encoding))
    report = await import_directory(sqlite_db, directory)
    assert report.ok, report.format()
    # Files of plain ASCII (admission_numbers.csv) are the same bytes in every encoding: UTF-8.
    ascii_only = {p.name for p in EXAMPLES.glob("*.csv") if p.read_text("utf-8").isascii()}
    assert ascii_only == {"admission_numbers.csv"}
    assert {r.encoding for r in report.files if r.file.endswith(".csv") and r.file not in ascii_only} == {label}
    async with sqlite_db.session() as s:
        assert await s.scalar(select(m.Candidate.name).where(m.Candidate.with_id_number(ZHAO))) == "赵敏"
        assert await s.scalar(select(m.Course.name).where(m.Course.code == "00052")) == "管理系统中计算机应用(实践)"


async def test_excel_unicode_text_utf16_tab_separated(sqlite_db: Database, tmp_path: Path) -> None:
    text = "课程代码\t课程名称\t课程类型\r\n00015\t英语(二)\t理论\r\n00052\t管理系统中计算机应用(实践)\t实践\r\n"
    write(tmp_path / "d", {"courses.csv": text}, encoding="utf-16")
    report = await import_directory(sqlite_db, tmp_path / "d")
    assert report.ok, report.format()
    assert report.files[0].encoding == "UTF-16"
    async with sqlite_db.session() as s:
        assert await s.scalar(select(m.Course.kind).where(m.Course.code == "00052")) == "实践"


async def test_chinese_headers_and_required_markers_are_understood(sqlite_db: Database, tmp_path: Path) -> None:
    write(tmp_path / "d", {
        "courses.csv": "课程代码*,课程名称*,类型\n'00015,英语(二),\n",
        "sittings.csv": "考次,考试日期\n2024年4月,2024年4月13日\n",
        "candidates.csv": "证件号码,姓名,手机号码,目前是否全日制在读\n" + ZHAO + ",赵敏,+86 137 6421 9053,是\n",
    })
    report = await import_directory(sqlite_db, tmp_path / "d")
    assert report.ok, report.format()
    assert not report.warnings
    async with sqlite_db.session() as s:
        course = await s.get(m.Course, "00015")
        assert course.kind == "理论"  # empty cell on insert: the default
        assert (await s.get(m.Sitting, "202404")).exam_date == dt.date(2024, 4, 13)
        zhao = await s.scalar(select(m.Candidate).where(m.Candidate.with_id_number(ZHAO)))
        assert zhao.mobile == "13764219053" and zhao.full_time_student is True


async def test_unknown_columns_and_files_are_warnings_not_errors(sqlite_db: Database, tmp_path: Path) -> None:
    write(tmp_path / "d", {
        "courses.csv": "code,name,序号\n00015,英语(二),1\n",
        "notes.csv": "whatever\n",
    })
    (tmp_path / "d" / "成绩.xlsx").write_bytes(b"PK")
    report = await import_directory(sqlite_db, tmp_path / "d")
    assert report.ok and report.committed, report.format()
    text = report.format()
    assert "未知的列“序号”" in text and "notes.csv" in text and "另存为 CSV" in text


# --- Validation: every error listed, nothing imported -------------------------------------------


BAD_DIRECTORY = {
    "sittings.csv": "code,exam_date\n202404,2024-04-13\n2024年13月,\n202410,2024-02-30\n",
    "courses.csv": "code,name,kind\n00015,英语(二),理论\n0015,英语(一),理论\n00052,实践课,实验\n",
    "majors.csv": (
        "code,name,level,required_credits,graduation_rules\n"
        "120402,行政管理(专升本),专升本,70,\n"
        "02030K,金融学,专升本,70,\n"
        "020301K,金融学(专升本),硕士,70,\n"
        "120103,工程管理(专升本),专升本,七十,\n"
        "690206,行政管理(专科),专科,70,{thesis: false}\n"
    ),
    "plan_courses.csv": "major_code,course_code,credits\n120402,00015,14\n999999,00015,4\n120402,04183,5\n120402,00015,99\n",
    "candidates.csv": (
        "id_number,name,mobile,email\n"
        f"{ZHAO},赵敏,13764219053,zhaomin@example.com\n"
        "310105199307074568,错位,13700000000,\n"
        "3.10105E+17,科学计数,,\n"
        f"{SUN},孙浩,12345,not-an-email\n"
        ",无证件,,\n"
    ),
    "admission_numbers.csv": (
        "admission_number,id_number,major_codes\n"
        f"012424100318,{ZHAO},120402\n"
        f"01242410031,{ZHAO},\n"
        "012424100999,310115199203154215,\n"
        f"012424100777,{ZHAO},120999\n"
    ),
    "scores.csv": (
        "admission_number,course_code,sitting,kind,score\n"
        "012424100318,00015,202404,exam,75\n"
        "012424100318,00015,202410,exam,105\n"
        "012424100318,00015,202410,exam,优秀\n"
        "012424100318,03708,202404,exam,60\n"
        "012424100318,00015,202304,exam,60\n"
        "999999999999,00015,202404,exam,60\n"
        "012424100318,00015,,exam,60\n"
        "012424100318,00015,202404,exemption,\n"
        "012424100318,00015,202404,exam,75.55\n"
    ),
    "business_windows.csv": (
        "kind,title,opens_at,closes_at,notice\n"
        "exemption,申请免考,2024-09-02 09:00,2024-09-13 16:00,\"第一行\n第二行\"\n"
        "holiday,放假,2024-09-02 09:00,2024-09-13 16:00,\n"
        "graduation,申请毕业,2024-09-13 16:00,2024-09-02 09:00,\n"
    ),
}


async def test_every_bad_row_is_reported_with_file_line_and_reason_and_nothing_is_imported(
    db: Database, tmp_path: Path
) -> None:
    report = await import_directory(db, write(tmp_path / "bad", BAD_DIRECTORY))
    assert not report.ok and not report.committed
    expected = [
        ("sittings.csv", 3, "考次“2024年13月”格式不对"),
        ("sittings.csv", 4, "日期“2024-02-30”不存在"),
        ("courses.csv", 3, "课程代码“0015”应为 5 位数字（前导 0 可能被 Excel 去掉了）"),
        ("courses.csv", 4, "课程类型“实验”"),
        ("majors.csv", 3, "专业代码“02030K”"),
        ("majors.csv", 4, "层次“硕士”"),
        ("majors.csv", 5, "毕业学分“七十”应为整数"),
        ("majors.csv", 6, "毕业要求不是有效的 JSON"),
        ("plan_courses.csv", 3, "专业代码 999999 不存在"),
        ("plan_courses.csv", 4, "课程代码 04183 不存在"),
        ("plan_courses.csv", 5, "学分 99 超出范围"),
        ("candidates.csv", 3, "校验位不对"),
        ("candidates.csv", 4, "科学计数法"),
        ("candidates.csv", 5, "手机号“12345”"),
        ("candidates.csv", 5, "电子邮箱“not-an-email”"),
        ("candidates.csv", 6, "证件号码不能为空"),
        ("admission_numbers.csv", 3, "准考证号“01242410031”应为 12 位数字"),
        ("admission_numbers.csv", 4, "考生不存在"),
        ("admission_numbers.csv", 5, "专业代码 120999 不存在"),
        ("scores.csv", 3, "成绩 105 超出 0-100"),
        ("scores.csv", 4, "成绩“优秀”"),
        ("scores.csv", 5, "课程代码 03708 不存在"),
        ("scores.csv", 6, "考次 202304 不存在"),
        ("scores.csv", 7, "准考证号 999999999999 不存在"),
        ("scores.csv", 8, "考试成绩必须填写考次"),
        ("scores.csv", 9, "免考记录不填考次"),
        ("scores.csv", 10, "最多保留一位小数"),
        # The quoted notice spans lines 2-3, so the next record starts on line 4.
        ("business_windows.csv", 4, "业务“holiday”"),
        ("business_windows.csv", 5, "结束时间应晚于开始时间"),
    ]
    missing = [e for e in expected if not has_error(report, *e)]
    assert not missing, f"missing {missing}\n{report.format()}"
    assert len(report.errors) == len(expected), report.format()
    for model in (m.Sitting, m.Course, m.Major, m.PlanCourse, m.Candidate, m.AdmissionNumber, m.ScoreRecord,
                  m.BusinessWindow, m.CandidateMajor):
        assert await count(db, model) == 0, model
    text = report.format()
    assert "失败" in text and "未导入任何数据" in text and "scores.csv 第 3 行: 成绩 105 超出 0-100" in text


async def test_one_bad_row_among_good_files_blocks_the_whole_directory(db: Database, tmp_path: Path) -> None:
    directory = copy_examples(tmp_path)
    with (directory / "scores.csv").open("a", encoding="utf-8") as f:
        f.write("012424100392,03709,202410,exam,101\n")
    report = await import_directory(db, directory)
    assert issues(report) == [("scores.csv", 9, "成绩 101 超出 0-100")]
    assert await count(db, m.Candidate) == 0 and await count(db, m.Course) == 0


async def test_missing_required_column_names_it(sqlite_db: Database, tmp_path: Path) -> None:
    report = await import_directory(sqlite_db, write(tmp_path / "d", {"courses.csv": "课程代码,类型\n00015,理论\n"}))
    assert issues(report) == [("courses.csv", 1, "缺少必需的列: 课程名称（列名见 docs/import.md）")]


async def test_empty_or_missing_directory_is_an_error(sqlite_db: Database, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert not (await import_directory(sqlite_db, tmp_path / "empty")).ok
    report = await import_directory(sqlite_db, tmp_path / "nope")
    assert not report.ok and "目录不存在" in report.format()


async def test_duplicates_identical_are_skipped_conflicting_are_errors(sqlite_db: Database, tmp_path: Path) -> None:
    report = await import_directory(sqlite_db, write(tmp_path / "d", {
        "courses.csv": "code,name\n00015,英语(二)\n00015,英语(二)\n03708,中国近现代史纲要\n03708,近代史\n",
    }))
    assert issues(report) == [("courses.csv", 5, "与第 4 行重复（课程 03708）但内容不同")]
    assert [(w.file, w.line) for w in report.warnings] == [("courses.csv", 3)]


async def test_dry_run_checks_everything_and_writes_nothing(db: Database) -> None:
    report = await import_directory(db, EXAMPLES, dry_run=True)
    assert report.ok and not report.committed
    assert await count(db, m.Course) == 0


# --- Upserts against what the database holds ---------------------------------------------------


async def test_references_may_point_at_rows_already_in_the_database(db: Database, tmp_path: Path) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    later = write(tmp_path / "later", {
        "scores.csv": "准考证号,课程代码,考次,成绩\n012424100392,03709,2024年10月,58\n",
    })
    report = await import_directory(db, later)
    assert report.ok, report.format()
    assert counts(report) == {"scores.csv": (1, 0, 0)}
    async with db.session() as s:
        rec = await s.scalar(select(m.ScoreRecord).where(m.ScoreRecord.course_code == "03709",
                                                         m.ScoreRecord.admission_number == "012424100392"))
        sun = await s.scalar(select(m.Candidate).where(m.Candidate.with_id_number(SUN)))
        assert rec.candidate_id == sun.id and rec.score == Decimal("58.0") and not rec.passed


async def test_changed_rows_are_updated_and_empty_cells_keep_stored_values(db: Database, tmp_path: Path) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    directory = copy_examples(tmp_path)
    scores = (directory / "scores.csv").read_text("utf-8")
    # 成绩复核: 54 becomes 60; and the exemption's note cell is emptied (keeps the stored note).
    scores = scores.replace("012424100318,03709,202404,exam,54,,", "012424100318,03709,202404,exam,60,,")
    scores = scores.replace(",2024-09-10,大学英语四级(CET-4)成绩 462 分", ",2024-09-10,")
    (directory / "scores.csv").write_text(scores, "utf-8")
    cands = (directory / "candidates.csv").read_text("utf-8").replace("上海市长宁区天山路 600 弄 3 号 402 室", "")
    cands = cands.replace("赵敏", "赵敏敏")
    (directory / "candidates.csv").write_text(cands, "utf-8")
    report = await import_directory(db, directory)
    assert report.ok, report.format()
    assert counts(report)["scores.csv"] == (0, 1, 6)
    assert counts(report)["candidates.csv"] == (0, 1, 1)
    async with db.session() as s:
        rec = await s.scalar(select(m.ScoreRecord).where(
            m.ScoreRecord.course_code == "03709", m.ScoreRecord.sitting_code == "202404"))
        assert rec.score == Decimal("60.0") and rec.passed and rec.passed_on == dt.date(2024, 4, 13)
        ex = await s.scalar(select(m.ScoreRecord).where(m.ScoreRecord.kind == "exemption"))
        assert "CET-4" in ex.note
        zhao = await s.scalar(select(m.Candidate).where(m.Candidate.with_id_number(ZHAO)))
        assert zhao.name == "赵敏敏" and zhao.mailing_address == "上海市长宁区天山路 600 弄 3 号 402 室"
        assert zhao.updated_at > zhao.created_at


async def test_admission_number_cannot_move_to_another_candidate(db: Database, tmp_path: Path) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    report = await import_directory(db, write(tmp_path / "d", {
        "admission_numbers.csv": f"admission_number,id_number\n012424100318,{SUN}\n",
    }))
    assert has_error(report, "admission_numbers.csv", 2, "在数据库中属于另一考生（3101**********4567）")


async def test_score_id_number_column_must_match_the_admission_number(db: Database, tmp_path: Path) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    report = await import_directory(db, write(tmp_path / "d", {
        "scores.csv": f"admission_number,id_number,course_code,sitting,score\n012424100318,{SUN},03709,202410,70\n",
    }))
    assert has_error(report, "scores.csv", 2, "准考证号 012424100318 不属于证件号码 3101**********1238")


async def test_confirmed_mobile_is_not_overwritten_by_office_data(db: Database) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    async with db.session() as s:
        await s.execute(update(m.Candidate).where(m.Candidate.with_id_number(ZHAO)).values(
            mobile="18900001111", mobile_verified_at=dt.datetime.now(dt.timezone.utc)))
        await s.execute(update(m.Candidate).where(m.Candidate.with_id_number(SUN)).values(mobile="18900002222"))
        await s.commit()
    report = await import_directory(db, EXAMPLES)
    assert counts(report)["candidates.csv"] == (0, 1, 1)
    async with db.session() as s:
        mobiles = dict((await s.execute(select(m.Candidate.id_number, m.Candidate.mobile))).all())
    assert mobiles == {ZHAO: "18900001111", SUN: "15000321876"}


# --- Passwords and privacy ---------------------------------------------------------------------


async def test_passwords_hashed_on_insert_and_never_overwritten(db: Database, tmp_path: Path) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    async with db.session() as s:
        hashes = dict((await s.execute(select(m.Candidate.id_number, m.Candidate.password_hash))).all())
    assert verify_password("Sun#2024abc", hashes[SUN])  # the CSV's password column
    assert verify_password("074567", hashes[ZHAO])  # no password given: the initial-password rule
    assert "Sun#2024abc" not in hashes[SUN]

    directory = copy_examples(tmp_path)
    text = (directory / "candidates.csv").read_text("utf-8").replace("Sun#2024abc", "Changed#999")
    text = text.replace("13764219053,,", "13764219053,Zhao#new1,")
    (directory / "candidates.csv").write_text(text, "utf-8")
    report = await import_directory(db, directory)
    assert report.ok and counts(report)["candidates.csv"] == (0, 0, 2), report.format()
    assert any("密码不会被导入覆盖" in w.message for w in report.warnings)
    async with db.session() as s:
        after = dict((await s.execute(select(m.Candidate.id_number, m.Candidate.password_hash))).all())
    assert after == hashes


async def test_report_and_logs_never_show_full_id_numbers_or_passwords(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="storage")
    directory = copy_examples(tmp_path)
    text = (directory / "candidates.csv").read_text("utf-8")
    text += "310105199307074568,身份证,错位,13700000000,abc,,,,,,,\n"  # wrong check digit, too-short password
    (directory / "candidates.csv").write_text(text, "utf-8")
    (directory / "admission_numbers.csv").write_text(
        (directory / "admission_numbers.csv").read_text("utf-8") + "012424100555,310115199203154215,,\n", "utf-8")
    bad = await import_directory(db, directory)
    good = await import_directory(db, EXAMPLES)
    assert not bad.ok and good.ok
    out = bad.format() + good.format() + caplog.text + repr(bad) + repr(good)
    for secret in (ZHAO, SUN, "310105199307074568", "310115199203154215", "Sun#2024abc"):
        assert secret not in out
    assert "3101**********4568" in bad.format() and "3101**********4215" in bad.format()
    assert has_error(bad, "candidates.csv", 4, "密码应为 6-64 个字符")


# --- Efficiency --------------------------------------------------------------------------------


async def test_statements_are_batched_not_one_per_row(db: Database, tmp_path: Path) -> None:
    from storage.identifiers import id_check_digit

    cands, adms, scores = ["id_number,name"], ["admission_number,id_number"], ["admission_number,course_code,sitting,score"]
    courses = ["03708", "03709", "00015", "00320", "00051"]
    for i in range(300):
        first17 = f"31010119900101{i:03d}"
        idn = first17 + id_check_digit(first17)
        cands.append(f"{idn},考生{i}")
        adms.append(f"0199{i:08d},{idn}")
        for c in courses:
            for sitting in ("202404", "202410"):
                scores.append(f"0199{i:08d},{c},{sitting},{(i * 7) % 100}")
    directory = copy_examples(tmp_path)
    for other in ("transfers_in.csv", "transfer_in_courses.csv"):  # they refer to the replaced candidates
        (directory / other).unlink()
    write(directory, {
        "candidates.csv": "\n".join(cands) + "\n",
        "admission_numbers.csv": "\n".join(adms) + "\n",
        "scores.csv": "\n".join(scores) + "\n",
    })
    statements = 0

    def counter(*_args) -> None:
        nonlocal statements
        statements += 1

    event.listen(db.engine.sync_engine, "before_cursor_execute", counter)
    try:
        first = await import_directory(db, directory)
        assert first.ok, first.format()
        assert counts(first)["scores.csv"] == (3000, 0, 0)
        first_statements, statements = statements, 0
        again = await import_directory(db, directory)
        assert counts(again)["scores.csv"] == (0, 0, 3000)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", counter)
    # 3,600 rows: a per-row approach would need thousands of statements.
    assert first_statements < 60, first_statements
    assert statements < 40, statements


async def test_a_failure_while_writing_rolls_back_everything(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from storage import importer

    real_upsert = importer._upsert

    async def failing_upsert(session, table, *args, **kwargs):
        if table.name == "score_records":  # candidates, courses ... have been written by now
            raise RuntimeError("disk full")
        return await real_upsert(session, table, *args, **kwargs)

    monkeypatch.setattr(importer, "_upsert", failing_upsert)
    report = await import_directory(db, EXAMPLES)
    assert not report.ok and not report.committed
    assert "写入数据库失败，未导入任何数据: RuntimeError" in report.format()
    assert all((r.inserted, r.updated, r.unchanged) == (0, 0, 0) for r in report.files)
    for model in (m.Sitting, m.Course, m.Candidate, m.AdmissionNumber):
        assert await count(db, model) == 0, model
