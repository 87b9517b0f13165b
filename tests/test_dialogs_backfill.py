"""成绩补登 as transcripts through the router: the list of registrations, the three kinds with
their date limits (2002年12月, 2020年), editing pending entries, decisions becoming scores."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from storage import applications as apps
from storage import models as m
from storage.db import Database
from tests.evidence_fixtures import (
    OPENID, ZHAO_ADMISSION, FakeMedia, application_router, close_window, one, standard_media, world,
)
from tests.transcript import router_sender, run

THEORY = """
    > 成绩补登
    < 【成绩补登】
    < 您还没有登记过成绩
    < 1. 登记成绩
    > 登记成绩
    < 1. 理论与实践（2002年12月及以前通过的考试）
    < 2. 免考记录（2020年以前已办好的免考）
    < 3. 转入记录（2020年以前办好的外省转入）
    > 1
    < 请输入课程名称的前几个字或课程代码
    > 高等数学
    < 没有找到以“高等数学”开头的课程
    > 管理
    < 1. 00051 管理系统中计算机应用
    < 2. 00052 管理系统中计算机应用(实践)
    > 2
    < 这门课程已通过，不需要补登
    > 返回
    > 领导
    < 1. 00320 领导科学
    > 1
    < 考试通过时间
    > 2003年1月
    < 理论与实践成绩只能补登2002年12月及以前取得的成绩
    > 2002年12月
    < 请输入成绩
    > 不合格
    < 只能补登合格的成绩
    > 101
    < 成绩不能超过100分
    > 78.5
    < 说明
    > 1999年在黄浦考点参加考试
    < 请发送成绩证明的照片
    [photo PDF]
    < 收到的不是照片
    [photo CERT1]
    < 已收到第1张照片
    > 完成
    < 【成绩补登｜请核对】
    < 类型：理论与实践
    < 课程：00320 领导科学
    < 考试通过时间：2002年12月
    < 成绩：78.5分
    < 说明：1999年在黄浦考点参加考试
    < 成绩证明照片：1张
    <! 还需补充
    > 确认
    < 已提交，第1号成绩补登现在是“待审核”
