"""The one engine that runs every guided flow: a flow declares its steps and its route.

A `Flow` lists its steps in order. A `Step` asks one typed question (dialogs/fields.py); its
`go` says where the conversation goes next: by default the next step in order, or a named step,
a table from the answer to a step (python-telegram-bot's ConversationHandler shape), or a
function of the answer. Two more kinds of step compose dialogs (Bot Framework's
ComponentDialog): `Call` runs another dialog, a component, and continues with the typed value
it returns; `Loop` runs a component once for each item that still needs it. Running dialogs are
a call stack kept in the conversation, so a component can itself call another (an application
calls the evidence dialog, which calls the photos prompt).

Each dialog's working data is one dataclass (`state=`), restored before and stored after every
message (dialogs/typed.py). The engine also owns what every flow needs and none should write
twice: 取消 / 返回 / 帮助 / 继续 at any step, a reason and the same question after a wrong
answer (with a way out after several), a question typed in the middle of a step answered aside
(the step is asked again, nothing entered lost), a summary with 确认 and 修改 N, interruptions by
queries, pausing one flow for another, expiry after inactivity.
"""
from __future__ import annotations

import copy
import datetime as dt
import inspect
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Optional, Sequence, Union

from dialogs import fields as F
from dialogs import typed
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
END = "__end__"  # a route to the end of the dialog: a flow submits, a component returns


class EndFlow(Exception):
    """Raised by a hook to finish the flow now with `text` (e.g. binding locked, or done early)."""

    def __init__(self, text: str, *, then: Optional[str] = None) -> None:
        super().__init__(text)
        self.text = text
        self.then = then  # an intent to run after the flow ends


class Done(Exception):
    """Raised by a hook of a component to return `value` to its caller now."""

    def __init__(self, value: Any) -> None:
        super().__init__("done")
        self.value = value


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
    """What a hook sees: the user, the running dialog's answers and typed state, the services."""

    db: Database
    user: User
    services: Any
    now: dt.datetime
    msg: Message
    answers: dict[str, Any] = field(default_factory=dict)
    scratch: dict[str, Any] = field(default_factory=dict)
    state: Any = None  # the running dialog's working data (its `state` dataclass)
    flow: str = ""  # the name of the running flow ("thesis"), if any


Text = Union[str, Callable[[Ctx], Union[str, Awaitable[str]]]]
Hook = Callable[..., Awaitable[Any]]
# Where to go after a step: None (the next in order), a step name (or END), a table from the
# answer to a route, or a function (ctx, answer) -> route. A table matches the answer itself,
# then what comes before ":" in it ("edit:12" -> "edit"), then "*".
Route = Union[None, str, Mapping[Any, Any], Callable[..., Any]]


@dataclass
class Step:
    name: str
    label: str  # how the answer is named in the summary: "证件号码"
    field: F.Field
    prompt: Text
    when: Optional[Callable[[Ctx], bool]] = None  # asked only when true (else skipped in order)
    options: Optional[Callable[[Ctx], Awaitable[Sequence[F.Option]]]] = None  # for Choice / MultiChoice
    # check(ctx, value) -> value to keep (maybe transformed, or F.Noted(value, note)); raise
    # Invalid to refuse, EndFlow to stop, Done(value) to return from a component.
    check: Optional[Hook] = None
    go: Route = None
    retry: Optional[Text] = None  # asked after a wrong answer instead of a long prompt
    # Whether a choice step lists its options with the question (else only after a wrong answer).
    listed: Optional[Callable[[Ctx], bool]] = None
    in_summary: bool = True
    secret: bool = False  # the value goes to `check` and is never kept
    asides: bool = True  # a question typed here is answered aside (off where a question is the answer)

    def field_show(self, ctx: Ctx) -> str:
        """The current answer as the summary shows it (choices by the labels the user saw)."""
        f = self.field
        opts = ctx.scratch.get("options", {}).get(self.name)
        if opts is not None:
            f = copy.copy(f)
            f.options = [tuple(o) for o in opts]  # type: ignore[attr-defined]
        return f.show(ctx.answers.get(self.name))


