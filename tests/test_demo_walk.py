"""论文 and 学位 tried as a new user would in `zikao-bot demo --windows-now`: the demo data with every
application window open, demo candidates bound on the page, the router with the FAQ; the
happy paths to a decision and the pushes, and the mistakes people make on a phone."""
from __future__ import annotations

import pytest
from sqlalchemy import select, update

from bot.app import media_download
from bot.config import Settings
from dialogs.consult import Consultant
from dialogs.faq import FaqService
from storage import applications as apps
from storage import models as m
from storage.db import Database
from storage.demo import DEMO_CANDIDATES, load_demo
from storage.photos import LocalPhotoStore
from tests.dialog_fixtures import Inbox, bind_on_page, make_router
from tests.evidence_fixtures import standard_media
from tests.test_console import browser  # noqa: F401 - the fixture
from tests.transcript import router_sender, run


@pytest.fixture(scope="module")
def faq(tmp_path_factory) -> FaqService:
    service = FaqService(cache_dir=tmp_path_factory.mktemp("jieba"))
    service.warm()
    return service


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def settings(db_url: str, tmp_path) -> Settings:
    return Settings(database_url=db_url, media_dir=str(tmp_path / "media"))


@pytest.fixture
async def router(db, faq, inbox, settings):
    await load_demo(db, windows_now=True)
    async with db.session() as s, s.begin():
        await s.execute(update(m.Candidate).values(mobile_verified_at=m.utcnow()))
    r = make_router(db, inbox, faq=Consultant(faq))
    r.services.download_media = media_download(standard_media().download)
    r.services.photo_store = LocalPhotoStore.under_media_dir(settings.media_dir)  # as the console reads them
    return r


async def bound(db: Database, name: str, inbox: Inbox) -> str:
    """The demo candidate `name` bound on the page; their openid."""
    id_number = DEMO_CANDIDATES[name]
    openid = f"o_demo_walk_{id_number}"
    out = await bind_on_page(db, openid, inbox, id_number=id_number, password=id_number[-6:])
    assert out.state.stage == "done", out
    return openid


async def pushed(db: Database, openid: str) -> list[str]:
    async with db.session() as s:
        rows = (await s.execute(select(m.Outbox).where(m.Outbox.openid == openid).order_by(m.Outbox.id))).scalars()
        return [r.payload.get("text", "") for r in rows]


# 张伟's 论文 for 020301K, to the review: one major, no 加考选项, the diploma.
ZHANG_THESIS = """
    > 论文
    < 【本科论文与专科毕设｜考生须知】
    > 我已知晓
    < 金融学(专升本)
    < 尚未通过：00150 金融理论与实务
    > 1
    < 【本科论文与专科毕设｜前置学历毕业证书】
    < 请输入凭证编号
    > 102471201805001234
    > 2018年6月
    > 江苏
    > 无
    [photo CERT1]
    > 完成
    < 【本科论文与专科毕设｜请核对】
    < 2. 前置学历毕业证书：毕业证书｜编号102471201805001234｜2018年6月｜江苏省｜照片1张
"""


async def test_the_thesis_diploma_keeps_its_type_when_changed_from_the_review(db, router, inbox):
    send = router_sender(router, await bound(db, "张伟", inbox))
    await run(send, ZHANG_THESIS + """
        > 修改 2
        < 要修改哪一项？
        < 1. 编号
        <! 凭证类型
        > 1
        < 现在填写的是：102471201805001234
        > 102471201805005678
        < 2. 前置学历毕业证书：毕业证书｜编号102471201805005678｜2018年6月｜江苏省｜照片1张
        <! 还需补充
        > 确认提交
        < 已提交，第1号论文申请现在是“待审核”
    """)


async def test_a_question_mid_form_is_answered_about_the_business_being_done(db, router, inbox):
    send = router_sender(router, await bound(db, "李娜", inbox))
    await run(send, """
        > 论文
        > 要交什么材料
        < 前置学历毕业证书
        <! PETS
        <! 回复“论文”开始办理
        < 接着办理「本科论文与专科毕设」
        > 我已知晓
        > 1
        < 【本科论文与专科毕设｜加考选项】
        > 2
        < 请输入凭证编号
        > 需要什么材料？
        < 前置学历毕业证书
        <! PETS
        < 请输入凭证编号
        > 免考要什么材料
        < PETS
        < 请输入凭证编号
        > 取消
        > 学位
        > 我已知晓
        < 请输入您的籍贯
        > 要交什么材料
        < 学位外语
        <! PETS
        < 请输入您的籍贯
    """)


