"""The phone chat page's backend: what a user does on the page goes to the bot through WeChatServer.

Routes (all JSON unless said otherwise):

- ``GET /`` — the page (``emulator/static/index.html``); ``GET /_emu/static/...`` its files.
- ``GET /_emu/chat/config`` — account name and id, mode, default openid, menu.
- ``GET /_emu/chat/users`` — the openids that have a chat so far.
- ``GET /_emu/chat/history?openid=`` — the chat so far: ``{"entries": [...], "subscribed": ...}``.
- ``POST /_emu/chat/text`` ``{"openid", "text", "client_id"?}`` — a text message.
- ``POST /_emu/chat/event`` ``{"openid", "event", "key"?, "client_id"?}`` — CLICK, VIEW, SCAN ...
- ``POST /_emu/chat/subscribe`` ``{"openid", "subscribed": bool}`` — follow / unfollow.
- ``POST /_emu/chat/photo`` multipart ``openid``, ``file``, ``client_id``?, ``event``? + ``key``? (a
  menu photo button) — the photo is stored with ``state.add_media`` and sent as an image message.
- ``GET /_emu/chat/stream?openid=`` — Server-Sent Events: ``entry`` (a new chat entry, including
  pushed customer-service and template messages), ``menu`` (the custom menu changed) and ``sms``
  (an SMS the emulated gateway took, to every page: see emulator/sms.py).

The posting routes answer ``{"entries": [...], "deliveries": [...]}``: the entries added to the
chat (the user's own, then the account's passive reply or WeChat's error line) and what happened
on the wire (attempts, HTTP statuses, latency, why a reply was refused).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import itertools
import json
import logging
import time
from pathlib import Path
from typing import Any, Optional

from aiohttp import web

from .api import MEDIA_TTL
from .server import SERVICE_ERROR, DeliveryResult, ParsedReply, WeChatServer

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
ACCOUNT_NAME = "上海自考"
#: The openid a new tab gets: 28 characters like WeChat's, stable across runs.
DEMO_OPENID = "oZiKaoDemoUser00000000000001"
HISTORY_LIMIT = 500  # entries kept per openid
MAX_PHOTO_BYTES = 10 * 1024 * 1024  # WeChat's image limit
HEARTBEAT_SECONDS = 15.0


# What kind of user action each event counts as for the customer-service window.
_EVENT_ACTION = {
    "CLICK": "click",
    "VIEW": "click",
    "scancode_push": "click",
    "scancode_waitmsg": "click",
    "pic_sysphoto": "click",
    "pic_photo_or_album": "click",
    "pic_weixin": "click",
    "location_select": "click",
    "SCAN": "scan",
    "subscribe": "subscribe",
}

_PIC_EVENTS = ("pic_sysphoto", "pic_photo_or_album", "pic_weixin")


class ChatHub:
    """The chats of all emulated users: history, live subscribers, and the path to the bot."""

    def __init__(
        self,
        state: Any,
        server: WeChatServer,
        *,
        account_name: str = ACCOUNT_NAME,
        default_openid: str = DEMO_OPENID,
    ) -> None:
        self.state = state
        self.server = server
        self.account_name = account_name
        self.default_openid = default_openid
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.subscribed: dict[str, bool] = {}
        self._subscribers: dict[str, set[asyncio.Queue]] = {}
        self._ids = itertools.count(1)
        self._templates: dict[tuple[str, str], dict[str, Any]] = {}  # (openid, msgid) -> entry
        self._template_status: dict[tuple[str, str], str] = {}  # reports that came before the entry
        self.closing = asyncio.Event()

    # -- entries

    def add(self, openid: str, entry: dict[str, Any]) -> dict[str, Any]:
        entry.setdefault("at", time.time())
        entry["id"] = next(self._ids)
        entry["openid"] = openid
        chat = self.history.setdefault(openid, [])
        chat.append(entry)
        del chat[:-HISTORY_LIMIT]
        self.publish(openid, "entry", entry)
        return entry

    def publish(self, openid: str, kind: str, payload: dict[str, Any]) -> None:
        for q in list(self._subscribers.get(openid, ())):
            q.put_nowait((kind, payload))

    def broadcast(self, kind: str, payload: dict[str, Any]) -> None:
        """An event for every open page, whichever user it shows (the SMS panel's ``sms``)."""
        for subs in list(self._subscribers.values()):
            for q in list(subs):
                q.put_nowait((kind, payload))

    def subscribe(self, openid: str) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue()
        self._subscribers.setdefault(openid, set()).add(q)
        return q

    def unsubscribe(self, openid: str, q: asyncio.Queue) -> None:
        subs = self._subscribers.get(openid)
        if subs is not None:
            subs.discard(q)
            if not subs:
                del self._subscribers[openid]

    def is_subscribed(self, openid: str) -> Optional[bool]:
        """Whether the emulated WeChat has this user as a follower; None before it knows the user."""
        user = getattr(self.state, "users", {}).get(openid)
        if user is not None:
            return bool(user.subscribed)
        return self.subscribed.get(openid)

    def menu(self) -> Optional[dict[str, Any]]:
        return getattr(self.state, "menu", None)

    # -- what the bot answers

    def reply_entries(self, openid: str, result: DeliveryResult) -> list[dict[str, Any]]:
        if result.error:
            return [self.add(openid, {"side": "system", "type": "error", "content": result.error, "detail": result.detail})]
        if result.reply is None:
            return []
        entry = _reply_entry(result.reply)
        return [self.add(openid, entry)] if entry else []

    # -- pushes from the API (customer-service and template messages)

    def on_outbound(self, msg: dict[str, Any]) -> None:
        openid = msg.get("openid")
        if not openid:
            return
        entry = outbound_entry(msg, getattr(self.state, "templates", {}))
        if entry["type"] == "template" and entry.get("msgid") is not None:
            key = (openid, str(entry["msgid"]))
            if key in self._template_status:  # the delivery report came first
                entry["status"] = self._template_status.pop(key)
            else:
                self._templates[key] = entry
        self.add(openid, entry)

    async def on_template_sent(self, openid: str, msgid: Any, status: str) -> None:
        """The API delivered (or failed) a template message: tell the bot, show the status."""
        key = (openid, str(msgid))
        entry = self._templates.pop(key, None)
        if entry is not None:
            entry["status"] = status
            self.publish(openid, "entry", entry)
        elif status == "success":
            self._template_status[key] = status
            del_keys = list(self._template_status)[:-1000]
            for k in del_keys:
                self._template_status.pop(k, None)
        try:
            await self.server.send_template_finish(openid, msgid, status)
        except Exception:  # the bot being down must not break the API
            log.exception("TEMPLATESENDJOBFINISH to the bot failed")

    async def listen(self) -> None:
        q = self.state.listen()
        try:
            while True:
                msg = await q.get()
                try:
                    self.on_outbound(msg)
                except Exception:
                    log.exception("cannot show an outbound %s message", type(msg).__name__)
        finally:
            self.state.unlisten(q)


HUB_KEY = web.AppKey("emulator_chat_hub", ChatHub)


def _reply_entry(reply: ParsedReply) -> Optional[dict[str, Any]]:
    base: dict[str, Any] = {"side": "account", "source": "reply"}
    if reply.type == "text":
        return {**base, "type": "text", "content": reply.content}
    if reply.type == "image":
        return {**base, "type": "image", "media_id": reply.media_id}
    if reply.type == "news":
        return {**base, "type": "news", "articles": reply.articles}
    if reply.type == "transfer_customer_service":
        return None  # WeChat shows nothing: the message goes to the customer-service staff
    label = {"voice": "语音", "video": "视频", "music": "音乐"}.get(reply.type, reply.type)
    return {**base, "type": "text", "content": f"[{label}]", "media_id": reply.media_id}


def _epoch(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time()


# Labels for template keywords by their type prefix (thing1, time2 ...), when the template
# definition gives none: what the candidate reads on the card.
_KEYWORD_LABELS = {
    "thing": "事项",
    "phrase": "状态",
    "time": "时间",
    "date": "日期",
    "character_string": "编号",
    "number": "数量",
    "amount": "金额",
    "name": "姓名",
    "letter": "代码",
    "symbol": "符号",
    "phone_number": "电话",
    "car_number": "车牌",
    "const": "说明",
}


def keyword_label(key: str, labels: dict[str, str] | None = None) -> str:
    if labels and key in labels:
        return labels[key]
    prefix = key.rstrip("0123456789")
    return _KEYWORD_LABELS.get(prefix, key)


def outbound_entry(msg: dict[str, Any], templates: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """An entry for a message the bot pushed through the API (customer-service or template)."""
    entry: dict[str, Any] = {"side": "account", "source": "push", "at": _epoch(msg.get("at")), "msgid": msg.get("msgid")}
    kind = msg.get("type")
    if kind == "text":
        entry.update(type="text", content=str(msg.get("content", "")))
    elif kind == "image":
        entry.update(type="image", media_id=msg.get("media_id"))
    elif kind == "template":
        data = msg.get("data") or {}
        definition = (templates or {}).get(msg.get("template_id") or "", {})
        labels = msg.get("labels") or definition.get("labels") or {}
        entry.update(
            type="template",
            template_id=msg.get("template_id"),
            title=msg.get("title") or definition.get("title") or "模板消息",
            url=msg.get("url"),
            rows=[
                {"key": k, "label": keyword_label(k, labels), "value": v.get("value") if isinstance(v, dict) else v}
                for k, v in data.items()
            ],
            status=msg.get("status"),
        )
    else:
        entry.update(type="text", content=f"[{kind}]")
    return entry


# --------------------------------------------------------------------------------------------
# Routes


def _hub(request: web.Request) -> ChatHub:
    return request.app[HUB_KEY]


def _openid(value: Any) -> str:
    openid = str(value or "").strip()
    if not openid or len(openid) > 64 or not all(c.isalnum() or c in "-_" for c in openid):
        raise web.HTTPBadRequest(text=json.dumps({"error": "openid: 1-64 letters, digits, - or _"}), content_type="application/json")
    return openid


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text=json.dumps({"error": "expected a JSON object"}), content_type="application/json")
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "expected a JSON object"}), content_type="application/json")
    return body


