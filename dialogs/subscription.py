"""Turning notice pushes off and on ("退订通知" / "订阅通知"); review outcomes always arrive."""
from __future__ import annotations

import re

from dialogs.types import Message, Reply
from storage.db import Database
from storage.followers import set_notices_opt_out

# Words that turn notices (exam notices, score releases, business reminders) off or on.
OPT_OUT_WORDS = frozenset({
    "退订通知", "取消通知", "关闭通知", "不要通知", "停止通知", "屏蔽通知", "退订推送", "关闭推送",
    "取消推送", "不再接收通知", "取消订阅通知", "td",
})
OPT_IN_WORDS = frozenset({
    "订阅通知", "开启通知", "打开通知", "接收通知", "恢复通知", "重新订阅通知", "开启推送", "打开推送",
    "恢复推送",
})

OPTED_OUT = (
    "已为您关闭考试通知、成绩发布和业务办理提醒。\n"
    "您本人申请的审核结果仍会照常通知。\n"
    "回复“订阅通知”可重新开启。"
)
ALREADY_OUT = "您已关闭通知，无需重复操作。\n审核结果仍会照常通知；回复“订阅通知”可重新开启。"
OPTED_IN = (
    "已为您开启通知：考试通知、成绩发布和业务办理提醒会及时推送给您。\n"
    "回复“退订通知”可关闭（审核结果始终会通知）。"
)
ALREADY_IN = "您已开启通知，无需重复操作。\n回复“退订通知”可关闭（审核结果始终会通知）。"

_NOISE = re.compile(r"[\s\u3000。，,.!！?？~～“”\"']+")


def wants(msg: Message) -> bool | None:
    """True: turn notices off; False: turn them on; None: not about notices."""
    if msg.kind != "text":
        return None
    word = _NOISE.sub("", msg.text).lower()
    if word in OPT_OUT_WORDS:
        return True
    if word in OPT_IN_WORDS:
        return False
    return None


async def handle(db: Database, msg: Message, opt_out: bool) -> Reply:
    changed = await set_notices_opt_out(db, msg.openid, opt_out)
    if opt_out:
        return Reply(OPTED_OUT if changed else ALREADY_OUT)
    return Reply(OPTED_IN if changed else ALREADY_IN)
