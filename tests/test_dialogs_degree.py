"""申请学位 as transcripts through the router: every step with bad input first (a photo where text
is expected, a question mid-form, wrong phones, a score below the school's minimum, impossible
months, a PDF where a photo is expected), the review with 修改 N, submission; then reject →
重新申请 → approve with the pushes; a major whose requirements are not imported; the mobile
changed through 修改联系方式 and back; leaving and continuing; the window closed."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete, select, update

from storage import applications as apps
from storage import models as m
from storage.db import Database
from storage.degree import APPROVED_DETAIL
from storage.importer import import_directory
from storage.models_degree import ApplicationPhoto, DegreeRequirement
from tests.dialog_fixtures import Inbox
from tests.evidence_fixtures import OPENID, application_router, now, standard_media
from tests.test_import import EXAMPLES
from tests.test_outbox import ZHAO, candidate_id
from tests.transcript import router_sender, run

ZHAO_ADMISSION = "012424100318"  # docs/examples: 120402 行政管理(专升本), born 1993-07; mobile 13764219053
NOTICE = "一、申请学位须符合主考学校的学位授予条件。\n二、请如实填写。"


@pytest.fixture
def inbox():
    return Inbox()


@pytest.fixture
def router(db, tmp_path, inbox):
    return application_router(db, standard_media(), tmp_path / "photos", inbox=inbox)


async def world(db: Database, *, open_: bool = True) -> int:
    report = await import_directory(db, EXAMPLES)  # with degree_requirements.csv for 120402
    assert report.ok, report.format()
    cid = await candidate_id(db, ZHAO)
    t = now()
    async with db.session() as s, s.begin():
        s.add(m.WechatUser(openid=OPENID, candidate_id=cid, subscribed=True, bound_at=t,
                           active_admission_number=ZHAO_ADMISSION))
        s.add(m.BusinessWindow(kind="degree", title="2026年下半年申请学位", notice=NOTICE,
                               opens_at=t - dt.timedelta(days=1) if open_ else t + dt.timedelta(days=20),
                               closes_at=t + dt.timedelta(days=10) if open_ else t + dt.timedelta(days=30)))
    return cid


async def pushed(db: Database) -> list[str]:
    async with db.session() as s:
        rows = (await s.execute(select(m.Outbox).where(m.Outbox.openid == OPENID).order_by(m.Outbox.id))).scalars()
        return [r.payload["text"] for r in rows]


async def linked_photos(db: Database, app_id: int) -> set[int]:
    async with db.session() as s:
        return set((await s.execute(select(ApplicationPhoto.photo_id)
                                    .where(ApplicationPhoto.application_id == app_id))).scalars())


FILL = """
    > 学位
    < 【申请学位｜考生须知】
    < 一、申请学位须符合主考学校的学位授予条件
    < 回复“我已知晓”继续申请
    > 好的
    < 读完考生须知后，请回复“我已知晓”继续申请
    > 我已知晓
    < 【申请学位｜核对个人信息】请输入您的籍贯
    [photo CERT1]
    < 这一步需要回复文字，不是图片
    > 南
    < 内容太短
    > 江苏南通
    < 请输入紧急联系人的手机号码
    > 12345
    < 手机号码应为1开头的11位数字
    > 13764219053
    < 不能与本人手机号码相同
    > 03708成绩
    < 03708 中国近现代史纲要
    < 请输入紧急联系人的手机号码
    > 13912345678
    < 请输入工作单位（选填
    > 无
    < 请输入单位电话（选填
    > 5555
    < 单位电话应为带区号的固定电话
    > 021-55556666
    < 【申请学位｜核对个人信息】
    < 准考证号：0124****0318
    < 姓名：赵敏
    < 证件号码：3101**********4567
    <! 310105199307074567
    < 1. 籍贯：江苏南通
    < 2. 联系地址：上海市长宁区天山路 600 弄 3 号 402 室
    < 3. 手机号码：137****9053
    < 4. 紧急联系手机：139****5678
    < 5. 工作单位：（未填）
    < 6. 单位电话：021-55556666
    < 1. 信息无误，下一步
    > 修改 5
    < 请输入工作单位
    > 上海市长宁区人民政府
    < 5. 工作单位：上海市长宁区人民政府
    > 1
    < 【申请学位｜材料 1/2：学位外语】
    < 1. 大学英语四级（CET-4）成绩单（成绩须达到425分）
    < 2. 上海市学士学位外语水平考试成绩单
    > 3
    < 请回复1到2之间的数字
    > 1
    < 请输入大学英语四级（CET-4）成绩单上的成绩（须达到425分）
    > 四百八
    < 成绩应为数字
    > 400
    < 成绩须达到425分，您填写的是400分
    > 480
    < 大学英语四级（CET-4）成绩单的获取时间（年月
    > 2019年13月
    < 月份应在1到12之间
    > 2099年1月
    < 时间不能晚于本月
    > 1995年6月
    < 不满6周岁
    > 2019年6月
    < 请输入获取大学英语四级（CET-4）成绩单的省份
    > 火星
    < 没有找到这个省份
    > 上海
    < 请发送大学英语四级（CET-4）成绩单的照片
    > 480
    < 这一步需要发送照片
    [photo PDF]
    < 收到的不是照片
    [photo CERT1]
    < 已收到第1张照片
    > 完成
    < 【申请学位｜材料 2/2：本人近期二寸免冠证件照】
    < 说明：白色背景，用于学位证书
    [photo CERT2]
    > 完成
    < 【申请学位｜请核对】
    < 专业：行政管理(专升本)
    < 1. 籍贯：江苏南通
    < 4. 紧急联系手机：139****5678
    < 5. 工作单位：上海市长宁区人民政府
    < 7. 学位外语：大学英语四级（CET-4）成绩单｜成绩480｜2019年6月｜上海市｜照片1张
    < 8. 本人近期二寸免冠证件照：照片1张
    <! 还需补充
    > 修改 7
    < 现在填写的是：大学英语四级（CET-4）成绩单
    < 请选择您提供的材料
    > 2
    < 请输入上海市学士学位外语水平考试成绩单上的成绩（须达到60分）
    > 75
    < 请输入上海市学士学位外语水平考试成绩单的编号
    > 2019年6月
    < 这是一个时间，不是凭证编号
    > 3101190612
    < 获取时间
    > 2020年1月
    < 发送后将替换原来的1张
    [photo CERT3]
    > 完成
    < 7. 学位外语：上海市学士学位外语水平考试成绩单｜成绩75｜编号3101190612｜2020年1月｜照片1张
    > 确认提交
    < 已提交，第1号学位申请现在是“待审核”
    < 主考学校将审核您的学位申请材料
    < 回复“我的申请”查看进度
