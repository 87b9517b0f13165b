"""The whole service against the WeChat emulator, over real HTTP, in safe (encrypted) mode."""
from __future__ import annotations

import asyncio
import socket

import pytest
from sqlalchemy import func, select

from bot.app import DB, ENDPOINT, create_app
from bot.scheduler import SchedulerOptions
from bot.config import load_settings
from dialogs import welcome
from dialogs.router import Router
from dialogs.types import Reply
from emulator.app import start_emulator
from emulator.server import WeChatServer
from storage import outbox
from storage.models import Candidate, InboundMessage, Outbox, WechatUser, utcnow

TOKEN, APP_ID, SECRET = "e2etoken", "wxe2e0000000000001", "e2e-secret"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OPENID = "o_e2e_user_000000000000001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def scheduler_options():
    """No scheduled jobs unless a test asks for them: the outbox and every other table stay as the
    test leaves them (the reminder job, run at once by a new leader, would add rows of its own)."""
    return SchedulerOptions(enabled=False)


@pytest.fixture
async def stack(db_url, aiohttp_server, scheduler_options, request):
    """Bot + emulator wired to each other; yields (bot test server, emulator state, WeChat server)."""
    # The production budget, so that a loaded test machine never turns a normal answer into
    # "正在处理"; tests of the late path lower it (@pytest.mark.reply_budget) and make their
    # handler slower than it (slow_router).
    marker = request.node.get_closest_marker("reply_budget")
    reply_budget = marker.args[0] if marker else "4.5"
    bot_port, emu_port = free_port(), free_port()
    bot_url = f"http://127.0.0.1:{bot_port}/wechat"
    runner, state = await start_emulator("127.0.0.1", emu_port, bot_url=bot_url, token=TOKEN, app_id=APP_ID,
                                         app_secret=SECRET, aes_key=AES_KEY, mode="safe")
    settings = load_settings({
        "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID, "WECHAT_APP_SECRET": SECRET, "WECHAT_AES_KEY": AES_KEY,
        "WECHAT_API_BASE": f"http://127.0.0.1:{emu_port}", "SMS_API_BASE": f"http://127.0.0.1:{emu_port}",
        "DATABASE_URL": db_url, "REPLY_BUDGET_SECONDS": reply_budget,
        "TEMPLATE_REVIEW_RESULT": "TM_REVIEW_RESULT",
        # The H5 pages (绑定, 修改密码) through the emulator's web authorisation.
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{bot_port}", "WECHAT_OAUTH_BASE": f"http://127.0.0.1:{emu_port}",
    })
    bot = await aiohttp_server(create_app(settings, scheduler=scheduler_options), port=bot_port)
    wechat = WeChatServer(bot_url, TOKEN, APP_ID, aes_key=AES_KEY, mode="safe", timeout=5.0)
    try:
        yield bot, state, wechat
    finally:
        await wechat.close()
        await bot.close()
        await runner.cleanup()


async def test_subscribe_greets_and_records_the_follower(stack):
    bot, state, wechat = stack
    state.set_subscribed(OPENID, True)
    result = await wechat.send_event(OPENID, "subscribe")
    assert result.reply.encrypted and result.reply.content.startswith(welcome.WELCOME)
    assert "回复“绑定”" in result.reply.content
    async with bot.app[DB].session() as s:
        user = await s.get(WechatUser, OPENID)
    assert user.subscribed and user.subscribed_at is not None


async def test_text_gets_an_answer_and_a_retry_the_same_one(stack):
    bot, _state, wechat = stack
    first = await wechat.send_text(OPENID, "帮助", msg_id=555)
    again = await wechat.send_text(OPENID, "帮助", msg_id=555)
    assert first.reply.content == again.reply.content
    assert first.reply.content.startswith(welcome.HELP) and "【查询】" in first.reply.content
    from dialogs.faq import format_none
    assert (await wechat.send_text(OPENID, "今天天气怎么样")).reply.content == format_none()
    await bot.app[ENDPOINT].deduper.flush()  # answers to queries are written behind (docs/delivery.md)
    async with bot.app[DB].session() as s:
        assert (await s.execute(select(func.count()).select_from(InboundMessage))).scalar_one() == 2


async def test_unknown_message_types_are_answered_without_error(stack):
    _bot, _state, wechat = stack
    loc = await wechat.send_location(OPENID, 31.23, 121.47, label="上海")
    assert loc.ok and loc.reply.content == welcome.UNSUPPORTED_KIND
    ev = await wechat.send_event(OPENID, "SOME_NEW_EVENT")
    assert ev.ok


@pytest.fixture
def slow_router(monkeypatch):
    """Must come before `stack`: the app binds the router's handler at start-up."""
    async def slow(self, msg):
        await asyncio.sleep(1.2)
        return Reply("查询结果：已完成")
    monkeypatch.setattr(Router, "handle", slow)


@pytest.mark.reply_budget("0.6")  # the slow router takes 1.2 s: always past it
async def test_slow_answer_arrives_later_as_customer_service_message(slow_router, stack):
    bot, state, wechat = stack
    state.record_user_action(OPENID, "message")
    result = await wechat.send_text(OPENID, "成绩")
    assert "正在处理" in result.reply.content and len(result.attempts) == 1
    await bot.app[ENDPOINT].drain()
    sent = [m for m in state.outbound if m["openid"] == OPENID]
    assert [m["content"] for m in sent] == ["查询结果：已完成"]


@pytest.mark.reply_budget("0.6")
async def test_refused_late_answer_waits_in_the_outbox(slow_router, stack):
    bot, state, wechat = stack
    state.record_user_action(OPENID, "message")
    state.faults.add("message/custom/send", errcode=45015)
    await wechat.send_text(OPENID, "成绩")
    await bot.app[ENDPOINT].drain()
    async with bot.app[DB].session() as s:
        rows = (await s.execute(select(Outbox))).scalars().all()
    assert [(r.openid, r.status, r.payload["text"]) for r in rows] == [(OPENID, "waiting", "查询结果：已完成")]


@pytest.mark.parametrize("scheduler_options", [SchedulerOptions(deliver_every=0.2, renew_seconds=0.2)])
async def test_decision_is_pushed_by_the_running_service_exactly_once(stack):
    """A staff decision writes its push in its own transaction; the service's scheduler delivers it."""
    bot, state, _wechat = stack
    state.set_subscribed(OPENID, True)
    db = bot.app[DB]
    async with db.session() as s, s.begin():
        cand = Candidate(id_number="310101199003070013", name="测试", password_hash="x")
        s.add(cand)
        await s.flush()
        s.add(WechatUser(openid=OPENID, candidate_id=cand.id, subscribed=True, bound_at=utcnow()))
    async with db.session() as s, s.begin():
        await outbox.review_outcome(s, candidate_id=cand.id, business="申请免考", approved=False,
                                    decided_at=utcnow(), application_ref="EX-1")
    for _ in range(100):
        sent = [m for m in state.outbound if m["openid"] == OPENID]
        if sent:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # a second, wrong delivery would show up here
    sent = [m for m in state.outbound if m["openid"] == OPENID]
    assert len(sent) == 1 and sent[0]["type"] == "template" and sent[0]["template_id"] == "TM_REVIEW_RESULT"
    values = " ".join(v["value"] if isinstance(v, dict) else str(v) for v in sent[0]["data"].values())
    assert "申请免考" in values and "未通过" in values
    async with db.session() as s:
        row = (await s.execute(select(Outbox))).scalar_one()
    assert row.status == "sent" and row.channel == "template"
