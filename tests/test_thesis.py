"""本科论文与专科毕设 without a conversation: the submission rules as plain functions, the 预审
decision with its 指导教师 (storage, `zikao-bot review`), and advisors assigned by file
(thesis_advisors.csv) with line-level errors and their pushes."""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import review_cli
from bot.config import Settings
from storage import applications as apps
from storage import models as m
from storage import thesis as th
from storage.applications import ApplicationData, EvidenceData, ItemData
from storage.db import Database
from storage.importer import import_directory
from storage.photos import LocalPhotoStore, process_photo, save_photo
from tests.evidence_fixtures import OPENID, ZHAO_ADMISSION, now, world
from tests.test_import import has_error, write
from tests.test_photos import document, encode

ROOT = Path(__file__).resolve().parents[1]
ADVISORS = ROOT / "docs/examples/later"
MAJOR = th.MajorFacts("120402", "行政管理(专升本)", "专升本", {}, ("07998",))


# --- rules on plain data ---------------------------------------------------------------------------


def app_data(**kw) -> ApplicationData:
    ev = EvidenceData("diploma", number="102471201805001234", obtained_month="2015-07", province="上海市",
                      photo_ids=[1])
    base = dict(kind="thesis", candidate_id=1, openid="o", admission_number="012424100318", major_code="120402",
                items=[ItemData("07998", evidences=[ev])], details={"scores_confirmed": True})
    return ApplicationData(**{**base, **kw})


def problems(data: ApplicationData, major: th.MajorFacts = MAJOR) -> list[str]:
    return th.thesis_problems(data, major, enrolled=["120402", "A1"], current_month="2026-11", born="1993-07")


def test_a_complete_application_has_no_problems_and_each_gap_is_named() -> None:
    assert problems(app_data()) == []
    assert problems(app_data(major_code=None)) == ["请选择专业。"]
    assert problems(app_data(details={})) == ["请核对成绩列表。"]
    ev = EvidenceData("diploma", obtained_month="2030-01")
    assert problems(app_data(items=[ItemData("07998", evidences=[ev])])) == [
        "请填写毕业证书编号。", "取得毕业证书的年月不能晚于本月。", "请填写取得毕业证书的省份。", "请上传毕业证书照片。"]
    assert problems(app_data(items=[ItemData("07998")])) == ["请上传前置学历毕业证书。"]
    assert problems(app_data(items=[ItemData("03708")])) == ["申请的论文课程与专业不符，请重新选择专业。"]
    assert th.thesis_problems(app_data(), MAJOR, enrolled=["990101"], current_month="2026-11") == [
        "所选专业不是您报考的专业。"]


def test_a_zhuanke_major_skips_the_diploma_and_extra_options_must_be_one_of_the_majors() -> None:
    zhuanke = th.MajorFacts("A1", "会计", "专科", {}, ("07998",))
    assert problems(app_data(major_code="A1", items=[ItemData("07998")]), zhuanke) == []
    extra = th.MajorFacts("120402", "行政管理", "专升本", {"extra_exam_options": [{"label": "非相近专业", "courses": ["00320"]}]},
                          ("07998",))
    assert problems(app_data(), extra) == ["请选择加考选项。"]
    assert problems(app_data(details={"scores_confirmed": True, "extra_option": "非相近专业"}), extra) == []
    assert problems(app_data(details={"scores_confirmed": True, "extra_option": "别的"}), MAJOR) == ["该专业没有加考选项。"]
    no_thesis = th.MajorFacts("120402", "行政管理", "专升本", {}, ())
    assert problems(app_data(), no_thesis) == ["行政管理的考试计划中没有论文（毕设）课程，不需要申请。"]


def test_an_advisor_needs_both_name_and_contact_and_a_repeat_changes_nothing() -> None:
    assert th.advisor_of("", " ") is None
    with pytest.raises(th.AdvisorError, match="联系方式"):
        th.advisor_of("张老师", "")
    with pytest.raises(th.AdvisorError, match="姓名"):
        th.advisor_of("", "021-1234")
    with pytest.raises(th.AdvisorError, match="最多"):
        th.advisor_of("张" * 40, "021-1234")
    t = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
    d, changed = th.record_advisor({"scores_confirmed": True}, th.Advisor("张老师", "021-1234"), by="王", now=t)
    assert changed and d["advisor"] == "张老师" and d["advisor_changes"] == 1 and d["scores_confirmed"] is True
    again, changed = th.record_advisor(d, th.Advisor("张老师", "021-1234"), by="王", now=t)
    assert not changed and again == d
    other, changed = th.record_advisor(d, th.Advisor("李老师", "021-5678"), by="王", now=t)
    assert changed and other["advisor_changes"] == 2


# --- a submitted application in the database ------------------------------------------------------


