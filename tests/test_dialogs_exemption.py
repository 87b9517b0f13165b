"""申请免考 as transcripts through the router: notice, courses, evidences with real photos, the
毕业证书 rule, drafts that survive leaving, expiry and restarts, edits while 待审核, 未通过 and
重新提交, approval; and once end to end through the WeChat emulator."""
from __future__ import annotations

import datetime as dt
import io

import pytest
from PIL import Image
from sqlalchemy import func, select, update

from dialogs import exemption, menu
from dialogs import fields as F
from storage import applications as apps
from storage import queries as q
from storage.db import Database
from storage.models import CandidateMajor, DialogState, Major, Outbox, PlanCourse, ScoreRecord, utcnow
from storage.models_applications import ApplicationEvent, Photo
from storage.photos import MAX_STORED_BYTES
from tests.evidence_fixtures import (
    OPENID, FakeMedia, application_router, certificate, close_window, one, standard_media, stored_files, world,
)
from tests.test_e2e import scheduler_options, stack  # noqa: F401 (fixtures)
from tests.transcript import router_sender, run

# From the start to the first evidence's photos of 00320 领导科学 with a CET-4 成绩单.
TO_FIRST_PHOTOS = """
    > 免考
    < 【申请免考｜考生须知】
    < 一、申请免考的课程须为本人所报考专业考试计划中的课程。
    < 回复“我已知晓”继续申请
    > 好的
    < 读完考生须知后，请回复“我已知晓”继续申请；不办理请回复“取消”
    > 我已知晓
    < 不能选择：中国近现代史纲要（已通过）
    < 英语(二)（已免考）
    < 行政管理学毕业论文（论文不能申请免考）
    < 1. 00320 领导科学
    < 2. 00051 管理系统中计算机应用
    <! 3.
    > 1,2
    < 【第1/2门 00320 领导科学｜第1份凭证】
    < 5. 大学英语四级（CET-4）成绩单
    < 7. 毕业证书
    <! 成绩证明材料
    > 5
    < 请输入凭证编号
    > CET4-2018-000123
    < 获取凭证的时间
    > 2099年1月
    < 时间不能晚于本月
    > 2018年6月
    < 省份
    > 上海
    < 备注
    > 无
    < 请发送凭证照片
"""


@pytest.fixture
def media() -> FakeMedia:
    return standard_media()


@pytest.fixture
def photo_dir(tmp_path):
    return tmp_path / "photos"


@pytest.fixture
def router(db, media, photo_dir):
    return application_router(db, media, photo_dir)


async def application(db: Database) -> apps.ApplicationData:
    return one(await apps.list_applications(db, kind="exemption"), "exemption application")


async def photo_rows(db: Database) -> list[Photo]:
    async with db.session() as s:
        return list((await s.execute(select(Photo).order_by(Photo.id))).scalars())


async def submit_one_course(router, photo: str = "CERT1") -> None:
    """A complete application for 00320 with one CET-4 and one photo, submitted."""
    await run(router_sender(router, OPENID), f"""
        > 免考
        > 我已知晓
        > 1
        < 【00320 领导科学｜第1份凭证】
        > 5
        > CET4-2018-000123
        > 2018年6月
        > 上海
        > 无
        [photo {photo}]
        < 已收到第1张照片
        > 完成
        < 2. 填好了，查看汇总
        > 2
        < 【申请免考｜请核对】
        > 确认
        < 已提交，第1号免考申请现在是“待审核”
    """)


# --- the whole application ---------------------------------------------------------------------------


