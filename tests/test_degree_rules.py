"""申请学位's rules as plain functions (storage/degree.py), and degree_requirements.csv through the
importer: line-level errors, re-import, withdrawing a requirement without deleting it."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from storage import degree as dg
from storage.db import Database
from storage.importer import import_directory
from storage.models_degree import DegreeRequirement
from tests.test_import import EXAMPLES, has_error

TODAY = dt.date(2026, 11, 29)
CET4 = dg.Requirement("cet4", "大学英语四级（CET-4）成绩单", "学位外语", asks_score=True, asks_month=True,
                      asks_province=True, min_score=Decimal(425), position=1)
PETS3 = dg.Requirement("pets3", "PETS-3 合格证书", "学位外语", asks_number=True, asks_month=True, position=2)
FACE = dg.Requirement("id_photo", "证件照", position=3)
SLOTS = dg.slots_of([FACE, PETS3, CET4])


def personal(**kw) -> dg.DegreeDetails:
    values = dict(native_place="江苏南通", address="上海市长宁区天山路600弄3号", mobile="13764219053",
                  emergency_mobile="13912345678") | kw
    return dg.DegreeDetails(**values)


def test_rows_sharing_a_group_are_one_slot_of_alternatives_in_the_order_of_their_first_row():
    assert [(s.key, s.title, [r.code for r in s.options]) for s in SLOTS] == [
        ("group:学位外语", "学位外语", ["cet4", "pets3"]), ("material:id_photo", "证件照", ["id_photo"])]


@pytest.mark.parametrize("typed, value", [("480", "480"), ("480分", "480"), ("85.5", "85.5"), ("合格", "合格"),
                                          (" 710 ", "710")])
def test_a_material_score_is_a_number_up_to_1000_or_a_passing_word(typed, value):
    assert dg.parse_score(typed) == value


@pytest.mark.parametrize("typed", ["四百八", "85.55", "1200", "-1", ""])
def test_a_material_score_that_is_not_one_is_refused_in_chinese(typed):
    with pytest.raises(ValueError, match="成绩"):
        dg.parse_score(typed)


def test_the_minimum_score_is_the_schools_and_a_passing_word_reaches_it():
    assert dg.score_problem("425", CET4) is None
    assert dg.score_problem("424.5", CET4) == ("大学英语四级（CET-4）成绩单的成绩须达到425分，您填写的是424.5分。"
                                               "未达到要求的不能用于申请学位，请核对或选择其他材料。")
    assert dg.score_problem("合格", CET4) is None
    assert dg.score_problem("10", PETS3) is None  # no minimum


def test_personal_information_needs_the_four_required_fields_and_valid_phones():
    assert dg.personal_problems(personal()) == []
    assert dg.personal_problems(personal(native_place="", address="")) == ["请填写籍贯。", "请填写联系地址。"]
    assert dg.personal_problems(personal(emergency_mobile="12345")) == ["紧急联系手机应为11位手机号码。"]
    assert dg.personal_problems(personal(emergency_mobile="137 6421 9053")) == [
        "紧急联系手机应为紧急联系人的号码，不能与本人手机号码相同。"]
    assert dg.personal_problems(personal(work_phone="5555")) == [
        "单位电话应为带区号的固定电话（如 021-12345678）或11位手机号码。"]
    assert dg.personal_problems(personal(work_phone="021-55556666", employer="")) == []


def test_each_slot_needs_one_complete_material_and_nothing_else():
    cet = dg.Material("group:学位外语", "cet4", score="480", month="2019-06", province="上海市", photo_ids=[1])
    face = dg.Material("material:id_photo", "id_photo", photo_ids=[2])
    kw = dict(major_code="120402", majors={"120402": "专升本"}, today=TODAY, born="1993-07")
    assert dg.degree_problems(personal(materials=[cet, face]), SLOTS, **kw) == []
    assert dg.degree_problems(personal(materials=[cet]), SLOTS, **kw) == ["请提供证件照材料。"]
    half = dg.Material("group:学位外语", "pets3", number="", month="2027-01", photo_ids=[])
    assert dg.degree_problems(personal(materials=[half, face]), SLOTS, **kw) == [
        "PETS-3 合格证书：请填写编号。", "PETS-3 合格证书：获取时间不能晚于本月。", "PETS-3 合格证书：请上传照片。"]
    young = dg.Material("group:学位外语", "cet4", score="480", month="1995-06", province="上海市", photo_ids=[1])
    assert "不满6周岁" in dg.degree_problems(personal(materials=[young, face]), SLOTS, **kw)[0]
    stray = dg.Material("material:thesis", "thesis")
    assert dg.degree_problems(personal(materials=[cet, face, stray]), SLOTS, **kw) == [
        "有材料不是该专业要求的，请重新核对材料。"]
    assert dg.degree_problems(personal(materials=[cet, face]), SLOTS, **{**kw, "majors": {}}) == [
        "所选专业不是您报考的本科（专升本）专业，不能申请学位。"]
    assert dg.degree_problems(personal(), [], **kw) == ["该专业的主考学校还没有公布学位申请材料要求，暂时不能提交。"]


def test_the_first_missing_field_is_where_a_material_resumes():
    slot = SLOTS[0]
    assert dg.first_missing(dg.Material(slot.key), slot, TODAY) == "type"
    assert dg.first_missing(dg.Material(slot.key, "cet4", score="480"), slot, TODAY) == "month"
    done = dg.Material(slot.key, "cet4", score="480", month="2019-06", province="上海市", photo_ids=[1])
    assert dg.first_missing(done, slot, TODAY) is None
    low = dg.Material(slot.key, "cet4", score="400", month="2019-06", province="上海市", photo_ids=[1])
    assert dg.first_missing(low, slot, TODAY) == "fix"  # the school raised its minimum: asked again


def test_only_benke_and_zhuanshengben_majors_lead_to_a_degree():
    assert dg.eligible_level("专升本") and dg.eligible_level("本科") and not dg.eligible_level("专科")


# --- the import ---------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "imp"
    d.mkdir(exist_ok=True)
    (d / "degree_requirements.csv").write_text(text, encoding="utf-8")
    return d


async def requirements(db: Database) -> dict[tuple[str, str], DegreeRequirement]:
    async with db.session() as s:
        return {(r.major_code, r.code): r for r in (await s.execute(select(DegreeRequirement))).scalars()}


async def test_the_example_requirements_import_with_their_fields_and_reimport_changes_nothing(db: Database) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    rows = await requirements(db)
    cet = rows[("120402", "cet4")]
    assert (cet.group_name, cet.asks_score, cet.asks_month, cet.asks_province, cet.asks_number) == (
        "学位外语", True, True, True, False)
    assert (cet.photo_required, cet.min_score, cet.position, cet.active) == (True, Decimal("425.0"), 1, True)
    face = rows[("120402", "id_photo")]
    assert (face.group_name, face.asks_score, face.asks_month, face.photo_required) == (None, False, False, True)
    assert [s.key for s in await dg.slots(db, "120402")] == ["group:学位外语", "material:id_photo"]
    again = await import_directory(db, EXAMPLES)
    assert [(r.inserted, r.updated) for r in again.files if r.file == "degree_requirements.csv"] == [(0, 0)]


async def test_bad_lines_are_reported_by_line_and_nothing_is_imported(db: Database, tmp_path: Path) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    before = await requirements(db)
    report = await import_directory(db, write(tmp_path, """专业代码,材料代码,材料名称,材料类别,填写项,需要照片,最低分,说明