async def submitted(db: Database, media_dir: Path) -> ApplicationData:
    w = await world(db)
    t = now()
    async with db.session() as s, s.begin():
        s.add(m.BusinessWindow(kind="thesis", title="2026年本科论文与专科毕设",
                               opens_at=t - dt.timedelta(days=1), closes_at=t + dt.timedelta(days=10)))
    photo = await save_photo(db, LocalPhotoStore.under_media_dir(media_dir), process_photo(encode(document(1300, 1000))))
    draft = await apps.open_draft(db, kind="thesis", candidate_id=w.candidate, openid=OPENID,
                                  admission_number=ZHAO_ADMISSION)
    draft.major_code = "120402"
    draft.items = [ItemData("07998", evidences=[EvidenceData("diploma", number="102471201805001234",
                                                             obtained_month="2015-07", province="上海市",
                                                             photo_ids=[photo.id])])]
    draft.details = {"scores_confirmed": True}
    return await apps.submit(db, draft)


async def pushes(db: Database) -> list[str]:
    async with db.session() as s:
        rows = (await s.execute(select(m.Outbox).where(m.Outbox.openid == OPENID).order_by(m.Outbox.id))).scalars()
        return [r.payload["text"] for r in rows]


async def test_submission_is_refused_with_every_problem(db: Database, tmp_path: Path) -> None:
    app = await submitted(db, tmp_path)
    await apps.reject(db, app.id, reason="照片不清晰", by="王老师")
    again = await apps.load_application(db, app.id)
    again.items[0].evidences[0].province = ""
    again.details = {}
    with pytest.raises(apps.SubmissionRefused) as e:
        await apps.submit(db, again)
    assert e.value.problems == ["请核对成绩列表。", "请填写取得毕业证书的省份。"]


async def test_a_second_open_application_for_the_same_major_is_refused(db: Database, tmp_path: Path) -> None:
    app = await submitted(db, tmp_path)
    draft = await apps.open_draft(db, kind="thesis", candidate_id=app.candidate_id, openid=OPENID,
                                  admission_number=ZHAO_ADMISSION)
    draft.major_code = "120402"
    with pytest.raises(apps.ApplicationError, match="该专业已有一份申请"):
        await apps.save_draft(db, draft)


async def test_an_advisor_is_refused_on_other_kinds(db: Database, tmp_path: Path) -> None:
    app = await submitted(db, tmp_path)
    other = await apps.open_draft(db, kind="backfill", candidate_id=app.candidate_id, openid=OPENID,
                                  admission_number=ZHAO_ADMISSION)
    with pytest.raises(apps.ApplicationError, match="只有论文申请"):
        await apps.approve(db, other.id, by="王老师", advisor=th.Advisor("张老师", "021-1234"))
    assert (await apps.load_application(db, other.id)).status == "draft"


# --- zikao-bot review ------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zikao-bot")
    p.add_argument("--config")
    sub = p.add_subparsers(dest="command", required=True)
    review_cli.register(sub)
    return p


async def cli(settings: Settings, capsys, *argv: str) -> tuple[int, str, str]:
    args = parser().parse_args(["review", *argv])
    code = await asyncio.to_thread(review_cli.run, args, settings)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, media_dir=str(tmp_path / "media"))


async def test_review_approve_takes_the_advisor_and_pushes_it(db: Database, settings: Settings, capsys) -> None:
    app = await submitted(db, Path(settings.media_dir))
    code, out, _ = await cli(settings, capsys, "show", str(app.id))
    assert code == 0 and "成绩列表 已核对  加考选项 -" in out
    assert "--advisor 指导教师 --advisor-contact 联系方式" in out
    assert "凭证 1：毕业证书  编号 102471201805001234  获取时间 2015年7月  省份 上海市" in out
    code, _, err = await cli(settings, capsys, "approve", str(app.id), "--by", "王老师", "--advisor", "张明华老师")
    assert code == 2 and "联系方式" in err
    assert (await apps.load_application(db, app.id)).status == "submitted"
    code, out, err = await cli(settings, capsys, "approve", str(app.id), "--by", "王老师", "--advisor", "张明华老师",
                               "--advisor-contact", "021-62231234")
    assert code == 0, err
    assert "预审通过，指导教师 张明华老师。" in out and "已通知考生（1 条推送待发送）" in out
    [text] = await pushes(db)
    assert "预审结果：通过\n指导教师：张明华老师\n联系方式：021-62231234" in text
    code, out, _ = await cli(settings, capsys, "show", str(app.id))
    assert "指导教师 张明华老师  联系方式 021-62231234  （王老师）" in out


