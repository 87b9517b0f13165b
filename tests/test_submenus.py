"""Submenus (消息通知, 毕业学位, 省际转考, 账户, 帮助咨询) are numbered lists, not flows: a number
answers the most recent list the candidate was shown, and 取消 / 返回 after a list cancel nothing."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete

from storage.models import DialogState, utcnow
from tests.dialog_fixtures import demo_router_bound, make_router
from tests.transcript import router_sender, run

OPENID = "o_submenus_0000000000000001"


@pytest.fixture
async def bound(db):
    return await demo_router_bound(db, OPENID)


async def test_number_after_a_newer_list_answers_the_newer_list(bound):
    await run(router_sender(bound, OPENID), """
        [click menu:graduation]
        < 【毕业与学位】请回复序号
        < 1. 本科论文与专科毕设
        > 毕业进度
        < 您报考了2个专业
        <! 还没办完
        > 1
        < 金融学
        <! 本科论文与专科毕设
        <! 【本科论文
    """)


async def test_submenu_number_opens_its_item(bound):
    await run(router_sender(bound, OPENID), """
        > 毕业学位
        < 4. 毕业审定费
        > 2
        < 申请毕业
        <! 微信中暂时还不能办理
        [click menu:messages]
        < 1. 站内消息
        > 1
        < 站内消息
        > 1
        <! 站内消息
    """)


async def test_submenu_item_by_its_name(bound):
    await run(router_sender(bound, OPENID), """
        [click menu:transfer]
        < 2. 本市转出
        > 本市转出
        < 【本市转出｜考生须知】
    """)


async def test_cancel_after_a_submenu_cancels_nothing(bound):
    await run(router_sender(bound, OPENID), """
        [click menu:messages]
        < 【消息通知】请回复序号
        > 取消
        <! 填写的内容没有保存
        <! 已取消「消息通知」
        < 没有正在办理的业务
        > 1
        <! 【站内消息】
    """)


async def test_back_after_a_submenu_shows_the_menu(bound):
    await run(router_sender(bound, OPENID), """
        [click menu:help]
        < 【帮助咨询】请回复序号
        > 返回
        < 【查询】
        <! 当前没有正在办理的业务
    """)


async def test_number_out_of_range_asks_again_and_keeps_the_list(bound):
    await run(router_sender(bound, OPENID), """
        [click menu:graduation]
        > 7
        < 请回复1到4的序号
        > 3
        < 申请学位现在不在办理时间内
    """)


async def test_submenu_during_a_flow_keeps_the_flow_and_its_answers(bound):
    await run(router_sender(bound, OPENID), """
        > 反馈建议
        < *请输入标题
        > 建议增加提醒
        < 意见或建议
        [click menu:messages]
        < 1. 站内消息
        < 「反馈建议」还没办完
        > 2
        < 新闻
        > 继续
        < 意见或建议
        > 取消
        < 已取消「反馈建议」
    """)


async def test_cancel_after_a_submenu_during_a_flow_keeps_the_flow(bound):
    await run(router_sender(bound, OPENID), """
        > 反馈建议
        > 建议增加提醒
        < 意见或建议
        [click menu:graduation]
        > 取消
        <! 填写的内容没有保存
        < 「反馈建议」还没办完
        > 继续
        < 意见或建议
    """)


async def test_unbound_user_sees_the_account_submenu_and_binding_starts(db):
    router = make_router(db)
    await run(router_sender(router, "o_submenus_unbound_00000001"), """
        [click menu:account]
        < 【账户】请回复序号
        > 1
        < 点击这里完成绑定
    """)


async def test_a_submenu_left_open_as_a_flow_by_an_older_version_is_dropped(bound, db):
    async with db.session() as s, s.begin():
        # Binding happens on the H5 page, so the chat may have no state row yet: write a whole one.
        await s.execute(delete(DialogState).where(DialogState.openid == OPENID))
        s.add(DialogState(
            openid=OPENID, flow="menu:graduation", step="pick", expires_at=utcnow() + dt.timedelta(minutes=20),
            data={"answers": {}, "scratch": {}, "history": [], "failures": 0,
                  "paused": [{"flow": "menu:messages", "step": "pick", "data": {}}]}))
    await run(router_sender(bound, OPENID), """
        > 1
        <! 本科论文
        <! 「menu:
        > 继续
        < 没有需要继续办理的业务
        > 毕业进度
        < 您报考了2个专业
        > 2
        < 行政管理
    """)
