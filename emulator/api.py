"""The WeChat HTTP API as the bot sees it: tokens, messages, media and menu, errors included.

`EmulatorState` holds what WeChat would know (tokens, users and their reply windows, media,
templates, the menu) and records every call; `add_api_routes` serves it under /cgi-bin/ plus a
control API under /_emu/ (faults, recorded calls, delivered messages, reset, clock).

Time is `state.now()`, wall-clock time plus `state.time_offset`: tests and demos move it with
`state.advance(seconds)` to reach token expiry or the end of a reply window without waiting.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import re
import secrets
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import urlparse

from aiohttp import web

from emulator.faults import Faults

log = logging.getLogger(__name__)

DEFAULT_APP_ID = "wx0000000000000000"  # bot.config.Settings' default
DEFAULT_APP_SECRET = "0123456789abcdef0123456789abcdef"

TOKEN_TTL = 7200
OLD_TOKEN_GRACE = 300  # cgi-bin/token: the previous token stays valid this long
STABLE_RENEW_BEFORE = 300  # stable_token: a new token only this close to expiry
FORCE_REFRESH_MIN_INTERVAL = 30  # stable_token: a force_refresh sooner than this changes nothing
MEDIA_TTL = 3 * 86400
MESSAGE_WINDOW = 48 * 3600
MESSAGE_QUOTA = 5  # customer-service messages per user message, within MESSAGE_WINDOW
EVENT_WINDOW = 60
EVENT_QUOTA = 3  # customer-service messages per click/subscribe/scan, within EVENT_WINDOW
TEXT_MAX_BYTES = 2048
TEMPLATE_VALUE_MAX = 20
CLIENT_MSG_ID_TTL = 600
MEDIA_LIMITS = {"image": 10 * 1024 * 1024, "voice": 2 * 1024 * 1024, "video": 10 * 1024 * 1024, "thumb": 64 * 1024}
MEDIA_SIZE_ERRCODES = {"image": 40009, "voice": 40010, "video": 40011, "thumb": 40012}
IMAGE_TYPES = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/bmp": ".bmp"}
USER_ACTIONS = ("message", "click", "subscribe", "scan")

# Template ids registered by default: title and keyword labels as the card shows them.
DEFAULT_TEMPLATES: dict[str, dict[str, Any]] = {
    "TM_REVIEW_RESULT": {
        "title": "审核结果通知",
        "labels": {"thing1": "业务名称", "phrase2": "审核结果", "time3": "审核时间", "thing4": "备注"},
    },
    "TM_EXAM_NOTICE": {
        "title": "考试通知",
        "labels": {"thing1": "通知标题", "time2": "发布时间", "thing3": "说明"},
    },
    "TM_SCORE_RELEASE": {
        "title": "成绩发布通知",
        "labels": {"thing1": "考次", "time2": "发布时间", "thing3": "查询方式"},
    },
    "TM_BUSINESS_REMINDER": {
        "title": "业务办理提醒",
        "labels": {"thing1": "业务名称", "time2": "截止时间", "thing3": "温馨提示"},
    },
}

ERRMSG = {
    -1: "system error",
    0: "ok",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40004: "invalid media type",
    40005: "invalid file type",
    40007: "invalid media_id",
    40008: "invalid message type",
    40009: "invalid image size",
    40010: "invalid voice size",
    40011: "invalid video size",
    40012: "invalid thumb size",
    40013: "invalid appid",
    40014: "invalid access_token",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40020: "invalid button url size",
    40022: "invalid sub button level",
    40023: "invalid sub button size",
    40024: "invalid sub button type",
    40025: "invalid sub button name size",
    40026: "invalid sub button key size",
    40027: "invalid sub button url size",
    40037: "invalid template_id",
    40054: "invalid sub button url domain",
    40055: "invalid button url domain",
    40029: "invalid code",
    40125: "invalid appsecret",
    40163: "code been used",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41005: "media data missing",
    41006: "media_id missing",
    41008: "missing code",
    42001: "access_token expired",
    43004: "require subscribe",
    44002: "empty post data",
    44004: "empty content",
    45002: "content size out of limit",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    46003: "menu no exist",
    47001: "data format error",
    47003: "argument invalid!",
    48001: "api unauthorized",
}

# What an upload records in `state.calls` instead of its bytes.
_RECORDED_BODY = web.RequestKey("emulator_recorded_body", dict)
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_\-]{16,512}")


def error(errcode: int, detail: str = "") -> dict[str, Any]:
    """WeChat's error body; like WeChat, the message ends with a request id nobody should parse."""
    msg = ERRMSG.get(errcode, "unknown error")
    if detail:
        msg = f"{msg} {detail}"
    return {"errcode": errcode, "errmsg": f"{msg} rid: {secrets.token_hex(4)}-{secrets.token_hex(6)}"}