def _require_follower(hub: ChatHub, openid: str) -> None:
    """WeChat lets only followers write to a service account."""
    if hub.is_subscribed(openid) is False:
        raise web.HTTPConflict(
            text=json.dumps({"error": "请先关注公众号"}, ensure_ascii=False), content_type="application/json"
        )


def _answer(hub: ChatHub, openid: str, entries: list[dict[str, Any]], results: list[DeliveryResult]) -> web.Response:
    return web.json_response(
        {"entries": entries, "deliveries": [r.as_dict() for r in results], "subscribed": hub.is_subscribed(openid)},
        dumps=lambda o: json.dumps(o, ensure_ascii=False),
    )


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def config(request: web.Request) -> web.Response:
    hub = _hub(request)
    return web.json_response(
        {
            "account_name": hub.account_name,
            "account_id": hub.server.account_id,
            "mode": hub.server.mode,
            "bot_url": hub.server.bot_url,
            "default_openid": hub.default_openid,
            "menu": hub.menu(),
            "service_error": SERVICE_ERROR,
        },
        dumps=lambda o: json.dumps(o, ensure_ascii=False),
    )


async def users(request: web.Request) -> web.Response:
    hub = _hub(request)
    known = list(hub.history)
    if hub.default_openid not in known:
        known.insert(0, hub.default_openid)
    return web.json_response({"openids": known})


