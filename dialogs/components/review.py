"""The review every application ends with: a status head, a nested summary where "修改 N" (or
"修改 N.M" / "修改 N①" for line M under N: one evidence of one course) reaches any answer, and
the caller's actions (submit, save a draft, leave ...). Returns what was picked (`Picked`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from dialogs import fields as F
from dialogs.engine import Component, Ctx, Done, Step, edit_number
from dialogs.fields import Invalid

CIRCLED = "①②③④⑤⑥⑦⑧⑨⑩"


def circled(i: int) -> str:
    return CIRCLED[i] if i < len(CIRCLED) else f"({i + 1})"


@dataclass
class Line:
    text: str
    target: str = ""  # the caller's name for what 修改 N changes; "" for a line not to change
    sub: list["Line"] = field(default_factory=list)  # lines under it, numbered ① ②


@dataclass
class ReviewState:
    head: list[str] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    options: list[list[str]] = field(default_factory=list)  # [value, label]


@dataclass
class Picked:
    action: str  # an option's value, or "change" (修改 N) with `target`
    target: str = ""

    @property
    def key(self) -> str:  # what a route table matches
        return self.action


class _Answer(F.Choice):
    """An option by number or name, or 修改 N."""

    def parse_text(self, text: str) -> str:
        if edit_number(text) is not None:
            return text
        return super().parse_text(text)


def _numbered(st: ReviewState) -> list[Line]:
    return [ln for ln in st.lines if ln.target]


def _prompt(ctx: Ctx) -> str:
    st: ReviewState = ctx.state
    out = [x for x in st.head if x]
    n = 0
    for ln in st.lines:
        if ln.target:
            n += 1
            out.append(f"{n}. {ln.text}")
        else:
            out.append(ln.text)
        out += [f"　{circled(i)} {s.text}" for i, s in enumerate(ln.sub)]
    out += st.tail
    if n:
        out.append("要修改某一项，回复“修改”加序号（如“修改 1”）。请选择：")
    else:
        out.append("请选择：")
    return "\n".join(out)


async def _options(ctx: Ctx) -> list[F.Option]:
    return [(v, label) for v, label in ctx.state.options]


async def _check(ctx: Ctx, value: str) -> str:
    st: ReviewState = ctx.state
    picked = edit_number(value)
    if picked is None:
        raise Done(Picked(value))
    lines = _numbered(st)
    n, m = picked
    if not 1 <= n <= len(lines):
        raise Invalid(f"没有第{n}项，请回复“修改”加序号（1到{len(lines)}）。")
    line = lines[n - 1]
    if m is not None:
        if not 1 <= m <= len(line.sub):
            raise Invalid(f"第{n}项下没有第{m}份，请回复如“修改 {n}.1”。")
        line = line.sub[m - 1]
    raise Done(Picked("change", line.target))


REVIEW = Component("review", "核对", state=ReviewState, steps=[
    Step("pick", "核对", _Answer(), _prompt, options=_options, check=_check, retry="请回复序号，或“修改 N”。"),
])


def options(status: Optional[str], *middle: F.Option) -> list[list[str]]:
    """提交 (worded for the status), the caller's own actions, then 离开."""
    submit = {"rejected": "确认重新提交", "submitted": "确认提交修改"}.get(status or "", "确认提交")
    leave = "不修改，退出" if status == "submitted" else "先保存，以后再办"
    return [["submit", submit], *[list(o) for o in middle], ["leave", leave]]
