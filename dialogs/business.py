"""Businesses whose WeChat flow is not built yet: say when the office accepts them and where to go.

Each is registered under its flow intent (``flow:graduation`` ...); when a module registers the
real flow under the same name, the router prefers the flow (see `Router.add_flow`).
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Optional

from sqlalchemy import select

from dialogs.engine import Ctx
from dialogs.types import Reply
from storage.models import BusinessWindow
from storage.vocab import WINDOW_KINDS

if TYPE_CHECKING:  # pragma: no cover
    from dialogs.router import Router

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
PLATFORM = "请登录上海市高等教育自学考试考生服务平台办理。"


def when(t: dt.datetime) -> str:
    local = t.astimezone(SHANGHAI)
    return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"


async def window_of(ctx: Ctx, kind: str) -> tuple[Optional[BusinessWindow], bool]:
    """The window open now for `kind` (True), else the next one to open (False), else (None, False)."""
    async with ctx.db.session() as s:
        open_now = (await s.scalars(
            select(BusinessWindow).where(BusinessWindow.kind == kind, BusinessWindow.opens_at <= ctx.now,
                                         BusinessWindow.closes_at > ctx.now)
            .order_by(BusinessWindow.closes_at).limit(1)
        )).first()
        if open_now is not None:
            return open_now, True
        upcoming = (await s.scalars(
            select(BusinessWindow).where(BusinessWindow.kind == kind, BusinessWindow.opens_at > ctx.now)
            .order_by(BusinessWindow.opens_at).limit(1)
        )).first()
    return upcoming, False


def window_line(w: Optional[BusinessWindow], is_open: bool) -> str:
    if w is None:
        return "本次暂未安排办理时间，开放时会通知您。"
    if is_open:
        return f"正在开放，截止到 {when(w.closes_at)}。"
    return f"暂未开放，{when(w.opens_at)} 开始办理。"


def _not_in_wechat(kind: str):
    async def answer(ctx: Ctx, arg: str) -> Reply:
        w, is_open = await window_of(ctx, kind)
        title = WINDOW_KINDS[kind]
        return Reply(f"【{title}】\n{window_line(w, is_open)}\n微信中暂时还不能办理这项业务，{PLATFORM}")
    return answer


NOT_YET = ("exemption", "backfill", "thesis", "graduation", "degree", "transfer_out", "transfer_in")


def register(router: "Router") -> None:
    for kind in NOT_YET:
        router.add_query(f"flow:{kind}", _not_in_wechat(kind), needs_binding=False)
