"""本科论文与专科毕设 as transcripts through the router: 考生须知, the score list, 加考选项, the
前置学历毕业证书 with real photos and bad input at every step, the review with 修改 N,
submission; then 未通过 → 重新申请 → 预审通过 with the 指导教师, the pushes, and the window
closed."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from storage import applications as apps
from storage import models as m
from storage import queries as q
from storage import thesis as th
from storage.db import Database
from tests.evidence_fixtures import (
    OPENID, application_router, close_window, now, standard_media, world,
)
from tests.transcript import router_sender, run

NOTICE = "一、请核对成绩。\n二、本科须上传前置学历毕业证书。"


@pytest.fixture
def media():
    return standard_media()


@pytest.fixture
def router(db, media, tmp_path):
    return application_router(db, media, tmp_path / "photos")


async def thesis_world(db: Database, *, open_: bool = True, extra: bool = False) -> int:
    w = await world(db)
    t = now()
    async with db.session() as s, s.begin():
        s.add(m.BusinessWindow(kind="thesis", title="2026年本科论文与专科毕设", notice=NOTICE,
                               opens_at=t - dt.timedelta(days=1) if open_ else t + dt.timedelta(days=20),
                               closes_at=t + dt.timedelta(days=10) if open_ else t + dt.timedelta(days=30)))
        if extra:
            await s.execute(update(m.Major).where(m.Major.code == "120402").values(graduation_rules={
                "thesis": True, "extra_exam_options": [
                    {"label": "前置学历为本专业或相近专业", "courses": []},
                    {"label": "前置学历为非相近专业", "courses": ["00320"]}]}))
        await q.mark_changed(s)
    return w.candidate


async def pushed(db: Database) -> list[str]:
    async with db.session() as s:
        rows = (await s.execute(select(m.Outbox).where(m.Outbox.openid == OPENID).order_by(m.Outbox.id))).scalars()
        return [r.payload["text"] for r in rows]


FILL = """
    > 论文
    < 【本科论文与专科毕设｜考生须知】
    < 一、请核对成绩。
    < 回复“我已知晓”继续申请
    > 好的
    < 读完考生须知后，请回复“我已知晓”继续申请
    > 我已知晓
    < 专业：行政管理(专升本)（120402）
    < 【本科论文与专科毕设｜成绩列表】
    < 03708 中国近现代史纲要｜理论｜76分｜2学分｜2024年04月
    < 00015 英语(二)
    < 尚未通过：00320 领导科学、00051 管理系统中计算机应用
    <! 07998
    [photo CERT1]
    < 这一步需要回复文字，不是图片
    > 5
    < 请回复1到2之间的数字
    > 1
    < 【本科论文与专科毕设｜前置学历毕业证书】
    < 请输入凭证编号
    > 2018年6月
    < 这是一个时间，不是凭证编号
    > 102471201805001234
    < 请输入获取凭证的时间
    > 2018年13月
    < 月份应在1到12之间
    > 2099年1月
    < 时间不能晚于本月
    [photo CERT1]
    < 这一步需要回复文字，不是图片
    > 2015年7月
    < 省份
    > 火星
    > 上海
    < 备注
    > 00015成绩
    < 英语(二)
    < 备注
    > 全日制专科
    < 请发送凭证照片
    > 好了
    < 还需要至少1张照片
    [photo PDF]
    < JPG
    [photo CERT2]
    < 已收到第1张照片
    > 完成
    < 【本科论文与专科毕设｜请核对】
    < 专业：行政管理(专升本)（120402）
    < 1. 成绩列表：已核对
    < 2. 前置学历毕业证书：毕业证书｜编号102471201805001234｜2015年7月｜上海市｜照片1张
    < 备注：全日制专科
    <! 还需补充
    > 修改 2
    < 要修改哪一项
    <! 凭证类型
    > 2
    < 现在填写的是：2015年7月
    > 2016年7月
    < 2. 前置学历毕业证书：毕业证书｜编号102471201805001234｜2016年7月
    > 确认
    < 已提交，第1号论文申请现在是“待审核”
