"""The one engine that runs every guided flow: flows are data (ordered steps of typed fields).

A `Flow` lists its `Step`s in order; the engine asks each step's question, parses the answer
with the step's field, runs the step's check, and moves on. It also owns what every flow needs
and none should write twice: 取消 / 返回 / 帮助 / 继续 at any step, a reason and the same question
after a wrong answer (with a way out after several), a summary with 确认 and 修改 N before any
submission, interruptions by queries, pausing one flow for another, expiry after inactivity.
"""
from __future__ import annotations

import copy
import datetime as dt
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional, Sequence, Union

from dialogs import fields as F
from dialogs.fields import Invalid
from dialogs.state import Conversation
from dialogs.types import Message, Reply
from storage.db import Database

log = logging.getLogger("zikao.engine")

CANCEL_WORDS = frozenset({"取消", "退出", "取消办理", "不办了"})
BACK_WORDS = frozenset({"返回", "上一步", "后退"})
HELP_WORDS = frozenset({"帮助", "菜单", "help", "?", "？"})
RESUME_WORDS = frozenset({"继续", "继续办理"})
CONFIRM_WORDS = frozenset({"确认", "确定", "确认提交", "提交", "是", "好的"})

MAX_FAILURES = 3
SUMMARY = "__summary__"


class EndFlow(Exception):
    """Raised by a hook to finish the flow now with `text` (e.g. binding locked, or done early)."""

    def __init__(self, text: str, *, then: Optional[str] = None) -> None:
        super().__init__(text)
        self.text = text
        self.then = then  # an intent to run after the flow ends


@dataclass
class User:
    """Who is talking: the openid and, once bound, the candidate and the active 准考证号."""

    openid: str
    candidate_id: Optional[int] = None
    admission_number: Optional[str] = None

    @property
    def bound(self) -> bool:
        return self.candidate_id is not None


@dataclass
class Ctx:
    """What a hook sees: the user, this flow's answers and scratch data, and the services."""

    db: Database
    user: User
    services: Any
    now: dt.datetime
    msg: Message
    answers: dict[str, Any] = field(default_factory=dict)
    scratch: dict[str, Any] = field(default_factory=dict)


Text = Union[str, Callable[[Ctx], Union[str, Awaitable[str]]]]
Hook = Callable[..., Awaitable[Any]]


@dataclass
class Step:
    name: str
    label: str  # how the answer is named in the summary: "证件号码"
    field: F.Field
    prompt: Text
    when: Optional[Callable[[Ctx], bool]] = None  # asked only when true
    options: Optional[Callable[[Ctx], Awaitable[Sequence[F.Option]]]] = None  # for Choice / MultiChoice
    # check(ctx, value) -> value to keep (maybe transformed); raise Invalid to refuse, EndFlow to stop.
    check: Optional[Hook] = None
    # after(ctx, value) -> the name of the next step, or None for the next in order.
    after: Optional[Hook] = None
    in_summary: bool = True
    secret: bool = False  # the value goes to `check` and is never kept

    def field_show(self, ctx: Ctx) -> str:
        """The current answer as the summary shows it (choices by the labels the user saw)."""
        f = self.field
        opts = ctx.scratch.get("options", {}).get(self.name)
        if opts is not None:
            f = copy.copy(f)
            f.options = [tuple(o) for o in opts]  # type: ignore[attr-defined]
        return f.show(ctx.answers.get(self.name))


@dataclass
class Flow:
    name: str  # "bind", "exemption" ...
    title: str  # what the candidate reads: "绑定考生信息"
    steps: list[Step]
    submit: Hook  # submit(ctx) -> the text to answer; raise Invalid to go back to the summary
    confirm: bool = True  # a summary with 确认 / 修改 N before submit
    needs_binding: bool = True
    # begin(ctx) -> None to start, or a text saying why not (window closed, already done ...).
    begin: Optional[Hook] = None
    intro: str = ""
    summary_note: str = ""
    # left_note(scratch) -> what 取消 and expiry say about the answers, instead of "填写的内容没有
    # 保存。" (flows that save a draft as they go: "已填写的内容保存在草稿中 ...").
    left_note: Optional[Callable[[dict[str, Any]], Optional[str]]] = None

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"{self.name} has no step {name}")


