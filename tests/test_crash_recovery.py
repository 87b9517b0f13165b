"""No message lost to a crash: a retry after the first holder died takes the message over."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bot.dedupe import LEASE_MARGIN_SECONDS, Deduper
from bot.config import Settings
from dialogs import state as dialog_state
from dialogs.state import StateStore
from dialogs.types import Message, Reply
from storage.db import Database
from storage.models import DialogState, InboundMessage, utcnow
from tests.test_endpoint import Recorder, make_app, signed, text_xml
from tests.test_scheduler import eventually

ROOT = Path(__file__).resolve().parent.parent


class LockingRecorder(Recorder):
    """Answers under the user's step lock, as the router does for a flow step."""

    def __init__(self, store: StateStore) -> None:
        super().__init__()
        self.store = store

    async def __call__(self, msg: Message) -> Reply:
        async with self.store.locked(msg.openid):
            return await super().__call__(msg)


async def test_retry_after_a_sigkilled_holder_takes_the_message_over(db_url, aiohttp_client):
    """A real process claims the message, takes the step lock and is killed with SIGKILL; WeChat's
    retry (here: to another process) must get the real answer, not "success"."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.crash_holder", db_url], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    db = Database(db_url)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        assert line.startswith("ready "), line
        port = int(line.split()[1])
        import aiohttp

        async with aiohttp.ClientSession() as session:
            first = asyncio.create_task(session.post(
                f"http://127.0.0.1:{port}/wechat", params=signed(), data=text_xml(msg_id="501", content="上传照片")))

            async def held() -> bool:
                async with db.session() as s:
                    row = await s.get(InboundMessage, "o_user1:501")
                    lock = await s.get(DialogState, "o_user1")
                return (row is not None and row.status == "processing"
                        and lock is not None and lock.locked_by is not None)

            await eventually(held, what="the holder's claim and step lock")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            with pytest.raises(Exception):
                await first  # the connection died with the process

        handler = LockingRecorder(StateStore(db, lease_seconds=1.0))
        c = await aiohttp_client(make_app(db, handler))
        retry = await c.post("/wechat", params=signed(), data=text_xml(msg_id="501", content="上传照片"))
        from bot.wire import parse_xml

        assert parse_xml(await retry.text())["Content"] == "收到：上传照片"
        assert len(handler.calls) == 1
        async with db.session() as s:
            row = await s.get(InboundMessage, "o_user1:501")
            lock = await s.get(DialogState, "o_user1")
        assert row.status == "done" and lock.locked_by is None
        # A later retry gets the same reply and runs nothing.
        again = await c.post("/wechat", params=signed(), data=text_xml(msg_id="501", content="上传照片"))
        assert parse_xml(await again.text())["Content"] == "收到：上传照片" and len(handler.calls) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        proc.stdout.close()
        await db.dispose()


async def test_only_one_of_two_concurrent_retries_takes_over(db):
    """A dead holder's row (lease run out): two retries in two processes race; one runs it."""
    async with db.session() as s, s.begin():
        s.add(InboundMessage(key="o_r:7", openid="o_r", status="processing",
                             received_at=utcnow() - dt.timedelta(seconds=10),
                             lease_until=utcnow() - dt.timedelta(seconds=1)))
    other = Database(db.url)
    try:
        a, b = Deduper(db, lease_seconds=6), Deduper(other, lease_seconds=6)
        ca, cb = await asyncio.gather(a.claim("o_r:7", "o_r", 1.0), b.claim("o_r:7", "o_r", 1.0))
        assert sorted([ca.owner, cb.owner]) == [False, True]
        assert (ca.taken_over or cb.taken_over)
    finally:
        await other.dispose()


async def test_a_live_holder_inside_its_lease_is_not_taken_over(db):
    async with db.session() as s, s.begin():
        s.add(InboundMessage(key="o_l:8", openid="o_l", status="processing", received_at=utcnow(),
                             lease_until=utcnow() + dt.timedelta(seconds=30)))
    claim = await Deduper(db).claim("o_l:8", "o_l", 0.3)
    assert not claim.owner and claim.reply is None


async def test_a_row_without_lease_from_before_the_migration_counts_as_dead(db):
    async with db.session() as s, s.begin():
        s.add(InboundMessage(key="o_m:9", openid="o_m", status="processing", received_at=utcnow()))
    claim = await Deduper(db).claim("o_m:9", "o_m", 0.3)
    assert claim.owner and claim.taken_over


async def test_a_long_step_keeps_its_lock_by_renewing_the_lease(db):
    """A live holder whose step outlasts the lease renews it (so nobody takes the lock from it);
    the renewals stop with the step."""
    holder = StateStore(db, lease_seconds=0.6)

    async def lease_end():
        async with db.session() as s:
            return (await s.get(DialogState, "o_long")).locked_until

    async with holder.locked("o_long"):
        first = await lease_end()

        async def renewed() -> bool:
            return await lease_end() > first

        await eventually(renewed, what="a renewal of the step lease")
        async with db.session() as s:
            assert (await s.get(DialogState, "o_long")).locked_by == holder.owner
    async with db.session() as s:
        row = await s.get(DialogState, "o_long")
    assert row.locked_by is None and row.locked_until is None


