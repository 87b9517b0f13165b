"""Routes a plain Message to whatever answers it; the one entry point the edge calls.

Order of precedence for a message:
1. events (subscribe, unsubscribe, template receipts, menu clicks);
2. the notice opt-out words;
3. engine commands (取消, 返回, 帮助, 继续) and answers to a flow in progress;
4. intents: menu keys, keywords, patterns ("教材 03708") -> a query or a flow;
5. free text: a question about one course ("线代过了吗"), then the FAQ, then a short help.

A message that may change the conversation runs under the user's step lock (dialogs/state.py);
a plain query of a user with nothing in progress is answered without it (the hot path).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Awaitable, Callable, Optional

from dialogs import account, applications, aside, backfill, exemption, lookups, menu, subscription, thesis, transfer_in, transfer_out, welcome
from dialogs import degree, graduation
from dialogs import engine as E
from dialogs import fields as F
from dialogs.consult import Answer
from dialogs.engine import Ctx, Engine, Flow, User, join
from dialogs.services import Services
from dialogs.state import Busy, Conversation, StateStore
from dialogs.types import NO_REPLY, Message, Reply
from storage import accounts, followers
from storage import queries as stored_queries
from storage.db import Database
from storage.batch import Coalescer
from storage.models import utcnow

log = logging.getLogger("zikao.router")

# Events that need no answer: WeChat ignores any reply to them.
SILENT_EVENTS = frozenset({"unsubscribe", "TEMPLATESENDJOBFINISH", "LOCATION", "VIEW", "MASSSENDJOBFINISH",
                           "view_miniprogram"})

# Called with (msgid, status) of a TEMPLATESENDJOBFINISH event; the edge supplies it
# (bot.delivery.record_template_finish), so dialogs never import the edge.
TemplateFinish = Callable[[str, str], Awaitable[Any]]

# A query: (ctx, argument) -> Reply, or None when it has nothing to say (free-text course questions).
Query = Callable[[Ctx, str], Awaitable[Optional[Reply]]]

BUSY = "上一条消息还在处理中，请稍等几秒再发。"
NEED_BINDING = "这项业务需要先绑定考生信息。"
WELCOME_UNBOUND = "首次使用请回复“绑定”，绑定考生信息后即可查询和办理。"


def _submenu(key: str) -> Query:
    """A submenu: its numbered list, remembered for the next message (see _pick_pending)."""
    title, text, items = menu.submenu(key)
    pending = {"title": title, "options": [[intent, ""] for intent, _ in items], "labels": [label for _, label in items]}

    async def show(ctx: Ctx, arg: str) -> Reply:
        return Answer(text, pending=pending)

    return show


class Router:
    def __init__(
        self,
        db: Database,
        *,
        on_template_finish: Optional[TemplateFinish] = None,
        services: Optional[Services] = None,
        flow_timeout_minutes: float = 30,
        faq: Any = None,
    ) -> None:
        import datetime as dt

        self.db = db
        self.on_template_finish = on_template_finish
        self.services = services or Services()
        self.store = StateStore(db)
        # Who the user is and where their conversation is, read for all messages arriving
        # together in one batch (two indexed statements), as the edge groups its dedupe writes.
        self._peeks: Coalescer[str, tuple[User, Conversation]] = Coalescer(
            self._peek_batch, parallel=4 if db.dialect == "postgresql" else 1)
        self.engine = Engine([], timeout=dt.timedelta(minutes=flow_timeout_minutes), help_text=welcome.HELP)
        self.engine.aside = aside.answerer(self)
        self.queries: dict[str, tuple[Query, bool]] = {}
        self.faq = faq
        for flow in account.FLOWS:
            self.add_flow(flow)
        for key in menu.SUBMENUS:
            self.add_query(key, _submenu(key), needs_binding=False)
        self.add_query("query:profile", lambda ctx, arg: account.profile_reply(ctx))
        lookups.register(self)
        exemption.register(self)
        applications.register(self)
        backfill.register(self)
        transfer_in.register(self)
        transfer_out.register(self)
        thesis.register(self)
        degree.register(self)
        graduation.register(self)

    # --- registration (each feature module calls these) ------------------------------------

    def add_flow(self, flow: Flow) -> None:
        self.engine.add(flow)
        self.queries.pop(f"flow:{flow.name}", None)  # a real flow replaces an interim answer

    def add_query(self, intent: str, fn: Query, *, needs_binding: bool = True) -> None:
        self.queries[intent] = (fn, needs_binding)

    def knows(self, intent: str) -> bool:
        if intent.startswith("faq:"):
            return self.faq is not None
        return intent == "help" or intent in self.queries or self._flow_name(intent) in self.engine.flows

    @staticmethod
    def _flow_name(intent: str) -> str:
        return intent.removeprefix("flow:")

    # --- entry point -----------------------------------------------------------------------

    async def handle(self, msg: Message) -> Reply:
        if msg.kind == "voice" and msg.text:
            # WeChat's speech recognition already gave us the words: answer them like typed text.
            msg = replace(msg, kind="text")
        if msg.kind == "event" and msg.event != "CLICK":
            return await self._event(msg)
        opt_out = subscription.wants(msg)
        if opt_out is not None:
            return await subscription.handle(self.db, msg, opt_out)

        intent, arg = self._intent(msg)
        cmd = self._command(msg)
        if msg.prefetched is not None:
            user, conv = msg.prefetched
        else:
            user, conv = await self._peeks.submit(msg.openid)
        if not (conv.active or conv.paused or conv.pending or cmd) and (
            intent is None or intent == "help" or (intent in self.queries and (user.bound or not self.queries[intent][1]))
        ):
            # Nothing in progress and nothing to start: answer without taking the lock.
            reply = await self._stateless(msg, user, intent, arg)
            if reply is not None:
                # Nothing was changed: the edge may store this answer behind (docs/delivery.md).
                return Reply(reply.text, reply.image_media_id, read_only=True)
        try:
            async with self.store.locked(msg.openid) as conv:
                if msg.key is not None and conv.applied_key == msg.key and conv.applied_reply is not None:
                    # A retry of a message whose step ran and was saved before its first attempt
                    # died (kill -9 before the edge stored the reply): answer, do not apply again.
                    log.warning("answered a retry from the step it had already applied")
                    return Reply(conv.applied_reply.get("text") or "", conv.applied_reply.get("image"))
                reply = await self._locked(msg, user, conv, intent, arg, cmd)
                if msg.key is not None:
                    conv.applied = (msg.key, {"text": reply.text, "image": reply.image_media_id})
                return reply
        except Busy:
            return Reply(BUSY)

    async def _peek_batch(self, openids: list[str]) -> list[tuple[User, Conversation]]:
        return self._peeked(openids, await followers.peek(self.db, openids))

    async def prefetch(self, conn: Any, openids: list[str],
                       tokens: Optional[list[followers.Token]] = None) -> list[tuple[User, Conversation]]:
        """Who each user is and where their conversation is, on `conn`: the edge calls this in
        its dedupe round trip (bot/dedupe.py), so the hot path needs no read of its own.

        `tokens` (the followers' generations, taken before this read): idle followers are kept in
        memory for the warm path (`cached`)."""
        rows = await followers.peek_on(conn, openids)
        if tokens is not None:
            views = followers.views_for(self.db)
            for o, token in zip(openids, tokens, strict=True):
                r = rows.get(o)
                if r is not None and token is not None:
                    views.keep(r, token)
        # Bound users' results, when not in memory yet, in the same round trip: on results day
        # nearly every message of a bound user is a score query, and its cold load is the cost.
        await stored_queries.cache_for(self.db).preload(
            conn, [r.candidate_id for r in rows.values() if r.candidate_id is not None])
        return self._peeked(openids, rows)

    def views(self) -> followers.Views:
        return followers.views_for(self.db)

    def cached(self, openid: str, remote: Any = None) -> Optional[tuple[User, Conversation]]:
        """The kept view of an idle follower (no database read), or None. `remote`: the
        follower's Redis generation read by the edge, when Redis is used."""
        peek = followers.views_for(self.db).get(openid, remote)
        if peek is None:
            return None
        return self._peeked([openid], {openid: peek})[0]

    @staticmethod
    def _peeked(openids: list[str], rows: dict[str, followers.Peek]) -> list[tuple[User, Conversation]]:
        out = []
        for o in openids:
            r = rows.get(o)
            if r is None:
                out.append((User(o), Conversation(o)))
                continue
            user = User(o, r.candidate_id, r.admission_number)
            conv = (Conversation(o, r.flow, r.step, dict(r.data), r.expires_at, exists=True)
                    if r.has_state else Conversation(o))
            out.append((user, conv))
        return out

    def _ctx(self, msg: Message, user: User) -> Ctx:
        return Ctx(db=self.db, user=user, services=self.services, now=utcnow(), msg=msg)

    def _intent(self, msg: Message) -> tuple[Optional[str], str]:
        if msg.kind == "event" and msg.event == "CLICK":
            return (msg.event_key or "help"), ""
        if msg.kind == "text":
            found = menu.intent_of(F.clean(msg.text))
            if found is not None:
                return found
        return None, ""

    @staticmethod
    def _command(msg: Message) -> Optional[str]:
        if msg.kind != "text":
            return None
        t = F.clean(msg.text).rstrip("。.!！")
        if t in E.CANCEL_WORDS:
            return "cancel"
        if t in E.BACK_WORDS:
            return "back"
        if t in E.RESUME_WORDS:
            return "resume"
        return None

    # --- without the lock ------------------------------------------------------------------

    async def _stateless(self, msg: Message, user: User, intent: Optional[str], arg: str) -> Optional[Reply]:
        ctx = self._ctx(msg, user)
        if intent == "help":
            return self._help(user)
        if intent is not None:
            fn, _ = self.queries[intent]
            reply = await fn(ctx, arg) or Reply(welcome.UNKNOWN_TEXT)
            return None if reply.pending else reply  # a choice to remember: locked
        if msg.kind != "text":
            return welcome.fallback(msg)
        reply = await self._free_text(ctx, msg.text)
        if reply.pending:
            return None  # numbered suggestions to remember: needs the lock
        wanted = reply.intent
        if wanted:
            if wanted in self.queries and (user.bound or not self.queries[wanted][1]):
                return await self.queries[wanted][0](ctx, reply.arg) or Reply(reply.text)
            return None  # a flow to start, or binding first: needs the lock
        return reply

    def _help(self, user: User) -> Reply:
        return Reply(join(welcome.HELP, menu.menu_text(), "" if user.bound else WELCOME_UNBOUND))

    async def _free_text(self, ctx: Ctx, text: str) -> Optional[Reply]:
        """A course question from the candidate's own scores, else the FAQ, else help."""
        course = self.queries.get("query:course_score")
        if course is not None and ctx.user.bound:
            r = await course[0](ctx, text)
            if r is not None:
                return r
        if self.faq is not None:
            r = await self.faq(ctx, text)
            if r is not None:
                return r
        return Reply(welcome.UNKNOWN_TEXT + ("" if ctx.user.bound else "\n" + WELCOME_UNBOUND))

    # --- under the lock --------------------------------------------------------------------

    async def _locked(self, msg: Message, user: User, conv: Conversation, intent: Optional[str], arg: str,
                      cmd: Optional[str]) -> Reply:
        ctx = self._ctx(msg, user)
        eng = self.engine
        prefix = ""
        if conv.expired(ctx.now):
            prefix = eng.expire(conv)
            if intent is None and cmd is None:
                return Reply(join(prefix, "回复“帮助”查看可以办理的业务。"))
        if any(p.get("flow") not in eng.flows for p in conv.paused):
            # Flows no longer offered (the submenus were flows once): nothing to go back to.
            conv.data["paused"] = [p for p in conv.paused if p.get("flow") in eng.flows]
        if conv.active and eng.flow_of(conv) is None:
            conv.flow, conv.step, conv.expires_at = None, None, None
            conv.data = {"paused": conv.paused}
        pending = conv.data.pop("pending", None)

        if pending and cmd in ("cancel", "back"):
            return self._prefixed(prefix, self._leave_list(conv, cmd))
        if cmd == "cancel":
            return self._prefixed(prefix, eng.cancel(conv))
        if cmd == "back":
            if not conv.active:
                return Reply(join(prefix, "当前没有正在办理的业务。"))
            return await eng.back(conv, ctx)
        if cmd == "resume":
            return await eng.resume(conv, ctx, prefix=prefix)
        if intent == "help":
            return self._prefixed(prefix, await eng.help(conv, ctx, menu.menu_text()))

        picked = False
        if intent is None and pending and msg.kind == "text":
            text = F.clean(msg.text)
            chosen = self._pick_pending(pending, text)
            if chosen is not None:
                (intent, arg), picked = chosen, True
            elif text.isdigit() and len(text) <= 2:
                # A number answers the most recent list shown, even a flow's older question.
                conv.data["pending"] = pending
                return Reply(join(prefix, f"请回复1到{len(pending.get('options') or [])}的序号。"))

        if (intent is not None and not picked and conv.active and msg.kind == "text"
                and await eng.is_choice_answer(conv, ctx)):
            # "免考" typed at a step offering 免考 as an option answers the step.
            intent = None
        if intent is not None and self.knows(intent):
            return self._prefixed(prefix, await self._run_intent(conv, ctx, intent, arg))
        if conv.active:
            reply = await eng.answer(conv, ctx)
            return self._prefixed(prefix, await self._follow(conv, ctx, reply))
        if intent is not None:
            # A menu key we do not know (an old menu still on someone's phone).
            return Reply(join(prefix, welcome.HELP, menu.menu_text()))
        if msg.kind != "text":
            return self._prefixed(prefix, welcome.fallback(msg))
        reply = await self._free_text(ctx, msg.text) or Reply(welcome.UNKNOWN_TEXT)
        wanted = reply.intent
        if wanted and self.knows(wanted):
            return self._prefixed(prefix, await self._run_intent(conv, ctx, wanted, reply.arg))
        if reply.pending:
            conv.data["pending"] = reply.pending
        offer = eng.resume_offer(conv)
        return Reply(join(prefix, reply.text, offer), reply.image_media_id)

    @staticmethod
    def _prefixed(prefix: str, reply: Reply) -> Reply:
        return Reply(join(prefix, reply.text), reply.image_media_id) if prefix else reply

    @staticmethod
    def _pick_pending(pending: dict[str, Any], text: str) -> Optional[tuple[str, str]]:
        """The option of the remembered list that `text` picks, by number or by its label."""
        options = pending.get("options") or []
        labels = pending.get("labels") or []
        if text.isdigit() and 1 <= int(text) <= len(options):
            intent, arg = options[int(text) - 1]
            return intent, arg
        if text in labels:
            intent, arg = options[labels.index(text)]
            return intent, arg
        return None

    def _leave_list(self, conv: Conversation, cmd: str) -> Reply:
        """取消 / 返回 right after a numbered list: the list is closed and nothing else changes."""
        offer = self.engine.resume_offer(conv)
        if cmd == "back":
            return Reply(join(menu.menu_text(), offer))
        if conv.active:
            return Reply(join(offer, "如需退出办理，请再回复“取消”。"))
        return Reply(join("当前没有正在办理的业务，无需取消。", offer or "需要时回复“帮助”查看菜单。"))

    async def _run_intent(self, conv: Conversation, ctx: Ctx, intent: str, arg: str) -> Reply:
        eng = self.engine
        if intent == "help":
            return await eng.help(conv, ctx, menu.menu_text())
        if intent.startswith("faq:"):
            picked = self.faq.entry(intent.removeprefix("faq:"))
            if picked is None:
                return Reply(welcome.UNKNOWN_TEXT)
            if picked.intent and self.knows(picked.intent):
                return await self._run_intent(conv, ctx, picked.intent, picked.arg)
            return Reply(join(picked.text, eng.resume_offer(conv)))
        if intent in self.queries:
            fn, needs_binding = self.queries[intent]
            if needs_binding and not ctx.user.bound:
                return await self._bind_first(conv, ctx, intent, arg)
            reply = await fn(ctx, arg) or Reply(welcome.UNKNOWN_TEXT)
            if reply.pending:
                # The newest numbered question: the next number answers it, even mid-flow.
                conv.data["pending"] = reply.pending
            # An interruption: the flow stays where it was.
            return Reply(join(reply.text, eng.resume_offer(conv)), reply.image_media_id)
        name = self._flow_name(intent)
        flow = eng.flows[name]
        if flow.needs_binding and not ctx.user.bound:
            return await self._bind_first(conv, ctx, intent, arg)
        if conv.active and conv.flow == name:
            return await eng.repeat(conv, ctx, prefix=f"您正在办理「{flow.title}」。")
        reply = await eng.start(name, conv, ctx)
        return await self._follow(conv, ctx, reply)

    async def _bind_first(self, conv: Conversation, ctx: Ctx, intent: str, arg: str) -> Reply:
        if conv.active and conv.flow == "bind":
            return await self.engine.repeat(conv, ctx, prefix=NEED_BINDING)
        reply = await self.engine.start("bind", conv, ctx, prefix=NEED_BINDING,
                                        scratch={"then": f"{intent}|{arg}"})
        return await self._follow(conv, ctx, reply)

    async def _follow(self, conv: Conversation, ctx: Ctx, reply: Reply) -> Reply:
        """Runs what a finished flow handed on (e.g. the query asked for before binding)."""
        then = reply.then
        if not then:
            return reply
        intent, _, arg = then.partition("|")
        if not self.knows(intent):
            return Reply(join(reply.text, self.engine.resume_offer(conv)))
        nxt = await self._run_intent(conv, ctx, intent, arg)
        return Reply(join(reply.text, nxt.text), nxt.image_media_id)

    # --- events ----------------------------------------------------------------------------

    async def _event(self, msg: Message) -> Reply:
        event = msg.event or ""
        if event == "subscribe":
            await self._set_subscribed(msg.openid, True)
            b = await accounts.binding(self.db, msg.openid)
            return Reply(welcome.WELCOME if b.candidate_id else join(welcome.WELCOME, WELCOME_UNBOUND))
        if event == "unsubscribe":
            await self._set_subscribed(msg.openid, False)
            return NO_REPLY
        if event == "TEMPLATESENDJOBFINISH":
            await self._template_finished(msg)
            return NO_REPLY
        if event in SILENT_EVENTS:
            return NO_REPLY
        return welcome.fallback(msg)

    async def _template_finished(self, msg: Message) -> None:
        if self.on_template_finish is None or not msg.msg_id:
            return
        try:
            await self.on_template_finish(msg.msg_id, msg.status or "")
        except Exception:
            # WeChat ignores any answer to this event and the dedupe record stops its retries:
            # a failure here loses one delivery status, never the conversation.
            log.exception("could not record TEMPLATESENDJOBFINISH for msgid %s", msg.msg_id)

    async def _set_subscribed(self, openid: str, subscribed: bool) -> None:
        await followers.set_subscribed(self.db, openid, subscribed)
