"""Queries reached through the router (menu keys, keywords, free text) on the demo data set."""
from __future__ import annotations

import pytest
from sqlalchemy import select, update

from dialogs.types import Message
from storage.demo import load_demo
from storage.models import Candidate, utcnow
from storage.models_service import Feedback
from tests.dialog_fixtures import bind_on_page, make_router
from tests.transcript import router_sender, run

OPENID = "o_lookups_00000000000000001"
ZHANG = "310115199203154215"  # demo candidate with two majors and two admission numbers


@pytest.fixture
async def bound(db):
    await load_demo(db)
    async with db.session() as s, s.begin():
        await s.execute(update(Candidate).values(mobile_verified_at=utcnow()))
    await bind_on_page(db, OPENID, id_number=ZHANG, password=ZHANG[-6:])
    return make_router(db)


async def test_scores_plan_and_choice_of_major(bound):
    await run(router_sender(bound, OPENID), """
        > 成绩
        < 【当次成绩】
        <! 310115199203154215
        [click query:plan]
        < 您报考了2个专业
        < 1. 金融学(专升本)（020301K）
        > 1
        < 【考试计划】金融学(专升本) 020301K
        < 已考课程 12/15
        > 1
        <! 【考试计划】
        > 考试计划 690206
        < 行政管理(专科)
        > 历史成绩
        < 【历史成绩】
        > 线代过了吗
        < 04184
        > 教材 03708
        < 中国近现代史纲要
    """)


async def test_progress_windows_messages_and_contacts(bound):
    await run(router_sender(bound, OPENID), """
        > 毕业进度
        < 请回复序号
        > 2
        < 行政管理
        > 可办业务
        < 办理
        > 站内消息
        < 站内消息
        > 技术咨询
        < 400-0960-990
        > 凭证样例
        < 样例
    """)


async def test_feedback_flow_stores_it_with_summary(bound, db):
    await run(router_sender(bound, OPENID), """
        > 反馈建议
        < *请输入标题
        > 成绩
        < 【当次成绩】
        < 还没办完
        > 继续
        < 请输入标题
        > 建议增加提醒
        > 希望考前一周推送考场提醒。
        < 联系人
        > 无
        > 021-1234
        < 联系电话应为11位手机号码
        > 13900001111
        < 请核对「反馈建议」
        < 联系电话：139****1111
        > 确认
        < 已收到您的反馈
    """)
    async with db.session() as s:
        fb = (await s.scalars(select(Feedback))).one()
    assert fb.title == "建议增加提醒" and fb.contact_phone == "13900001111" and fb.contact_name is None


async def test_scores_need_binding_first(db):
    await load_demo(db)
    router = make_router(db)
    reply = await router.handle(Message(openid="o_unbound_0000000000000001", kind="text", text="成绩"))
    assert "需要先绑定" in reply.text and "证件号码" in reply.text
