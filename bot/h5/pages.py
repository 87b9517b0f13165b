"""The H5 pages: 绑定 and 修改密码, server-rendered (Jinja2), mounted under /h5/.

Who the visitor is comes only from WeChat's web authorisation: a page without an openid in its
session redirects to the authorize URL with a fresh `state`; the callback checks that state,
exchanges the code server-side and keeps the openid in the session. The session is an encrypted,
HttpOnly, SameSite=Lax cookie (aiohttp-session's Fernet storage, keyed from SECRET_KEY), expiring
after SESSION_MINUTES idle. Every form carries the session's CSRF token.
"""
from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Optional

import aiohttp
import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import get_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from bot.h5.oauth import OAuthError, authorize_url, exchange_code
from dialogs import binding
from dialogs.services import Services
from storage import accounts, keys
from storage.db import Database
from storage.identifiers import mask_mobile

SESSION_MINUTES = 30
COOKIE = "zikao_h5"
PAGES = ("bind", "password")


@dataclass
class H5Env:
    """What the pages need, filled in by the service's start-up (bot/app.py)."""

    app_id: str
    app_secret: str
    api_base: str  # where sns/oauth2/access_token is (WECHAT_API_BASE)
    oauth_base: str  # where connect/oauth2/authorize is (WECHAT_OAUTH_BASE)
    public_base: str  # this service as the visitor's browser reaches it (PUBLIC_BASE_URL)
    timeout: float = 5.0
    db: Optional[Database] = None
    services: Optional[Services] = None
    http: Optional[aiohttp.ClientSession] = None

    def page_url(self, page: str) -> str:
        return f"{self.public_base.rstrip('/')}/h5/{page}"


ENV = web.AppKey("h5_env", H5Env)


def create_h5_app(env: H5Env) -> web.Application:
    secure = env.public_base.startswith("https://")
    storage = EncryptedCookieStorage(keys.session_key(), cookie_name=COOKIE, max_age=SESSION_MINUTES * 60,
                                     httponly=True, samesite="Lax", secure=secure, path="/h5/")
    app = web.Application(middlewares=[session_middleware(storage), _no_cache])
    app[ENV] = env
    env = aiohttp_jinja2.setup(app, loader=jinja2.PackageLoader("bot.h5", "templates"), autoescape=True)
    env.globals["password_rule"] = binding.PASSWORD_RULE  # the same rule the check enforces
    app.router.add_get("/oauth", oauth_callback)
    app.router.add_get("/bind", bind_page)
    app.router.add_post("/bind", bind_post)
    app.router.add_get("/password", password_page)
    app.router.add_post("/password", password_post)
    return app


@web.middleware
async def _no_cache(request: web.Request, handler: Callable) -> web.StreamResponse:
    resp = await handler(request)
    # Pages with personal data and CSRF tokens: not cached, not framed by other sites.
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def _env(request: web.Request) -> H5Env:
    return request.app[ENV]


def _render(request: web.Request, template: str, status: int = 200, **ctx: Any) -> web.Response:
    return aiohttp_jinja2.render_template(template, request, ctx, status=status)


def _message(request: web.Request, title: str, text: str, status: int = 200) -> web.Response:
    return _render(request, "message.html", status=status, title=title, text=text)


# --- who: web authorisation -----------------------------------------------------------------------


async def _openid_or_redirect(request: web.Request, page: str) -> str:
    session = await get_session(request)
    openid = session.get("openid")
    if openid:
        return openid
    state = secrets.token_urlsafe(16)
    session["oauth"] = {"state": state, "next": page}
    env = _env(request)
    raise web.HTTPFound(authorize_url(env.oauth_base, env.app_id, f"{env.public_base.rstrip('/')}/h5/oauth", state))


async def oauth_callback(request: web.Request) -> web.Response:
    session = await get_session(request)
    pending = session.pop("oauth", None) or {}
    code, state = request.query.get("code", ""), request.query.get("state", "")
    if not code:
        # The visitor refused or WeChat sent no code.
        return _message(request, "无法打开页面", "没有取得微信授权。请返回聊天，重新点击链接。", 400)
    if not pending.get("state") or not hmac.compare_digest(str(pending["state"]), state):
        return _message(request, "无法打开页面", "页面已失效。请返回聊天，重新点击链接。", 400)
    env = _env(request)
    try:
        openid = await exchange_code(env.http, env.api_base, env.app_id, env.app_secret, code, timeout=env.timeout)
    except OAuthError:
        return _message(request, "无法打开页面", "微信授权没有成功。请返回聊天，重新点击链接。", 502)
    session["openid"] = openid
    session["csrf"] = secrets.token_urlsafe(24)
    page = pending.get("next") if pending.get("next") in PAGES else "bind"
    raise web.HTTPFound(f"/h5/{page}")


