"""Routes a plain Message to whatever answers it; the one entry point the edge calls."""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Awaitable, Callable, Optional

from dialogs import subscription, welcome
from dialogs.types import NO_REPLY, Message, Reply
from storage.db import Database
from storage.models import WechatUser, utcnow

log = logging.getLogger("zikao.router")

# Events that need no answer: WeChat ignores any reply to them.
SILENT_EVENTS = frozenset({"unsubscribe", "TEMPLATESENDJOBFINISH", "LOCATION", "VIEW", "MASSSENDJOBFINISH"})

# Called with (msgid, status) of a TEMPLATESENDJOBFINISH event; the edge supplies it
# (bot.delivery.record_template_finish), so dialogs never import the edge.
TemplateFinish = Callable[[str, str], Awaitable[Any]]


class Router:
    def __init__(self, db: Database, *, on_template_finish: Optional[TemplateFinish] = None) -> None:
        self.db = db
        self.on_template_finish = on_template_finish

    async def handle(self, msg: Message) -> Reply:
        if msg.kind == "voice" and msg.text:
            # WeChat's speech recognition already gave us the words: answer them like typed text.
            msg = replace(msg, kind="text")
        if msg.kind == "event":
            return await self._event(msg)
        opt_out = subscription.wants(msg)
        if opt_out is not None:
            return await subscription.handle(self.db, msg, opt_out)
        return welcome.fallback(msg)

    async def _event(self, msg: Message) -> Reply:
        event = msg.event or ""
        if event == "subscribe":
            await self._set_subscribed(msg.openid, True)
            return Reply(welcome.WELCOME)
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
        now = utcnow()
        values = {"subscribed": subscribed, ("subscribed_at" if subscribed else "unsubscribed_at"): now}
        stmt = self.db.insert(WechatUser).values(openid=openid, **values)
        stmt = stmt.on_conflict_do_update(index_elements=["openid"], set_=values)
        async with self.db.session() as s, s.begin():
            await s.execute(stmt)