@dataclass
class Call:
    """Runs another dialog (a component) and goes on with the value it returns.

    `args(ctx)` is what the component starts from (its `enter` hook turns it into its state);
    `go` routes on the returned value; `progress(ctx, child_state)` is called after every answer
    inside the component, so the caller can save work in progress (drafts lose nothing).
    `back_here`: a step this call's value routes to (a review's 修改 N) goes back to this call
    on 返回, not to the step before it in the first pass.
    """

    name: str
    dialog: "Flow"
    args: Optional[Callable[[Ctx], Any]] = None
    go: Route = None
    progress: Optional[Hook] = None
    when: Optional[Callable[[Ctx], bool]] = None
    label: str = ""
    in_summary: bool = False
    secret: bool = False
    back_here: bool = False


@dataclass
class Loop:
    """Runs `body` for each item `over(ctx)` still lists (recomputed after each one, so a draft
    continued later resumes at the first item left); `each(ctx, item, value)` keeps a result."""

    name: str
    over: Callable[[Ctx], Awaitable[Sequence[Any]]]
    body: "Flow"
    args: Callable[[Ctx, Any], Any]
    each: Callable[[Ctx, Any, Any], Awaitable[None]]
    go: Route = None  # after the last item
    progress: Optional[Hook] = None
    when: Optional[Callable[[Ctx], bool]] = None
    label: str = ""
    in_summary: bool = False
    secret: bool = False


AnyStep = Union[Step, Call, Loop]


@dataclass
class Flow:
    """A dialog: a flow started by keyword or menu, or a component another dialog calls."""

    name: str  # "bind", "exemption" ...
    title: str  # what the candidate reads: "绑定考生信息"
    steps: list[AnyStep]
    # A flow: submit(ctx) -> the text to answer (raise Invalid to go back to the summary).
    # A component: submit(ctx) -> the value returned to the caller (default: its state).
    submit: Optional[Hook] = None
    confirm: bool = True  # a summary with 确认 / 修改 N before submit
    needs_binding: bool = True
    # begin(ctx) -> None to start, or a text saying why not (window closed, already done ...).
    begin: Optional[Hook] = None
    intro: str = ""
    summary_note: str = ""
    # left_note(ctx) -> what 取消 and expiry say about the answers, instead of "填写的内容没有保存。"
    left_note: Optional[Callable[[Ctx], Optional[str]]] = None
    state: Optional[type] = None  # the dataclass of this dialog's working data
    # A component: enter(ctx, args) -> the state to start from, or (state, first step name).
    enter: Optional[Callable[[Ctx, Any], Any]] = None
    component: bool = False

    def step(self, name: str) -> AnyStep:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"{self.name} has no step {name}")

    def parts(self) -> list["Flow"]:
        """This dialog and every component it calls, however deep."""
        out = [self]
        for s in self.steps:
            child = s.dialog if isinstance(s, Call) else s.body if isinstance(s, Loop) else None
            if child is not None:
                out += [d for d in child.parts() if d not in out]
        return out


def Component(name: str, title: str, steps: list[AnyStep], **kw: Any) -> Flow:
    """A dialog made to be called: no summary of its own unless asked, no binding check."""
    kw.setdefault("confirm", False)
    kw.setdefault("needs_binding", False)
    return Flow(name=name, title=title, steps=steps, component=True, **kw)


async def _text(t: Text, ctx: Ctx) -> str:
    if callable(t):
        r = t(ctx)
        return await r if inspect.isawaitable(r) else r
    return t


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    r = fn(*args)
    return await r if inspect.isawaitable(r) else r


_NOTHING = object()
_FRAME_KEYS = ("answers", "scratch", "state", "history", "failures", "dialog")
_EDIT = re.compile(r"^(?:修改|改)第?(\d+)(?:[.\-－_、](\d+)|([①-⑩]))?项?$")


