"""What every console page shares: the app keys, the signed-in staff member, CSRF, rendering, flashes."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import Session, get_session

from storage import staff as staff_store
from storage.db import Database
from storage.models import utcnow
from storage.photos import PhotoStore
from storage.staff import StaffInfo

SHANGHAI = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
PREFIX = "/console"


@dataclass(frozen=True)
class ConsoleConfig:
    photo_store: PhotoStore
    faq_kb_file: Path
    faq_cache_dir: str
    idle: dt.timedelta = dt.timedelta(minutes=30)  # a session unused this long ends
    lifetime: dt.timedelta = dt.timedelta(hours=12)  # and any session ends this long after sign-in


# The service sets DB at start-up (it owns the engine); CONFIG is given when the console is built.
DB = web.AppKey("console_db", Database)
CONFIG = web.AppKey("console_config", ConsoleConfig)
STAFF = web.RequestKey("console_staff", StaffInfo)  # the signed-in staff member
CSRF_FIELD = "_csrf"
MULTIPART = web.RequestKey("console_multipart", object)  # the rest of a multipart form, after its CSRF part


def db(request: web.Request) -> Database:
    return request.config_dict[DB]


def config(request: web.Request) -> ConsoleConfig:
    return request.config_dict[CONFIG]


def me(request: web.Request) -> StaffInfo:
    return request[STAFF]


def client_ip(request: web.Request) -> str:
    return request.remote or ""


def local(t: Optional[dt.datetime], fmt: str = "%Y-%m-%d %H:%M") -> str:
    return t.astimezone(SHANGHAI).strftime(fmt) if t else "-"


def parse_local(text: str) -> Optional[dt.datetime]:
    """A datetime-local input ('2026-12-01T09:00') in Beijing time -> aware UTC; '' -> None."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError:
        raise web.HTTPBadRequest(text="时间格式不对") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=SHANGHAI)
    return value.astimezone(dt.timezone.utc)


def input_time(t: Optional[dt.datetime]) -> str:
    return t.astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M") if t else ""


# --- CSRF: a token per session, in every form, compared in constant time ---------------------------


def csrf_token(session: Session) -> str:
    """Derived from the session's own token, so no secret sits in the session's stored data (which a
    DEBUG log of SQL parameters would show). A visitor without a session gets one now."""
    if session.identity is None:
        session.set_new_identity(secrets.token_urlsafe(32))
        session["since"] = int(utcnow().timestamp())  # an empty session would not be kept
    return hmac.new(str(session.identity).encode(), b"zikao-console-csrf", hashlib.sha256).hexdigest()


async def check_csrf(request: web.Request, session: Session) -> None:
    expected = csrf_token(session) if session.identity is not None else ""
    if request.content_type == "multipart/form-data":
        # Uploads are streamed (they may exceed the service's 1 MB body limit); the form puts its
        # token first, so it is checked before any file is read.
        reader = await request.multipart()
        part = await reader.next()
        given = (await part.text()) if part is not None and getattr(part, "name", None) == CSRF_FIELD else ""
        request[MULTIPART] = reader
    else:
        given = request.headers.get("X-CSRF-Token") or (await request.post()).get(CSRF_FIELD, "")
    if not expected or not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise web.HTTPForbidden(text="表单已过期或来源不明，请返回刷新页面后重试。")


# --- The signed-in staff member ------------------------------------------------------------------


async def signed_in(request: web.Request, session: Session) -> Optional[StaffInfo]:
    """The session's staff member, if it is theirs still: active, same password generation, in time."""
    staff_id = session.get("staff_id")
    if not staff_id:
        return None
    now = utcnow()
    if now.timestamp() - float(session.get("login_at", 0)) > config(request).lifetime.total_seconds():
        return None
    try:
        info = await staff_store.get_staff(db(request), int(staff_id))
    except staff_store.StaffError:
        return None
    if not info.active or info.generation != session.get("gen"):
        return None
    # Idle expiry is the session row's: touching it now and then keeps a working session alive.
    if now.timestamp() - float(session.get("seen", 0)) > 60:
        session["seen"] = now.timestamp()
    return info


def login_url(request: web.Request) -> str:
    target = request.path_qs if request.method == "GET" else f"{PREFIX}/"
    return f"{PREFIX}/login?next={quote(target, safe='')}"


def safe_next(target: str | None) -> str:
    """Only a path inside the console: never an open redirect."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/"


# --- Pages ---------------------------------------------------------------------------------------


def flash(session: Session, message: str, level: str = "ok") -> None:
    session["flash"] = (session.get("flash") or []) + [[level, message]]


async def render(request: web.Request, template: str, context: dict[str, Any] | None = None,
                 status: int = 200) -> web.Response:
    session = await get_session(request)
    ctx = dict(context or {})
    ctx.setdefault("me", request.get(STAFF))
    ctx["csrf"] = csrf_token(session)
    ctx["flashes"] = session.pop("flash", None) or []
    ctx["path"] = request.path
    response = aiohttp_jinja2.render_template(template, request, ctx, status=status)
    # Personal data: never kept by a shared browser's cache or a proxy.
    response.headers["Cache-Control"] = "no-store"
    return response


def redirect(location: str) -> web.Response:
    """A 302 to `location`, returned (aiohttp deprecates returning its HTTPFound exception)."""
    return web.Response(status=302, headers={"Location": location})


def require_admin(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    async def wrapped(request: web.Request) -> web.StreamResponse:
        if not me(request).is_admin:
            return await render(request, "denied.html", {"why": "这个页面只有管理员可以打开。"}, status=403)
        return await handler(request)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def page_number(request: web.Request) -> int:
    try:
        return max(1, int(request.query.get("page", "1")))
    except ValueError:
        return 1
