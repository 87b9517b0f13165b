"""外省转入 in conversation: “转入” shows the record, its progress, every course and the 现场确认;
status changes and the reminder arrive as pushes; completed courses show as 转入 in 考试计划."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from storage import models as m
from storage import transfers as tr
from storage.db import Database
from storage.importer import import_directory
from tests.dialog_fixtures import make_router
from tests.test_import import EXAMPLES, write
from tests.test_transfers import SUN
from tests.transcript import router_sender, run

OPENID = "o_sun_dialog"
SH = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture
def router(db):
    return make_router(db)


async def bind(db: Database, id_number: str = SUN, openid: str = OPENID) -> int:
    async with db.session() as s, s.begin():
        cid = await s.scalar(select(m.Candidate.id).where(m.Candidate.with_id_number(id_number)))
        s.add(m.WechatUser(openid=openid, candidate_id=cid, subscribed=True, bound_at=m.utcnow()))
    return cid


async def texts(db: Database, openid: str = OPENID) -> list[str]:
    async with db.session() as s:
        rows = (await s.execute(select(m.Outbox).where(m.Outbox.openid == openid).order_by(m.Outbox.id))).scalars()
        return [r.payload["text"] for r in rows]


async def test_zhuanru_shows_progress_courses_and_the_confirmation_slot(db, router):
    assert (await import_directory(db, EXAMPLES)).ok
    await bind(db)
    await run(router_sender(router, OPENID), """
        > 转入
        < 【外省转入】
        < 转入编号 ZR2024000017
        < 来源省 江苏省｜来源准考证号 3601****0345
        < 转入专业 行政管理(专升本)（120402）
        < 进度：待审核 ✓ → 审核中 ✓ → 待现场确认（当前） → 已完成
        < 【现场确认】
        < 时间：2024年11月20日 09:00 至 11:30
        < 地点：上海市教育考试院（漕溪北路 331 号）一楼服务大厅
        < 请携带：身份证原件；江苏省自考办出具的转出成绩单原件
        < 【转入课程】共 3 门：认定 2 门，不认定 1 门
        < 03709 马克思主义基本原理概论
        < 　72分｜2019年10月｜认定
        < 00015 英语(二)
        < 原课程 英语（二）｜61分｜2020年10月｜认定
        < 00051 管理系统中计算机应用
        < 原课程 计算机应用基础｜80分｜2018年04月｜不认定
        < 原因：课程内容与本市考试计划不一致，不予认定
        <! 微信中暂时还不能办理
    """)


async def test_the_menu_entry_and_the_full_name_answer_the_same(db, router):
    assert (await import_directory(db, EXAMPLES)).ok
    await bind(db)
    await run(router_sender(router, OPENID), """
        > 省际转考
        < 1. 外省转入（查看进度）
        > 1
        < 转入编号 ZR2024000017
        > 外省转入
        < 待现场确认（当前）
    """)


async def test_without_a_record_the_candidate_learns_how_to_start_and_when(db, router):
    assert (await import_directory(db, EXAMPLES)).ok
    await bind(db, id_number="310105199307074567", openid="o_zhao")
    await run(router_sender(router, "o_zhao"), """
        > 转入
        < 您还没有外省转入记录
        < 请先在原报考省份办理转出手续
        < 外省转入现在不在办理时间内，下一次办理时间还没有公布
    """)
    now = m.utcnow()
    async with db.session() as s, s.begin():
        s.add(m.BusinessWindow(kind="transfer_in", title="2027年上半年外省转入", opens_at=now + dt.timedelta(days=3),
                               closes_at=now + dt.timedelta(days=10)))
    await run(router_sender(router, "o_zhao"), """
        > 转入
        < 下一次办理时间
    """)


async def test_an_unbound_follower_is_asked_to_bind_first(db, router):
    await run(router_sender(router, "o_stranger"), """
        > 转入
        < 这项业务需要先绑定考生信息
        < 点击这里完成绑定
    """)


async def test_rejection_then_reopening_and_completion_are_pushed_and_shown(db, router, tmp_path: Path):
    assert (await import_directory(db, EXAMPLES)).ok
    cid = await bind(db)
    head = "reference,admission_number,from_province,from_admission_number,major_code,status,reason\n"
    d = write(tmp_path / "office", {"transfers_in.csv": head +
              "ZR2025000002,012424100392,浙江,330118200345,120402,未通过,转出省成绩单缺少公章\n"})
    assert (await import_directory(db, d)).ok
    await run(router_sender(router, OPENID), """
        > 转入
        < 您有 2 条转入记录
        < ―― 第1条 ――
        < 转入编号 ZR2025000002
        < 进度：未通过
        < 原因：转出省成绩单缺少公章
        < ―― 第2条 ――
    """)
    await tr.set_status(db, "ZR2025000002", "reviewing")
    await tr.set_status(db, "ZR2024000017", "completed")
    pushed = await texts(db)
    assert pushed == [
        "您的外省转入审核结果：未通过。\n回复“转入”查看原因。",
        "您的外省转入办理进度：审核中。\n回复“转入”查看详情。",
        "您的外省转入已办理完成，认定的课程已计入您的成绩。\n回复“转入”查看详情。",
    ]
    await run(router_sender(router, OPENID), """
        > 转入
        < 进度：待审核 ✓ → 审核中（当前） → 待现场确认 → 已完成
        < 进度：待审核 ✓ → 审核中 ✓ → 待现场确认 ✓ → 已完成 ✓
        < 认定的课程已计入您的成绩
        > 考试计划
        < 转入 2
        < 03709 马克思主义基本原理概论
        < 转入
        > 毕业进度
        <! 03709
    """)
    assert cid


async def test_the_reminder_arrives_once_and_names_the_slot(db, router):
    assert (await import_directory(db, EXAMPLES)).ok
    await bind(db)
    day_before = dt.datetime(2024, 11, 19, 9, 30, tzinfo=SH)
    await tr.confirmation_reminders(db, day_before)
    await tr.confirmation_reminders(db, day_before + dt.timedelta(hours=3))
    [text] = await texts(db)
    assert text.startswith("提醒：您的外省转入现场确认在2024年11月20日 09:00。")
    assert "地点：上海市教育考试院" in text