def _ok(**extra: Any) -> dict[str, Any]:
    return {"errcode": 0, "errmsg": "ok", **extra}


@dataclass
class _Token:
    value: str
    expires_at: float
    revoked_at: float | None = None  # superseded: invalid from then on


@dataclass
class _Allowance:
    """Customer-service messages a user action allows: `quota` of them within `window` s."""

    at: float
    window: float
    quota: int
    used: int = 0


@dataclass
class _User:
    subscribed: bool = True
    # "message" (a user message: 5 in 48 h) and "event" (click/subscribe/scan: 3 in 1 min)
    # are separate allowances; a send uses the short-lived one first.
    allowances: dict[str, _Allowance] = field(default_factory=dict)

    @property
    def message_at(self) -> float | None:
        """When the user last sent a message (None: never, or since unfollowing)."""
        a = self.allowances.get("message")
        return a.at if a else None

    @property
    def event_at(self) -> float | None:
        """When the user last clicked the menu, followed or scanned."""
        a = self.allowances.get("event")
        return a.at if a else None


@dataclass
class Media:
    media_id: str
    data: bytes
    content_type: str
    filename: str
    created_at: float
    kind: str = "image"


@dataclass
class _Sent:
    msgid: int
    at: float


TemplateHook = Callable[[str, int, str], Awaitable[None]]