async def _checked_form(request: web.Request) -> dict[str, str]:
    session = await get_session(request)
    form = await request.post()
    token = str(form.get("csrf", ""))
    if not session.get("csrf") or not hmac.compare_digest(str(session["csrf"]), token):
        raise web.HTTPForbidden(text="页面已失效，请返回聊天重新点击链接。", content_type="text/plain")
    return {k: str(v) for k, v in form.items()}


# --- 绑定 -----------------------------------------------------------------------------------------


async def _bind_view(request: web.Request, state: binding.BindState, outcome: Optional[binding.Outcome] = None,
                     status: int = 200) -> web.Response:
    session = await get_session(request)
    return _render(request, "bind.html", status=status, state=state, csrf=session.get("csrf", ""),
                   error=outcome.error if outcome else None, notice=outcome.notice if outcome else None,
                   done_lines=outcome.done_lines if outcome else [],
                   masked_mobile=_masked(state.mobile))


def _masked(mobile: Optional[str]) -> str:
    return mask_mobile(mobile) if mobile else ""


async def bind_page(request: web.Request) -> web.Response:
    openid = await _openid_or_redirect(request, "bind")
    session = await get_session(request)
    env = _env(request)
    if (await accounts.binding(env.db, openid)).candidate_id is not None:
        session.pop("bind", None)
        return _message(request, "已经绑定", "您已经绑定了考生信息。如需更换绑定，请在聊天中回复“解绑”后再绑定。")
    if request.query.get("restart"):
        session.pop("bind", None)
    state = binding.BindState.from_dict(session.get("bind"))
    if state.stage == "done":
        state = binding.BindState()
        session.pop("bind", None)
    return await _bind_view(request, state)


async def bind_post(request: web.Request) -> web.Response:
    openid = await _openid_or_redirect(request, "bind")
    form = await _checked_form(request)
    session = await get_session(request)
    env = _env(request)
    if (await accounts.binding(env.db, openid)).candidate_id is not None:
        session.pop("bind", None)
        return _message(request, "已经绑定", "您已经绑定了考生信息。如需更换绑定，请在聊天中回复“解绑”后再绑定。")
    state = binding.BindState.from_dict(session.get("bind"))
    action = form.get("action", "")
    db, services = env.db, env.services
    if action == "credentials":
        outcome = await binding.submit_credentials(db, services, openid, form.get("id_number", ""), form.get("password", ""))
    elif action == "identity":
        outcome = await binding.submit_identity(db, services, openid, state, form.get("name", ""),
                                                form.get("admission_number", ""), form.get("mobile", ""))
    elif action == "resend":
        outcome = await binding.resend_code(db, services, openid, state)
    elif action == "code":
        outcome = await binding.submit_code(db, openid, state, form.get("code", ""))
    elif action == "new_password":
        outcome = await binding.submit_new_password(db, openid, state, form.get("new", ""), form.get("again", ""))
    else:
        outcome = binding.Outcome(state, error="请按页面提示填写。")
    session["bind"] = outcome.state.to_dict()
    if outcome.state.stage == "done":
        session.pop("bind", None)
    return await _bind_view(request, outcome.state, outcome, status=200 if outcome.error is None else 400)


# --- 修改密码 -------------------------------------------------------------------------------------


async def password_page(request: web.Request) -> web.Response:
    openid = await _openid_or_redirect(request, "password")
    b = await accounts.binding(_env(request).db, openid)
    if b.candidate_id is None:
        return _message(request, "还没有绑定", "请先在聊天中回复“绑定”，绑定考生信息后再修改密码。")
    session = await get_session(request)
    return _render(request, "password.html", csrf=session.get("csrf", ""), error=None, notice=None, done=False)


async def password_post(request: web.Request) -> web.Response:
    openid = await _openid_or_redirect(request, "password")
    form = await _checked_form(request)
    session = await get_session(request)
    b = await accounts.binding(_env(request).db, openid)
    if b.candidate_id is None:
        return _message(request, "还没有绑定", "请先在聊天中回复“绑定”，绑定考生信息后再修改密码。")
    outcome = await binding.change_password(_env(request).db, openid, b.candidate_id, form.get("old", ""),
                                            form.get("new", ""), form.get("again", ""))
    return _render(request, "password.html", status=200 if outcome.error is None else 400,
                   csrf=session.get("csrf", ""), error=outcome.error, notice=outcome.notice,
                   done=outcome.state.stage == "done")
