"""The /wechat endpoint: verify, decrypt, dedupe, answer within the reply budget, encrypt."""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import replace
from typing import Awaitable, Callable, Optional

from aiohttp import web

from bot import metrics
from bot.crypto import DecryptError, MessageCrypto, SignatureError, check_signature
from bot.dedupe import LEASE_MARGIN_SECONDS, Deduper, message_key
from bot.freshness import Clock, NonceStore, freshness_problem, nonce_key, system_clock
from bot.paging import NEXT_PAGE_WORDS, paginate
from bot.wire import BadXML, parse_xml, reply_xml, to_message
from dialogs.types import NO_REPLY, Message, Reply
from storage.db import Database
from storage.models import DialogState, utcnow

log = logging.getLogger("zikao.endpoint")

MAX_BODY_BYTES = 64 * 1024

PROCESSING = "正在处理，请稍候。\n结果出来后会发消息告诉您。"
NO_MORE_PAGES = "没有更多内容了。"


# process()'s answer to a request whose (timestamp, nonce) was used before: 403, nothing processed.
REPLAYED = Reply("replayed")


def apology(ref: str) -> Reply:
    return Reply(f"抱歉，系统出了点问题，请稍后再试。\n如需咨询，请提供参考编号：{ref}")


def new_ref() -> str:
    return secrets.token_hex(3).upper()


Handler = Callable[[Message], Awaitable[Reply]]
Deliver = Callable[[str, Reply], Awaitable[None]]