async def history(request: web.Request) -> web.Response:
    hub = _hub(request)
    openid = _openid(request.query.get("openid"))
    return web.json_response(
        {"entries": hub.history.get(openid, []), "subscribed": hub.is_subscribed(openid)},
        dumps=lambda o: json.dumps(o, ensure_ascii=False),
    )


async def send_text(request: web.Request) -> web.Response:
    hub = _hub(request)
    body = await _json_body(request)
    openid = _openid(body.get("openid"))
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise web.HTTPBadRequest(text=json.dumps({"error": "text: not empty"}), content_type="application/json")
    _require_follower(hub, openid)
    entries = [hub.add(openid, {"side": "user", "type": "text", "content": text, "client_id": body.get("client_id")})]
    hub.state.record_user_action(openid, "message")
    result = await hub.server.send_text(openid, text)
    entries[0]["msg_id"] = str(result.msg_id)
    entries += hub.reply_entries(openid, result)
    return _answer(hub, openid, entries, [result])


async def send_event(request: web.Request) -> web.Response:
    hub = _hub(request)
    body = await _json_body(request)
    openid = _openid(body.get("openid"))
    event = body.get("event")
    key = body.get("key")
    if not isinstance(event, str) or not event or event in ("subscribe", "unsubscribe"):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "event: CLICK, VIEW, SCAN ... (subscribe through /_emu/chat/subscribe)"}),
            content_type="application/json",
        )
    if key is not None and not isinstance(key, str):
        raise web.HTTPBadRequest(text=json.dumps({"error": "key: a string"}), content_type="application/json")
    _require_follower(hub, openid)
    action = _EVENT_ACTION.get(event)
    if action:
        hub.state.record_user_action(openid, action)
    extra: dict[str, Any] = {}
    if event == "SCAN" and body.get("ticket"):
        extra["Ticket"] = str(body["ticket"])
    result = await hub.server.send_event(openid, event, key, **extra)
    return _answer(hub, openid, hub.reply_entries(openid, result), [result])