"""


@pytest.fixture
def media() -> FakeMedia:
    return standard_media()


@pytest.fixture
def router(db, media, tmp_path):
    return application_router(db, media, tmp_path / "photos")


async def registrations(db: Database) -> list[apps.ApplicationData]:
    return await apps.list_applications(db, kind="backfill")


async def records(db: Database, course: str) -> list[m.ScoreRecord]:
    async with db.session() as s:
        return list((await s.execute(select(m.ScoreRecord).where(
            m.ScoreRecord.course_code == course, m.ScoreRecord.admission_number == ZHAO_ADMISSION))).scalars())


async def test_theory_result_of_2002_is_registered_and_becomes_a_score_when_approved(db, router):
    await world(db)
    await run(router_sender(router, OPENID), THEORY)
    reg = one(await registrations(db))
    item = reg.items[0]
    assert reg.status == "submitted"
    assert (item.course_code, item.entry_kind, item.passed_month, item.score) == ("00320", "theory", "2002-12",
                                                                                 Decimal("78.5"))
    assert item.note == "1999年在黄浦考点参加考试"
    assert [(e.type_code, len(e.photo_ids)) for e in item.evidences] == [("score_proof", 1)]
    await apps.approve(db, reg.id, by="张老师")
    rec = one(await records(db, "00320"))
    assert (rec.kind, rec.score, rec.passed, str(rec.passed_on)) == ("backfill", Decimal("78.5"), True, "2002-12-01")
    await run(router_sender(router, OPENID), """
        > 成绩补登
        < 第1号｜
        < 登记｜理论与实践｜审核通过
        < 00320 领导科学｜78.5分｜6学分｜通过时间2002年12月
        <! 修改第1号
    """)


async def test_a_course_is_found_by_its_code_too(db, router):
    await world(db)
    await run(router_sender(router, OPENID), """
        > 补登
        > 1
        > 1
        > 00051
        < 1. 00051 管理系统中计算机应用
        <! 00052
    """)


async def test_old_exemption_is_registered_and_newer_ones_go_to_application(db, router):
    await world(db)
    await run(router_sender(router, OPENID), """
        > 成绩补登
        > 登记成绩
        > 2
        > 管理系统中
        < 1. 00051 管理系统中计算机应用
        > 1
        < 请输入办理免考的时间
        > 2020年1月
        < 免考补登只限2020年以前已审核通过的免考
        < 2020年及以后的免考请回复“免考”，通过“申请免考”办理
        > 2019年12月
        < 【免考所用的凭证】
        < 5. 大学英语四级（CET-4）成绩单
        > 5
        < 请输入凭证编号
        > CET4-2016-8
        < 获取凭证的时间
        > 2030年1月
        < 时间不能晚于本月
        > 2016年6月
        < 获取凭证的省份
        > 浙江
        < 说明
        > 无
        < 【成绩补登｜请核对】
        < 类型：免考
        < 办理免考时间：2019年12月
        < 凭证类型：大学英语四级（CET-4）成绩单
        < 取得凭证时间：2016年6月
        < 凭证编号：CET4-2016-8
        < 取得凭证地点：浙江省
        > 确认
        < 已提交，第1号成绩补登
    """)
    reg = one(await registrations(db))
    e = reg.items[0].evidences[0]
    assert (reg.items[0].entry_kind, reg.items[0].passed_month) == ("exemption", "2019-12")
    assert (e.type_code, e.obtained_month, e.number, e.province) == ("cet4", "2016-06", "CET4-2016-8", "浙江省")
    await apps.approve(db, reg.id, by="张老师")
    rec = one(await records(db, "00051"))
    assert (rec.kind, str(rec.passed_on)) == ("exemption", "2019-12-01")


async def test_old_transfer_with_several_courses_and_newer_ones_go_to_transfer_in(db, router):
    await world(db)
    await run(router_sender(router, OPENID), """
        > 成绩补登
        > 登记成绩
        > 3
        < 请输入办理转入的时间
        > 2020年3月
        < 转入补登只限2020年以前办理的转入
        < 2020年及以后的转入请回复“转入”，通过“外省转入”办理
        > 2019年9月
        < 来源省
        > 上海
        < 不能是上海
        > 江苏
        < 在来源省的准考证号
        > 12
        < 准考证号应为6到20位数字或字母
        > 3201 0012 3456
        < 请选择转入的课程
        < 1. 00320 领导科学
        < 2. 00051 管理系统中计算机应用
        > 1-2
        < 【成绩补登｜请核对】
        < 类型：转入
        < 办理转入时间：2019年9月
        < 来源省：江苏省
        < 来源准考证号：320100123456
        < 转入专业：120402 行政管理(专升本)
        < 课程：00320 领导科学、00051 管理系统中计算机应用
        > 确认
        < 已提交
    """)
    reg = one(await registrations(db))
    assert reg.major_code == "120402"
    assert [(i.course_code, i.passed_month, i.from_province, i.from_admission_number) for i in reg.items] == [
        ("00320", "2019-09", "江苏省", "320100123456"), ("00051", "2019-09", "江苏省", "320100123456")]
    await apps.approve(db, reg.id, by="张老师")
    assert [r.kind for r in await records(db, "00320")] == ["transfer"]
    assert [r.kind for r in await records(db, "00051")] == ["transfer"]


async def test_pending_entry_can_be_edited_and_submitted_again(db, router):
    await world(db)
    send = router_sender(router, OPENID)
    await run(send, THEORY)
    before = one(await registrations(db))
    await run(send, """
        > 成绩补登
        < 第1号｜
        < 理论与实践｜待审核（可修改）
        < 00320 领导科学｜78.5分｜6学分｜通过时间2002年12月
        < 2. 修改第1号（待审核）
        > 2
        < 【成绩补登｜第1号 待审核】
        > 修改内容
        < 1. 修改课程
        < 3. 修改成绩
        > 3
        < 请输入成绩
        > 合格
        < 成绩：合格
        > 修改内容
        > 修改考试通过时间
        > 2005年6月
        < 只能补登2002年12月及以前
        > 2001年6月
        < 考试通过时间：2001年6月
        > 修改内容
        > 5
        < 请发送新的照片，发送后将替换原来的1张
        [photo CERT2]
        [photo CERT3]
        > 完成
        < 成绩证明照片：2张
        > 确认
        < 修改已提交，第1号成绩补登现在是“待审核”
    """)
    after = one(await registrations(db))
    item = after.items[0]
    assert (after.status, item.score, item.grade, item.passed_month) == ("submitted", None, "合格", "2001-06")
    assert len(item.evidences[0].photo_ids) == 2 and after.version > before.version


async def test_rejected_entry_shows_the_reason_and_is_resubmitted(db, router):
    await world(db)
    send = router_sender(router, OPENID)
    await run(send, THEORY)
    await apps.reject(db, one(await registrations(db)).id, reason="请上传盖章的成绩证明。", by="李老师")
    await run(send, """
        > 成绩补登
        < 理论与实践｜未通过
        < 未通过原因：请上传盖章的成绩证明。
        > 修改后重新提交
        < 【成绩补登｜第1号 未通过】
        < 未通过原因：请上传盖章的成绩证明。
        > 修改内容
        > 修改成绩证明照片
        [photo CERT4]
        > 完成
        > 确认
        < 已重新提交
    """)
    assert one(await registrations(db)).status == "submitted"


async def test_leaving_in_the_middle_and_continuing(db, router):
    await world(db)
    send = router_sender(router, OPENID)
    await run(send, """
        > 成绩补登
        > 登记成绩
        > 1
        > 领导
        > 1
        > 2001年5月
        < 请输入成绩
        > 取消
        < 已填写的内容都保存了，回复“成绩补登”可以接着办理
    """)
    draft = one(await registrations(db))
    assert draft.status == "draft" and draft.items[0].passed_month == "2001-05"
    await run(send, """
        > 成绩补登
        < 未提交的登记｜理论与实践（草稿）
        < 1. 继续填写未提交的登记
        > 1
        < 请输入成绩
        > 88
        > 无
        [photo CERT1]
        > 完成
        > 确认
        < 已提交
    """)


async def test_changing_the_kind_after_going_back_starts_that_kind_afresh(db, router):
    await world(db)
    await run(router_sender(router, OPENID), """
        > 成绩补登
        > 登记成绩
        > 1
        > 领导
        > 1
        < 考试通过时间
        > 返回
        > 返回
        > 返回
        < 上一步您填写的补登类型是
        > 3
        < 请输入办理转入的时间
        > 2018年1月
        > 江苏
        > 320100123456
        > 1
        < 类型：转入
    """)
    reg = one(await registrations(db))
    assert [i.entry_kind for i in reg.items] == ["transfer"]


async def test_outside_the_window_the_list_is_shown_and_nothing_can_be_registered(db, router):
    await world(db)
    send = router_sender(router, OPENID)
    await run(send, THEORY)
    await close_window(db, "backfill")
    await run(send, """
        > 成绩补登
        < 成绩补登现在不在办理时间内
        < 您的成绩补登记录
        < 00320 领导科学｜78.5分
        <! 登记成绩
    """)


async def test_my_applications_lists_registrations_and_exemptions(db, router):
    await world(db)
    await run(router_sender(router, OPENID), THEORY + """
        > 我的申请
        < 【我的申请】
        < 成绩补登：
        < 理论与实践｜待审核
        < 修改待审核的登记，请回复“成绩补登”
        <! 申请免考：
    """)
