"""Opting out of notices ("退订通知" / "订阅通知") and template delivery reports."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from bot.delivery import record_template_finish
from dialogs import subscription
from dialogs.router import Router
from dialogs.types import NO_REPLY, Message
from storage import models as m
from storage import notices, outbox
from storage.db import Database
from tests.test_outbox import ZHAO, add_candidate, add_user, rows

OPENID = "o_sub_user_0000000000000001"


def text(s: str, openid: str = OPENID) -> Message:
    return Message(openid=openid, kind="text", text=s)


@pytest.mark.parametrize("words, opt_out", [
    (["退订通知", "取消通知", "关闭通知", " 退订通知。", "TD", "td", "不再接收通知"], True),
    (["订阅通知", "开启通知", "打开通知", "恢复通知！", "接收通知"], False),
    (["通知", "退订", "成绩", "我想退订通知可以吗"], None),
])
def test_words_that_turn_notices_off_and_on(words: list[str], opt_out: bool | None) -> None:
    for w in words:
        assert subscription.wants(text(w)) is opt_out, w
    assert subscription.wants(Message(openid=OPENID, kind="image", media_id="m")) is None


async def opted_out(db: Database, openid: str = OPENID) -> bool | None:
    async with db.session() as s:
        return await s.scalar(select(m.WechatUser.notices_opt_out).where(m.WechatUser.openid == openid))


async def test_opting_out_and_back_in_confirms_and_says_review_outcomes_still_arrive(db: Database) -> None:
    router = Router(db)
    await add_user(db, OPENID, None)
    reply = await router.handle(text("退订通知"))
    assert reply.text == subscription.OPTED_OUT and "审核结果仍会照常通知" in reply.text
    assert await opted_out(db) is True
    assert (await router.handle(text("关闭通知"))).text == subscription.ALREADY_OUT
    reply = await router.handle(text("订阅通知"))
    assert reply.text == subscription.OPTED_IN and await opted_out(db) is False
    assert (await router.handle(text("开启通知"))).text == subscription.ALREADY_IN


async def test_a_follower_without_a_row_yet_can_opt_out(db: Database) -> None:
    reply = await Router(db).handle(text("退订通知", "o_new_follower"))
    assert reply.text == subscription.OPTED_OUT and await opted_out(db, "o_new_follower") is True
    assert (await Router(db).handle(text("订阅通知", "o_other_new"))).text == subscription.ALREADY_IN


async def test_opted_out_candidate_gets_no_notices_but_still_their_review_outcomes(db: Database) -> None:
    cid = await add_candidate(db, ZHAO)
    await add_user(db, OPENID, cid)
    await add_user(db, "o_listening", cid)
    await Router(db).handle(text("退订通知"))
    await notices.publish(db, title="考试日程安排表", body="……")
    assert [r.openid for r in await rows(db, kind="notice")] == ["o_listening"]
    async with db.session() as s, s.begin():
        await outbox.review_outcome(s, candidate_id=cid, business="申请毕业", approved=True,
                                    decided_at=dt.datetime.now(dt.timezone.utc), application_ref="GR-1")
    assert sorted(r.openid for r in await rows(db, kind="review_outcome")) == sorted([OPENID, "o_listening"])


def finish_event(msg_id: str, status: str) -> Message:
    return Message(openid=OPENID, kind="event", event="TEMPLATESENDJOBFINISH", msg_id=msg_id, status=status)


async def test_template_delivery_report_is_passed_on_and_answered_with_nothing(db: Database) -> None:
    seen = []

    async def record(msgid: str, status: str) -> bool:
        seen.append((msgid, status))
        return True

    assert await Router(db, on_template_finish=record).handle(finish_event("2001", "success")) == NO_REPLY
    assert seen == [("2001", "success")]
    assert await Router(db).handle(finish_event("2002", "success")) == NO_REPLY

    async def broken(msgid: str, status: str) -> bool:
        raise RuntimeError("database gone")

    assert await Router(db, on_template_finish=broken).handle(finish_event("2003", "success")) == NO_REPLY


async def test_template_delivery_report_lands_on_its_outbox_row(db: Database) -> None:
    body = outbox.payload("您的申请免考审核结果：已通过。", "review_result", {"thing1": "申请免考"})
    async with db.session() as s, s.begin():
        for msgid in ("3001", "3002"):
            await outbox.enqueue(s, openid=OPENID, kind="review_outcome", payload=body, client_msg_id=f"r:{msgid}")
            await s.execute(m.Outbox.__table__.update().where(m.Outbox.client_msg_id == f"r:{msgid}")
                            .values(status="sent", wechat_msgid=msgid))
    router = Router(db, on_template_finish=lambda msgid, status: record_template_finish(db, msgid, status))
    await router.handle(finish_event("3001", "success"))
    await router.handle(finish_event("3002", "failed:user block"))
    got = {r.wechat_msgid: (r.status, r.delivery_status) for r in await rows(db)}
    assert got == {"3001": ("sent", "success"), "3002": ("failed", "failed:user block")}