@pytest.mark.parametrize("budget", [0.5, 2.0, 4.5, 4.8])
def test_lease_lengths_line_up(budget):
    """The retry that takes over a dead holder's message waits for the step lock at most
    `wait_seconds`; the dead holder's step lease must run out before that. The holder died at
    the latest at the reply budget (after it, the message is marked done); its last renewal was
    then, so its lock is free at budget + LEASE_SECONDS. The takeover happens at the earliest
    when the message lease (budget + margin) ends, and waits wait_seconds from there."""
    Settings(reply_budget_seconds=budget)  # a budget the configuration accepts
    store_wait = StateStore.__init__.__kwdefaults__["wait_seconds"]
    lock_free_at = budget + dialog_state.LEASE_SECONDS
    takeover_gives_up_at = budget + LEASE_MARGIN_SECONDS + store_wait
    assert lock_free_at + 0.25 <= takeover_gives_up_at
    # ... and a live owner always finishes the row before its message lease ends.
    assert LEASE_MARGIN_SECONDS >= 1.0


@pytest.mark.parametrize("warm", [False, True], ids=["claim-row", "warm-path"])
async def test_a_step_committed_before_a_sigkill_is_not_applied_again_by_the_retry(db_url, aiohttp_client, warm):
    """Exactly once for a message that changes state: the process commits the step ("是" moves the
    example flow from its yes/no question to the first 情况说明) and is SIGKILLed before the reply
    is stored. WeChat's retry, taking the message over in another process, must get the same
    reply and leave the conversation where the first attempt put it: applied twice, "是" would be
    taken as the 情况说明 itself ("内容太短")."""
    import aiohttp
    import json

    from bot.wire import parse_xml
    from dialogs import example, menu
    from storage.models import WechatUser
    from tests.dialog_fixtures import add_candidate, make_router
    from tests.test_endpoint import make_app as endpoint_app

    db = Database(db_url)
    proc = None
    try:
        cid = await add_candidate(db)
        async with db.session() as s, s.begin():
            s.add(WechatUser(openid="o_user1", candidate_id=cid))
        router = make_router(db)
        router.add_flow(example.EXAMPLE)
        menu.KEYWORDS.setdefault("情况说明", "flow:explain")
        started = await router.handle(Message(openid="o_user1", kind="text", text="情况说明", msg_id="600"))
        assert "手机号码还在用吗" in started.text

        proc = subprocess.Popen([sys.executable, "-m", "tests.crash_applier", db_url] + (["warm"] if warm else []), cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        assert line.startswith("ready "), line
        port = int(line.split()[1])
        async with aiohttp.ClientSession() as session:
            first = asyncio.create_task(session.post(
                f"http://127.0.0.1:{port}/wechat", params=signed(), data=text_xml(msg_id="601", content="是")))
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            assert line.startswith("applied "), line
            first_reply = json.loads(line.removeprefix("applied "))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            with pytest.raises(Exception):
                await first
        assert "请写明「00015 英语(二)」" in first_reply
        async with db.session() as s:
            row = await s.get(InboundMessage, "o_user1:601")
            state = await s.get(DialogState, "o_user1")
        if warm:
            assert row is None  # claimed in memory; the row would have come with the reply
        else:
            assert row.status == "processing"  # the reply was never stored
        assert state.applied_key == "o_user1:601" and state.locked_by is None
        after_first = (state.flow, state.step, dict(state.data), state.version)

        retry_router = make_router(db)
        retry_router.add_flow(example.EXAMPLE)
        from tests.test_endpoint import EP

        if warm:
            from tests.test_warm_path import warm_app

            app = warm_app(db, retry_router)
        else:
            app = endpoint_app(db, Recorder())
            app[EP].handler = retry_router.handle
        c = await aiohttp_client(app)
        retry = await c.post("/wechat", params=signed(), data=text_xml(msg_id="601", content="是"))
        assert parse_xml(await retry.text())["Content"] == first_reply
        async with db.session() as s:
            state = await s.get(DialogState, "o_user1")
            row = await s.get(InboundMessage, "o_user1:601")
        assert (state.flow, state.step, dict(state.data), state.version) == after_first
        assert row.status == "done"
        # The conversation goes on from where the first attempt left it.
        nxt = await c.post("/wechat", params=signed(), data=text_xml(msg_id="602", content="2003年已参加考试并合格。"))
        assert "请写明「03708 中国近现代史纲要」" in parse_xml(await nxt.text())["Content"]
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
            proc.stdout.close()
        await db.dispose()