async def test_two_courses_with_several_evidences_are_submitted_for_review(db, router, photo_dir):
    await world(db)
    await run(router_sender(router, OPENID), TO_FIRST_PHOTOS + """
        [photo CERT1]
        < 已收到第1张照片
        [photo CERT1]
        < 这张照片刚才已经收到了，不用重复发送
        [photo ROTATED]
        < 照片已按拍摄方向自动转正
        < 已收到第2张照片
        > 完成
        < 【00320 领导科学】已填写1份凭证
        < ① 大学英语四级（CET-4）成绩单｜编号CET4-2018-000123｜2018年6月｜上海市｜照片2张
        < 1. 新增凭证（本课程再加一份）
        < 2. 下一门：00051 管理系统中计算机应用
        > 1
        < 【第1/2门 00320 领导科学｜第2份凭证】
        > 1
        > PETS2-778
        > 201706
        > 江苏省
        > 第二次考试的证书
        [photo CERT2]
        > 完成
        < 已填写2份凭证
        > 2
        < 【第2/2门 00051 管理系统中计算机应用｜第1份凭证】
        > 7
        > DIP-2015-001
        > 2015-07
        > 江苏
        > 无
        [photo OVERSIZED]
        < 照片较大，已压缩到1MB以内保存
        < 已收到第1张照片
        [photo CERT1]
        < 这张照片在本申请的其他凭证里也用过
        < 已收到第2张照片
        > 完成
        < 注意：使用毕业证书申请免考，还须提供教育部学历证书电子注册备案表或中国高等教育学历认证报告
        < 2. 填好了，查看汇总
        > 2
        < 还须提供教育部学历证书电子注册备案表或中国高等教育学历认证报告。请回复1新增凭证
        > 1
        < 第2份凭证
        > 8
        > 320120150801
        > 2015年8月
        > 江苏
        > 无
        [photo PNG]
        > 完成
        < ② 教育部学历证书电子注册备案表｜编号320120150801
        > 2
        < 【申请免考｜请核对】
        < 专业：120402 行政管理(专升本)
        < 1. 00320 领导科学
        < 　① 大学英语四级（CET-4）成绩单｜编号CET4-2018-000123｜2018年6月｜上海市｜照片2张
        < 　② PETS-2 合格证书｜编号PETS2-778｜2017年6月｜江苏省｜照片1张
        < 备注：第二次考试的证书
        < 2. 00051 管理系统中计算机应用
        < 　① 毕业证书｜编号DIP-2015-001｜2015年7月｜江苏省｜照片2张
        < 共2门课程，4份凭证，照片6张。
        < 1. 确认提交
        <! 还需补充
        > 确认
        < 已提交，第1号免考申请现在是“待审核”
        < 我的申请
    """)
    app = await application(db)
    assert app.status == "submitted" and app.major_code == "120402"
    assert [i.course_code for i in app.items] == ["00320", "00051"]
    assert [[e.type_code for e in i.evidences] for i in app.items] == [["cet4", "pets2_certificate"],
                                                                      ["diploma", "chsi_record"]]
    first, diploma = app.items[0].evidences[0], app.items[1].evidences[0]
    assert (first.number, first.obtained_month, first.province) == ("CET4-2018-000123", "2018-06", "上海市")
    assert app.items[0].evidences[1].note == "第二次考试的证书"
    # The CET photo reused on the diploma is one stored photo on two evidences.
    assert first.photo_ids[0] == diploma.photo_ids[1]
    rows = await photo_rows(db)
    assert len(rows) == 5 and len(stored_files(photo_dir)) == 5
    assert all(r.size <= MAX_STORED_BYTES for r in rows)
    by_id = {r.id: r for r in rows}
    turned = by_id[first.photo_ids[1]]
    assert (turned.width, turned.height) == (900, 1200)  # stored upright
    big = by_id[diploma.photo_ids[0]]
    assert big.size <= MAX_STORED_BYTES and big.content_type == "image/jpeg"
    png = by_id[app.items[1].evidences[1].photo_ids[0]]
    assert png.content_type == "image/png"
    stored = Image.open(io.BytesIO((photo_dir / big.storage_key).read_bytes()))
    assert stored.size == (big.width, big.height)


async def test_each_bad_photo_gets_its_reason_and_nothing_is_kept(db, router, media, photo_dir):
    await world(db)
    await run(router_sender(router, OPENID), TO_FIRST_PHOTOS + """
        [photo TINY]
        < 照片太小（400×300像素），看不清内容
        [photo PDF]
        < 收到的不是照片
        [photo HUGE]
        < 照片文件太大（超过10MB）
        < 不要勾选“原图”
        [photo EXPIRED]
        < 这张照片已经失效（微信只保留3天），请重新发送
        [photo BUSY]
        < 微信服务器暂时没有响应
        [photo TIMEOUT]
        < 微信服务器暂时没有响应
        > 完成
        < 还需要至少1张照片
        > 下一门
        < 这一步需要发送照片
        [photo PNG]
        < 已收到第1张照片
        <! 不太顺利
    """)
    assert len(await photo_rows(db)) == 1 and len(stored_files(photo_dir)) == 1
    assert media.downloads.count("HUGE") == 1
    draft = await application(db)
    assert draft.status == "draft" and len(draft.items[0].evidences[0].photo_ids) == 1


