"""The small flow docs/dialogs.md walks through (tests/test_engine.py runs it): a 情况说明 for
each missing course, asked by a `Loop` over a component, after a yes/no that may call the contact
update, and a last confirmation. Not registered in the service."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from dialogs import fields as F
from dialogs.components.contact import CONTACT_UPDATE
from dialogs.engine import END, Call, Component, Ctx, Flow, Loop, Step


@dataclass
class Note:  # the component's working data, and what it returns
    course: str = ""
    text: str = ""


async def write(ctx: Ctx, text: str) -> str:
    ctx.state.text = text  # the component returns its state (Flow.submit can return something else)
    return text


EXPLAIN = Component("explain_one", "情况说明", state=Note, steps=[
    Step("text", "情况说明", F.Text(min_len=5, max_len=300),
         lambda ctx: f"请写明「{ctx.state.course}」未通过但符合要求的情况说明（5到300字）：", check=write),
])


@dataclass
class Explaining:  # the flow's working data, kept by the engine between messages
    missing: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    contact: str = ""


async def begin(ctx: Ctx) -> Optional[str]:
    ctx.state.missing = ["00015 英语(二)", "03708 中国近现代史纲要"]  # a real flow reads storage/
    return None


async def unexplained(ctx: Ctx) -> list[str]:
    return [c for c in ctx.state.missing if c not in ctx.state.notes]


async def keep(ctx: Ctx, course: str, note: Note) -> None:
    ctx.state.notes[course] = note.text


def review(ctx: Ctx) -> str:
    lines = [ctx.state.contact, "请核对情况说明："]
    lines += [f"{course}：{text}" for course, text in ctx.state.notes.items()]
    return "\n".join([*filter(None, lines), "确认提交吗？（回复“否”重写）"])


async def restart(ctx: Ctx, yes: bool) -> bool:
    if not yes:
        ctx.state.notes = {}  # the loop finds every course unexplained again
    return yes


async def submit(ctx: Ctx) -> str:
    return f"已提交{len(ctx.state.notes)}份情况说明。"


EXAMPLE = Flow(
    name="explain", title="情况说明", state=Explaining, begin=begin, submit=submit, confirm=False,
    needs_binding=True,
    steps=[
        Step("phone", "手机号码", F.YesNo(), "审核结果会短信通知。您的手机号码还在用吗？",
             go={True: "notes", False: "contact"}),
        Call("contact", CONTACT_UPDATE, go=lambda ctx, done: setattr(ctx.state, "contact", done) or "notes"),
        Loop("notes", over=unexplained, body=EXPLAIN, args=lambda ctx, course: Note(course), each=keep),
        Step("sure", "确认", F.YesNo(), review, check=restart, go={True: END, False: "notes"}),
    ],
)
