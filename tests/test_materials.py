"""我的材料: the evidences a candidate uploaded, one per document, numbers masked, with the status
of the application they belong to; linked from 个人信息."""
from __future__ import annotations

import datetime as dt

import pytest

from dialogs.materials import materials_text
from storage import applications as apps
from storage import materials as mat
from storage.db import Database
from storage.identifiers import mask_document_number
from tests.dialog_fixtures import make_router
from tests.test_applications import OPENID, ZHAO_ADMISSION, evidence, exemption_draft, world
from tests.test_outbox import add_user
from tests.transcript import router_sender, run

CET4 = "CET4-2018-000123"


@pytest.mark.parametrize("number, shown", [
    ("CET4-2018-000123", "CE**********0123"),
    ("A1234567", "*****567"),
    ("1234", "****"),
    ("", ""),
    ("310101199001011234", "3101**********1234"),  # an ID number used as a 编号 is masked as one
])
def test_document_numbers_keep_only_their_ends(number: str, shown: str) -> None:
    assert mask_document_number(number) == shown


def test_one_certificate_for_two_courses_is_one_material_with_its_photos_counted_once() -> None:
    t = dt.datetime(2026, 11, 20, 2, tzinfo=dt.timezone.utc)
    rows = [
        mat.EvidenceRow(7, "exemption", "submitted", t, "CET-4", "X1", "2018-06", "领导科学", (1, 2)),
        mat.EvidenceRow(7, "exemption", "submitted", t, "CET-4", "X1", "2018-06", "管理系统中计算机应用", (2, 3)),
        mat.EvidenceRow(7, "exemption", "submitted", t, "毕业证书", "D9", "2015-07", "领导科学", (4,)),
    ]
    got = mat.group_materials(rows)
    assert [(m.type_name, m.courses, m.photos) for m in got] == [
        ("CET-4", ("领导科学", "管理系统中计算机应用"), 3),
        ("毕业证书", ("领导科学",), 1),
    ]


async def test_materials_of_a_submitted_application_come_with_its_status(db: Database) -> None:
    w = await world(db)
    cet = evidence(photo_ids=w.photos[:2])
    draft = await exemption_draft(db, w, {"00320": [cet], "00051": [evidence(photo_ids=w.photos[1:3])]})
    await apps.submit(db, draft)
    got = await mat.materials(db, w.candidate)
    assert len(got) == 1
    m = got[0]
    assert (m.kind, m.status, m.number, m.photos) == ("exemption", "submitted", CET4, 3)
    assert set(m.courses) == {"领导科学", "管理系统中计算机应用"}
    text = materials_text(got)
    assert "待审核" in text and "照片3张" in text and "CE**********0123" in text
    assert CET4 not in text


async def test_other_candidates_materials_are_not_listed(db: Database) -> None:
    w = await world(db)
    await exemption_draft(db, w, {"00320": [evidence(photo_ids=w.photos[:1])]})
    assert await mat.materials(db, w.candidate + 1000) == []


async def test_my_materials_keyword_and_the_profile_link(db: Database) -> None:
    w = await world(db)
    await exemption_draft(db, w, {"00320": [evidence(photo_ids=w.photos[:2]),
                                            evidence("diploma", photo_ids=w.photos[2:3], number="DIP-0000-7788")]})
    router = make_router(db)
    await run(router_sender(router, OPENID), f"""
        > 个人信息
        < 【个人信息】
        < 我的材料：已上传2份，回复“我的材料”查看
        > 我的材料
        < 【我的材料】共2份
        < 大学英语四级（CET-4）成绩单｜编号 CE**********0123｜2018年6月
        < 照片2张｜申请免考第
        < 草稿，未提交
        < 毕业证书｜编号 DI*******7788
        < 用于：领导科学
        <! {CET4}
        <! {ZHAO_ADMISSION}
    """)


async def test_no_materials_yet_says_how_to_upload(db: Database) -> None:
    w = await world(db)
    router = make_router(db)
    await run(router_sender(router, OPENID), """
        > 个人信息
        < 我的材料：暂无
        > 我的材料
        < 您还没有上传过证明材料
    """)


async def test_my_materials_asks_an_unbound_user_to_bind_first(db: Database) -> None:
    await add_user(db, "o_materials_unbound_000001", None)
    await run(router_sender(make_router(db), "o_materials_unbound_000001"), """
        > 我的材料
        < 点击这里完成绑定
    """)
