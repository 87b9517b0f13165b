"""反馈建议 for the exam office: the inbox, replies that reach the candidate in WeChat, 已处理.

A reply is written with its push in one transaction: an outbox row of kind "feedback_reply" that the
delivery engine sends as a customer-service message inside WeChat's 48-hour window, or keeps
waiting until the follower's next message (bot/delivery.py).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Optional

from sqlalchemy import func, select

from storage import outbox
from storage.db import Database
from storage.errors import Refused
from storage.models import Candidate, utcnow
from storage.models_service import Feedback

REPLY_MAX = 600  # a phone screen or two; a customer-service text holds about 2048 bytes


class FeedbackError(Refused):
    """A refused reply or change of a 反馈建议."""


@dataclass(frozen=True)
class FeedbackItem:
    id: int
    openid: str
    candidate_name: Optional[str]
    title: str
    body: str
    contact_name: Optional[str]
    contact_phone: Optional[str]
    created_at: dt.datetime
    handled: bool
    handled_at: Optional[dt.datetime]
    handled_by: Optional[str]
    reply: Optional[str]
    replied_at: Optional[dt.datetime]
    replied_by: Optional[str]


def _item(f: Feedback, name: Optional[str]) -> FeedbackItem:
    return FeedbackItem(f.id, f.openid, name, f.title, f.body, f.contact_name, f.contact_phone, f.created_at,
                        f.handled, f.handled_at, f.handled_by, f.reply, f.replied_at, f.replied_by)


async def inbox(db: Database, *, handled: Optional[bool] = False, offset: int = 0, limit: int = 50
                ) -> tuple[list[FeedbackItem], int]:
    """Feedback oldest first when unhandled (what waits longest comes first), else newest first."""
    conds = [] if handled is None else [Feedback.handled.is_(handled)]
    order = (Feedback.created_at.asc(),) if handled is False else (Feedback.created_at.desc(),)
    async with db.session() as s:
        total = await s.scalar(select(func.count()).select_from(Feedback).where(*conds)) or 0
        rows = (await s.execute(
            select(Feedback, Candidate.name).outerjoin(Candidate, Candidate.id == Feedback.candidate_id)
            .where(*conds).order_by(*order, Feedback.id).offset(offset).limit(limit)
        )).all()
    return [_item(f, n) for f, n in rows], total


async def unhandled_count(db: Database) -> int:
    async with db.session() as s:
        return await s.scalar(select(func.count()).select_from(Feedback).where(Feedback.handled.is_(False))) or 0


async def get(db: Database, feedback_id: int) -> FeedbackItem:
    async with db.session() as s:
        row = (await s.execute(
            select(Feedback, Candidate.name).outerjoin(Candidate, Candidate.id == Feedback.candidate_id)
            .where(Feedback.id == feedback_id)
        )).first()
    if row is None:
        raise FeedbackError(f"反馈 #{feedback_id} 不存在。")
    return _item(*row)


def reply_text(title: str, reply: str) -> str:
    return f"【反馈回复】您提交的“{outbox.template_value(title, 20)}”，考办答复如下：\n{reply}"


async def reply(db: Database, feedback_id: int, text: str, *, by: str, handled: bool = True,
                now: dt.datetime | None = None, audit: Any = None) -> FeedbackItem:
    """Answer a 反馈建议: kept on the row and pushed to the follower who wrote it, together."""
    text = (text or "").strip()
    if not text:
        raise FeedbackError("请填写回复内容。")
    if len(text) > REPLY_MAX:
        raise FeedbackError(f"回复最多{REPLY_MAX}字。")
    now = now or utcnow()
    async with db.session() as s, s.begin():
        row = await s.get(Feedback, feedback_id, with_for_update=True)
        if row is None:
            raise FeedbackError(f"反馈 #{feedback_id} 不存在。")
        before = {"reply": row.reply, "handled": row.handled}
        row.reply, row.replied_at, row.replied_by = text, now, by[:64]
        if handled and not row.handled:
            row.handled, row.handled_at, row.handled_by = True, now, by[:64]
        await outbox.enqueue(s, openid=row.openid, kind="feedback_reply", payload={"text": reply_text(row.title, text)},
                             client_msg_id=outbox.client_msg_id("feedback", row.id, int(now.timestamp()), row.openid),
                             priority=outbox.PRIORITY_OWN, due_at=now)
        if audit is not None:
            audit(s, before, {"reply": text, "handled": row.handled})
    return await get(db, feedback_id)


async def set_handled(db: Database, feedback_id: int, handled: bool, *, by: str, now: dt.datetime | None = None,
                      audit: Any = None) -> None:
    now = now or utcnow()
    async with db.session() as s, s.begin():
        row = await s.get(Feedback, feedback_id, with_for_update=True)
        if row is None:
            raise FeedbackError(f"反馈 #{feedback_id} 不存在。")
        before = {"handled": row.handled}
        row.handled = handled
        row.handled_at, row.handled_by = (now, by[:64]) if handled else (None, None)
        if audit is not None:
            audit(s, before, {"handled": handled})