120402,cet6,大学英语六级（CET-6）成绩单,学位外语,成绩、获取时间,是,425,
120402,pets3,PETS-3 合格证书,学位外语,编号、颜色,是,,
120402,thesis,论文答辩记录,,获取时间,是,60,
999999,cet4,大学英语四级（CET-4）成绩单,学位外语,成绩,是,425,
120402,cet 4!,大学英语四级,学位外语,成绩,是,,
120402,ielts,雅思成绩单,学位外语,成绩,也许,abc,
"""))
    assert not report.ok and not report.committed
    assert has_error(report, "degree_requirements.csv", 3, "填写项“颜色”不认识")
    assert has_error(report, "degree_requirements.csv", 4, "填了最低分，填写项中也须有“成绩”")
    assert has_error(report, "degree_requirements.csv", 5, "专业代码 999999 不存在")
    assert has_error(report, "degree_requirements.csv", 6, "材料代码“cet 4!”")
    assert has_error(report, "degree_requirements.csv", 7, "“也许”应为 是 或 否")
    assert has_error(report, "degree_requirements.csv", 7, "最低分“abc”应为数字")
    assert not any(i.line == 2 for i in report.errors)
    assert set(await requirements(db)) == set(before)  # not even the good line 2 (cet6)


async def test_a_requirement_is_withdrawn_by_marking_it_inactive(db: Database, tmp_path: Path) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    report = await import_directory(db, write(tmp_path, "专业代码,材料代码,材料名称,启用\n120402,id_photo,本人近期二寸免冠证件照,否\n"))
    assert report.ok, report.format()
    assert [s.key for s in await dg.slots(db, "120402")] == ["group:学位外语"]
    row = (await requirements(db))[("120402", "id_photo")]
    assert row.photo_required is True and row.note == "白色背景，用于学位证书"  # empty cells kept what was stored
