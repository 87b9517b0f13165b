"""Conversation defects of 申请免考 and 成绩补登 (issue 10), each as a transcript: questions typed in
the middle of a step are answered and the step asked again; 修改 N at the review; 凭证编号 and
dates that cannot be; and replies short enough for a phone."""
from __future__ import annotations

import pytest

from dialogs.consult import Consultant
from storage import applications as apps
from storage.models import Course, PlanCourse, ScoreRecord
from tests.evidence_fixtures import OPENID, ZHAO_ADMISSION, application_router, one, standard_media, world
from tests.test_consult import faq  # noqa: F401 (fixture)
from tests.transcript import router_sender, run

TO_NOTE = """
    > 免考
    > 我已知晓
    > 1
    > 5
    > CET4-2018-000123
    > 2018年6月
    > 上海
    < 备注
"""
THEORY_COURSE = """
    > 成绩补登
    > 登记成绩
    > 1
    > 领导
    > 1
"""
TO_REVIEW = TO_NOTE + """
    > 无
    [photo CERT1]
    > 完成
    > 2
"""


@pytest.fixture
def router(db, faq, tmp_path):  # noqa: F811
    return application_router(db, standard_media(), tmp_path / "photos", faq=Consultant(faq))


async def application(db, kind: str = "exemption") -> apps.ApplicationData:
    return one(await apps.list_applications(db, kind=kind))


# --- a question in the middle of a step --------------------------------------------------------------


async def test_a_score_query_at_the_note_is_answered_and_the_note_asked_again(db, router):
    await world(db)
    await run(router_sender(router, OPENID), TO_NOTE + """
        > 00015成绩
        < 英语(二)
        < 接着办理「申请免考」
        < 备注
        > 第二次考试的证书
        < 请发送凭证照片
    """)
    e = (await application(db)).items[0].evidences[0]
    assert e.note == "第二次考试的证书" and e.number == "CET4-2018-000123"


async def test_a_question_at_the_photo_step_gets_its_answer_not_a_refusal(db, router):
    await world(db)
    await run(router_sender(router, OPENID), TO_NOTE + """
        > 无
        < 请发送凭证照片
        > 免考需要什么材料
        < 每门课至少一份凭证
        <! 这一步需要发送照片
        < 请发送凭证照片
        [photo CERT1]
        < 已收到第1张照片
    """)


async def test_a_score_question_at_the_review_is_answered_and_the_review_stays(db, router):
    await world(db)
    await run(router_sender(router, OPENID), TO_REVIEW + """
        < 【申请免考｜请核对】
        > 英语二考了多少分
        < 英语(二)
        <! 没有这一项
        < 1. 确认提交
        > 确认
        < 已提交
    """)


# --- 修改 N at the review -------------------------------------------------------------------------------


async def test_change_n_at_the_exemption_review_reaches_one_evidence_of_one_course(db, router):
    await world(db)
    await run(router_sender(router, OPENID), TO_REVIEW + """
        < 1. 00320 领导科学
        < 　① 大学英语四级（CET-4）成绩单｜编号CET4-2018-000123
        > 修改 1.1
        < 要修改哪一项
        > 编号
        < 现在填写的是：CET4-2018-000123
        > CET4-2018-000999
        < ① 大学英语四级（CET-4）成绩单｜编号CET4-2018-000999
        > 修改 1
        < 要修改哪一项
        > 4
        > 江苏
        < 2018年6月｜江苏省
        > 修改 9
        < 没有第9项
    """)
    e = (await application(db)).items[0].evidences[0]
    assert (e.number, e.province) == ("CET4-2018-000999", "江苏省")


async def test_change_n_at_the_backfill_review_changes_that_field(db, router):
    await world(db)
    await run(router_sender(router, OPENID), THEORY_COURSE + """
        > 2001年5月
        > 88
        > 无
        [photo CERT1]
        > 完成
        < 3. 成绩：88分
        > 修改 3
        < 请输入成绩
        > 91
        < 3. 成绩：91分
        <! 没有这一项
    """)
    assert (await application(db, "backfill")).items[0].score == 91


# --- evidence checks ------------------------------------------------------------------------------------