async def set_subscribed(request: web.Request) -> web.Response:
    hub = _hub(request)
    body = await _json_body(request)
    openid = _openid(body.get("openid"))
    subscribed = body.get("subscribed")
    if not isinstance(subscribed, bool):
        raise web.HTTPBadRequest(text=json.dumps({"error": "subscribed: true or false"}), content_type="application/json")
    scene = body.get("scene")  # subscribe by QR code: qrscene_<scene>
    hub.subscribed[openid] = subscribed
    hub.state.set_subscribed(openid, subscribed)
    if subscribed:
        hub.state.record_user_action(openid, "subscribe")
    entries = [hub.add(openid, {"side": "system", "type": "notice", "content": "你关注了“%s”" % hub.account_name if subscribed else "你已取消关注“%s”" % hub.account_name})]
    if subscribed and scene:
        result = await hub.server.send_event(openid, "subscribe", f"qrscene_{scene}", Ticket=f"TICKET_{scene}")
    else:
        result = await hub.server.send_event(openid, "subscribe" if subscribed else "unsubscribe")
    if subscribed:
        entries += hub.reply_entries(openid, result)
    # An unfollowed user sees no reply: WeChat drops whatever the bot answers to unsubscribe.
    return _answer(hub, openid, entries, [result])


async def send_photo(request: web.Request) -> web.Response:
    hub = _hub(request)
    if not request.content_type.startswith("multipart/"):
        raise web.HTTPBadRequest(text=json.dumps({"error": "expected multipart/form-data"}), content_type="application/json")
    fields: dict[str, str] = {}
    data: bytes = b""
    content_type = ""
    filename = ""
    reader = await request.multipart()
    async for part in reader:
        if part.name == "file":
            content_type = part.headers.get("Content-Type", "application/octet-stream")
            filename = part.filename or "photo"
            chunks = bytearray()
            while chunk := await part.read_chunk(65536):
                chunks += chunk
                if len(chunks) > MAX_PHOTO_BYTES:
                    raise web.HTTPRequestEntityTooLarge(
                        max_size=MAX_PHOTO_BYTES, actual_size=len(chunks),
                        text=json.dumps({"error": "图片不能超过 10 MB"}, ensure_ascii=False), content_type="application/json",
                    )
            data = bytes(chunks)
        elif part.name:
            fields[part.name] = (await part.text())[:2048]
    openid = _openid(fields.get("openid"))
    _require_follower(hub, openid)
    if not data:
        raise web.HTTPBadRequest(text=json.dumps({"error": "file: no photo"}), content_type="application/json")
    if not content_type.startswith("image/"):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "只能发送图片"}, ensure_ascii=False), content_type="application/json"
        )
    media_id = hub.state.add_media(data, content_type, filename)
    pic_url = f"{request.scheme}://{request.host}/_emu/chat/media/{media_id}"
    results: list[DeliveryResult] = []
    entries: list[dict[str, Any]] = []
    event = fields.get("event")
    if event in _PIC_EVENTS:  # a menu photo button: the event first, then the image
        hub.state.record_user_action(openid, "click")
        res = await hub.server.send_pic_event(openid, event, fields.get("key", ""), [hashlib.md5(data).hexdigest()])
        results.append(res)
    entries.append(
        hub.add(openid, {"side": "user", "type": "image", "media_id": media_id, "client_id": fields.get("client_id")})
    )
    hub.state.record_user_action(openid, "message")
    result = await hub.server.send_image(openid, media_id, pic_url)
    entries[0]["msg_id"] = str(result.msg_id)
    results.append(result)
    for res in results:
        entries += hub.reply_entries(openid, res)
    return _answer(hub, openid, entries, results)


