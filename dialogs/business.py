"""Businesses whose WeChat flow is not built yet: say when the office accepts them and where to go.

Each is registered under its flow intent (``flow:graduation`` ...); when a module registers the
real flow under the same name, the router prefers the flow (see `Router.add_flow`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from dialogs.engine import Ctx
from dialogs.types import Reply
from storage.applications import WindowCheck, business_window
from storage.outbox import shanghai_time
from storage.vocab import WINDOW_KINDS

if TYPE_CHECKING:  # pragma: no cover
    from dialogs.router import Router

PLATFORM_URL = "http://ste.shmeea.edu.cn"  # the platform's address, from its candidate manual
PLATFORM = f"请在电脑上登录上海市高等教育自学考试考生服务平台（{PLATFORM_URL}）办理。"


def window_line(check: WindowCheck) -> str:
    if check.open is not None:
        return f"正在开放，截止到 {shanghai_time(check.open.closes_at)}。"
    if check.next is not None:
        return f"暂未开放，{shanghai_time(check.next.opens_at)} 开始办理。"
    return "本次暂未安排办理时间，开放时会通知您。"


def _not_in_wechat(kind: str):
    async def answer(ctx: Ctx, arg: str) -> Reply:
        check = await business_window(ctx.db, kind, ctx.now)
        return Reply(f"【{WINDOW_KINDS[kind]}】\n{window_line(check)}\n微信中暂时还不能办理这项业务，{PLATFORM}")
    return answer


NOT_YET = ("exemption", "backfill", "graduation", "degree", "transfer_out", "transfer_in")


def register(router: "Router") -> None:
    for kind in NOT_YET:
        router.add_query(f"flow:{kind}", _not_in_wechat(kind), needs_binding=False)
