"""What the candidate reads from the consultation service: an answer, a numbered list, or "not sure"."""
from __future__ import annotations

from typing import Sequence

from dialogs.faq.facts import CONTACT_PHONE
from dialogs.faq.index import Entry

SUGGEST_HEAD = "你是不是想问："
SUGGEST_TAIL = "回复数字查看"
NOT_SURE = (
    "抱歉，这个问题我还不能确定怎么回答。\n"
    "您可以换个说法再问，或回复“反馈建议”留下问题，我们会尽快联系您；\n"
    f"也可致电技术咨询 {CONTACT_PHONE}。"
)


def format_answer(entry: Entry) -> str:
    return entry.answer


def format_suggestions(entries: Sequence[Entry]) -> str:
    """"你是不是想问：" with the entries' first questions numbered from 1 (at most 3)."""
    lines = [SUGGEST_HEAD]
    lines += [f"{n}. {e.title}" for n, e in enumerate(entries[:3], 1)]
    lines.append(SUGGEST_TAIL)
    return "\n".join(lines)


def format_none() -> str:
    return NOT_SURE


REFERRAL = (
    "这个问题不在本服务的办理范围（如报名、考场、考试费用），请以上海市教育考试院的通知为准"
    "（上海招考热线 www.shmeea.edu.cn）。\n"
    f"也可回复“反馈建议”留下问题，或致电技术咨询 {CONTACT_PHONE}。"
)


def format_refer(entry: Entry | None) -> str:
    """A topic outside the manuals: the referral entry's text, or the general referral."""
    return entry.answer if entry is not None else REFERRAL
