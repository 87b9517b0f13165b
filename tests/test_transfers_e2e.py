"""省际转考 end to end through the WeChat emulator, with the running service's scheduler delivering
the pushes: 本市转出 filled in, rejected, 重新申请, approved (转出编号 in the template); a 外省转入
status change and its 现场确认 reminder arriving once."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select

from bot.app import DB
from bot.scheduler import SchedulerOptions
from storage import applications as apps
from storage import models as m
from storage import transfers as tr
from storage.importer import import_directory
from tests.test_dialogs_transfer_out import FILL, ZHAO, ZHAO_ADMISSION
from tests.test_e2e import scheduler_options, stack  # noqa: F401 (fixtures)
from tests.test_import import EXAMPLES
from tests.test_transfers import SUN
from tests.transcript import emulator_sender, run

OPENID = "o_e2e_transfer_0000000000001"
DELIVERING = SchedulerOptions(deliver_every=0.2, renew_seconds=0.2)


async def arrived(state, openid: str, count: int) -> list[dict]:
    """The messages the emulator received for `openid`, once there are `count` (10 s at most)."""
    for _ in range(100):
        sent = [x for x in state.outbound if x["openid"] == openid]
        if len(sent) >= count:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.4)  # a duplicate would show up here
    return [x for x in state.outbound if x["openid"] == openid]


def values(message: dict) -> str:
    return " ".join(v["value"] if isinstance(v, dict) else str(v) for v in message["data"].values())


async def bind(db, state, id_number: str, admission: str | None = None) -> None:
    state.set_subscribed(OPENID, True)
    async with db.session() as s, s.begin():
        cid = await s.scalar(select(m.Candidate.id).where(m.Candidate.with_id_number(id_number)))
        s.add(m.WechatUser(openid=OPENID, candidate_id=cid, subscribed=True, bound_at=m.utcnow(),
                           active_admission_number=admission))


@pytest.mark.parametrize("scheduler_options", [DELIVERING])
async def test_transfer_out_reject_reapply_approve_through_wechat(stack):
    bot, state, wechat = stack
    db = bot.app[DB]
    assert (await import_directory(db, EXAMPLES)).ok
    await bind(db, state, ZHAO, ZHAO_ADMISSION)
    t = m.utcnow()
    async with db.session() as s, s.begin():
        s.add(m.BusinessWindow(kind="transfer_out", title="本市转出", notice="一、转出前请先在转入省报名。",
                               opens_at=t - dt.timedelta(days=1), closes_at=t + dt.timedelta(days=10)))
    send = emulator_sender(wechat, OPENID)
    await run(send, FILL)
    [app] = await apps.list_applications(db, kind="transfer_out")
    await apps.reject(db, app.id, reason="转入准考证号与浙江省记录不符，请核对。", by="张老师")
    [first] = await arrived(state, OPENID, 1)
    assert first["type"] == "template" and "本市转出申请" in values(first) and "未通过" in values(first)
    await run(send, """
        > 转出
        < 未通过原因：转入准考证号与浙江省记录不符，请核对。
        > 重新申请
        < 【本市转出｜第1号 未通过】
        > 修改 2
        > 330118200388
        < 2. 转入准考证号：330118200388
        > 确认重新提交
        < 已重新提交，第1号转出申请现在是“待审核”
    """)
    done = await apps.approve(db, app.id, by="张老师")
    sent = await arrived(state, OPENID, 2)
    assert len(sent) == 2
    assert "已通过" in values(sent[1]) and f"转出编号{done.application.details['reference']}" in values(sent[1])
    await run(send, f"""
        > 转出
        < 转出编号：{done.application.details['reference']}
        < 转入准考证号 330118200388
    """)


@pytest.mark.parametrize("scheduler_options", [DELIVERING])
async def test_transfer_in_change_and_reminder_arrive_once(stack):
    bot, state, wechat = stack
    db = bot.app[DB]
    assert (await import_directory(db, EXAMPLES)).ok
    await bind(db, state, SUN)
    send = emulator_sender(wechat, OPENID)
    await run(send, """
        > 转入
        < 待现场确认（当前）
    """)
    state.record_user_action(OPENID, "message")  # WeChat opens its 48-hour window on a user's message
    # A slot an hour from now: whatever the time of day, its reminder (09:00 the day before) is due.
    slot = m.utcnow() + dt.timedelta(hours=1)
    await tr.set_status(db, "ZR2024000017", "confirming", confirm_at=slot, place="漕溪北路 331 号")
    assert list((await tr.confirmation_reminders(db)).values()) == [1]
    assert list((await tr.confirmation_reminders(db)).values()) == [0]  # the job running again adds nothing
    sent = await arrived(state, OPENID, 2)
    assert len(sent) == 2
    assert sent[0]["type"] == "template" and "待现场确认" in values(sent[0])
    # No template is configured for reminders here: a customer-service text, inside the 48 hours.
    assert sent[1]["type"] != "template" and "外省转入现场确认" in str(sent[1]) and "漕溪北路" in str(sent[1])
    await run(send, """
        > 转入
        < 【现场确认】
        < 地点：漕溪北路 331 号
    """)