async def test_thesis_texts_say_each_thing_once(db, router, inbox):
    send = router_sender(router, await bound(db, "李娜", inbox))
    replies = await run(send, """
        > 论文
        > 我已知晓
        < 【本科论文与专科毕设｜成绩列表】专业：行政管理(专升本)（120402）
        < 00015 英语(二)｜理论｜免考｜14学分｜2023年09月
        <! 2023年09月｜免考
        > 1
        < 【本科论文与专科毕设｜加考选项】
        < 1. 政治类专科毕业，已通过行政法学、行政管理学（无需加考）
        < 2. 非政治类专科毕业，须加考行政法学、行政管理学（行政法学 未通过、行政管理学 未通过）
        > 返回
        < 【本科论文与专科毕设｜成绩列表】
        > 2
        < 成绩有误的，请先回复“成绩补登”登记
        < 已填写的内容都保存了，成绩更正后回复“论文”接着办理。
        > 论文
        > 1
        > 1
        > 2
        > A2017-0001
        > 2017年7月
        > 上海
        > 无
        [photo CERT2]
        > 完成
        < 专业：行政管理(专升本)（120402）
    """)
    scores, extra, wrong = replies[1], replies[2], replies[4]
    assert scores.count("行政管理(专升本)") == 1, scores  # the major is named once
    assert extra.count("非政治类专科毕业") == 1, extra  # the options are not listed twice
    assert wrong.count("回复“论文”") == 1, wrong
    assert "专升本）（120402，专升本）" not in replies[-1]


async def test_wang_lei_applies_for_his_degree_is_refused_resubmits_and_is_approved(db, router, inbox):
    openid = await bound(db, "王磊", inbox)
    send = router_sender(router, openid)
    await run(send, """
        > 学位
        < 【申请学位｜考生须知】
        > 我已知晓
        < 请输入您的籍贯
        > 江苏南通
        < 工作单位：上海建工四建集团有限公司
        < 请输入单位电话
        > 无
        < 【申请学位｜核对个人信息】
        < 5. 工作单位：上海建工四建集团有限公司
        > 1
        < 【申请学位｜材料 1/1：学位外语】
        > 1
        > 468
        > 2019年6月
        > 上海
        [photo CERT3]
        > 完成
        < 【申请学位｜请核对】
        < 专业：工程管理(专升本)
        <! 1. 专业
        < 1. 籍贯：江苏南通
        < 7. 学位外语：大学英语四级（CET-4）成绩单｜成绩468｜2019年6月｜上海市｜照片1张
        > 修改 1
        < 请输入您的籍贯
        > 江苏南京
        < 1. 籍贯：江苏南京
        > 确认提交
        < 已提交，第1号学位申请现在是“待审核”
    """)
    [app] = await apps.list_applications(db, kind="degree")
    await apps.reject(db, app.id, reason="成绩单照片不清晰，请重新上传。", by="演示")
    await run(send, """
        > 学位
        < 未通过原因：成绩单照片不清晰，请重新上传。
        > 修改后重新提交
        > 修改 7
        > 1
        > 470
        > 2019年6月
        > 上海
        [photo CERT4]
        > 完成
        > 确认重新提交
        < 已重新提交，第1号学位申请现在是“待审核”
    """)
    await apps.approve(db, app.id, by="演示")
    texts = await pushed(db, openid)
    assert texts[-2].startswith("您的学位申请审核结果：未通过") and texts[-1].startswith("您的学位申请审核结果：已通过"), texts
    await run(send, """
        > 学位
        < 第1号｜审核通过
        < 您的本科专业都已申请过学位
    """)


async def test_coming_back_to_a_draft_is_said_once_not_before_every_question(db, router, inbox):
    send = router_sender(router, await bound(db, "张伟", inbox))
    await run(send, """
        > 论文
        > 我已知晓
        > 1
        < 请输入凭证编号
        > 102471201805001234
        < 请输入获取凭证的时间
        > 取消
        < 已填写的内容都保存了，回复“论文”可以接着办理
        > 论文
        < 您有一份还没提交的申请草稿
        > 继续填写草稿
        < 接着填写上次的草稿。
        < 请输入获取凭证的时间
        > 2018年6月
        < 请输入获取凭证的省份
        <! 接着填写上次的草稿
        > 江苏
        <! 接着填写上次的草稿
        > 取消
        > 学位
        > 我已知晓
        > 江苏南通
        > 无
        > 1
        > 1
        > 468
        < 请输入大学英语四级（CET-4）成绩单的获取时间
        > 取消
        > 学位
        > 继续填写草稿
        < 接着填写上次的草稿。
        < 请输入大学英语四级（CET-4）成绩单的获取时间
        > 2019年6月
        < 请输入获取大学英语四级（CET-4）成绩单的省份
        <! 接着填写上次的草稿
    """)


