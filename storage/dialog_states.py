"""The dialog_states row of each user: read and leased in one statement, written back with the
lease released (dialogs/state.py holds the step lock built on these)."""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import and_, or_, update

from storage import followers
from storage.db import Database
from storage.models import DialogState, WechatUser, utcnow

_COLUMNS = (DialogState.flow, DialogState.step, DialogState.data, DialogState.expires_at, DialogState.applied_key,
            DialogState.applied_reply)


async def take_lease(db: Database, openid: str, owner: str, seconds: float) -> Optional[Any]:
    """Lease the user's row to `owner` and read it: the row (flow, step, data, expires_at,
    applied_key, applied_reply), an
    empty row just created, or None while someone else's lease runs."""
    now = utcnow()
    until = now + dt.timedelta(seconds=seconds)
    take = (
        update(DialogState)
        .where(DialogState.openid == openid, or_(DialogState.locked_by.is_(None), DialogState.locked_until < now))
        .values(locked_by=owner, locked_until=until)
        .returning(*_COLUMNS)
    )
    async with db.session() as s, s.begin():
        row = (await s.execute(take)).first()
        if row is not None:
            return row
        # No row yet: create it already leased (a concurrent creator makes this a no-op).
        created = await s.execute(
            db.insert(DialogState)
            .values(openid=openid, data={}, locked_by=owner, locked_until=until, updated_at=now)
            .on_conflict_do_nothing(index_elements=["openid"])
        )
        if created.rowcount != 1:
            return None
        # The router's batched read starts from wechat_users: make sure the follower has a
        # row (a menu click can come before any text message).
        await s.execute(db.insert(WechatUser).values(openid=openid).on_conflict_do_nothing(index_elements=["openid"]))
        return DialogState(flow=None, step=None, data={}, expires_at=None, applied_key=None, applied_reply=None)


async def renew_lease(db: Database, openid: str, owner: str, seconds: float) -> bool:
    """Extend `owner`'s lease by `seconds` from now; False when the lease was lost."""
    async with db.session() as s, s.begin():
        held = await s.execute(update(DialogState).where(DialogState.openid == openid, DialogState.locked_by == owner)
                               .values(locked_until=utcnow() + dt.timedelta(seconds=seconds)))
    return held.rowcount == 1


async def release(db: Database, openid: str, owner: str, state: Optional[dict[str, Any]]) -> None:
    """End `owner`'s lease; with `state` (flow, step, data, expires_at, and applied_key /
    applied_reply when a message's step changed it) the row is written too, in one statement."""
    values: dict[str, Any] = {"locked_by": None, "locked_until": None}
    if state is not None:
        values.update(state, updated_at=utcnow(), version=DialogState.version + 1)
    async with db.session() as s, s.begin():
        await s.execute(update(DialogState).where(and_(DialogState.openid == openid, DialogState.locked_by == owner))
                        .values(**values))
    if state is not None:
        await followers.changed(db, [openid])
