"""The flow engine, on a test flow that uses most field kinds: commands at every step, wrong
answers, the summary with 修改 N, interruptions, pausing, expiry, restarts and concurrency."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select, update

from dialogs import fields as F
from dialogs.engine import Ctx, Flow, Step
from dialogs.router import Router
from dialogs.state import StateStore
from dialogs.types import Message
from storage.db import Database
from storage.models import DialogState, utcnow
from tests.dialog_fixtures import add_candidate, bind_on_page, make_router
from tests.transcript import router_sender, run

OPENID = "o_engine_user_000000000000001"
SUBMITTED: list[dict] = []


async def _submit(ctx: Ctx) -> str:
    SUBMITTED.append(dict(ctx.answers))
    return f"已提交：{ctx.answers['title']}"


async def _courses(ctx: Ctx):
    return [("00015", "英语(二)"), ("03708", "中国近现代史纲要"), ("04184", "线性代数(经管类)")]


FORM = Flow(
    name="form",
    title="测试申请",
    needs_binding=False,
    steps=[
        Step("title", "标题", F.Text(max_len=10), "请输入标题："),
        Step("when", "获取时间", F.YearMonth(), "请输入获取时间："),
        Step("province", "省份", F.Province(), "请输入省份："),
        Step("courses", "课程", F.MultiChoice(), "请选择课程：", options=_courses),
        Step("more", "是否有备注", F.YesNo(), "有备注吗？"),
        Step("note", "备注", F.Text(max_len=20), "请输入备注：", when=lambda ctx: bool(ctx.answers.get("more"))),
        Step("photo", "照片", F.Photos(), "请发送照片，发完回复“完成”："),
    ],
    submit=_submit,
)


@pytest.fixture
def router(db) -> Router:
    SUBMITTED.clear()
    r = make_router(db)
    r.add_flow(FORM)
    return r


def _bind_router(router: Router) -> None:
    """Let the test flow start from a keyword."""
    from dialogs import menu
    menu.KEYWORDS.setdefault("测试申请", "flow:form")


async def test_full_flow_with_summary_and_edit(router):
    _bind_router(router)
    await run(router_sender(router, OPENID), """
        > 测试申请
        < 请输入标题
        > 我的标题
        < 请输入获取时间
        > 2018年6月
        < 请输入省份
        > 上海
        < 1. 英语(二)
        < 3. 线性代数(经管类)
        > 1 3
        < 有备注吗
        > 否
        < 请发送照片
        > 完成
        < 至少1张照片
        [photo M1]
        < 已收到第1张照片
        [photo M2]
        < 已收到第2张照片
        > 完成
        < 请核对「测试申请」
        < 1. 标题：我的标题
        < 2. 获取时间：2018年6月
        < 3. 省份：上海市
        < 4. 课程：英语(二)、线性代数(经管类)
        < 5. 是否有备注：否
        < 6. 照片：已上传2张照片
        > 修改 3
        < 现在填写的省份是：上海市
        > 江苏省
        < 3. 省份：江苏省
        > 修改 9
        < 1到6
        > 确认
        < 已提交：我的标题
    """)
    assert SUBMITTED[0]["province"] == "江苏省"
    assert SUBMITTED[0]["courses"] == ["00015", "04184"]
    assert [p["media_id"] for p in SUBMITTED[0]["photo"]] == ["M1", "M2"]


async def test_wrong_answers_keep_earlier_ones_and_offer_a_way_out(router):
    _bind_router(router)
    await run(router_sender(router, OPENID), """
        > 测试申请
        > 标题
        > 明年
        < 时间格式不对
        < 如 2018年6月
        < 请输入获取时间
        > 2018年13月
        < 月份应在1到12之间
        [photo X]
        < 这一步需要回复文字，不是图片
        < 回复“取消”退出办理
        < 400-0960-990
        > 2019-01
        < 请输入省份
        > 返回
        < 上一步您填写的获取时间是：2019年1月
        > 返回
        < 上一步您填写的标题是：标题
        > 返回
        < 已经是第一步了
    """)


async def test_cancel_leaves_and_says_nothing_was_saved(router, db):
    _bind_router(router)
    await run(router_sender(router, OPENID), """
        > 测试申请
        > 标题
        > 取消
        < 已取消「测试申请」，填写的内容没有保存
        > 取消
        < 当前没有正在办理的业务
        > 2018年6月
        < 没有理解
    """)
    assert SUBMITTED == []


async def test_help_at_a_step_shows_menu_and_repeats_the_question(router):
    _bind_router(router)
    await run(router_sender(router, OPENID), """
        > 测试申请
        > 标题
        > 帮助
        < 菜单
        < 【查询】
        < 您正在办理「测试申请」
        < 填写说明：如 2018年6月
        < 请输入获取时间
        > 2018-06
        < 请输入省份
    """)


async def test_query_in_the_middle_answers_and_offers_to_continue(router):
    _bind_router(router)
    await run(router_sender(router, OPENID), """
        > 测试申请
        > 标题
        [click menu:graduation]
        < 【毕业与学位】
        < 您的「测试申请」还没办完，回复“继续”接着办理
        > 继续
        < 请输入获取时间
        > 2018-06
        < 请输入省份
    """)


async def test_another_flow_pauses_the_first_which_resumes_where_it_was(router, db):
    _bind_router(router)
    await add_candidate(db, verified=True)
    send = router_sender(router, OPENID)
    await run(send, """
        > 测试申请
        > 标题
        > 2018-06
        > 绑定
        < 「测试申请」已暂存
        < 点击这里完成绑定
    """)
    await bind_on_page(db, OPENID)
    await run(send, """
        > 继续
        < 接着办理「测试申请」
        < 请输入省份
        > 上海
        < 请选择课程
    """)


async def test_a_restart_continues_the_flow(db):
    _bind_router(None)
    first = make_router(db)
    first.add_flow(FORM)
    await run(router_sender(first, OPENID), "> 测试申请\n> 标题\n< 请输入获取时间")
    # A new process: another Database and Router on the same database.
    other_db = Database(db.url)
    try:
        second = make_router(other_db)
        second.add_flow(FORM)
        await run(router_sender(second, OPENID), "> 2018-06\n< 请输入省份")
    finally:
        await other_db.dispose()


async def test_half_finished_flow_expires_with_a_note(router, db):
    _bind_router(router)
    send = router_sender(router, OPENID)
    await run(send, "> 测试申请\n> 标题")
    async with db.session() as s, s.begin():
        await s.execute(update(DialogState).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    await run(send, """
        > 2018-06
        < 「测试申请」超过30分钟没有继续，已自动结束
        > 继续
        < 没有需要继续办理的业务
    """)


async def test_timeout_is_configurable(db):
    _bind_router(None)
    r = make_router(db, flow_timeout_minutes=5)
    r.add_flow(FORM)
    await run(router_sender(r, OPENID), "> 测试申请")
    async with db.session() as s:
        state = await s.get(DialogState, OPENID)
    left = state.expires_at - utcnow()
    assert dt.timedelta(minutes=4) < left <= dt.timedelta(minutes=5)


async def test_two_messages_of_one_user_never_run_a_step_at_once(db):
    """Slow steps: the second message waits for the first, in one process and across two."""
    running = 0
    overlap = []

    async def slow_check(ctx: Ctx, value):
        nonlocal running
        running += 1
        overlap.append(running)
        await asyncio.sleep(0.05)
        running -= 1
        return value

    flow = Flow(name="slow", title="慢", needs_binding=False, confirm=False,
                steps=[Step(f"s{i}", f"第{i}项", F.Text(), f"第{i}项：", check=slow_check) for i in range(6)],
                submit=lambda ctx: asyncio.sleep(0, result="完成"))
    from dialogs import menu
    menu.KEYWORDS.setdefault("慢", "flow:slow")
    other_db = Database(db.url)
    try:
        routers = [make_router(db), make_router(other_db)]
        for r in routers:
            r.add_flow(flow)
        await routers[0].handle(Message(openid=OPENID, kind="text", text="慢"))
        replies = await asyncio.gather(*(
            routers[i % 2].handle(Message(openid=OPENID, kind="text", text=f"答{i}")) for i in range(6)
        ))
    finally:
        await other_db.dispose()
    assert max(overlap) == 1
    assert sum("完成" in r.text for r in replies) == 1
    async with db.session() as s:
        state = await s.get(DialogState, OPENID)
    assert state.flow is None and state.locked_by is None


async def test_lock_of_a_crashed_process_runs_out(db):
    store = StateStore(db, wait_seconds=0.3)
    async with db.session() as s, s.begin():
        s.add(DialogState(openid=OPENID, data={}, locked_by="dead-process",
                          locked_until=utcnow() - dt.timedelta(seconds=1)))
    async with store.locked(OPENID) as conv:
        conv.flow = "x"
    async with db.session() as s:
        assert (await s.scalar(select(DialogState.flow).where(DialogState.openid == OPENID))) == "x"


async def test_unknown_text_gets_help_never_silence(router):
    replies = await run(router_sender(router, OPENID), """
        > 今天天气怎么样
        < 没有理解
        < 绑定
        [event SCAN]
        [click menu:no-such-button]
        < 菜单
    """)
    assert all(replies)


ANSWERS = [("标题", "请输入获取时间"), ("2018-06", "请输入省份"), ("上海", "请选择课程"), ("1", "有备注吗"),
           ("是", "请输入备注"), ("备注内容", "请发送照片")]
QUESTIONS = ["请输入标题"] + [q for _, q in ANSWERS]


@pytest.mark.parametrize("k", range(len(QUESTIONS)))
async def test_commands_work_at_every_step(router, db, k):
    """At step k: 帮助 repeats the question, 返回 goes back, 继续 repeats, 取消 leaves."""
    _bind_router(router)
    send = router_sender(router, OPENID)
    await run(send, "> 测试申请")
    for answer, _ in ANSWERS[:k]:
        await run(send, f"> {answer}")
    here = QUESTIONS[k]
    before = QUESTIONS[k - 1] if k else "已经是第一步了"
    await run(send, f"""
        > 帮助
        < 【查询】
        < {here}
        > 继续
        < {here}
        > 返回
        < {before}
    """)
    if k:
        await run(send, f"> {ANSWERS[k - 1][0]}\n< {here}")
    await run(send, "> 取消\n< 已取消「测试申请」\n> 继续\n< 没有需要继续办理的业务")
    assert SUBMITTED == []


# --- composed dialogs: a route table, a call, a loop, typed state -------------------------------------


async def _example_router(db: Database) -> tuple[Router, int]:
    """A router with docs/dialogs.md's example flow, and a candidate bound to OPENID."""
    from dialogs import example, menu
    from storage.models import WechatUser

    cid = await add_candidate(db)
    r = make_router(db)
    r.add_flow(example.EXAMPLE)
    menu.KEYWORDS.setdefault("情况说明", "flow:explain")
    async with db.session() as s, s.begin():
        s.add(WechatUser(openid=OPENID, candidate_id=cid))
    return r, cid


