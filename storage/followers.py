"""The followers of the account (wechat_users) as the dialogs need them: who each one is and where
their conversation is (read for every message), following and unfollowing, the notice opt-out."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from sqlalchemy import ARRAY, String, any_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.db import Database
from storage.models import DialogState, WechatUser, utcnow


@dataclass(frozen=True)
class Peek:
    """A follower's binding and dialog state, as read in one statement for a batch of openids."""

    openid: str
    candidate_id: Optional[int]
    admission_number: Optional[str]
    has_state: bool  # a dialog_states row exists
    flow: Optional[str]
    step: Optional[str]
    data: dict[str, Any]
    expires_at: Optional[dt.datetime]


# Built once: this runs for every message. Every follower has a wechat_users row from their first
# message on (the edge records each interaction); a dialog state without one is read under the
# step lock anyway.
def _peek(ids):
    return (
        select(WechatUser.openid, WechatUser.candidate_id, WechatUser.active_admission_number,
               DialogState.openid.is_not(None).label("has_state"), DialogState.flow, DialogState.step,
               DialogState.data, DialogState.expires_at)
        .outerjoin(DialogState, DialogState.openid == WechatUser.openid)
        .where(ids(WechatUser.openid))
    )


# An expanding IN on SQLite; `= ANY(array)` on PostgreSQL: one statement text for every batch
# size, so asyncpg prepares it once per connection.
_PEEK = {
    "sqlite": _peek(lambda col: col.in_(bindparam("ids", expanding=True))),
    "postgresql": _peek(lambda col: col == any_(bindparam("ids", type_=ARRAY(String)))),
}


async def peek_on(conn: AsyncConnection, openids: Sequence[str]) -> dict[str, Peek]:
    """The followers among `openids`, on the caller's connection (the edge's dedupe round trip)."""
    stmt = _PEEK["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    rows = (await conn.execute(stmt, {"ids": list(dict.fromkeys(openids))})).all()
    return {r.openid: Peek(r.openid, r.candidate_id, r.active_admission_number, bool(r.has_state), r.flow, r.step,
                           dict(r.data or {}), r.expires_at) for r in rows}


async def peek(db: Database, openids: Sequence[str]) -> dict[str, Peek]:
    # A Core connection, not an ORM session: this runs for every message.
    async with db.engine.connect() as conn:
        return await peek_on(conn, openids)


async def set_subscribed(db: Database, openid: str, subscribed: bool, *, now: Optional[dt.datetime] = None) -> None:
    """Record a follow or an unfollow (the row is created on a first follow)."""
    now = now or utcnow()
    values = {"subscribed": subscribed, ("subscribed_at" if subscribed else "unsubscribed_at"): now}
    stmt = db.insert(WechatUser).values(openid=openid, **values)
    async with db.session() as s, s.begin():
        await s.execute(stmt.on_conflict_do_update(index_elements=["openid"], set_=values))


async def set_notices_opt_out(db: Database, openid: str, opt_out: bool) -> bool:
    """Store the choice; returns whether it changed (a follower starts with notices on)."""
    table = WechatUser.__table__
    async with db.session() as s, s.begin():
        before = await s.scalar(select(table.c.notices_opt_out).where(table.c.openid == openid).with_for_update())
        # An upsert: the follower's row may be written concurrently by the edge (last interaction).
        await s.execute(
            db.insert(table).values(openid=openid, notices_opt_out=opt_out)
            .on_conflict_do_update(index_elements=["openid"], set_={"notices_opt_out": opt_out})
        )
    return bool(before) != opt_out