async def test_a_photo_without_the_media_service_is_refused_kindly(db, router):
    await world(db)
    router.services.download_media = None
    await run(router_sender(router, OPENID), TO_FIRST_PHOTOS + """
        [photo CERT1]
        < 暂时不能接收照片
        < 请发送凭证照片
    """)


async def test_at_most_nine_photos_per_evidence(db, router, media):
    await world(db)
    for n in range(10):
        media.add(f"P{n}", certificate(100 + n))
    script = TO_FIRST_PHOTOS + "".join(f"[photo P{n}]\n< 已收到第{n + 1}张照片\n" for n in range(9))
    await run(router_sender(router, OPENID), script + """
        [photo P9]
        < 每份凭证最多9张照片，回复“完成”继续
        > 完成
        < 照片9张
    """)


async def test_outside_the_window_it_says_when_it_opens_and_creates_nothing(db, router):
    await world(db, exemption_open=False)
    await run(router_sender(router, OPENID), """
        > 申请免考
        < 申请免考现在不在办理时间内。下一次办理时间：
        <! 考生须知
        > 我已知晓
        < 没有理解
    """)
    assert await apps.list_applications(db) == []


async def test_a_course_without_choices_ends_with_the_reason(db, router):
    w = await world(db)
    async with db.session() as s, s.begin():
        for code in ("00320", "00051"):
            s.add(ScoreRecord(
                candidate_id=w.candidate, admission_number="012424100318", course_code=code, kind="exam",
                sitting_code="202410", score=70, passed=True))
    await run(router_sender(router, OPENID), """
        > 免考
        > 我已知晓
        < 行政管理(专升本)中没有可以申请免考的课程
        < 考试计划
    """)
    assert await apps.list_applications(db) == []


async def test_several_majors_are_offered_and_each_has_its_own_plan(db, router):
    w = await world(db)
    async with db.session() as s, s.begin():
        s.add(Major(code="020301K", name="金融学(专升本)", level="专升本", required_credits=70))
        await s.flush()
        s.add(PlanCourse(major_code="020301K", course_code="00320", credits=5, category="选考", position=1))
        s.add(CandidateMajor(candidate_id=w.candidate, major_code="020301K", admission_number="012424100318"))
    await run(router_sender(router, OPENID), """
        > 免考
        > 我已知晓
        < 请选择申请免考的专业
        < 120402 行政管理(专升本)
        < 020301K 金融学(专升本)
        > 金融
        < 1. 00320 领导科学
        <! 00051
        > 1
        < 【00320 领导科学｜第1份凭证】
    """)
    assert (await application(db)).major_code == "020301K"


# --- drafts: leaving, expiry, restarts ---------------------------------------------------------------


async def test_leaving_in_the_middle_keeps_everything_and_continues_there(db, router):
    await world(db)
    send = router_sender(router, OPENID)
    await run(send, """
        > 免考
        > 我已知晓
        > 2
        > 5
        > CET-99
        < 获取凭证的时间
        > 取消
        < 已取消「申请免考」，已填写的内容都保存了，回复“免考”可以接着办理
        <! 没有保存
    """)
    draft = await application(db)
    assert draft.status == "draft" and draft.items[0].course_code == "00051"
    assert draft.items[0].evidences[0].number == "CET-99"
    await run(send, """
        > 免考
        < 您有一份还没提交的草稿：1门课程，照片0张
        < 1. 继续填写草稿
        < 2. 放弃草稿，重新开始
        > 1
        < 【00051 管理系统中计算机应用｜第1份凭证】
        < 请输入获取凭证的时间
        > 2019年12月
        > 上海
        > 无
        [photo CERT1]
        > 完成
        > 2
        < 2019年12月｜上海市｜照片1张
    """)