"""


async def test_every_step_refuses_bad_input_and_the_application_is_submitted(db, router):
    await world(db)
    await run(router_sender(router, OPENID), FILL)
    [app] = await apps.list_applications(db, kind="degree")
    assert app.status == "submitted" and app.major_code == "120402" and app.items == []
    d = app.details
    assert {k: d[k] for k in ("native_place", "address", "mobile", "emergency_mobile", "employer", "work_phone")} == {
        "native_place": "江苏南通", "address": "上海市长宁区天山路 600 弄 3 号 402 室", "mobile": "13764219053",
        "emergency_mobile": "13912345678", "employer": "上海市长宁区人民政府", "work_phone": "021-55556666"}
    english, photo = d["materials"]
    assert (english["slot"], english["code"], english["score"], english["number"], english["month"]) == (
        "group:学位外语", "degree_english", "75", "3101190612", "2020-01")
    assert photo["slot"] == "material:id_photo" and len(photo["photo_ids"]) == 1
    # The photos the form holds are linked to the application (the replaced CET-4 photo no longer is).
    assert await linked_photos(db, app.id) == {english["photo_ids"][0], photo["photo_ids"][0]}


async def test_reject_then_reapply_then_approve_with_the_pushes(db, router):
    await world(db)
    send = router_sender(router, OPENID)
    await run(send, FILL)
    [app] = await apps.list_applications(db, kind="degree")
    await apps.reject(db, app.id, reason="免冠照片背景不是白色，请重新上传。", by="张老师")
    assert await pushed(db) == ["您的学位申请审核结果：未通过。\n回复“学位”查看原因并重新提交。"]
    await run(send, """
        > 学位
        < 第1号｜未通过
        < 未通过原因：免冠照片背景不是白色，请重新上传。
        < 修改后重新提交第1号（未通过）
        > 修改后重新提交
        < 【申请学位｜第1号 未通过】
        < 未通过原因：免冠照片背景不是白色
        < 确认重新提交
        > 修改 8
        < 发送后将替换原来的1张
        [photo CERT4]
        > 完成
        < 8. 本人近期二寸免冠证件照：照片1张
        > 确认重新提交
        < 已重新提交，第1号学位申请现在是“待审核”
    """)
    again = await apps.load_application(db, app.id)
    assert again.details["materials"][1]["photo_ids"] != app.details["materials"][1]["photo_ids"]
    await apps.approve(db, app.id, by="张老师")
    texts = await pushed(db)
    assert len(texts) == 2 and texts[1].startswith("您的学位申请审核结果：已通过。")
    assert APPROVED_DETAIL in texts[1]
    await run(send, """
        > 学位
        < 第1号｜审核通过
        < 专业：行政管理(专升本)
        < 学士学位证书的发放时间和领取方式以主考学校的通知为准
        <! 重新提交
        > 我的申请
        < 申请学位：
        < 第1号｜审核通过
    """)
    await run(send, """
        > 学位
        < 您的本科专业都已申请过学位，无需再次申请
        <! 请选择
    """)


async def test_a_major_without_imported_requirements_is_not_applied_for_yet(db, router):
    await world(db)
    async with db.session() as s, s.begin():
        await s.execute(delete(DegreeRequirement))
    await run(router_sender(router, OPENID), """
        > 学位
        > 我已知晓
        < 行政管理(专升本)（华东政法大学）的主考学校还没有公布学位申请需要提供的材料
        < 400-0960-990
    """)
    assert await apps.list_applications(db, kind="degree") == []


async def test_an_inactive_requirement_is_no_longer_asked(db, router):
    await world(db)
    async with db.session() as s, s.begin():
        await s.execute(update(DegreeRequirement).where(DegreeRequirement.code == "id_photo").values(active=False))
    await run(router_sender(router, OPENID), """
        > 学位
        > 我已知晓
        > 江苏南通
        > 13912345678
        > 无
        > 无
        > 1
        < 【申请学位｜材料 1/1：学位外语】
        <! 免冠
    """)


async def test_a_candidate_with_only_a_zhuanke_major_is_told_a_degree_is_for_benke(db, router):
    await world(db)
    async with db.session() as s, s.begin():
        await s.execute(update(m.Major).where(m.Major.code == "120402").values(level="专科"))
    await run(router_sender(router, OPENID), """
        > 学位
        < 申请学士学位只适用于本科（专升本）专业
        <! 考生须知
    """)
    assert await apps.list_applications(db, kind="degree") == []


async def test_the_mobile_is_changed_with_an_sms_code_and_the_application_goes_on(db, router, inbox):
    await world(db)
    await run(router_sender(router, OPENID), """
        > 学位
        > 我已知晓
        > 江苏南通
        > 13912345678
        > 无
        > 无
        < 3. 手机号码：137****9053
        > 修改 3
        < 请输入新的手机号码
        > 13612345678
        < 验证码已发送到 136****5678
        > {code}
        < 新手机号码：136****5678
        > 确认
        < 手机号码已更新
        < 【申请学位｜核对个人信息】
        < 3. 手机号码：136****5678
        < 1. 籍贯：江苏南通
    """, values=lambda: {"code": inbox.last_code()})
    [app] = await apps.list_applications(db, kind="degree", status="draft")
    assert app.details["mobile"] == "13612345678"


async def test_leaving_keeps_the_draft_and_continuing_goes_to_the_first_empty_field(db, router):
    await world(db)
    send = router_sender(router, OPENID)
    await run(send, """
        > 学位
        > 我已知晓
        > 江苏南通
        > 取消
        < 已填写的内容都保存了，回复“学位”可以接着办理
        > 学位
        < 您有一份还没提交的学位申请草稿
        < 1. 继续填写草稿
        > 1
        < 接着填写上次的草稿
        < 请输入紧急联系人的手机号码
    """)


async def test_outside_the_window_it_says_when_it_opens(db, router):
    await world(db, open_=False)
    await run(router_sender(router, OPENID), """
        > 学位
        < 申请学位现在不在办理时间内。下一次办理时间
        <! 考生须知
        <! 考生服务平台
    """)


async def test_with_several_benke_majors_the_major_is_chosen_and_one_without_requirements_is_refused(db, router):
    cid = await world(db)
    async with db.session() as s, s.begin():
        s.add(m.Major(code="020301K", name="金融学(专升本)", level="专升本", required_credits=70, university="上海财经大学"))
        await s.flush()
        s.add(m.CandidateMajor(candidate_id=cid, major_code="020301K", admission_number=ZHAO_ADMISSION))
    await run(router_sender(router, OPENID), """
        > 学位
        > 我已知晓
        < 【申请学位｜选择专业】请选择申请学位的专业
        < 1. 金融学(专升本)（上海财经大学）（材料要求未公布）
        < 2. 行政管理(专升本)（华东政法大学）
        > 1
        < 金融学(专升本)（上海财经大学）的主考学校还没有公布学位申请需要提供的材料
        < 请选择其他专业
        > 行政管理
        < 请输入您的籍贯
    """)
    [app] = await apps.list_applications(db, kind="degree")
    assert (app.status, app.major_code) == ("draft", "120402")


async def test_a_school_asking_nothing_beyond_the_form_imports_one_empty_material(db, router):
    await world(db)
    async with db.session() as s, s.begin():
        await s.execute(delete(DegreeRequirement))
        s.add(DegreeRequirement(major_code="120402", code="none", name="无需提交材料", photo_required=False,
                                asks_score=False, asks_month=False, asks_province=False, asks_number=False,
                                position=1, active=True))
    await run(router_sender(router, OPENID), """
        > 学位
        > 我已知晓
        > 江苏南通
        > 13912345678
        > 无
        > 无
        > 1
        < 【申请学位｜请核对】
        < 7. 无需提交材料：无需填写
        <! 还需补充
        > 确认提交
        < 已提交，第1号学位申请现在是“待审核”
    """)