async def test_an_evidence_number_must_look_like_one_for_its_type(db, router):
    await world(db)
    await run(router_sender(router, OPENID), """
        > 免考
        > 我已知晓
        > 2
        > 8
        < 请输入凭证编号
        > 😀😀
        < 在线验证码是12位数字
        > abc
        < 在线验证码是12位数字
        > 2015年7月
        < 这是一个时间，不是凭证编号
        > 320120150801
        < 获取凭证的时间
    """)
    assert (await application(db)).items[0].evidences[0].number == "320120150801"
    await run(router_sender(router, OPENID), """
        > 返回
        > 返回
        > 5
        > abc
        < 编号由数字和字母组成
        > 😀😀
        < 编号由数字和字母组成
        > 2018-06
        < 这是一个时间
    """)


async def test_backfill_evidence_obtained_after_the_exemption_is_refused(db, router):
    await world(db)
    await run(router_sender(router, OPENID), """
        > 成绩补登
        > 登记成绩
        > 2
        > 管理系统中
        > 1
        > 2015年12月
        > 5
        > CET4-2016-8
        > 2016年6月
        < 不能晚于办理免考时间（2015年12月）
        > 2015年6月
        < 获取凭证的省份
    """)


async def test_a_result_dated_before_the_candidate_could_sit_is_refused(db, router):
    await world(db)  # 赵敏 was born in July 1993
    await run(router_sender(router, OPENID), THEORY_COURSE + """
        > 1998年6月
        < 您还不满6周岁
        > 2001年5月
        < 请输入成绩
    """)


# --- short replies ---------------------------------------------------------------------------------------


async def test_a_wrong_reply_to_the_notice_gets_a_short_hint_not_the_notice_again(db, router):
    await world(db)
    replies = await run(router_sender(router, OPENID), """
        > 免考
        < 考生须知
        > 好的
        < 我已知晓
        <! 一、申请免考的课程
    """)
    assert len(replies[-1]) < 120


async def test_many_courses_that_cannot_be_chosen_read_as_one_short_line(db, router):
    w = await world(db)
    async with db.session() as s, s.begin():
        for n in range(8):
            code = f"1{n:04d}"
            s.add(Course(code=code, name=f"测试课程{n}号"))
            await s.flush()
            s.add(PlanCourse(major_code="120402", course_code=code, credits=4, category="选考", position=50 + n))
            s.add(ScoreRecord(candidate_id=w.candidate, admission_number=ZHAO_ADMISSION, course_code=code,
                              kind="exam", sitting_code="202410", score=70, passed=True))
    replies = await run(router_sender(router, OPENID), """
        > 免考
        > 我已知晓
        < 不能选择
        <! 测试课程3号
        < 1. 00320 领导科学
    """)
    assert len(replies[-1]) < 200


async def test_the_evidence_type_list_is_not_repeated_for_every_evidence(db, router):
    await world(db)
    await run(router_sender(router, OPENID), TO_NOTE + """
        > 无
        [photo CERT1]
        > 完成
        > 1
        < 第2份凭证
        < 请选择凭证类型
        <! 9. 中国高等教育学历认证报告
        > 列表
        < 9. 中国高等教育学历认证报告
        > 6
        < 请输入凭证编号
    """)


# --- a component called from an application ------------------------------------------------------------


async def test_contact_update_called_from_the_review_returns_to_the_application(db, router):
    from storage import accounts

    w = await world(db)
    await run(router_sender(router, OPENID), TO_REVIEW + """
        < 7. 更新手机号等联系方式
        > 更新手机号等联系方式
        < 请选择要修改的项目
        > 电子邮箱
        < 请输入新的电子邮箱
        > zhaomin@example.com
        < 请核对「修改联系方式」
        > 确认
        < 电子邮箱已更新
        < 【申请免考｜请核对】
        < 1. 00320 领导科学
        > 确认
        < 已提交，第1号免考申请现在是“待审核”
    """)
    assert (await accounts.profile(db, w.candidate))["email"] == "zhaomin@example.com"


@pytest.mark.parametrize("error, reason", [
    (40007, "expired"), (41006, "expired"), (40009, "too_large"), (-1, "busy"), (45009, "busy"), (45011, "busy"),
    (40001, "other"), (None, "busy"),
])
async def test_the_edge_tells_dialogs_why_a_photo_is_unavailable_without_wechat_codes(error, reason):
    from bot.app import media_download
    from dialogs.services import MediaUnavailable
    from tests.evidence_fixtures import WeChatError

    async def fetch(media_id: str):
        raise TimeoutError() if error is None else WeChatError(error, "x")

    with pytest.raises(MediaUnavailable) as caught:
        await media_download(fetch)("MEDIA")
    assert caught.value.reason == reason