async def _text(t: Text, ctx: Ctx) -> str:
    if callable(t):
        r = t(ctx)
        return await r if inspect.isawaitable(r) else r
    return t


class Engine:
    """Runs flows over a `Conversation`; the caller holds the user's lock and saves it."""

    def __init__(self, flows: Sequence[Flow], *, timeout: dt.timedelta = dt.timedelta(minutes=30),
                 help_text: str = "") -> None:
        self.flows = {f.name: f for f in flows}
        self.timeout = timeout
        self.help_text = help_text

    def add(self, flow: Flow) -> None:
        self.flows[flow.name] = flow

    # --- the conversation's data -----------------------------------------------------------

    @staticmethod
    def _data(conv: Conversation) -> dict[str, Any]:
        d = conv.data
        d.setdefault("answers", {})
        d.setdefault("scratch", {})
        d.setdefault("history", [])
        d.setdefault("failures", 0)
        return d

    def _ctx(self, base: Ctx, conv: Conversation) -> Ctx:
        d = self._data(conv)
        base.answers, base.scratch = d["answers"], d["scratch"]
        return base

    def _touch(self, conv: Conversation, now: dt.datetime) -> None:
        conv.expires_at = now + self.timeout

    def _clear(self, conv: Conversation) -> None:
        keep = {k: conv.data[k] for k in ("paused",) if conv.data.get(k)}
        conv.flow, conv.step, conv.expires_at = None, None, None
        conv.data = keep

    def flow_of(self, conv: Conversation) -> Optional[Flow]:
        return self.flows.get(conv.flow) if conv.flow else None

    # --- starting, pausing, resuming -------------------------------------------------------

    async def start(self, flow_name: str, conv: Conversation, ctx: Ctx, *, prefix: str = "",
                    scratch: Optional[dict[str, Any]] = None) -> Reply:
        flow = self.flows[flow_name]
        note = ""
        if conv.active and conv.flow != flow_name:
            note = self._pause(conv)
        elif conv.active:
            self._clear(conv)  # starting the same flow again begins afresh
        conv.flow = flow.name
        conv.data = {"paused": conv.data.get("paused", []), "answers": {}, "scratch": dict(scratch or {}),
                     "history": [], "failures": 0}
        ctx = self._ctx(ctx, conv)
        if flow.begin is not None:
            try:
                refusal = await flow.begin(ctx)
            except EndFlow as e:
                refusal = e.text
            if refusal:
                self._clear(conv)
                return Reply(_join(prefix, note, refusal))
        self._touch(conv, ctx.now)
        first = self._next_step(flow, ctx, None)
        if first is None:
            return await self._after_last(flow, conv, ctx, prefix=_join(prefix, note, flow.intro))
        conv.step = first.name
        question = await self._question(first, ctx)
        return Reply(_join(prefix, note, flow.intro, question))

    def _pause(self, conv: Conversation) -> str:
        flow = self.flow_of(conv)
        paused = [p for p in conv.paused if p.get("flow") != conv.flow]
        paused.append({"flow": conv.flow, "step": conv.step, "data": {k: v for k, v in conv.data.items() if k != "paused"}})
        conv.data["paused"] = paused[-3:]
        return f"「{flow.title if flow else conv.flow}」已暂存，之后回复“继续”可以接着办理。"

    async def resume(self, conv: Conversation, ctx: Ctx, *, prefix: str = "") -> Reply:
        if conv.active:
            return await self.repeat(conv, ctx, prefix=prefix)
        while conv.paused:
            p = conv.paused.pop()
            if p.get("flow") in self.flows:
                conv.flow, conv.step = p["flow"], p["step"]
                conv.data = {**p["data"], "paused": conv.paused}
                self._touch(conv, ctx.now)
                title = self.flows[conv.flow].title
                return await self.repeat(conv, ctx, prefix=_join(prefix, f"接着办理「{title}」。"))
        return Reply(_join(prefix, "没有需要继续办理的业务。\n回复“帮助”查看可以办理的业务。"))

    def resume_offer(self, conv: Conversation) -> str:
        """A line offering the unfinished flow (active after an interruption, or paused)."""
        if conv.active:
            flow = self.flow_of(conv)
            return f"您的「{flow.title if flow else conv.flow}」还没办完，回复“继续”接着办理。"
        if conv.paused:
            name = conv.paused[-1].get("flow")
            flow = self.flows.get(name)
            return f"您还有未完成的「{flow.title if flow else name}」，回复“继续”接着办理。"
        return ""

    async def repeat(self, conv: Conversation, ctx: Ctx, *, prefix: str = "") -> Reply:
        flow = self.flow_of(conv)
        if flow is None:
            self._clear(conv)
            return Reply(prefix or "没有正在办理的业务。")
        ctx = self._ctx(ctx, conv)
        self._touch(conv, ctx.now)
        if conv.step == SUMMARY:
            return Reply(_join(prefix, await self._summary(flow, ctx)))
        return Reply(_join(prefix, await self._question(flow.step(conv.step), ctx)))

    def expire(self, conv: Conversation) -> str:
        """Ends a flow left unfinished past the timeout; the note for the user's next message."""
        flow = self.flow_of(conv)
        title = flow.title if flow else "业务"
        minutes = int(self.timeout.total_seconds() // 60)
        note = self._left_note(flow, conv) or "填写的内容没有保存。需要时可以重新办理。"
        self._clear(conv)
        return f"您上次的「{title}」超过{minutes}分钟没有继续，已自动结束，{note}"

    @staticmethod
    def _left_note(flow: Optional[Flow], conv: Conversation) -> Optional[str]:
        if flow is None or flow.left_note is None:
            return None
        return flow.left_note(conv.data.get("scratch") or {})

    # --- commands --------------------------------------------------------------------------

    def cancel(self, conv: Conversation) -> Reply:
        flow = self.flow_of(conv)
        if flow is None:
            if conv.paused:
                names = "、".join(f"「{self.flows[p['flow']].title}」" for p in conv.paused if p.get("flow") in self.flows)
                conv.data["paused"] = []
                return Reply(f"已取消暂存的{names}，填写的内容没有保存。")
            return Reply("当前没有正在办理的业务。\n如需解除绑定，请回复“解绑”。")
        note = self._left_note(flow, conv) or "填写的内容没有保存。"
        self._clear(conv)
        return Reply(_join(f"已取消「{flow.title}」，{note}", self.resume_offer(conv)))

    async def back(self, conv: Conversation, ctx: Ctx) -> Reply:
        flow = self.flow_of(conv)
        if flow is None:
            return Reply("当前没有正在办理的业务。")
        ctx = self._ctx(ctx, conv)
        d = self._data(conv)
        d["failures"] = 0
        d.pop("editing", None)
        if not d["history"]:
            return Reply(_join("已经是第一步了。", await self._question(flow.step(conv.step), ctx)))
        prev = flow.step(d["history"].pop())
        conv.step = prev.name
        self._touch(conv, ctx.now)
        earlier = ""
        if not prev.secret and prev.name in ctx.answers:
            earlier = f"上一步您填写的{prev.label}是：{prev.field_show(ctx)}\n重新回复即可修改。"
        return Reply(_join(earlier, await self._question(prev, ctx)))

    async def help(self, conv: Conversation, ctx: Ctx, menu_text: str) -> Reply:
        head = _join(self.help_text, menu_text)
        if not conv.active:
            return Reply(_join(head, self.resume_offer(conv)))
        flow = self.flow_of(conv)
        step_help = ""
        if flow is not None and conv.step not in (None, SUMMARY):
            step = flow.step(conv.step)
            if step.field.hint:
                step_help = f"填写说明：{step.field.hint}"
        rep = await self.repeat(conv, ctx, prefix=_join(head, f"您正在办理「{flow.title if flow else ''}」，"
                                                        "回复“取消”可退出。", step_help))
        return rep

    # --- answering the current step ---------------------------------------------------------

    async def answer(self, conv: Conversation, ctx: Ctx) -> Reply:
        """Feed the message to the current step of the active flow."""
        flow = self.flow_of(conv)
        assert flow is not None
        ctx = self._ctx(ctx, conv)
        self._touch(conv, ctx.now)
        if conv.step == SUMMARY:
            return await self._at_summary(flow, conv, ctx)
        step = flow.step(conv.step)
        d = self._data(conv)
        field_ = await self._field(step, ctx)
        try:
            value = field_.parse(ctx.msg)
            accumulating = getattr(field_, "accumulates", False)
            if accumulating and value == F.DONE:
                have = ctx.answers.get(step.name) or []
                if len(have) < getattr(field_, "min_count", 1):
                    raise Invalid(f"还需要至少{field_.min_count}张照片。")
                value = have
            elif step.check is not None:
                value = await step.check(ctx, value)
            if accumulating and ctx.msg.kind == "image":
                have = list(ctx.answers.get(step.name) or [])
                if len(have) >= field_.max_count:
                    raise Invalid(f"最多{field_.max_count}张照片，回复“完成”继续。")
                have.append(value)
                ctx.answers[step.name] = have
                d["failures"] = 0
                note = ctx.scratch.pop("photo_note", "")
                return Reply(_join(note, f"已收到第{len(have)}张照片。可以继续发送，发完请回复“完成”。"))
        except Invalid as e:
            return await self._wrong(conv, flow, step, ctx, e.reason)
        except EndFlow as e:
            self._clear(conv)
            if e.then:
                return _Then(e.text, e.then)
            return Reply(_join(e.text, self.resume_offer(conv)))
        d["failures"] = 0
        if not step.secret:
            ctx.answers[step.name] = value
        nxt_name = await step.after(ctx, value) if step.after is not None else None
        if d.get("editing") and flow.confirm and nxt_name is None:
            # Back to the summary, unless the change made another answer necessary
            # (e.g. a different 修改项目 needs its new value).
            missing = self._first_missing(flow, ctx)
            if missing is None:
                d.pop("editing")
                conv.step = SUMMARY
                return Reply(await self._summary(flow, ctx))
            conv.step = missing.name
            return Reply(await self._question(missing, ctx))
        d["history"].append(step.name)
        nxt = flow.step(nxt_name) if nxt_name else self._next_step(flow, ctx, step.name)
        if nxt is None:
            return await self._after_last(flow, conv, ctx)
        conv.step = nxt.name
        return Reply(await self._question(nxt, ctx))

    async def is_choice_answer(self, conv: Conversation, ctx: Ctx) -> bool:
        """Whether the text names an option of the current choice step (then it answers the step
        rather than being taken as a keyword)."""
        flow = self.flow_of(conv)
        if flow is None or conv.step in (None, SUMMARY):
            return False
        ctx = self._ctx(ctx, conv)
        field_ = await self._field(flow.step(conv.step), ctx)
        if not isinstance(field_, (F.Choice, F.MultiChoice)):
            return False
        text = F.clean(ctx.msg.text)
        return any(text in (value, label) for value, label in field_.options)

    async def _wrong(self, conv: Conversation, flow: Flow, step: Step, ctx: Ctx, reason: str) -> Reply:
        d = self._data(conv)
        d["failures"] += 1
        parts = [reason]
        hint = (await self._field(step, ctx)).hint
        if d["failures"] >= MAX_FAILURES:
            parts.append("好像不太顺利。回复“帮助”查看说明，回复“取消”退出办理，"
                         "或拨打技术咨询电话 400-0960-990。")
        elif hint and hint not in reason:
            parts.append(hint)
        parts.append(await self._question(step, ctx))
        return Reply(_join(*parts))

    def _first_missing(self, flow: Flow, ctx: Ctx) -> Optional[Step]:
        for s in flow.steps:
            if s.secret or s.name in ctx.answers:
                continue
            if s.when is None or s.when(ctx):
                return s
        return None

    def _next_step(self, flow: Flow, ctx: Ctx, after: Optional[str]) -> Optional[Step]:
        names = [s.name for s in flow.steps]
        start = names.index(after) + 1 if after else 0
        for s in flow.steps[start:]:
            if s.when is None or s.when(ctx):
                return s
        return None

    async def _after_last(self, flow: Flow, conv: Conversation, ctx: Ctx, prefix: str = "") -> Reply:
        if flow.confirm:
            conv.step = SUMMARY
            return Reply(_join(prefix, await self._summary(flow, ctx)))
        return await self._submit(flow, conv, ctx, prefix)

    async def _submit(self, flow: Flow, conv: Conversation, ctx: Ctx, prefix: str = "") -> Reply:
        try:
            text = await flow.submit(ctx)
        except Invalid as e:
            if flow.confirm:
                conv.step = SUMMARY
                return Reply(_join(prefix, e.reason, await self._summary(flow, ctx)))
            self._clear(conv)
            return Reply(_join(prefix, e.reason))
        except EndFlow as e:
            self._clear(conv)
            if e.then:
                return _Then(_join(prefix, e.text), e.then)
            return Reply(_join(prefix, e.text, self.resume_offer(conv)))
        then = ctx.scratch.get("then")
        self._clear(conv)
        if then:
            return _Then(_join(prefix, text), then)
        return Reply(_join(prefix, text, self.resume_offer(conv)))

    # --- summary ---------------------------------------------------------------------------

    def _summary_items(self, flow: Flow, ctx: Ctx) -> list[tuple[Step, str]]:
        items = []
        for s in flow.steps:
            if not s.in_summary or s.secret or s.name not in ctx.answers:
                continue
            if s.when is not None and not s.when(ctx):
                continue
            items.append((s, s.field_show(ctx)))
        return items

    async def _summary(self, flow: Flow, ctx: Ctx) -> str:
        lines = [f"请核对「{flow.title}」："]
        for i, (s, shown) in enumerate(self._summary_items(flow, ctx), 1):
            lines.append(f"{i}. {s.label}：{shown}")
        if flow.summary_note:
            lines.append(flow.summary_note)
        lines.append("无误请回复“确认”提交；\n要修改第N项，回复“修改 N”。")
        return "\n".join(lines)

    async def _at_summary(self, flow: Flow, conv: Conversation, ctx: Ctx) -> Reply:
        text = F.clean(ctx.msg.text) if ctx.msg.kind == "text" else ""
        if text in CONFIRM_WORDS:
            return await self._submit(flow, conv, ctx)
        items = self._summary_items(flow, ctx)
        norm = text.replace(" ", "")
        if norm.startswith(("修改", "改")):
            num = norm.removeprefix("修改").removeprefix("改").removeprefix("第").removesuffix("项")
            if num.isdigit() and 1 <= int(num) <= len(items):
                step = items[int(num) - 1][0]
                conv.step = step.name
                self._data(conv)["editing"] = True
                return Reply(_join(f"现在填写的{step.label}是：{step.field_show(ctx)}", await self._question(step, ctx)))
            return Reply(_join(f"请回复“修改”加序号，如“修改 1”（1到{len(items)}）。", await self._summary(flow, ctx)))
        return Reply(_join("请回复“确认”提交，或“修改 N”修改第N项。", await self._summary(flow, ctx)))

    # --- questions -------------------------------------------------------------------------

    async def _field(self, step: Step, ctx: Ctx) -> F.Field:
        if step.options is None:
            return step.field
        opts = ctx.scratch.get("options", {}).get(step.name)
        if opts is None:
            opts = [list(o) for o in await step.options(ctx)]
            ctx.scratch.setdefault("options", {})[step.name] = opts
        f = copy.copy(step.field)
        f.options = [tuple(o) for o in opts]  # type: ignore[attr-defined]
        return f

    async def _question(self, step: Step, ctx: Ctx) -> str:
        if step.options is not None:
            # Options are computed afresh each time the question is asked.
            ctx.scratch.setdefault("options", {}).pop(step.name, None)
        f = await self._field(step, ctx)
        q = await _text(step.prompt, ctx)
        if isinstance(f, (F.Choice, F.MultiChoice)):
            q = _join(q, F.numbered(f.options))
        return q


class _Then(Reply):
    """A reply after which the caller runs another intent (e.g. what was asked before binding)."""

    def __init__(self, text: str, then: str) -> None:
        super().__init__(text)
        self.then = then


def _join(*parts: str) -> str:
    return "\n\n".join(p for p in parts if p)


join = _join
