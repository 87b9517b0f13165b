"""Consultation in chat: a free-text question goes to the FAQ (dialogs/faq); a question that is
really a request ("我想申请免考", "我英语二多少分") becomes the intent that does it."""
from __future__ import annotations

import logging
from typing import Optional

from dialogs.engine import Ctx
from dialogs.faq import ANSWER, SUGGEST, FaqService, format_answer, format_none, format_suggestions
from dialogs.types import Reply

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


class Consultant:
    def __init__(self, service: FaqService) -> None:
        self.service = service

    async def __call__(self, ctx: Ctx, text: str) -> Optional[Answer]:
        m = self.service.match(text)
        if m.kind == ANSWER and m.entry is not None:
            if m.action:
                intent = ALIASES.get(m.action, m.action)
                arg = m.course.code if (m.course is not None and intent == "query:course_score") else ""
                return Answer(format_answer(m.entry), intent=intent, arg=arg)
            return Answer(format_answer(m.entry))
        if m.kind == SUGGEST and m.suggestions:
            options = [[f"faq:{e.id}", ""] for e in m.suggestions[:3]]
            return Answer(format_suggestions(m.suggestions), pending={"options": options})
        return Answer(format_none())

    def entry(self, entry_id: str) -> Optional[Answer]:
        """The answer to a suggestion the user picked by number."""
        e = self.service.get(entry_id)
        if e is None:
            return None
        if e.action:
            return Answer(format_answer(e), intent=ALIASES.get(e.action, e.action))
        return Answer(format_answer(e))