class EmulatorState:
    """What the emulated WeChat knows. All of it lives in one event loop: no locks needed."""

    def __init__(
        self,
        app_id: str = DEFAULT_APP_ID,
        app_secret: str = DEFAULT_APP_SECRET,
        *,
        templates: Mapping[str, Mapping[str, Any]] | None = None,
        template_daily_quota: int = 100_000,
        force_refresh_daily_limit: int = 20,
        token_daily_limit: int = 2000,
        seed: int | None = None,
    ) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.templates: dict[str, dict[str, Any]] = {
            k: dict(v) for k, v in (DEFAULT_TEMPLATES if templates is None else templates).items()
        }
        self.template_daily_quota = template_daily_quota
        self.force_refresh_daily_limit = force_refresh_daily_limit
        self.token_daily_limit = token_daily_limit
        # Optional async callback(openid, msgid, status), e.g. to post TEMPLATESENDJOBFINISH.
        self.on_template_sent: TemplateHook | None = None
        # Openids that blocked template messages: sends are accepted but reported failed.
        self.template_blocked: set[str] = set()
        self.random = random.Random(seed)
        self.faults = Faults(self.random)
        self.time_offset = 0.0
        self.max_records = 50_000  # calls and outbound items kept, newest last
        self._listeners: set[asyncio.Queue] = set()
        self._tasks: set[asyncio.Task] = set()
        self._msgids = itertools.count(2_000_000_000 + self.random.randrange(1_000_000))
        self._clear()

    def _clear(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.outbound: list[dict[str, Any]] = []
        self.users: dict[str, _User] = {}
        self.media: dict[str, Media] = {}
        self.menu: dict[str, Any] | None = None
        self._tokens: dict[str, _Token] = {}
        self._basic_token: str | None = None
        self._stable_token: str | None = None
        self._last_force_refresh: float | None = None
        self._daily: dict[tuple[str, int], int] = {}
        self._template_sent: dict[tuple[str, str], _Sent] = {}

    def reset(self) -> None:
        """Forget everything issued or recorded (tokens, users, media, menu, calls, outbound,
        faults, quotas); keep the configuration, the hook and the listeners."""
        self._clear()
        self.faults.clear()
        self.time_offset = 0.0

    # --- time ---------------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.time_offset

    def advance(self, seconds: float) -> float:
        self.time_offset += seconds
        return self.now()

    def _day(self, name: str) -> tuple[str, int]:
        return name, int((self.now() + 8 * 3600) // 86400)  # quotas reset at midnight Beijing time

    def _used_today(self, name: str) -> int:
        return self._daily.get(self._day(name), 0)

    def _count_today(self, name: str) -> None:
        key = self._day(name)
        self._daily[key] = self._daily.get(key, 0) + 1

    # --- users (called by the chat/server side when a user does something) -------------------

    def record_user_action(self, openid: str, kind: str) -> None:
        """A user sent a message ("message") or clicked the menu / followed / scanned: this opens
        a fresh customer-service allowance. Only followers can do any of these, so the user is
        marked subscribed."""
        if kind not in USER_ACTIONS:
            raise ValueError(f"kind must be one of {USER_ACTIONS}, got {kind!r}")
        user = self.users.setdefault(openid, _User())
        user.subscribed = True
        if kind == "message":
            user.allowances["message"] = _Allowance(self.now(), MESSAGE_WINDOW, MESSAGE_QUOTA)
        else:
            user.allowances["event"] = _Allowance(self.now(), EVENT_WINDOW, EVENT_QUOTA)

    def set_subscribed(self, openid: str, subscribed: bool) -> None:
        user = self.users.setdefault(openid, _User(subscribed=subscribed))
        user.subscribed = subscribed
        if not subscribed:
            user.allowances.clear()

    # --- tokens -------------------------------------------------------------------------------

    def _issue_token(self) -> _Token:
        value = f"{secrets.randbelow(90) + 10}_{secrets.token_urlsafe(96)}"
        tok = _Token(value, self.now() + TOKEN_TTL)
        self._tokens[value] = tok
        return tok

    def token_errcode(self, token: str | None) -> int:
        """0 for a usable token, else what WeChat answers about it."""
        if not token:
            return 41001
        if not _TOKEN_SHAPE.fullmatch(token):
            return 40014
        tok = self._tokens.get(token)
        now = self.now()
        if tok is None or (tok.revoked_at is not None and now >= tok.revoked_at):
            return 40001
        if now >= tok.expires_at:
            return 42001
        return 0

    def revoke_tokens(self) -> None:
        """Every issued token becomes invalid now (as after an AppSecret reset)."""
        now = self.now()
        for tok in self._tokens.values():
            tok.revoked_at = now if tok.revoked_at is None else min(tok.revoked_at, now)

    # --- media --------------------------------------------------------------------------------

    def add_media(self, data: bytes, content_type: str, filename: str) -> str:
        """Stores a file as WeChat keeps a user's photo (3 days) and returns its media_id."""
        kind = content_type.split("/", 1)[0]
        kind = {"audio": "voice"}.get(kind, kind)
        media_id = secrets.token_urlsafe(48)
        self.media[media_id] = Media(media_id, bytes(data), content_type, filename, self.now(), kind)
        return media_id

    def _media(self, media_id: str) -> Media | None:
        m = self.media.get(media_id)
        if m is None or self.now() - m.created_at > MEDIA_TTL:
            return None
        return m

    # --- delivered messages -------------------------------------------------------------------

    def listen(self) -> asyncio.Queue:
        """A queue receiving every outbound item delivered from now on."""
        q: asyncio.Queue = asyncio.Queue()
        self._listeners.add(q)
        return q

    def unlisten(self, q: asyncio.Queue) -> None:
        self._listeners.discard(q)

    def _record(self, records: list[dict[str, Any]], item: dict[str, Any]) -> None:
        records.append(item)
        if len(records) > self.max_records:  # a long demo or a load test must not grow forever
            del records[: len(records) - self.max_records]

    def _deliver(self, item: dict[str, Any]) -> None:
        self._record(self.outbound, item)
        for q in list(self._listeners):
            q.put_nowait(item)

    def calls_to(self, endpoint: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["endpoint"] == endpoint]

    def _spawn(self, coro: Awaitable[Any], what: str) -> asyncio.Future:
        """Runs `coro` to its end even if whoever awaits it goes away; failures are logged."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Future) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s failed", what, exc_info=t.exception())

        task.add_done_callback(done)
        return task


# --- the API handlers -------------------------------------------------------------------------

Answer = dict[str, Any] | web.StreamResponse


class _Api:
    def __init__(self, state: EmulatorState) -> None:
        self.s = state

    # tokens

    def _check_credentials(self, grant_type: Any, appid: Any, secret: Any) -> dict | None:
        if grant_type != "client_credential":
            return error(40002)
        if not appid:
            return error(41002)
        if appid != self.s.app_id:
            return error(40013)
        if not secret:
            return error(41004)
        if not secrets.compare_digest(str(secret).encode(), self.s.app_secret.encode()):
            return error(40125)
        return None

    async def token(self, request: web.Request, body: Any) -> Answer:
        q = request.query
        bad = self._check_credentials(q.get("grant_type"), q.get("appid"), q.get("secret"))
        if bad:
            return bad
        if self.s._used_today("token") >= self.s.token_daily_limit:
            return error(45009)
        self.s._count_today("token")
        now = self.s.now()
        if self.s._basic_token:
            old = self.s._tokens[self.s._basic_token]
            grace_end = now + OLD_TOKEN_GRACE
            old.revoked_at = grace_end if old.revoked_at is None else min(old.revoked_at, grace_end)
        tok = self.s._issue_token()
        self.s._basic_token = tok.value
        return {"access_token": tok.value, "expires_in": TOKEN_TTL}

    async def stable_token(self, request: web.Request, body: Any) -> Answer:
        bad = self._check_credentials(body.get("grant_type"), body.get("appid"), body.get("secret"))
        if bad:
            return bad
        force = body.get("force_refresh", False)
        if not isinstance(force, bool):
            return error(47001, "force_refresh must be a boolean")
        s = self.s
        now = s.now()
        cur = s._tokens.get(s._stable_token) if s._stable_token else None
        if cur is not None and (cur.revoked_at is not None and now >= cur.revoked_at or now >= cur.expires_at):
            cur = None
        if force:
            recent = s._last_force_refresh is not None and now - s._last_force_refresh < FORCE_REFRESH_MIN_INTERVAL
            if not (recent and cur is not None):
                if s._used_today("force_refresh") >= s.force_refresh_daily_limit:
                    return error(45009)
                s._count_today("force_refresh")
                s._last_force_refresh = now
                if cur is not None:
                    cur.revoked_at = now  # force mode invalidates the previous token at once
                cur = None
        if cur is None or cur.expires_at - now <= STABLE_RENEW_BEFORE:
            cur = s._issue_token()  # a token renewed near expiry stays valid until it expires
            s._stable_token = cur.value
        return {"access_token": cur.value, "expires_in": round(cur.expires_at - now)}

    # messages

    def _user_for_message(self, openid: Any) -> tuple[_User | None, dict | None]:
        if not isinstance(openid, str) or not openid:
            return None, error(40003)
        user = self.s.users.get(openid)
        if user is None:
            return None, error(40003)
        if not user.subscribed:
            return None, error(43004)
        return user, None

    async def custom_send(self, request: web.Request, body: Any) -> Answer:
        msgtype = body.get("msgtype")
        item: dict[str, Any]
        if msgtype == "text":
            text = body.get("text")
            content = text.get("content") if isinstance(text, dict) else None
            if not isinstance(content, str) or not content:
                return error(44004)
            if len(content.encode("utf-8")) > TEXT_MAX_BYTES:
                return error(45002)
            item = {"type": "text", "content": content}
        elif msgtype == "image":
            image = body.get("image")
            media_id = image.get("media_id") if isinstance(image, dict) else None
            if not isinstance(media_id, str) or self.s._media(media_id) is None:
                return error(40007)
            item = {"type": "image", "media_id": media_id}
        else:
            return error(40008)
        user, bad = self._user_for_message(body.get("touser"))
        if bad:
            return bad
        assert user is not None
        now = self.s.now()
        open_ = [
            a for a in (user.allowances.get("event"), user.allowances.get("message"))
            if a is not None and now - a.at <= a.window
        ]
        if not open_:
            return error(45015)
        allowance = next((a for a in open_ if a.used < a.quota), None)
        if allowance is None:
            return error(45047)
        allowance.used += 1
        self.s._deliver({"openid": body["touser"], **item, "msgid": next(self.s._msgids), "at": now})
        return _ok()

    async def template_send(self, request: web.Request, body: Any) -> Answer:
        s = self.s
        template_id = body.get("template_id")
        if not isinstance(template_id, str) or template_id not in s.templates:
            return error(40037)
        openid = body.get("touser")
        user, bad = self._user_for_message(openid)
        if bad:
            return bad
        data = body.get("data", {})
        if not isinstance(data, dict):
            return error(47001, "data must be an object")
        values: dict[str, str] = {}
        for key, entry in data.items():
            value = entry.get("value") if isinstance(entry, dict) else None
            if not isinstance(value, str):
                return error(47001, f"data.{key}.value must be a string")
            if len(value) > TEMPLATE_VALUE_MAX or "\n" in value or "\r" in value:
                return error(47003, f"data.{key}.value invalid")
            values[key] = value
        url = body.get("url")
        if url is not None and (not isinstance(url, str) or urlparse(url).scheme not in ("http", "https")):
            return error(47003, "url invalid")
        now = s.now()
        client_msg_id = body.get("client_msg_id")
        if client_msg_id is not None:
            if not isinstance(client_msg_id, str) or not client_msg_id:
                return error(47003, "client_msg_id invalid")
            sent = s._template_sent.get((openid, client_msg_id))
            if sent is not None and now - sent.at < CLIENT_MSG_ID_TTL:
                return _ok(msgid=sent.msgid)
        if s._used_today("template") >= s.template_daily_quota:
            return error(45009)
        s._count_today("template")
        msgid = next(s._msgids)
        if client_msg_id is not None:
            s._template_sent[(openid, client_msg_id)] = _Sent(msgid, now)
        status = "failed:user block" if openid in s.template_blocked else "success"
        if status == "success":
            s._deliver({
                "openid": openid, "type": "template", "template_id": template_id,
                "title": s.templates[template_id].get("title", ""), "data": values, "url": url,
                "msgid": msgid, "at": now,
            })
        if s.on_template_sent is not None:
            s._spawn(s.on_template_sent(openid, msgid, status), "on_template_sent hook")
        return _ok(msgid=msgid)

    # media

    async def media_get(self, request: web.Request, body: Any) -> Answer:
        media_id = request.query.get("media_id")
        if not media_id:
            return error(41006)
        m = self.s._media(media_id)
        if m is None:
            return error(40007)
        return web.Response(
            body=m.data,
            content_type=m.content_type,
            headers={
                "Content-Disposition": f'attachment; filename="{m.filename}"',
                "Cache-Control": "no-cache, must-revalidate",
            },
        )

    async def media_upload(self, request: web.Request, body: Any) -> Answer:
        kind = request.query.get("type")
        if kind not in MEDIA_LIMITS:
            return error(40004)
        if not request.content_type.startswith("multipart/"):
            return error(41005)
        limit = MEDIA_LIMITS[kind]
        reader = await request.multipart()
        async for part in reader:
            if getattr(part, "name", None) != "media":
                continue
            chunks, size = [], 0
            while chunk := await part.read_chunk(256 * 1024):
                size += len(chunk)
                if size > limit:
                    return error(MEDIA_SIZE_ERRCODES[kind])
                chunks.append(chunk)
            if not size:
                return error(41005)
            filename = part.filename or "media"
            content_type = part.headers.get("Content-Type", "application/octet-stream").split(";")[0].strip()
            if kind == "image":
                ext = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
                if content_type not in IMAGE_TYPES and ext not in (".jpg", ".jpeg", ".png", ".gif", ".bmp"):
                    return error(40005)
                if content_type not in IMAGE_TYPES:
                    content_type = "image/png" if ext == ".png" else "image/gif" if ext == ".gif" else "image/jpeg"
            media_id = self.s.add_media(b"".join(chunks), content_type, filename)
            self.s.media[media_id].kind = kind
            request[_RECORDED_BODY] = {"filename": filename, "content_type": content_type, "size": size}
            return {"type": kind, "media_id": media_id, "created_at": int(self.s.now())}
        return error(41005)

    # menu

    async def menu_create(self, request: web.Request, body: Any) -> Answer:
        bad = validate_menu(body)
        if bad:
            return bad
        self.s.menu = {"button": body["button"]}
        return _ok()

    async def menu_get(self, request: web.Request, body: Any) -> Answer:
        if self.s.menu is None:
            return error(46003)
        return {"menu": self.s.menu}

    async def menu_delete(self, request: web.Request, body: Any) -> Answer:
        self.s.menu = None
        return _ok()


KEY_TYPES = {
    "click", "scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album", "pic_weixin",
    "location_select",
}
BUTTON_TYPES = KEY_TYPES | {"view", "miniprogram", "media_id", "article_id", "article_view_limited"}


def _byte_len(value: Any) -> int:
    return len(value.encode("utf-8")) if isinstance(value, str) else -1


def _check_button(b: Any, *, sub: bool) -> dict | None:
    """Errcodes as WeChat gives them: top-level and sub-level problems have their own codes."""
    codes = (
        {"name": 40025, "type": 40024, "key": 40026, "url": 40027, "domain": 40054} if sub
        else {"name": 40018, "type": 40017, "key": 40019, "url": 40020, "domain": 40055}
    )
    if not isinstance(b, dict):
        return error(47001)
    if not 1 <= _byte_len(b.get("name")) <= (60 if sub else 16):
        return error(codes["name"])
    subs = b.get("sub_button")
    if subs:
        if sub:
            return error(40022)
        if not isinstance(subs, list) or len(subs) > 5:
            return error(40023)
        for s in subs:
            bad = _check_button(s, sub=True)
            if bad:
                return bad
        return None
    kind = b.get("type")
    if kind not in BUTTON_TYPES:
        return error(codes["type"])
    if kind in KEY_TYPES and not 1 <= _byte_len(b.get("key")) <= 128:
        return error(codes["key"])
    if kind in ("view", "miniprogram"):
        url = b.get("url")
        if not 1 <= _byte_len(url) <= 1024:
            return error(codes["url"])
        if urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc:
            return error(codes["domain"])
    if kind == "miniprogram" and not (b.get("appid") and b.get("pagepath")):
        return error(codes["type"])
    if kind == "media_id" and not b.get("media_id") or kind.startswith("article") and not b.get("article_id"):
        return error(codes["type"])
    return None


def validate_menu(body: Any) -> dict | None:
    """None for a menu WeChat accepts, else its error answer."""
    buttons = body.get("button") if isinstance(body, dict) else None
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return error(40016)
    for b in buttons:
        bad = _check_button(b, sub=False)
        if bad:
            return bad
    return None


# --- HTTP wiring ------------------------------------------------------------------------------

STATE_KEY = web.AppKey("emulator_state", EmulatorState)
_dumps = partial(json.dumps, ensure_ascii=False)
_SECRET_FIELDS = ("secret",)


@dataclass(frozen=True)
class _Endpoint:
    name: str
    method: str
    handler: Callable[[web.Request, Any], Awaitable[Answer]]
    needs_token: bool = True
    json_body: bool = False
    # media/get answers errors as text/plain inside HTTP 200, like WeChat.
    error_content_type: str = "application/json"


def _masked(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {k: ("***" if k in _SECRET_FIELDS else v) for k, v in values.items()}


def _answer(data: dict[str, Any], content_type: str = "application/json") -> web.Response:
    return web.json_response(data, content_type=content_type, dumps=_dumps)


def _serve(state: EmulatorState, ep: _Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        # Like WeChat, finish serving a call whose client gave up (timed out during a delay):
        # a message is delivered even though the caller never saw the answer.
        return await asyncio.shield(state._spawn(serve(request), f"emulated {ep.name}"))

    async def serve(request: web.Request) -> web.StreamResponse:
        body: Any = None
        body_error = 0
        if ep.json_body:
            raw = await request.read()
            if not raw.strip():
                body_error = 44002
            else:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body_error = 47001
                if not body_error and not isinstance(body, dict):
                    body_error = 47001
        call: dict[str, Any] = {
            "endpoint": ep.name,
            "method": request.method,
            "query": _masked({k: v for k, v in request.query.items() if k != "access_token"}),
            "body": _masked(body) if isinstance(body, dict) else body,
            "at": state.now(),
            "errcode": None,
        }
        state._record(state.calls, call)

        def fail(errcode: int) -> web.Response:
            call["errcode"] = errcode
            ctype = ep.error_content_type if errcode else "application/json"
            return _answer(error(errcode), ctype)

        fault = state.faults.take(ep.name)
        if fault is not None:
            call["fault"] = fault.id
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.drop:
                call["dropped"] = True
                if request.transport is not None:
                    request.transport.close()  # no status line, no body: the client sees a hang-up
                return web.Response()
            if fault.errcode is not None:
                return fail(fault.errcode)
        if body_error:
            return fail(body_error)
        if ep.needs_token:
            token_errcode = state.token_errcode(request.query.get("access_token"))
            if token_errcode:
                return fail(token_errcode)
        result = await ep.handler(request, body)
        if _RECORDED_BODY in request:
            call["body"] = request[_RECORDED_BODY]
        if isinstance(result, web.StreamResponse):
            call["errcode"] = 0
            return result
        errcode = result.get("errcode", 0)
        call["errcode"] = errcode
        return _answer(result, ep.error_content_type if errcode else "application/json")

    return handle


def add_api_routes(app: web.Application, state: EmulatorState) -> None:
    """Serves the WeChat API under /cgi-bin/ and the control API under /_emu/ on `app`."""
    api = _Api(state)
    app[STATE_KEY] = state
    endpoints = [
        _Endpoint("token", "GET", api.token, needs_token=False),
        _Endpoint("stable_token", "POST", api.stable_token, needs_token=False, json_body=True),
        _Endpoint("message/custom/send", "POST", api.custom_send, json_body=True),
        _Endpoint("message/template/send", "POST", api.template_send, json_body=True),
        _Endpoint("media/get", "GET", api.media_get, error_content_type="text/plain"),
        _Endpoint("media/upload", "POST", api.media_upload),
        _Endpoint("menu/create", "POST", api.menu_create, json_body=True),
        _Endpoint("menu/get", "GET", api.menu_get),
        _Endpoint("menu/delete", "GET", api.menu_delete),
    ]
    for ep in endpoints:
        app.router.add_route(ep.method, f"/cgi-bin/{ep.name}", _serve(state, ep))
    control = _Control(state)
    app.router.add_get("/_emu/faults", control.list_faults)
    app.router.add_post("/_emu/faults", control.add_fault)
    app.router.add_delete("/_emu/faults", control.clear_faults)
    app.router.add_delete("/_emu/faults/{id:\\d+}", control.remove_fault)
    app.router.add_get("/_emu/calls", control.calls)
    app.router.add_get("/_emu/outbound", control.outbound)
    app.router.add_post("/_emu/reset", control.reset)
    app.router.add_post("/_emu/clock", control.clock)
    app.router.add_post("/_emu/users", control.user)


def create_api_app(state: EmulatorState | None = None) -> web.Application:
    app = web.Application()
    add_api_routes(app, state or EmulatorState())
    return app


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400, dumps=_dumps)


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json(loads=json.loads)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


FAULT_FIELDS = ("endpoint", "errcode", "delay", "drop", "times", "probability")


@dataclass
class _Control:
    state: EmulatorState

    async def list_faults(self, request: web.Request) -> web.Response:
        return web.json_response({"faults": [f.as_dict() for f in self.state.faults]})

    async def add_fault(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if body is None:
            return _bad_request("expected a JSON object")
        unknown = set(body) - set(FAULT_FIELDS)
        if unknown:
            return _bad_request(f"unknown fields: {', '.join(sorted(unknown))}")
        if "endpoint" not in body:
            return _bad_request("endpoint is required")
        try:
            fault = self.state.faults.add(**body)
        except (TypeError, ValueError) as e:
            return _bad_request(str(e))
        return web.json_response(fault.as_dict(), status=201)

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.state.faults.clear()
        return web.json_response({"ok": True})

    async def remove_fault(self, request: web.Request) -> web.Response:
        if not self.state.faults.remove(int(request.match_info["id"])):
            return web.json_response({"error": "no such fault"}, status=404)
        return web.json_response({"ok": True})

    async def calls(self, request: web.Request) -> web.Response:
        endpoint = request.query.get("endpoint")
        calls = self.state.calls if endpoint is None else self.state.calls_to(endpoint.strip("/"))
        return web.json_response({"calls": calls}, dumps=_dumps)

    async def outbound(self, request: web.Request) -> web.Response:
        openid = request.query.get("openid")
        items = [o for o in self.state.outbound if openid is None or o["openid"] == openid]
        return web.json_response({"outbound": items}, dumps=_dumps)

    async def reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return web.json_response({"ok": True})

    async def clock(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        seconds = body.get("advance") if body else None
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            return _bad_request('expected {"advance": seconds}')
        return web.json_response({"now": self.state.advance(seconds)})

    async def user(self, request: web.Request) -> web.Response:
        """{"openid", "action"?: message|click|subscribe|scan, "subscribed"?: bool}"""
        body = await _json_object(request)
        openid = body.get("openid") if body else None
        if not isinstance(openid, str) or not openid:
            return _bad_request("openid is required")
        try:
            if "subscribed" in body:
                if not isinstance(body["subscribed"], bool):
                    return _bad_request("subscribed: true or false")
                self.state.set_subscribed(openid, body["subscribed"])
            if "action" in body:
                self.state.record_user_action(openid, body["action"])
        except ValueError as e:
            return _bad_request(str(e))
        user = self.state.users.get(openid)
        return web.json_response({"openid": openid, "subscribed": bool(user and user.subscribed)})