async def media(request: web.Request) -> web.Response:
    """A stored photo without an access_token, as WeChat's PicUrl (its CDN) serves it."""
    hub = _hub(request)
    m = getattr(hub.state, "media", {}).get(request.match_info["media_id"])
    if m is None or hub.state.now() - m.created_at > MEDIA_TTL:
        raise web.HTTPNotFound(text="media not found or expired")
    return web.Response(body=m.data, content_type=m.content_type, headers={"Cache-Control": "private, max-age=3600"})


async def stream(request: web.Request) -> web.StreamResponse:
    hub = _hub(request)
    openid = _openid(request.query.get("openid"))
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)
    q = hub.subscribe(openid)
    last_menu: Any = object()
    last_beat = time.monotonic()
    try:
        await resp.write(b"retry: 2000\n: connected\n\n")
        while not hub.closing.is_set():
            menu = hub.menu()
            if menu != last_menu:
                last_menu = json.loads(json.dumps(menu)) if menu is not None else None
                await resp.write(_sse("menu", {"menu": menu}))
            try:
                kind, payload = await asyncio.wait_for(q.get(), timeout=1.0)
            except (asyncio.TimeoutError, TimeoutError):
                if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                    await resp.write(b": ping\n\n")
                    last_beat = time.monotonic()
                continue
            if kind == "close":
                break
            await resp.write(_sse(kind, payload))
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        hub.unsubscribe(openid, q)
    return resp


def _sse(event: str, payload: Any) -> bytes:
    data = json.dumps(payload, ensure_ascii=False)
    return f"event: {event}\ndata: {data}\n\n".encode("utf-8")


# --------------------------------------------------------------------------------------------
# Wiring


def add_chat_routes(
    app: web.Application,
    state: Any,
    server: WeChatServer,
    *,
    account_name: str = ACCOUNT_NAME,
    default_openid: str = DEMO_OPENID,
) -> ChatHub:
    """Add the page and its backend to `app`; the hub listens to `state` while the app runs.

    Also sets ``state.on_template_sent`` so that every template message the API delivers is
    reported to the bot as a TEMPLATESENDJOBFINISH event, as WeChat does.
    """
    hub = ChatHub(state, server, account_name=account_name, default_openid=default_openid)
    app[HUB_KEY] = hub
    state.on_template_sent = hub.on_template_sent

    r = app.router
    r.add_get("/", index)
    r.add_static("/_emu/static/", STATIC_DIR, append_version=False)
    r.add_get("/_emu/chat/config", config)
    r.add_get("/_emu/chat/users", users)
    r.add_get("/_emu/chat/history", history)
    r.add_get("/_emu/chat/stream", stream)
    r.add_get("/_emu/chat/media/{media_id}", media)
    r.add_post("/_emu/chat/text", send_text)
    r.add_post("/_emu/chat/event", send_event)
    r.add_post("/_emu/chat/subscribe", set_subscribed)
    r.add_post("/_emu/chat/photo", send_photo)

    async def lifecycle(app: web.Application):
        hub.closing.clear()
        listener = asyncio.create_task(hub.listen(), name="emulator-chat-listener")
        yield
        listener.cancel()
        try:
            await listener
        except asyncio.CancelledError:
            pass
        await server.close()

    async def on_shutdown(app: web.Application) -> None:
        # Open event streams would otherwise hold the shutdown for aiohttp's whole grace period.
        hub.closing.set()
        for subs in list(hub._subscribers.values()):
            for q in list(subs):
                q.put_nowait(("close", {}))

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    return hub