async def test_the_docs_example_loops_calls_and_returns(db):
    """docs/dialogs.md's flow: a route by the answer, a component called and returned from
    (修改联系方式 with its own summary), a loop over items with a component per item, typed state
    surviving between messages, 返回 inside a component, and a route back into the loop."""
    from storage import accounts

    r, cid = await _example_router(db)
    await run(router_sender(r, OPENID), """
        > 情况说明
        < 您的手机号码还在用吗
        > 不是
        < 请选择要修改的项目
        > 电子邮箱
        > new@example.com
        < 请核对「修改联系方式」
        > 确认
        < 请写明「00015 英语(二)」
        > 太短
        < 内容太短
        > 2003年已参加考试并合格，成绩单遗失。
        < 请写明「03708 中国近现代史纲要」
        > 返回
        < 已经是第一步了
        > 已办理免考，但平台未显示记录。
        < 电子邮箱已更新
        < 00015 英语(二)：2003年已参加考试并合格
        < 确认提交吗
        > 否
        < 请写明「00015 英语(二)」
        > 重新写的第一份说明内容。
        > 重新写的第二份说明内容。
        > 是
        < 已提交2份情况说明
    """)
    assert (await accounts.profile(db, cid))["email"] == "new@example.com"
    async with db.session() as s:
        state = await s.get(DialogState, OPENID)
    assert state.flow is None and "stack" not in state.data


async def test_cancel_inside_a_component_ends_the_whole_flow(db):
    r, _ = await _example_router(db)
    await run(router_sender(r, OPENID), """
        > 情况说明
        > 是
        < 请写明「00015 英语(二)」
        > 取消
        < 已取消「情况说明」
        > 继续
        < 没有需要继续办理的业务
    """)
    async with db.session() as s:
        state = await s.get(DialogState, OPENID)
    assert state.flow is None and state.data.get("stack") is None


def test_typed_state_round_trips_through_json():
    import json
    from decimal import Decimal

    from dialogs import typed
    from storage.applications import ApplicationData, EvidenceData, ItemData

    app = ApplicationData("exemption", 1, "o", "012424100318", "120402",
                          [ItemData("00320", score=Decimal("78.5"), evidences=[EvidenceData("cet4", "N1", "2018-06",
                                                                                           photo_ids=[3, 4])])],
                          created_at=dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.timezone.utc))
    back = typed.load(ApplicationData, json.loads(json.dumps(typed.dump(app))))
    assert back == app