"""


async def test_walked_to_submission_with_bad_input_at_every_step(db, router):
    await thesis_world(db)
    await run(router_sender(router, OPENID), FILL + """
        > 毕业进度
        < 论文申请：第1号｜待审核
    """)
    [app] = await apps.list_applications(db, kind="thesis")
    assert app.status == "submitted" and app.major_code == "120402"
    [item] = app.items
    assert item.course_code == "07998"
    [ev] = item.evidences
    assert (ev.type_code, ev.number, ev.obtained_month, ev.province, ev.note) == (
        "diploma", "102471201805001234", "2016-07", "上海市", "全日制专科")
    assert len(ev.photo_ids) == 1
    assert app.details == {"scores_confirmed": True}


async def test_reject_then_reapply_then_approve_with_the_advisor_and_the_pushes(db, router):
    await thesis_world(db)
    send = router_sender(router, OPENID)
    await run(send, FILL)
    [app] = await apps.list_applications(db, kind="thesis")
    await apps.reject(db, app.id, reason="毕业证书照片不清晰，请重新拍摄。", by="王老师")
    assert await pushed(db) == ["您的本科论文与专科毕设申请审核结果：未通过。\n回复“论文”查看原因并重新提交。"]
    await run(send, """
        > 论文
        < 第1号｜未通过
        < 未通过原因：毕业证书照片不清晰，请重新拍摄。
        <! 预审结果：未通过
        > 重新申请
        < 【本科论文与专科毕设｜第1号 未通过】
        < 未通过原因：毕业证书照片不清晰
        < 确认重新提交
        > 修改 2
        < 要修改哪一项
        < 5. 照片
        > 5
        < 请发送新的照片，发送后将替换原来的1张
        [photo CERT3]
        > 完成
        < 照片1张
        > 确认重新提交
        < 已重新提交，第1号论文申请现在是“待审核”
    """)
    done = await apps.approve(db, app.id, by="王老师", advisor=th.Advisor("张明华老师", "021-62231234（周二下午）"))
    assert done.application.details["advisor"] == "张明华老师"
    texts = await pushed(db)
    assert len(texts) == 2
    assert texts[1].startswith("您的本科论文与专科毕设申请审核结果：已通过。\n预审结果：通过\n指导教师：张明华老师\n"
                               "联系方式：021-62231234（周二下午）")
    await run(send, """
        > 论文
        < 第1号｜审核通过
        < 预审结果：通过
        < 指导教师：张明华老师
        < 联系方式：021-62231234（周二下午）
        <! 重新申请
        <! 请选择
        > 我的申请
        < 本科论文与专科毕设：
        < 第1号｜审核通过
        < 指导教师：张明华老师
        > 毕业进度
        < 毕业论文：未取得成绩
        < 论文申请：第1号｜审核通过
        < 指导教师：张明华老师
        < 回复“论文”查看或办理
    """)


async def test_approval_without_advisor_says_one_will_be_assigned(db, router):
    await thesis_world(db)
    await run(router_sender(router, OPENID), FILL)
    [app] = await apps.list_applications(db, kind="thesis")
    await apps.approve(db, app.id, by="王老师")
    [text] = await pushed(db)
    assert "预审结果：通过\n指导教师：待分配" in text


async def test_extra_exam_options_are_asked_where_the_major_defines_them(db, router):
    await thesis_world(db, extra=True)
    await run(router_sender(router, OPENID), """
        > 论文
        > 我已知晓
        > 1
        < 【本科论文与专科毕设｜加考选项】
        < 1. 前置学历为本专业或相近专业（无需加考）
        < 2. 前置学历为非相近专业（领导科学 未通过）
        > 3
        < 请回复1到2之间的数字
        > 2
        < 【本科论文与专科毕设｜前置学历毕业证书】
        > 取消
        < 已填写的内容都保存了，回复“论文”可以接着办理
        > 论文
        < 您有一份还没提交的申请草稿
        > 1
        < 接着填写上次的草稿
        < 请输入凭证编号
        > 102471201805001234
        > 2015年7月
        > 上海
        > 无
        [photo CERT1]
        > 完成
        < 2. 加考选项：前置学历为非相近专业
        > 修改 2
        < 请选择符合您情况的一项
        > 1
        < 2. 加考选项：前置学历为本专业或相近专业
        > 确认
        < 已提交
    """)
    [app] = await apps.list_applications(db, kind="thesis")
    assert app.details["extra_option"] == "前置学历为本专业或相近专业"


async def test_outside_the_window_it_says_when_it_opens(db, router):
    await thesis_world(db, open_=False)
    await run(router_sender(router, OPENID), """
        > 论文
        < 本科论文与专科毕设现在不在办理时间内
        <! 考生须知
        <! 电脑
    """)


async def test_a_passed_thesis_needs_no_application(db, router):
    cid = await thesis_world(db)
    async with db.session() as s, s.begin():
        s.add(m.ScoreRecord(candidate_id=cid, admission_number="012424100318", course_code="07998",
                            sitting_code="202410", kind="exam", score=75, passed=True, passed_on=dt.date(2024, 10, 1)))
        await q.mark_changed(s)
    await run(router_sender(router, OPENID), """
        > 论文
        < 没有需要申请的论文
        <! 考生须知
    """)
    assert await apps.list_applications(db, kind="thesis") == []


async def test_the_window_closing_mid_form_keeps_the_draft(db, router):
    await thesis_world(db)
    send = router_sender(router, OPENID)
    await run(send, """
        > 论文
        > 我已知晓
        > 1
        < 请输入凭证编号
    """)
    await close_window(db, "thesis")
    await run(send, """
        > 102471201805001234
        < 已填写的内容在这之前都已保存
    """)
    [app] = await apps.list_applications(db, kind="thesis")
    assert app.status == "draft" and app.details == {"scores_confirmed": True}


async def test_a_video_or_link_at_the_photos_step_is_refused_and_nothing_is_lost(db, router):
    from dialogs.types import Message

    await thesis_world(db)
    send = router_sender(router, OPENID)
    await run(send, """
        > 论文
        > 我已知晓
        > 1
        > 102471201805001234
        > 2015年7月
        > 上海
        > 无
        < 请发送凭证照片
    """)
    for kind in ("video", "link", "unknown"):
        reply = await router.handle(Message(openid=OPENID, kind=kind, media_id="V1"))
        assert "这一步需要发送照片（JPG或PNG），不能是视频、语音、链接或文件。" in reply.text
    await run(send, """
        [photo CERT4]
        < 已收到第1张照片
        > 完成
        < 2. 前置学历毕业证书：毕业证书｜编号102471201805001234｜2015年7月｜上海市｜照片1张
    """)


async def test_several_majors_are_numbered_and_a_zhuanke_major_skips_the_diploma(db, router):
    cid = await thesis_world(db)
    async with db.session() as s, s.begin():
        s.add(m.Major(code="A020203", name="会计", level="专科", required_credits=70, graduation_rules={"thesis": True}))
        s.add(m.Course(code="11111", name="会计毕业设计", kind="论文"))
        await s.flush()
        s.add(m.PlanCourse(major_code="A020203", course_code="11111", credits=0, category="必考", position=1))
        s.add(m.CandidateMajor(candidate_id=cid, major_code="A020203", admission_number="012424100318"))
        await q.mark_changed(s)
    await run(router_sender(router, OPENID), """
        > 论文
        > 我已知晓
        < 【本科论文与专科毕设｜专业】
        < 1. 行政管理(专升本)（120402）
        < 2. 会计（A020203，专科）
        > 3
        < 请回复1到2之间的数字
        > 会计
        < 【本科论文与专科毕设｜成绩列表】专业：会计（A020203，专科）
        < （还没有合格成绩）
        > 1
        < 【本科论文与专科毕设｜请核对】
        < 1. 专业：会计（A020203，专科）
        < 2. 成绩列表：已核对
        <! 前置学历毕业证书
        > 修改 1
        < 请选择申请论文的专业
        > 1
        < 【本科论文与专科毕设｜成绩列表】专业：行政管理(专升本)（120402）
        > 1
        < 【本科论文与专科毕设｜前置学历毕业证书】
        > 取消
        > 论文
        > 1
        < 请输入凭证编号
    """)
    [app] = await apps.list_applications(db, kind="thesis")
    assert app.major_code == "120402" and [i.course_code for i in app.items] == ["07998"]