class Pager:
    """Keeps the rest of a long reply in the user's dialog state and serves it on "下一页"."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def next_page(self, openid: str) -> Reply:
        async with self.db.session() as s, s.begin():
            state = await s.get(DialogState, openid, with_for_update=True)
            if state is None or not state.pages:
                return Reply(NO_MORE_PAGES)
            page, rest = state.pages[0], state.pages[1:]
            state.pages = rest or None
            state.updated_at = utcnow()
        return Reply(page)

    async def first_page(self, openid: str, reply: Reply) -> Reply:
        pages = paginate(reply.text) if reply.text else [""]
        if len(pages) == 1:
            return reply
        values = {"pages": pages[1:], "updated_at": utcnow()}
        async with self.db.session() as s, s.begin():
            await s.execute(
                self.db.insert(DialogState).values(openid=openid, data={}, **values)
                .on_conflict_do_update(index_elements=["openid"], set_=values)
            )
        return Reply(pages[0], reply.image_media_id)


class WeChatEndpoint:
    def __init__(
        self,
        *,
        token: str,
        crypto: Optional[MessageCrypto],
        db: Database,
        handler: Handler,
        deliver_later: Deliver,
        budget_seconds: float = 4.5,
        prefetch=None,
        mode: Optional[str] = None,
        nonces: Optional[NonceStore] = None,
        max_age_seconds: float = 300,
        clock: Clock = system_clock,
        cached=None,
        views=None,
        redis=None,
    ) -> None:
        self.token = token
        self.crypto = crypto
        # plain: no key; compat: encrypted and plaintext bodies; safe: encrypted bodies only.
        self.mode = mode or ("safe" if crypto is not None else "plain")
        if self.mode != "plain" and crypto is None:
            raise ValueError(f"{self.mode} mode needs the AES key (crypto)")
        # None: nonces are recorded in the dedupe claim's transaction (one round trip for both);
        # RedisNonces when REDIS_URL is set.
        self.nonces = nonces
        self.max_age = max_age_seconds
        self.clock = clock
        # `cached` (the router's kept views of idle followers) turns the warm path on (bot/dedupe.py).
        self.deduper = Deduper(db, prefetch=prefetch, lease_seconds=budget_seconds + LEASE_MARGIN_SECONDS,
                               cached=cached, views=views, nonce_window_seconds=max_age_seconds, redis=redis)
        self.pager = Pager(db)
        self.handler = handler
        self.deliver_later = deliver_later
        self.budget = budget_seconds
        self._background: set[asyncio.Task] = set()

    # --- HTTP ---------------------------------------------------------------------------------

    async def get(self, request: web.Request) -> web.Response:
        q = request.query
        if not check_signature(self.token, q.get("signature"), q.get("timestamp", ""), q.get("nonce", "")):
            return web.Response(status=403, text="forbidden")
        return web.Response(text=q.get("echostr", ""))

    async def post(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        q = request.query
        timestamp, nonce = q.get("timestamp", ""), q.get("nonce", "")
        if not check_signature(self.token, q.get("signature"), timestamp, nonce):
            return web.Response(status=403, text="forbidden")
        # Signed but stale (or from the future): a replayed URL. Values never go to the log.
        stale = freshness_problem(timestamp, nonce, self.clock(), self.max_age)
        if stale:
            log.warning("refused a POST: %s", stale)
            return web.Response(status=403, text="forbidden: stale request")
        body = await _read_limited(request, MAX_BODY_BYTES)
        if body is None:
            return web.Response(status=400, text="body too large")
        try:
            fields = parse_xml(body)
            key_index = None
            if self.mode == "safe" and "Encrypt" not in fields:
                # Only msg_signature covers a body: a plaintext one could be anybody's.
                log.warning("refused a POST: plaintext body in safe mode")
                return web.Response(status=403, text="forbidden: encrypted body required")
            if q.get("encrypt_type") == "aes" or "Encrypt" in fields:
                fields, key_index = self._decrypt(fields, q.get("msg_signature"), timestamp, nonce)
        except SignatureError:
            return web.Response(status=403, text="forbidden")
        except (BadXML, DecryptError, UnicodeDecodeError) as e:
            return web.Response(status=400, text=f"bad request: {e}")
        if not fields.get("FromUserName") or not fields.get("MsgType"):
            return web.Response(status=400, text="bad request: not a WeChat message")
        msg = to_message(fields)
        fresh, pair = True, nonce_key(timestamp, nonce)
        if self.nonces is not None:
            pair = None
            try:
                fresh = await self.nonces.first_use(timestamp, nonce)
            except Exception:  # like a failed dedupe claim: an apology, nothing processed
                ref = new_ref()
                log.exception("nonce check failed ref=%s", ref)
                fresh, reply = None, apology(ref)
        if fresh:
            reply = await self.process(msg, fields, deadline=started + self.budget, nonce=pair)
            if reply is REPLAYED:
                fresh = False
        if fresh is False:
            log.warning("refused a POST: its timestamp and nonce were used before (a replay)")
            return web.Response(status=403, text="forbidden: replayed request")
        metrics.REPLY_SECONDS.observe(time.monotonic() - started)
        if reply.empty:
            return web.Response(text="success")
        xml = reply_xml(reply, to_user=msg.openid, from_user=fields.get("ToUserName", ""))
        if key_index is not None and self.crypto is not None:
            xml = self.crypto.encrypt(xml, key_index=key_index)
        return web.Response(text=xml, content_type="application/xml")

    def _decrypt(self, fields: dict[str, str], msg_signature: str | None, timestamp: str, nonce: str):
        encrypt = fields.get("Encrypt")
        if not encrypt:
            raise BadXML("encrypt_type=aes without <Encrypt>")
        if self.crypto is None:
            # Compatible mode carries the plain fields too; with no key configured, use those.
            if "MsgType" in fields:
                return fields, None
            raise DecryptError("encrypted message but no WECHAT_AES_KEY configured")
        dec = self.crypto.decrypt(encrypt, msg_signature, timestamp, nonce)
        return parse_xml(dec.xml), dec.key_index

    # --- exactly once, within the budget ----------------------------------------------------

    async def process(self, msg: Message, fields: dict[str, str], *, deadline: float,
                      nonce: Optional[str] = None) -> Reply:
        """The message's reply; REPLAYED when `nonce` (checked with the claim) was used before."""
        key = message_key(msg.openid, msg.msg_id if msg.kind != "event" else None,
                          fields.get("CreateTime"), msg.event, msg.kind)
        try:
            claim = await self.deduper.claim(key, msg.openid, wait_seconds=max(0.0, deadline - time.monotonic()),
                                             nonce=nonce)
        except Exception:
            ref = new_ref()
            log.exception("dedupe failed ref=%s", ref, extra={"ref": ref})
            metrics.APOLOGIES.inc()
            return apology(ref)
        if claim.replay:
            return REPLAYED
        if not claim.owner:
            # A WeChat retry: the first attempt's reply, or nothing if it is still running.
            metrics.DEDUPE_HITS.inc()
            return claim.reply or NO_REPLY

        if claim.taken_over:
            log.warning("took over a %s message whose first attempt died (its lease ran out)", msg.kind)
        metrics.MESSAGES.labels(msg.kind).inc()
        msg = replace(msg, prefetched=claim.prefetched, key=key)
        # The handler runs as a task of its own so that, past the reply budget, it can go on and
        # be delivered later (_finish_late); an inline await under asyncio.timeout would cancel it.
        # Most answers (a warm query: nothing awaited on the database) finish in the task's first
        # step, which the loop runs before this coroutine resumes from sleep(0): then no
        # asyncio.wait (its waiter future, timer and callbacks) is set up at all.
        task = asyncio.create_task(self._run(msg))
        await asyncio.sleep(0)
        if task.done():
            done = True
        else:
            done = bool((await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic())))[0])
        durable = True
        if done:
            reply = task.result()
            # A query's answer (the router marks it read-only) is written behind: answering it
            # again after a crash changes nothing. Anything else is stored before it is sent.
            durable = not (reply.read_only and not claim.taken_over)
        else:
            reply = Reply(PROCESSING)
            self._track(asyncio.create_task(self._finish_late(msg.openid, task)))
        if reply.text and reply.image_media_id:
            # A passive reply is one message: the text goes now, the picture right after as a
            # customer-service message (or via the outbox if WeChat refuses it).
            self._track(asyncio.create_task(self._picture_after(msg.openid, reply.image_media_id)))
            reply = Reply(reply.text)
        try:
            # Only a user's own message opens WeChat's 48-hour customer-service window; events
            # (template receipts, unsubscribe, location reports) must not look like one.
            await self.deduper.finish(key, reply, msg.openid if msg.kind != "event" else None, durable=durable)
        except Exception:
            log.exception("could not store the reply of a %s message", msg.kind)
        return reply

    async def _run(self, msg: Message) -> Reply:
        try:
            if msg.kind == "text" and msg.text.strip() in NEXT_PAGE_WORDS:
                return await self.pager.next_page(msg.openid)
            reply = await self.handler(msg)
            page = await self.pager.first_page(msg.openid, reply)
            if reply.read_only and not page.read_only:
                page = replace(page, read_only=True)
            return page
        except Exception:
            ref = new_ref()
            log.exception("handler failed ref=%s kind=%s", ref, msg.kind, extra={"ref": ref, "kind": msg.kind})
            metrics.APOLOGIES.inc()
            return apology(ref)

    async def _picture_after(self, openid: str, media_id: str) -> None:
        # Just after the passive reply, so that the text shows first on the phone.
        await asyncio.sleep(0.3)
        try:
            await self.deliver_later(openid, Reply(image_media_id=media_id))
        except Exception:
            log.exception("picture delivery failed")

    async def _finish_late(self, openid: str, task: asyncio.Task) -> None:
        reply = await task
        if reply.empty:
            return
        try:
            await self.deliver_later(openid, reply)
        except Exception:
            log.exception("late delivery failed")

    def _track(self, task: asyncio.Task) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self, timeout: float = 10.0) -> None:
        """Let late results finish before shutdown; write the replies held behind."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout)
        await self.deduper.close()


async def _read_limited(request: web.Request, limit: int) -> Optional[bytes]:
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(16384):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