async def test_a_zhuanke_candidate_is_told_at_once_why_not_without_the_notice_first(db, router, inbox):
    send = router_sender(router, await bound(db, "陈静", inbox))
    await run(send, """
        > 论文
        < 没有需要申请的论文
        <! 考生须知
        > 学位
        < 申请学士学位只适用于本科（专升本）专业
        <! 考生须知
        > 我已知晓
        <! 「
    """)
    assert await apps.list_applications(db, kind="thesis") == await apps.list_applications(db, kind="degree") == []


async def test_a_wrong_reply_to_the_notice_says_once_what_to_reply(db, router, inbox):
    send = router_sender(router, await bound(db, "王磊", inbox))
    replies = await run(send, """
        > 学位
        < 【申请学位｜考生须知】
        > 好的
        < 读完考生须知后，请回复“我已知晓”继续申请；不办理请回复“取消”。
        > 我已知晓
        < 请输入您的籍贯
    """)
    assert replies[1].count("我已知晓") == 1, replies[1]


async def test_a_change_begun_from_the_review_can_be_left_unchanged(db, router, inbox):
    send = router_sender(router, await bound(db, "张伟", inbox))
    await run(send, ZHANG_THESIS + """
        > 修改 2
        < 要修改哪一项？
        < 6. 不修改，返回
        > 6
        < 【本科论文与专科毕设｜请核对】
        < 2. 前置学历毕业证书：毕业证书｜编号102471201805001234｜2018年6月｜江苏省｜照片1张
        > 确认提交
        < 已提交
    """)


async def test_zhang_wei_applies_for_his_thesis_is_refused_resubmits_and_gets_his_advisor(db, router, inbox):
    from storage import thesis as th

    openid = await bound(db, "张伟", inbox)
    send = router_sender(router, openid)
    await run(send, ZHANG_THESIS + """
        > 确认提交
        < 已提交，第1号论文申请现在是“待审核”
        < 预审结果和指导教师会通过微信通知您
    """)
    [app] = await apps.list_applications(db, kind="thesis")
    await apps.reject(db, app.id, reason="毕业证书照片不清晰，请重新拍摄。", by="演示")
    await run(send, """
        > 论文
        < 第1号｜未通过
        < 毕业证书照片不清晰，请重新拍摄。
        < 重新申请
        > 重新申请
        > 修改 2
        < 5. 照片
        > 5
        [photo CERT2]
        > 完成
        > 确认重新提交
        < 已重新提交，第1号论文申请现在是“待审核”
    """)
    await apps.approve(db, app.id, by="演示", advisor=th.Advisor("张明华老师", "021-62231234（周二下午）"))
    texts = await pushed(db, openid)
    assert "未通过" in texts[-2] and "张明华老师" in texts[-1] and "021-62231234" in texts[-1], texts
    await run(send, """
        > 论文
        < 预审结果：通过
        < 指导教师：张明华老师
        < 联系方式：021-62231234（周二下午）
        <! thesis
        > 我的申请
        < 本科论文与专科毕设
        < 指导教师：张明华老师
    """)


async def test_after_applying_thesis_offers_no_new_application_when_no_other_major_has_one(db, router, inbox):
    send = router_sender(router, await bound(db, "张伟", inbox))
    [*_, menu] = await run(send, ZHANG_THESIS + """
        > 确认提交
        > 论文
        < 第1号｜待审核
        < 1. 查看或修改第1号（待审核）
        <! 新的申请
        <! 预审结果：审核中
    """)
    assert "2." not in menu.split("请选择")[-1], menu


