"""Consultation in chat: a free-text question goes to the FAQ (dialogs/faq).

- A question ("免考要什么材料", "怎么看站内消息", "能同时毕业两个专业吗") is answered with the entry's
  text; the flow or query behind the entry is offered after it ("回复“免考”开始办理。"), never started.
- A request ("我想申请免考", "查成绩", "我英语二多少分") becomes the intent that does it.
- An entry about a business's dates carries the live window of that business (the same data the
  flow checks), so the answer and the behaviour never disagree.
- Out-of-scope topics (报名, 考场 ...) get a referral; "not sure" offers up to three numbered suggestions.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Optional

from dialogs import menu
from dialogs.engine import Ctx, join
from dialogs.faq import (
    ANSWER, REFER, SUGGEST, Entry, FaqService, format_answer, format_none, format_refer, format_suggestions,
)
from dialogs.faq.facts import WINDOW_OF_BUSINESS
from dialogs.faq.understand import is_question
from dialogs.types import Reply
from storage import applications as apps
from storage.outbox import shanghai_time

log = logging.getLogger("zikao.consult")

# FAQ action names that the router knows under another name.
ALIASES = {"flow:profile": "query:profile"}


class Answer(Reply):
    """A consultation reply; `intent` asks the router to run that instead, `pending` to remember
    numbered suggestions for the next message."""

    def __init__(self, text: str = "", *, intent: Optional[str] = None, arg: str = "",
                 pending: Optional[dict] = None) -> None:
        super().__init__(text)
        self.intent = intent
        self.arg = arg
        self.pending = pending


def keyword_for(intent: str) -> Optional[str]:
    """The shortest keyword the router maps to `intent` ("flow:exemption" -> "免考"), if any."""
    words = [w for w, i in menu.KEYWORDS.items() if i == intent and not w.isascii()]
    return min(words, key=len) if words else None


def offer_line(intent: Optional[str], answer: str) -> str:
    """"回复“免考”开始办理。" for a flow, "回复“站内消息”查看。" for a query; nothing when the answer
    already says which word to reply."""
    if not intent:
        return ""
    word = keyword_for(intent)
    if word is None or f"回复“{word}”" in answer:
        return ""
    return f"回复“{word}”开始办理。" if intent.startswith("flow:") else f"回复“{word}”查看。"


async def window_line(ctx: Ctx, entry: Entry) -> str:
    """For an entry about when a business can be done (its action shows the windows): the business's
    window as the flow sees it."""
    kind = WINDOW_OF_BUSINESS.get(entry.business)
    if entry.action != "query:windows" or kind is None or ctx.db is None:
        return ""
    try:
        check = await apps.business_window(ctx.db, kind, ctx.now)
    except Exception:  # the answer itself stands without the live dates
        log.exception("window of %s for a consultation answer", kind)
        return ""
    if check.open is not None:
        return (f"当前：{apps.kind_name(kind)}正在开放，{shanghai_time(check.open.opens_at)} 至 "
                f"{shanghai_time(check.open.closes_at)}。")
    return "当前：" + apps.window_closed_text(check)


class Consultant:
    def __init__(self, service: FaqService) -> None:
        self.service = service

    async def __call__(self, ctx: Ctx, text: str, *, context: str = "") -> Optional[Answer]:
        """`context`: the keyword of the business being done ("论文"), for a question asked in the
        middle of it: a question naming no business is read as about that one when that gives an
        answer ("要交什么材料" inside 论文 is not about 免考), and the answer does not offer to
        start what is already running."""
        if not getattr(self.service, "ready", True):
            # The service warms the index in a thread after start-up: wait there, off the loop.
            await asyncio.to_thread(self.service.warm)
        m = self.service.match(text)
        if context and not m.businesses:
            within = self.service.match(context + text)
            if within.kind == ANSWER:
                m = within
        if m.kind == ANSWER and m.entry is not None:
            action = ALIASES.get(m.entry.action, m.entry.action) if m.entry.action else None
            if action and not is_question(text):
                # A request: do it (the router binds first when the intent needs it).
                arg = m.course.code if (m.course is not None and action == "query:course_score") else ""
                return Answer(format_answer(m.entry), intent=action, arg=arg)
            offer = "" if context and action and keyword_for(action) == context else offer_line(action, m.entry.answer)
            return Answer(join(format_answer(m.entry), await window_line(ctx, m.entry), offer))
        if m.kind == REFER:
            return Answer(format_refer(m.entry))
        if m.kind == SUGGEST and m.suggestions:
            options = [[f"faq:{e.id}", ""] for e in m.suggestions[:3]]
            return Answer(format_suggestions(m.suggestions), pending={"options": options})
        return Answer(format_none())

    def entry(self, entry_id: str) -> Optional[Answer]:
        """The answer to a suggestion the user picked by number: the answer, its action offered after it."""
        e = self.service.get(entry_id)
        if e is None:
            return None
        action = ALIASES.get(e.action, e.action) if e.action else None
        return Answer(join(format_answer(e), offer_line(action, e.answer)))
