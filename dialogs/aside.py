"""A question typed in the middle of a flow step ("00015成绩", "免考需要什么材料"): recognised, and
answered by the same query and FAQ the router uses outside flows, about the running flow's business
when the question names no other; the engine then asks the step again (dialogs/engine.py,
`Engine.aside`). Only what is clearly a question or a query counts: a
remark, a number or a name stays the step's answer."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional

from dialogs import fields as F
from dialogs.consult import keyword_for
from dialogs.engine import Ctx
from dialogs.faq import format_none
from storage.queries import has_intent

if TYPE_CHECKING:  # pragma: no cover
    from dialogs.router import Router

_QUESTION = re.compile(r"[?？]$|[吗呢么]$|什么|怎么|怎样|如何|为什么|为何|多少|哪些|哪里|哪个|几[时天月年号点门张份]"
                       r"|能不能|可不可以|是否|需不需要|要不要|有没有|请问")


def is_question(text: str) -> bool:
    """Whether the text reads as a question (question mark, 吗/呢, or an interrogative word)."""
    return bool(_QUESTION.search(text))


def answerer(router: "Router"):
    """The engine's `aside` for this router: its course-score query, then its FAQ."""

    async def aside(ctx: Ctx, text: str) -> Optional[str]:
        t = F.clean(text)
        if len(t) < 2:
            return None
        course = router.queries.get("query:course_score")
        if course is not None and ctx.user.bound and has_intent(t):
            reply = await course[0](ctx, t)
            if reply is not None and reply.text:
                return reply.text
        if router.faq is not None and is_question(t):
            # "要交什么材料" inside 论文 asks about 论文: the running flow's keyword is the context.
            reply = await router.faq(ctx, t, context=(keyword_for(f"flow:{ctx.flow}") or "") if ctx.flow else "")
            # Only a confident answer: numbered suggestions would collide with the step's numbers.
            if reply is not None and reply.text and not reply.pending and reply.text != format_none():
                return reply.text
        return None

    return aside