async def test_the_demo_office_reviews_thesis_and_degree_in_the_console(db, router, inbox, browser):  # noqa: F811
    from storage.demo_console import DEMO_STAFF, load_demo_staff

    send = router_sender(router, await bound(db, "张伟", inbox))
    await run(send, ZHANG_THESIS + """
        > 确认提交
        < 已提交
    """)
    [thesis] = await apps.list_applications(db, kind="thesis")
    await load_demo_staff(db)
    username, *_, password = DEMO_STAFF[0]
    office = await browser()
    await office.login(username, password)
    home = (await office.get("/console/")).body_text
    assert "/console/queue/thesis" in home and "/console/queue/degree" in home
    page = await office.get(f"/console/applications/{thesis.id}")
    assert page.status == 200 and "本科论文与专科毕设" in page.body_text and "102471201805001234" in page.body_text
    r = await office.post(f"/console/applications/{thesis.id}/decide", {
        "action": "approve", "version": thesis.version, "advisor": "张明华老师", "advisor_contact": "021-62231234"})
    assert r.status == 302, r.body_text
    assert (await apps.load_application(db, thesis.id)).status == "approved"


async def test_a_degree_score_below_the_minimum_says_how_to_choose_another_material(db, router, inbox):
    send = router_sender(router, await bound(db, "王磊", inbox))
    await run(send, """
        > 学位
        > 我已知晓
        > 江苏南通
        > 无
        > 1
        < 【申请学位｜材料 1/1：学位外语】
        > 1
        < 请输入大学英语四级（CET-4）成绩单上的成绩（须达到425分），如 468：
        > 400
        < 须达到425分，您填写的是400分
        < 回复“返回”可以选择其他材料。
        > 返回
        < 请选择您提供的材料
        > 2
        < 请输入上海市学士学位外语水平考试成绩单上的成绩（须达到60分），如 75：
        <! 468
        > 七十五
        <! 468
        > 75
        < 请输入上海市学士学位外语水平考试成绩单的编号
    """)


async def test_the_application_carries_the_admission_number_its_major_is_registered_under(db, router, inbox):
    # 张伟 switched to his 专科 准考证号 (690206); 论文 and 学位 are for 020301K, under his other one.
    send = router_sender(router, await bound(db, "张伟", inbox))
    await run(send, """
        > 切换准考证号
        < 2. 0122****0531
        > 2
        < 已切换到准考证号 0122****0531
        > 学位
        > 我已知晓
        > 江苏南通
        > 无
        < 准考证号：0123****0117
        <! 0122****0531
        > 取消
        > 论文
        > 我已知晓
        < 金融学(专升本)
        > 取消
    """)
    drafts = await apps.list_applications(db, status="draft")
    assert {(a.kind, a.major_code, a.admission_number) for a in drafts} == {
        ("degree", "020301K", "012323200117"), ("thesis", "020301K", "012323200117")}


async def test_back_from_a_change_begun_in_the_review_returns_to_the_review(db, router, inbox):
    send = router_sender(router, await bound(db, "王磊", inbox))
    await run(send, """
        > 学位
        > 我已知晓
        > 江苏南通
        > 无
        < 【申请学位｜核对个人信息】
        > 修改 2
        < 请输入联系地址
        > 返回
        < 【申请学位｜核对个人信息】
        < 2. 联系地址：上海市杨浦区控江路 1555 弄 3 号 1104 室
        <! 请输入单位电话
        > 1
        < 【申请学位｜材料 1/1：学位外语】
        > 1
        > 468
        > 2019年6月
        > 上海
        [photo CERT3]
        > 完成
        < 【申请学位｜请核对】
        > 修改 1
        < 请输入您的籍贯
        > 返回
        < 【申请学位｜请核对】
        <! 请输入单位电话
        > 修改 6
        < 请输入单位电话
        > 021-65432178
        < 【申请学位｜请核对】
        < 6. 单位电话：021-65432178
        > 确认提交
        < 已提交
    """)


async def test_back_from_a_thesis_change_returns_to_the_review(db, router, inbox):
    send = router_sender(router, await bound(db, "李娜", inbox))
    await run(send, """
        > 论文
        > 我已知晓
        > 1
        > 2
        > A2017-0001
        > 2017年7月
        > 上海
        > 无
        [photo CERT2]
        > 完成
        < 【本科论文与专科毕设｜请核对】
        > 修改 2
        < 【本科论文与专科毕设｜加考选项】
        > 返回
        < 【本科论文与专科毕设｜请核对】
        <! 考生须知
        > 修改 1
        < 【本科论文与专科毕设｜成绩列表】
        > 返回
        < 【本科论文与专科毕设｜请核对】
        > 确认提交
        < 已提交
    """)


async def test_help_names_the_thesis_among_the_businesses(db, router, inbox):
    await run(router_sender(router, await bound(db, "王磊", inbox)), """
        > 帮助
        < 申请免考、成绩补登、论文、毕业、学位、转考
    """)