async def test_review_advisor_changes_the_advisor_of_an_approved_application(
        db: Database, settings: Settings, capsys) -> None:
    app = await submitted(db, Path(settings.media_dir))
    code, _, err = await cli(settings, capsys, "advisor", str(app.id), "--advisor", "李老师",
                             "--advisor-contact", "li@example.edu.cn", "--by", "王老师")
    assert code == 1 and "预审通过后才能分配指导教师" in err
    code, out, _ = await cli(settings, capsys, "approve", str(app.id), "--by", "王老师")
    assert code == 0 and "未指定指导教师" in out
    code, out, err = await cli(settings, capsys, "advisor", str(app.id), "--advisor", "李老师",
                               "--advisor-contact", "li@example.edu.cn", "--by", "王老师")
    assert code == 0, err
    assert "指导教师 李老师" in out and "已通知考生（1 条推送待发送）" in out
    code, out, _ = await cli(settings, capsys, "advisor", str(app.id), "--advisor", "李老师",
                             "--advisor-contact", "li@example.edu.cn", "--by", "王老师")
    assert code == 0 and "未发推送" in out
    texts = await pushes(db)
    assert len(texts) == 2 and "指导教师：待分配" in texts[0]
    assert texts[1].startswith(f"您的本科论文与专科毕设申请（第{app.id}号）已分配指导教师：\n指导教师：李老师\n联系方式：li@example.edu.cn")


# --- thesis_advisors.csv ---------------------------------------------------------------------------


async def test_the_example_advisor_file_assigns_and_pushes_once(db: Database, tmp_path: Path) -> None:
    app = await submitted(db, tmp_path)
    report = await import_directory(db, ADVISORS)
    assert not report.ok and has_error(report, "thesis_advisors.csv", 2, "现在是“待审核”，预审通过后才能分配指导教师")
    await apps.approve(db, app.id, by="王老师")
    report = await import_directory(db, ADVISORS)
    assert report.ok, report.format()
    assert report.result("thesis_advisors.csv").updated == 1
    d = (await apps.load_application(db, app.id)).details
    assert (d["advisor"], d["advisor_contact"]) == ("张明华老师", "021-62231234（周二下午）")
    texts = await pushes(db)
    assert len(texts) == 2 and "已分配指导教师：\n指导教师：张明华老师" in texts[1]
    again = await import_directory(db, ADVISORS)
    assert again.ok and again.result("thesis_advisors.csv").unchanged == 1
    assert len(await pushes(db)) == 2


async def test_bad_lines_are_reported_and_nothing_is_assigned(db: Database, tmp_path: Path) -> None:
    app = await submitted(db, tmp_path)
    await apps.approve(db, app.id, by="王老师")
    d = write(tmp_path / "advisors", {"thesis_advisors.csv": "\n".join([
        "申请编号,准考证号,专业代码,指导教师,联系方式",
        f"{app.id},,,张老师,021-1234",
        ",012424100318,,李老师,021-5678",
        ",999999999999,120402,李老师,021-5678",
        f",,,{'王' * 40},021-5678",
        "9999,,,赵老师,",
        f"{app.id},012424100392,,张老师,021-1234",
    ]) + "\n"})
    report = await import_directory(db, d)
    assert not report.ok
    assert has_error(report, "thesis_advisors.csv", 3, "请填写申请编号，或准考证号和专业代码")
    assert has_error(report, "thesis_advisors.csv", 4, "准考证号 999999999999 不存在")
    assert has_error(report, "thesis_advisors.csv", 5, "指导教师过长")
    assert has_error(report, "thesis_advisors.csv", 6, "联系方式不能为空")
    assert has_error(report, "thesis_advisors.csv", 7, f"与第 2 行重复")
    assert "advisor" not in (await apps.load_application(db, app.id)).details
    assert len(await pushes(db)) == 1  # the approval only
    shutil.rmtree(d)


# --- the staff console ---------------------------------------------------------------------------


async def test_the_console_approves_a_thesis_application_with_its_advisor(
        aiohttp_client, db: Database, settings: Settings, tmp_path: Path) -> None:
    from aiohttp import ClientSession, CookieJar

    from storage import staff
    from tests.console_fixtures import PASSWORD, Staffer, console_app

    await staff.add_staff(db, username="lw", display_name="陈老师", password=PASSWORD, kinds=["thesis"])
    app = await submitted(db, Path(settings.media_dir))
    client = await aiohttp_client(console_app(db, settings, tmp_path))
    async with ClientSession(base_url=str(client.make_url("/")), cookie_jar=CookieJar(unsafe=True)) as session:
        reviewer = Staffer(session)
        await reviewer.login("lw")
        page = await reviewer.get(f"/console/applications/{app.id}")
        assert 'id="advisor"' in page.body_text and "成绩列表 已核对" in page.body_text
        r = await reviewer.post(f"/console/applications/{app.id}/decide",
                                {"action": "approve", "version": app.version, "advisor": "张明华老师",
                                 "advisor_contact": ""}, follow=True)
        assert "联系方式" in r.body_text
        assert (await apps.load_application(db, app.id)).status == "submitted"
        await reviewer.get(f"/console/applications/{app.id}")
        await reviewer.post(f"/console/applications/{app.id}/decide",
                            {"action": "approve", "version": app.version, "advisor": "张明华老师",
                             "advisor_contact": "021-62231234"})
    d = await apps.load_application(db, app.id)
    assert d.status == "approved" and d.details["advisor"] == "张明华老师" and d.decided_by == "陈老师(lw)"
    [text] = await pushes(db)
    assert "指导教师：张明华老师\n联系方式：021-62231234" in text