def edit_number(text: str) -> Optional[tuple[int, Optional[int]]]:
    """'修改 3' -> (3, None); '修改 2.1', '修改2-1', '修改 2①' -> (2, 1); else None."""
    m = _EDIT.match(text.replace(" ", ""))
    if m is None:
        return None
    sub = int(m.group(2)) if m.group(2) else ("①②③④⑤⑥⑦⑧⑨⑩".index(m.group(3)) + 1 if m.group(3) else None)
    return int(m.group(1)), sub


class Engine:
    """Runs dialogs over a `Conversation`; the caller holds the user's lock and saves it."""

    def __init__(self, flows: Sequence[Flow], *, timeout: dt.timedelta = dt.timedelta(minutes=30),
                 help_text: str = "", aside: Optional[Callable[[Ctx, str], Awaitable[Optional[str]]]] = None) -> None:
        self.flows: dict[str, Flow] = {}
        self.dialogs: dict[str, Flow] = {}  # flows and every component they call
        self.timeout = timeout
        self.help_text = help_text
        # aside(ctx, text) -> the answer to a question or query typed in the middle of a step
        # (the router's course query and FAQ), or None when the text is not one.
        self.aside = aside
        for f in flows:
            self.add(f)

    def add(self, flow: Flow) -> None:
        if not flow.component:
            self.flows[flow.name] = flow
        for d in flow.parts():
            self.dialogs[d.name] = d

    # --- the conversation's data: the running dialog's frame, and the frames below it --------

    @staticmethod
    def _data(conv: Conversation) -> dict[str, Any]:
        d = conv.data
        d.setdefault("answers", {})
        d.setdefault("scratch", {})
        d.setdefault("history", [])
        d.setdefault("failures", 0)
        return d

    def _active(self, conv: Conversation) -> Optional[Flow]:
        name = conv.data.get("dialog") or conv.flow
        return self.dialogs.get(name) if name else None

    def _ctx(self, base: Ctx, conv: Conversation) -> Ctx:
        d = self._data(conv)
        base.answers, base.scratch = d["answers"], d["scratch"]
        base.flow = conv.flow or ""
        dialog = self._active(conv)
        base.state = self._load(dialog, d.get("state"))
        return base

    @staticmethod
    def _load(dialog: Optional[Flow], data: Any) -> Any:
        if dialog is None or dialog.state is None:
            return None
        return typed.load(dialog.state, data) if data is not None else dialog.state()

    def _keep(self, conv: Conversation, ctx: Ctx) -> None:
        dialog = self._active(conv)
        if conv.flow is not None and dialog is not None and dialog.state is not None and ctx.state is not None:
            conv.data["state"] = typed.dump(ctx.state)

    def _touch(self, conv: Conversation, now: dt.datetime) -> None:
        conv.expires_at = now + self.timeout

    def _clear(self, conv: Conversation) -> None:
        keep = {k: conv.data[k] for k in ("paused",) if conv.data.get(k)}
        conv.flow, conv.step, conv.expires_at = None, None, None
        conv.data = keep

    def flow_of(self, conv: Conversation) -> Optional[Flow]:
        return self.flows.get(conv.flow) if conv.flow else None

    async def _push(self, conv: Conversation, ctx: Ctx, call: Union[Call, Loop], child: Flow, args: Any,
                    item: Any = None) -> Optional[str]:
        """Start `child` on top of the running dialog; the name of its first step, if it chose one."""
        self._keep(conv, ctx)
        d = conv.data
        frame = {k: d.pop(k) for k in (*_FRAME_KEYS, "editing") if k in d}
        frame.update(step=call.name, item=typed.dump(item))
        d.setdefault("stack", []).append(frame)
        d.update(answers={}, scratch={}, history=[], failures=0, dialog=child.name)
        ctx.answers, ctx.scratch = d["answers"], d["scratch"]
        if child.enter is not None:
            state = await _call(child.enter, ctx, args)
        else:
            state = args if args is not None else (child.state() if child.state else None)
        first = None
        if isinstance(state, tuple):
            state, first = state
        ctx.state = state
        return first

    def _pop(self, conv: Conversation, ctx: Ctx) -> tuple[AnyStep, Any]:
        """Back to the dialog below: the Call or Loop step that started the one ending, its item."""
        d = conv.data
        frame = d["stack"].pop()
        for k in (*_FRAME_KEYS, "editing"):
            d.pop(k, None)
        d.update({k: v for k, v in frame.items() if k in (*_FRAME_KEYS, "editing")})
        if not d["stack"]:
            d.pop("stack")
        conv.step = frame["step"]
        self._ctx(ctx, conv)
        return self._active(conv).step(frame["step"]), frame.get("item")  # type: ignore[union-attr]

    async def _progress(self, conv: Conversation, ctx: Ctx) -> None:
        """Hand the running component's state to the Call below it (and so on down the stack)."""
        stack = conv.data.get("stack") or []
        child_state = ctx.state
        for frame in reversed(stack):
            parent = self.dialogs[frame.get("dialog") or conv.flow]
            call = parent.step(frame["step"])
            assert isinstance(call, (Call, Loop))
            if call.progress is None:
                return
            pctx = Ctx(ctx.db, ctx.user, ctx.services, ctx.now, ctx.msg, frame["answers"], frame["scratch"],
                       self._load(parent, frame.get("state")))
            await call.progress(pctx, child_state)
            if parent.state is not None:
                frame["state"] = typed.dump(pctx.state)
            child_state = pctx.state

    # --- routing ---------------------------------------------------------------------------

    async def _route(self, route: Route, ctx: Ctx, value: Any) -> Optional[str]:
        while route is not None and not isinstance(route, str):
            if isinstance(route, Mapping):
                key = value if isinstance(value, (str, bool, int)) else getattr(value, "key", None)
                if key in route:
                    route = route[key]
                elif isinstance(key, str) and key.partition(":")[0] in route:
                    route = route[key.partition(":")[0]]
                else:
                    route = route.get("*")
            else:
                route = await _call(route, ctx, value)
        return route

    @staticmethod
    def _after(dialog: Flow, name: Optional[str]) -> str:
        names = [s.name for s in dialog.steps]
        i = names.index(name) + 1 if name else 0
        return names[i] if i < len(names) else END

    async def _goto(self, conv: Conversation, ctx: Ctx, name: str, prefix: str = "", *,
                    returned: Any = _NOTHING) -> Reply:
        """Go to step `name` of the running dialog, through calls, loops and returns, and ask it
        (or first return `returned` from the running component to its caller)."""
        parts = [prefix]
        try:
            if returned is not _NOTHING:
                name, note = await self._returned(conv, ctx, returned)
                parts.append(note)
            while True:
                dialog = self._active(conv)
                assert dialog is not None
                if name == END:
                    if dialog.confirm and conv.step not in (SUMMARY, END):
                        conv.step = SUMMARY
                        self._keep(conv, ctx)
                        return Reply(join(*parts, await self._summary(dialog, ctx)))
                    if not dialog.component:
                        return await self._submit(dialog, conv, ctx, join(*parts))
                    try:
                        value = await dialog.submit(ctx) if dialog.submit is not None else ctx.state
                    except Invalid as e:  # not yet: back to the component's summary with the reason
                        conv.step = SUMMARY
                        return Reply(join(*parts, e.reason, await self._summary(dialog, ctx)))
                    name, note = await self._returned(conv, ctx, value)
                    parts.append(note)
                    continue
                step = dialog.step(name)
                if step.when is not None and not step.when(ctx):
                    name = self._after(dialog, name)
                    continue
                conv.step = step.name
                if isinstance(step, Call):
                    args = await _call(step.args, ctx) if step.args is not None else None
                    name = await self._push(conv, ctx, step, step.dialog, args) or self._after(step.dialog, None)
                    continue
                if isinstance(step, Loop):
                    items = list(await step.over(ctx))
                    if not items:
                        name = await self._route(step.go, ctx, None) or self._after(dialog, step.name)
                        continue
                    args = await _call(step.args, ctx, items[0])
                    name = await self._push(conv, ctx, step, step.body, args, item=items[0]) or self._after(step.body, None)
                    continue
                parts.append(await self._question(step, ctx))
                self._keep(conv, ctx)
                return Reply(join(*parts))
        except EndFlow as e:
            return self._ended(conv, e, join(*parts))
        except Done as e:
            return await self._goto(conv, ctx, "", join(*parts), returned=e.value)

    async def _returned(self, conv: Conversation, ctx: Ctx, value: Any) -> tuple[str, str]:
        """A component returned `value`: back in its caller, where to go next (and a note). A
        route refusing the value (raise Invalid) runs the component again with the reason."""
        call, item = self._pop(conv, ctx)
        if isinstance(call, Loop):
            await call.each(ctx, item, value)
            return call.name, ""  # the loop looks again for items left
        try:
            nxt = await self._route(call.go, ctx, value)  # type: ignore[union-attr]
        except Invalid as e:
            return call.name, e.reason
        if isinstance(call, Call) and call.back_here and nxt and nxt not in (END, call.name):
            self._data(conv)["history"] = [call.name]
        return nxt or self._after(self._active(conv), call.name), ""  # type: ignore[arg-type]

    def _ended(self, conv: Conversation, e: EndFlow, prefix: str = "") -> Reply:
        self._clear(conv)
        return Reply(join(prefix, e.text, "" if e.then else self.resume_offer(conv)), then=e.then)

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
                return Reply(join(prefix, note, refusal))
        self._touch(conv, ctx.now)
        return await self._goto(conv, ctx, self._after(flow, None), prefix=join(prefix, note, flow.intro))

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
                return await self.repeat(conv, ctx, prefix=join(prefix, f"接着办理「{title}」。"))
        return Reply(join(prefix, "没有需要继续办理的业务。\n回复“帮助”查看可以办理的业务。"))

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
        dialog = self._active(conv)
        if dialog is None:
            self._clear(conv)
            return Reply(prefix or "没有正在办理的业务。")
        ctx = self._ctx(ctx, conv)
        self._touch(conv, ctx.now)
        if conv.step == SUMMARY:
            return Reply(join(prefix, await self._summary(dialog, ctx)))
        reply = Reply(join(prefix, await self._question(dialog.step(conv.step), ctx)))  # type: ignore[arg-type]
        self._keep(conv, ctx)
        return reply

    def expire(self, conv: Conversation) -> str:
        """Ends a flow left unfinished past the timeout; the note for the user's next message."""
        flow = self.flow_of(conv)
        title = flow.title if flow else "业务"
        minutes = int(self.timeout.total_seconds() // 60)
        note = self._left_note(flow, conv) or "填写的内容没有保存。需要时可以重新办理。"
        self._clear(conv)
        return f"您上次的「{title}」超过{minutes}分钟没有继续，已自动结束，{note}"

    def _left_note(self, flow: Optional[Flow], conv: Conversation) -> Optional[str]:
        if flow is None or flow.left_note is None:
            return None
        stack = conv.data.get("stack")
        root = stack[0] if stack else conv.data
        return flow.left_note(self._load(flow, root.get("state")))

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
        return Reply(join(f"已取消「{flow.title}」，{note}", self.resume_offer(conv)))

    async def back(self, conv: Conversation, ctx: Ctx) -> Reply:
        dialog = self._active(conv)
        if dialog is None:
            return Reply("当前没有正在办理的业务。")
        ctx = self._ctx(ctx, conv)
        d = self._data(conv)
        d["failures"] = 0
        d.pop("editing", None)
        if not d["history"] or conv.step == SUMMARY:
            return await self.repeat(conv, ctx, prefix="已经是第一步了。" if conv.step != SUMMARY else "")
        prev = dialog.step(d["history"].pop())
        if isinstance(prev, Call) and prev.back_here:
            return await self._goto(conv, ctx, prev.name)  # back to the review the step came from
        conv.step = prev.name
        self._touch(conv, ctx.now)
        earlier = ""
        if not prev.secret and prev.name in ctx.answers:
            earlier = f"上一步您填写的{prev.label}是：{prev.field_show(ctx)}\n重新回复即可修改。"  # type: ignore[union-attr]
        reply = Reply(join(earlier, await self._question(prev, ctx)))  # type: ignore[arg-type]
        self._keep(conv, ctx)
        return reply

    async def help(self, conv: Conversation, ctx: Ctx, menu_text: str) -> Reply:
        head = join(self.help_text, menu_text)
        if not conv.active:
            return Reply(join(head, self.resume_offer(conv)))
        flow, dialog = self.flow_of(conv), self._active(conv)
        step_help = ""
        if dialog is not None and conv.step not in (None, SUMMARY):
            hint = (await self._field(dialog.step(conv.step), self._ctx(ctx, conv))).hint  # type: ignore[arg-type]
            step_help = f"填写说明：{hint}" if hint else ""
        return await self.repeat(conv, ctx, prefix=join(head, f"您正在办理「{flow.title if flow else ''}」，"
                                                        "回复“取消”可退出。", step_help))

    # --- answering the current step ---------------------------------------------------------

    async def answer(self, conv: Conversation, ctx: Ctx) -> Reply:
        """Feed the message to the current step of the running dialog."""
        dialog = self._active(conv)
        assert dialog is not None
        ctx = self._ctx(ctx, conv)
        self._touch(conv, ctx.now)
        if conv.step == SUMMARY:
            return await self._at_summary(dialog, conv, ctx)
        step = dialog.step(conv.step)
        assert isinstance(step, Step)
        d = self._data(conv)
        field_ = await self._field(step, ctx)
        if isinstance(field_, F.Text) and type(field_).parse_text is F.Text.parse_text:
            # Free text takes anything: a question typed here is answered, not kept as the answer.
            aside = await self._aside(step, ctx)
            if aside:
                return await self._aside_reply(conv, dialog, step, ctx, aside)
        try:
            value = field_.parse(ctx.msg)
            note = ""
            if field_.gathers:
                have = list(ctx.answers.get(step.name) or [])
                if value == F.DONE:
                    field_.enough(have)
                    value = have
                else:
                    field_.room(have)
                    if step.check is not None:
                        value = await step.check(ctx, value)
                    value, note = F.Noted.split(value)
                    have.append(value)
                    ctx.answers[step.name] = have
                    d["failures"] = 0
                    await self._progress(conv, ctx)
                    self._keep(conv, ctx)
                    return Reply(join(note, field_.received(len(have))))
            elif step.check is not None:
                value, note = F.Noted.split(await step.check(ctx, value))
            if not step.secret:
                ctx.answers[step.name] = value
            await self._progress(conv, ctx)
            nxt = await self._route(step.go, ctx, value)
        except Invalid as e:
            aside = await self._aside(step, ctx)
            if aside:
                return await self._aside_reply(conv, dialog, step, ctx, aside)
            return await self._wrong(conv, step, ctx, e.reason)
        except EndFlow as e:
            return self._ended(conv, e)
        except Done as e:
            d["failures"] = 0
            return await self._goto(conv, ctx, "", returned=e.value)
        d["failures"] = 0
        if d.get("editing") and dialog.confirm and nxt is None:
            # Back to the summary, unless the change made another answer necessary
            # (e.g. a different 修改项目 needs its new value).
            missing = self._first_missing(dialog, ctx)
            if missing is None:
                d.pop("editing")
                conv.step = SUMMARY
                reply = Reply(join(note, await self._summary(dialog, ctx)))
                self._keep(conv, ctx)
                return reply
            return await self._goto(conv, ctx, missing.name, note)
        d["history"].append(step.name)
        return await self._goto(conv, ctx, nxt or self._after(dialog, step.name), note)

    async def _aside(self, step: Step, ctx: Ctx) -> Optional[str]:
        if self.aside is None or not step.asides or step.secret or ctx.msg.kind != "text":
            return None
        return await self.aside(ctx, ctx.msg.text)

    async def _aside_reply(self, conv: Conversation, dialog: Flow, step: Step, ctx: Ctx, text: str) -> Reply:
        flow = self.flow_of(conv)
        again = f"—— 接着办理「{flow.title if flow else dialog.title}」，您填写的内容都还在 ——"
        reply = Reply(join(text, again, await self._question(step, ctx, retry=True)))
        self._keep(conv, ctx)
        return reply

    async def is_choice_answer(self, conv: Conversation, ctx: Ctx) -> bool:
        """Whether the text names an option of the current choice step (then it answers the step
        rather than being taken as a keyword)."""
        dialog = self._active(conv)
        if dialog is None or conv.step in (None, SUMMARY):
            return False
        ctx = self._ctx(ctx, conv)
        field_ = await self._field(dialog.step(conv.step), ctx)  # type: ignore[arg-type]
        if not isinstance(field_, (F.Choice, F.MultiChoice)):
            return False
        text = F.clean(ctx.msg.text)
        return any(text in (value, label) for value, label in field_.options)

    async def _wrong(self, conv: Conversation, step: Step, ctx: Ctx, reason: str) -> Reply:
        d = self._data(conv)
        d["failures"] += 1
        parts = [reason]
        hint = (await self._field(step, ctx)).hint
        if d["failures"] >= MAX_FAILURES:
            parts.append("好像不太顺利。回复“帮助”查看说明，回复“取消”退出办理，"
                         "或拨打技术咨询电话 400-0960-990。")
        elif hint and hint not in reason:
            parts.append(hint)
        parts.append(await self._question(step, ctx, retry=True))
        self._keep(conv, ctx)
        return Reply(join(*parts))

    def _first_missing(self, flow: Flow, ctx: Ctx) -> Optional[Step]:
        for s in flow.steps:
            if not isinstance(s, Step) or s.secret or s.name in ctx.answers:
                continue
            if s.when is None or s.when(ctx):
                return s
        return None

    async def _submit(self, flow: Flow, conv: Conversation, ctx: Ctx, prefix: str = "") -> Reply:
        assert flow.submit is not None
        try:
            text = await flow.submit(ctx)
        except Invalid as e:
            if flow.confirm:
                conv.step = SUMMARY
                return Reply(join(prefix, e.reason, await self._summary(flow, ctx)))
            self._clear(conv)
            return Reply(join(prefix, e.reason))
        except EndFlow as e:
            return self._ended(conv, e, prefix)
        then = ctx.scratch.get("then")
        self._clear(conv)
        return Reply(join(prefix, text, "" if then else self.resume_offer(conv)), then=then or None)

    # --- summary ---------------------------------------------------------------------------

    def _summary_items(self, flow: Flow, ctx: Ctx) -> list[tuple[Step, str]]:
        items = []
        for s in flow.steps:
            if not isinstance(s, Step) or not s.in_summary or s.secret or s.name not in ctx.answers:
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
            if flow.component:
                conv.step = END
                return await self._goto(conv, ctx, END)
            return await self._submit(flow, conv, ctx)
        items = self._summary_items(flow, ctx)
        picked = edit_number(text)
        if picked is not None and picked[1] is None and 1 <= picked[0] <= len(items):
            step = items[picked[0] - 1][0]
            conv.step = step.name
            self._data(conv)["editing"] = True
            return Reply(join(f"现在填写的{step.label}是：{step.field_show(ctx)}", await self._question(step, ctx)))
        if text.startswith(("修改", "改")):
            return Reply(join(f"请回复“修改”加序号，如“修改 1”（1到{len(items)}）。", await self._summary(flow, ctx)))
        if self.aside is not None and text:
            aside = await self.aside(ctx, text)
            if aside:
                return Reply(join(aside, await self._summary(flow, ctx)))
        return Reply(join("请回复“确认”提交，或“修改 N”修改第N项。", await self._summary(flow, ctx)))

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

    async def _question(self, step: Step, ctx: Ctx, *, retry: bool = False) -> str:
        if step.options is not None and not retry:
            # Options are computed afresh each time the question is asked.
            ctx.scratch.setdefault("options", {}).pop(step.name, None)
        f = await self._field(step, ctx)
        q = await _text(step.retry if retry and step.retry is not None else step.prompt, ctx)
        if isinstance(f, (F.Choice, F.MultiChoice)) and (retry or step.listed is None or step.listed(ctx)):
            q = join(q, F.numbered(f.options))
        return q


def join(*parts: str) -> str:
    return "\n\n".join(p for p in parts if p)


_join = join