async def test_dialog_expiry_does_not_lose_the_draft(db, router):
    await world(db)
    send = router_sender(router, OPENID)
    await run(send, TO_FIRST_PHOTOS + "[photo CERT1]\n< 已收到第1张照片")
    async with db.session() as s, s.begin():
        await s.execute(update(DialogState).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    await run(send, """
        [photo CERT2]
        < 「申请免考」超过30分钟没有继续，已自动结束，已填写的内容都保存了
        > 免考
        > 继续填写草稿
        < 接着填写上次的草稿（已选2门课程，1份凭证，照片1张）
        < 【第2/2门 00051 管理系统中计算机应用｜第1份凭证】
        > 7
        > DIP-1
        > 2015年7月
        > 上海
        > 无
        [photo CERT2]
        < 已收到第1张照片
        > 完成
        > 1
        > 8
        > 320120150001
        > 2015年8月
        > 上海
        > 无
        [photo CERT3]
        > 完成
        > 2
        < ① 大学英语四级（CET-4）成绩单｜编号CET4-2018-000123｜2018年6月｜上海市｜照片1张
        > 更换照片
        < 1. 领导科学｜大学英语四级（CET-4）成绩单
        > 1
        [photo CERT1]
        [photo CERT4]
        > 完成
        < ① 大学英语四级（CET-4）成绩单｜编号CET4-2018-000123｜2018年6月｜上海市｜照片2张
    """)


async def test_a_restart_in_the_middle_continues_on_the_same_database(db, media, photo_dir):
    await world(db)
    first = application_router(db, media, photo_dir)
    await run(router_sender(first, OPENID), TO_FIRST_PHOTOS + "[photo CERT1]\n< 已收到第1张照片")
    # A new process: another Database and Router on the same database.
    other_db = Database(db.url)
    try:
        second = application_router(other_db, media, photo_dir)
        await run(router_sender(second, OPENID), """
            [photo CERT2]
            < 已收到第2张照片
            > 完成
            > 2
            < 第2/2门 00051
            > 取消
            < 已填写的内容都保存了
        """)
        # And after a cancel, yet another process finds the draft.
        third = application_router(other_db, media, photo_dir)
        await run(router_sender(third, OPENID), """
            > 免考
            > 1
            < 【第2/2门 00051 管理系统中计算机应用｜第1份凭证】
            < 请选择凭证类型
        """)
    finally:
        await other_db.dispose()
    draft = await application(db)
    assert len(draft.items[0].evidences[0].photo_ids) == 2


async def test_starting_over_throws_the_draft_away(db, router):
    await world(db)
    send = router_sender(router, OPENID)
    await run(send, "> 免考\n> 我已知晓\n> 1\n> 取消")
    await run(send, """
        > 免考
        > 放弃草稿
        < 考生须知
        > 我已知晓
        > 2
        < 00051 管理系统中计算机应用
    """)
    draft = await application(db)
    assert [i.course_code for i in draft.items] == ["00051"]


# --- after submission ----------------------------------------------------------------------------


async def test_pending_application_can_be_edited_and_submitted_again(db, router):
    await world(db)
    await submit_one_course(router)
    before = await application(db)
    send = router_sender(router, OPENID)
    await run(send, """
        > 免考
        < 第1号｜待审核
        < 课程：领导科学
        < 查看或修改第1号（待审核）
        > 2
        < 【申请免考｜第1号 待审核】
        < 修改后需要再次提交
        > 更换照片
        < 请发送新的照片，发送后将替换原来的1张
        [photo CERT1]
        < 已收到第1张照片
        [photo CERT3]
        < 已收到第2张照片
        > 完成
        < ① 大学英语四级（CET-4）成绩单｜编号CET4-2018-000123｜2018年6月｜上海市｜照片2张
        > 取消
        < 这次的修改没有提交，原申请不变，仍在审核中
    """)
    # Nothing of an unfinished edit reaches the application under review.
    assert (await application(db)) == before
    await run(send, """
        > 免考
        > 2
        > 新增凭证
        < 【00320 领导科学｜第2份凭证】
        > 6
        > CET6-2019-1
        > 2019年12月
        > 上海
        > 无
        [photo CERT4]
        > 完成
        > 2
        < 共1门课程，2份凭证，照片2张
        > 修改凭证
        < 1. 领导科学｜大学英语四级（CET-4）成绩单 CET4-2018-000123（照片1张）
        > 1
        < 要修改哪一项
        > 2
        < 现在填写的是：CET4-2018-000123
        > CET4-2018-000124
        < 编号CET4-2018-000124
        > 确认
        < 修改已提交，第1号免考申请现在是“待审核”
    """)
    app = await application(db)
    assert app.status == "submitted" and app.version > before.version
    assert [e.type_code for e in app.items[0].evidences] == ["cet4", "cet6"]
    assert app.items[0].evidences[0].number == "CET4-2018-000124"
    async with db.session() as s:
        submits = await s.scalar(select(func.count()).select_from(ApplicationEvent)
                                 .where(ApplicationEvent.action == "submit"))
    assert submits == 2


async def test_an_unchanged_pending_application_is_not_submitted_again(db, router):
    await world(db)
    await submit_one_course(router)
    before = await application(db)
    await run(router_sender(router, OPENID), """
        > 免考
        > 2
        > 确认
        < 没有修改，第1号申请仍在审核中
        > 免考
        > 2
        > 不修改，退出
        < 原申请不变，仍在审核中
    """)
    assert await application(db) == before


async def test_a_decision_during_an_edit_is_not_overwritten(db, router):
    await world(db)
    await submit_one_course(router)
    send = router_sender(router, OPENID)
    await run(send, "> 免考\n> 2\n> 更换照片\n[photo CERT2]\n> 完成")
    app = await application(db)
    await apps.approve(db, app.id, by="张老师")
    await run(send, """
        > 确认
        < 这份申请刚刚有了变化
        < 回复“免考”重新查看
    """)
    assert (await application(db)).status == "approved"


async def test_rejected_application_shows_the_reason_and_can_be_resubmitted(db, router, media):
    await world(db)
    await submit_one_course(router)
    app = await application(db)
    await apps.reject(db, app.id, reason="成绩单照片不清晰，请重新拍摄。", by="张老师")
    send = router_sender(router, OPENID)
    await run(send, """
        > 我的申请
        < 第1号｜未通过
        < 未通过原因：成绩单照片不清晰，请重新拍摄。
        > 免考
        < 未通过原因：成绩单照片不清晰，请重新拍摄。
        < 修改后重新提交第1号（未通过）
        > 2
        < 【申请免考｜第1号 未通过】
        < 未通过原因：成绩单照片不清晰
        < 1. 确认重新提交
        > 4
        [photo CERT5]
        > 完成
        > 先保存
        < 已填写的内容都保存了
    """)
    # A 未通过 application being reworked is saved as it goes.
    reworked = await application(db)
    assert reworked.status == "rejected" and reworked.items[0].evidences[0].photo_ids != app.items[0].evidences[0].photo_ids
    await run(send, """
        > 免考
        > 修改后重新提交
        > 确认
        < 已重新提交，第1号免考申请现在是“待审核”
    """)
    again = await application(db)
    assert again.status == "submitted" and again.reason is None


async def test_after_the_window_closes_a_rejected_application_is_shown_not_edited(db, router):
    await world(db)
    await submit_one_course(router)
    await apps.reject(db, (await application(db)).id, reason="编号与照片不一致。", by="张老师")
    await close_window(db, "exemption")
    await run(router_sender(router, OPENID), """
        > 免考
        < 申请免考现在不在办理时间内
        < 第1号｜未通过
        < 未通过原因：编号与照片不一致。
        < 下次办理时间内修改后重新提交
        <! 请选择
    """)


async def test_approved_exemption_counts_as_exempted_everywhere(db, router):
    w = await world(db)
    await submit_one_course(router)
    # The plan was read (and cached) before the decision.
    before = await q.plan(db, w.candidate, "120402")
    assert next(r for r in before.rows if r.course_code == "00320").status != "免考"
    decision = await apps.approve(db, (await application(db)).id, by="张老师")
    assert decision.score_records == 1
    after = await q.plan(db, w.candidate, "120402")
    assert next(r for r in after.rows if r.course_code == "00320").status == "免考"
    await run(router_sender(router, OPENID), """
        > 我的申请
        < 第1号｜审核通过
        < 已通过免考审核的课程：
        < 00320 领导科学
        > 免考
        < 第1号｜审核通过
        < 1. 新的免考申请
        > 1
        > 我已知晓
        < 领导科学（已免考）
        < 1. 00051 管理系统中计算机应用
        <! 00320 领导科学\n
    """)
    async with db.session() as s:
        pushes = (await s.execute(select(Outbox))).scalars().all()
    assert any("审核结果" in p.payload["text"] and "已通过" in p.payload["text"] for p in pushes)


async def test_courses_pending_in_one_application_cannot_be_chosen_in_another(db, router):
    await world(db)
    await submit_one_course(router)
    await run(router_sender(router, OPENID), """
        > 免考
        > 新的免考申请
        > 我已知晓
        < 领导科学（已在申请中，等待审核）
        < 1. 00051 管理系统中计算机应用
    """)


async def test_deleting_the_companion_brings_the_diploma_rule_back_at_the_summary(db, router):
    await world(db)
    await run(router_sender(router, OPENID), """
        > 免考
        > 我已知晓
        > 2
        > 7
        > DIP-1
        > 2015年7月
        > 上海
        > 无
        [photo CERT1]
        > 完成
        > 1
        > 9
        > RZ-1
        > 2016年1月
        > 上海
        > 无
        [photo CERT2]
        > 完成
        > 2
        < 共1门课程，2份凭证
        > 删除凭证
        < 2. 管理系统中计算机应用｜中国高等教育学历认证报告 RZ-1（照片1张）
        > 2
        < 确定删除「管理系统中计算机应用」的凭证「中国高等教育学历认证报告」吗
        > 是
        < 还需补充：
        < 使用毕业证书申请免考，还须提供教育部学历证书电子注册备案表或中国高等教育学历认证报告
        > 确认
        < 还不能提交
        < 使用毕业证书申请免考
        > 新增凭证
        < 第2份凭证
        > 8
        > 320120150001
        > 2015年8月
        > 上海
        > 无
        [photo CERT3]
        > 完成
        > 填好了
        <! 还需补充
        > 确认
        < 已提交
    """)
    app = await application(db)
    assert [e.type_code for e in app.items[0].evidences] == ["diploma", "chsi_record"]


async def test_changing_the_courses_keeps_the_evidence_of_those_kept(db, router):
    await world(db)
    await run(router_sender(router, OPENID), """
        > 免考
        > 我已知晓
        > 1
        > 5
        > CET-1
        > 2018年6月
        > 上海
        > 无
        [photo CERT1]
        > 完成
        > 2
        > 修改课程
        < 现在选的是：领导科学
        > 1,2
        < 【第2/2门 00051 管理系统中计算机应用｜第1份凭证】
    """)
    draft = await application(db)
    assert [len(i.evidences) for i in draft.items] == [1, 0]


async def test_option_words_are_not_menu_keywords():
    """A keyword would start another business instead of answering the step."""
    from types import SimpleNamespace

    from dialogs import backfill
    from dialogs.components import evidence, review

    words = set(F.Acknowledge.WORDS) | {label for _, label in evidence.FIELDS}
    words |= {label for _, label in backfill.KIND_OPTIONS}
    for kind in backfill.FIELDS:
        words |= {label for _, label in await backfill._field_options(SimpleNamespace(state=SimpleNamespace(entry=kind)))}
    for status in ("draft", "submitted", "rejected"):
        words |= {label for _, label in review.options(status, ("add", "新增凭证"), ("edit", "修改凭证"),
                                                       ("photos", "更换照片"), ("delete", "删除凭证"),
                                                       ("courses", "修改课程"), ("fields", "修改内容"))}
    words |= {"继续填写草稿", "放弃草稿，重新开始", "新的免考申请", "新增凭证（本课程再加一份）", "填好了，查看汇总",
              "登记成绩", "继续填写未提交的登记", "放弃未提交的登记，重新登记"}
    assert len(words) > 30
    assert not words & set(menu.KEYWORDS)


async def test_our_logs_name_no_one_and_hold_no_photo(db, router, caplog):
    await world(db)
    caplog.set_level("DEBUG", logger="zikao")
    await run(router_sender(router, OPENID), TO_FIRST_PHOTOS + "[photo TINY]\n[photo BUSY]\n[photo CERT1]")
    ours = [r for r in caplog.records if r.name.startswith("zikao")]
    assert any("refused" in r.getMessage() for r in ours) and any("download" in r.getMessage() for r in ours)
    text = "\n".join(r.getMessage() for r in ours)
    assert "310105199307074567" not in text and OPENID not in text and "JFIF" not in text


# --- end to end through the emulator ----------------------------------------------------------------


async def test_application_end_to_end_through_the_emulator(stack, tmp_path):
    """Signed, encrypted XML over HTTP; photos fetched from the emulator's media API by the real
    WeChat client: refused ones, a rotated one, one compressed after the reply budget (sent
    later as a customer-service message); then 未通过, 重新提交 and 审核通过."""
    from bot.app import DB, ENDPOINT
    from dialogs import applications, backfill
    from storage.photos import LocalPhotoStore
    from tests.evidence_fixtures import huge, oversized, pdf, rotated, tiny
    from tests.transcript import emulator_sender

    bot, state, wechat = stack
    db = bot.app[DB]
    await world(db)
    endpoint = bot.app[ENDPOINT]
    router = endpoint.handler.__self__  # the service's own router
    exemption.register(router)  # until Router.__init__ registers the flows itself
    backfill.register(router)
    applications.register(router)
    router.services.photo_store = LocalPhotoStore(tmp_path / "photos")
    endpoint.budget = 4.5
    state.record_user_action(OPENID, "message")
    media = {
        "CERT": state.add_media(certificate(21), "image/jpeg", "cert.jpg"),
        "ROTATED": state.add_media(rotated(), "image/jpeg", "IMG_0001.jpg"),
        "OVERSIZED": state.add_media(oversized(), "image/jpeg", "IMG_0002.jpg"),
        "TINY": state.add_media(tiny(), "image/jpeg", "small.jpg"),
        "FAKE": state.add_media(pdf(), "image/jpeg", "scan.jpg"),  # a PDF under an image name
        "HUGE": state.add_media(huge(), "image/jpeg", "raw.jpg"),
        "NEW": state.add_media(certificate(22), "image/png", "retake.png"),
    }
    send = emulator_sender(wechat, OPENID, media)
    await run(send, TO_FIRST_PHOTOS + """
        [photo TINY]
        < 照片太小
        [photo FAKE]
        < 收到的不是照片
        [photo HUGE]
        < 照片文件太大（超过10MB）
        [photo EXPIRED_MEDIA_ID]
        < 这张照片已经失效
        [photo ROTATED]
        < 照片已按拍摄方向自动转正
        < 已收到第1张照片
    """)
    # A photo whose processing misses a short reply budget: "正在处理" now, the answer later.
    endpoint.budget = 0.05
    await run(send, "[photo OVERSIZED]\n< 正在处理")
    await endpoint.drain()
    late = [o["content"] for o in state.outbound if o["openid"] == OPENID and o["type"] == "text"]
    assert any("已压缩到1MB以内" in t and "已收到第2张照片" in t for t in late), late
    endpoint.budget = 4.5
    await run(send, """
        > 完成
        < 照片2张
        > 2
        > 5
        > CET6-77
        > 2019年6月
        > 上海
        > 无
        [photo CERT]
        > 完成
        > 2
        < 共2门课程，2份凭证，照片3张
        > 确认
        < 已提交，第1号免考申请现在是“待审核”
    """)
    app = await application(db)
    await apps.reject(db, app.id, reason="第二张照片反光，请重新拍摄。", by="张老师")
    await run(send, """
        > 免考
        < 未通过原因：第二张照片反光，请重新拍摄。
        > 修改后重新提交
        > 更换照片
        > 1
        [photo NEW]
        > 完成
        > 确认
        < 已重新提交
    """)
    await apps.approve(db, app.id, by="张老师")
    await run(send, """
        > 我的申请
        < 第1号｜审核通过
        < 已通过免考审核的课程：
        < 00320 领导科学
        < 00051 管理系统中计算机应用
    """)
    # Only the decisions' pushes: the service's scheduler may queue its own reminders meanwhile.
    async with db.session() as s:
        texts = [o.payload["text"] for o in (await s.execute(
            select(Outbox).where(Outbox.kind == "review_outcome").order_by(Outbox.id))).scalars()]
    assert len(texts) == 2 and "未通过" in texts[0] and "已通过" in texts[1]
