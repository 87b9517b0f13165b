"""申请学位 decided like 免考 and 补登: `zikao-bot review list|show|approve|reject --kind degree` and the
staff console's application page, which shows the form and the material photos (to degree
reviewers only); the decision's push is written with it."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.config import Settings
from storage import applications as apps
from storage import models as m
from storage import staff
from storage.db import Database
from storage.degree import APPROVED_DETAIL, DegreeDetails, Material
from storage.photos import LocalPhotoStore, process_photo, save_photo
from tests.console_fixtures import EXEMPTION_REVIEWER, PASSWORD, add_people
from tests.test_applications import OPENID, ZHAO_ADMISSION, add_user
from tests.test_import import EXAMPLES
from storage.importer import import_directory
from tests.test_console import browser  # noqa: F401 - the fixture
from tests.test_outbox import ZHAO, candidate_id
from tests.test_photos import document, encode
from tests.test_review_cli import ZHAO_MOBILE, cli

DEGREE_REVIEWER = "xuewei"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, media_dir=str(tmp_path / "media"))


async def pending_degree(db: Database, settings: Settings) -> apps.ApplicationData:
    """赵敏 applies for a degree in 120402 with a CET-4 report and a photo of herself."""
    assert (await import_directory(db, EXAMPLES)).ok
    cid = await candidate_id(db, ZHAO)
    await add_user(db, OPENID, cid)
    t = dt.datetime.now(dt.timezone.utc)
    async with db.session() as s, s.begin():
        s.add(m.BusinessWindow(kind="degree", title="2026年下半年申请学位", opens_at=t - dt.timedelta(days=1),
                               closes_at=t + dt.timedelta(days=10)))
    store = LocalPhotoStore.under_media_dir(settings.media_dir)
    cet = await save_photo(db, store, process_photo(encode(document(1300, 1000))))
    face = await save_photo(db, store, process_photo(encode(document(600, 800, seed=4), "PNG")))
    draft = await apps.open_draft(db, kind="degree", candidate_id=cid, openid=OPENID, admission_number=ZHAO_ADMISSION,
                                  major_code="120402")
    draft.details = DegreeDetails(
        native_place="江苏南通", address="上海市长宁区天山路 600 弄 3 号 402 室", mobile=ZHAO_MOBILE,
        emergency_mobile="13912345678", work_phone="021-55556666", optional_asked=True, personal_checked=True,
        materials=[Material("group:学位外语", "cet4", score="480", month="2019-06", province="上海市", photo_ids=[cet.id]),
                   Material("material:id_photo", "id_photo", photo_ids=[face.id])],
    ).to_dict()
    return await apps.submit(db, await apps.save_draft(db, draft))


async def test_submission_checks_the_form_against_the_imported_requirements(db: Database, settings: Settings) -> None:
    pending = await pending_degree(db, settings)
    bad = apps.ApplicationData.from_dict(pending.to_dict())
    d = DegreeDetails.from_dict(bad.details)
    d.materials[0].score = "400"
    d.emergency_mobile = ZHAO_MOBILE
    bad.details = d.to_dict()
    with pytest.raises(apps.SubmissionRefused) as e:
        await apps.submit(db, bad)
    assert "大学英语四级（CET-4）成绩单的成绩须达到425分，您填写的是400分。" in e.value.problems[1]
    assert "紧急联系手机应为紧急联系人的号码，不能与本人手机号码相同。" in e.value.problems
    assert (await apps.load_application(db, pending.id)).details == pending.details  # nothing changed


async def test_review_show_prints_the_form_and_the_material_photos(db: Database, settings: Settings, capsys) -> None:
    pending = await pending_degree(db, settings)
    code, out, _ = await cli(settings, capsys, "list", "--kind", "学位")
    assert code == 0 and f"{pending.id}" in out and "申请学位" in out and "赵敏" in out
    code, out, _ = await cli(settings, capsys, "show", str(pending.id))
    assert code == 0
    assert out.splitlines()[0] == f"申请 #{pending.id}  申请学位  待审核  版本 {pending.version}"
    assert "籍贯 江苏南通  联系地址 上海市长宁区天山路 600 弄 3 号 402 室  手机号码 137****9053" in out
    assert "紧急联系手机 139****5678  工作单位 -  单位电话 021-55556666" in out
    assert ZHAO_MOBILE not in out and "13912345678" not in out and ZHAO not in out
    assert "材料 1：学位外语  大学英语四级（CET-4）成绩单（最低分 425）" in out
    assert "成绩 480  获取时间 2019年6月  省份 上海市" in out
    assert "材料 2：本人近期二寸免冠证件照  本人近期二寸免冠证件照" in out
    assert "1300×1000" in out and "600×800" in out and "（文件缺失）" not in out


async def test_review_approve_and_reject_push_the_decision(db: Database, settings: Settings, capsys) -> None:
    pending = await pending_degree(db, settings)
    code, out, err = await cli(settings, capsys, "reject", str(pending.id), "--reason", "证件照背景不是白色。",
                               "--by", "张老师")
    assert code == 0, err
    assert "未通过" in out and "已通知考生（1 条推送待发送）" in out and "成绩记录" not in out
    async with db.session() as s:
        [push] = (await s.execute(select(m.Outbox))).scalars().all()
    assert push.openid == OPENID and push.payload["text"] == "您的学位申请审核结果：未通过。\n回复“学位”查看原因并重新提交。"
    # 重新提交 (the conversation does it in test_dialogs_degree), then approval.
    again = await apps.submit(db, await apps.load_application(db, pending.id))
    code, out, err = await cli(settings, capsys, "approve", str(pending.id), "--by", "张老师",
                               "--version", str(again.version))
    assert code == 0, err
    assert "审核通过" in out and "成绩记录" not in out
    async with db.session() as s:
        pushes = (await s.execute(select(m.Outbox).order_by(m.Outbox.id))).scalars().all()
    assert len(pushes) == 2 and APPROVED_DETAIL in pushes[1].payload["text"]


async def test_the_console_page_shows_the_form_and_photos_to_degree_reviewers_only(
        browser, db: Database, settings: Settings) -> None:  # noqa: F811
    await add_people(db)
    await staff.add_staff(db, username=DEGREE_REVIEWER, display_name="孙老师", password=PASSWORD, kinds=["degree"])
    pending = await pending_degree(db, settings)
    photo_ids = [p for mat in pending.details["materials"] for p in mat["photo_ids"]]
    reviewer = await browser()
    await reviewer.login(DEGREE_REVIEWER)
    page = await reviewer.get(f"/console/applications/{pending.id}")
    text = page.body_text
    assert "申请学位" in text and "个人信息" in text and "江苏南通" in text and "139****5678" in text
    assert "13912345678" not in text and ZHAO_MOBILE not in text
    assert "材料 1：学位外语" in text and "大学英语四级（CET-4）成绩单" in text and "成绩 480" in text
    for pid in photo_ids:
        assert f"/console/photos/{pid}" in text
        r = await reviewer.get(f"/console/photos/{pid}")
        assert r.status == 200
    other = await browser()
    await other.login(EXEMPTION_REVIEWER)
    assert (await other.get(f"/console/photos/{photo_ids[0]}")).status == 404
    r = await reviewer.post(f"/console/applications/{pending.id}/decide", {"action": "approve", "version": pending.version})
    assert r.status == 302
    assert (await apps.load_application(db, pending.id)).status == "approved"
