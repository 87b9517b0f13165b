"""WeChat's web authorisation (网页授权, snsapi_base) and the in-app browser's identity.

- `GET /connect/oauth2/authorize?appid&redirect_uri&response_type=code&scope&state` (WeChat's
  open.weixin.qq.com): the visitor is whoever the in-app browser belongs to (here: the chat page's
  user, who opened the link through `/_emu/webview`); redirects to `redirect_uri?code=&state=`.
  Opened outside WeChat (no user) it shows WeChat's "请在微信客户端打开链接" page; a wrong appid,
  scope or redirect URI shows an error page, as WeChat does.
- `GET /sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code`
  (api.weixin.qq.com): the code, valid 5 minutes (the API's clock, `state.advance` moves it) and
  once, for `{"access_token", "expires_in", "refresh_token", "openid", "scope"}`; errors as WeChat
  returns them (JSON in HTTP 200): 40029 invalid code (unknown or expired), 40163 code been used,
  40013 invalid appid, 40125 invalid appsecret, 40002 invalid grant_type, 41008 missing code.
- `GET /_emu/webview?openid=&url=`: what the chat page's web view opens first; it remembers the
  user in a cookie (like WeChat's browser knows its user) and goes on to `url`.
"""
from __future__ import annotations

import html
import secrets
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import urlencode, urlparse

from aiohttp import web

from .api import EmulatorState, error

CODE_TTL = 300.0
WEBVIEW_COOKIE = "emu_webview_openid"
SCOPES = ("snsapi_base", "snsapi_userinfo")


@dataclass
class _Code:
    openid: str
    scope: str
    issued_at: float
    used: bool = False


@dataclass
class OAuthState:
    api: EmulatorState
    codes: dict[str, _Code] = field(default_factory=dict)
    # 网页授权域名: hosts (host[:port]) redirect URIs may point at; empty accepts any.
    domains: set[str] = field(default_factory=set)

    def issue(self, openid: str, scope: str) -> str:
        now = self.api.now()
        for k in [k for k, c in self.codes.items() if now - c.issued_at > 2 * CODE_TTL]:
            del self.codes[k]
        code = secrets.token_urlsafe(24)
        self.codes[code] = _Code(openid, scope, now)
        return code


OAUTH_KEY = web.AppKey("emulator_oauth", OAuthState)


def _page(title: str, text: str, status: int = 400) -> web.Response:
    body = (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title></head>'
            f'<body style="font-family:sans-serif;text-align:center;padding-top:80px;color:#555">'
            f'<p id="wx-error">{html.escape(text)}</p></body></html>')
    return web.Response(text=body, status=status, content_type="text/html")


def _safe_url(url: str) -> bool:
    u = urlparse(url)
    return u.scheme in ("http", "https") and bool(u.netloc)


async def _webview(request: web.Request) -> web.StreamResponse:
    openid, url = request.query.get("openid", ""), request.query.get("url", "")
    if not openid or not _safe_url(url):
        return _page("无法打开", "链接无效")
    resp = web.HTTPFound(url)
    resp.set_cookie(WEBVIEW_COOKIE, openid, httponly=True, samesite="Lax", path="/")
    raise resp


async def _authorize(request: web.Request) -> web.StreamResponse:
    st: OAuthState = request.app[OAUTH_KEY]
    q = request.query
    openid = request.cookies.get(WEBVIEW_COOKIE)
    if not openid:
        return _page("提示", "请在微信客户端打开链接", status=200)
    if q.get("appid") != st.api.app_id:
        return _page("错误", "appid参数错误")
    redirect_uri = q.get("redirect_uri", "")
    if not _safe_url(redirect_uri) or (st.domains and urlparse(redirect_uri).netloc not in st.domains):
        return _page("错误", "redirect_uri域名与后台配置不一致，错误码：10003")
    if q.get("response_type") != "code":
        return _page("错误", "response_type参数错误")
    scope = q.get("scope", "")
    if scope not in SCOPES:
        return _page("错误", "scope参数错误或没有scope权限，错误码：10005")
    code = st.issue(openid, scope)
    sep = "&" if urlparse(redirect_uri).query else "?"
    raise web.HTTPFound(redirect_uri + sep + urlencode({"code": code, "state": q.get("state", "")}))


async def _access_token(request: web.Request) -> web.Response:
    st: OAuthState = request.app[OAUTH_KEY]
    q = request.query
    st.api.calls.append({"endpoint": "sns/oauth2/access_token", "at": st.api.now(),
                         "query": {k: v for k, v in q.items() if k not in ("secret", "code")}})
    if q.get("grant_type") != "authorization_code":
        return web.json_response(error(40002))
    if q.get("appid") != st.api.app_id:
        return web.json_response(error(40013))
    if not secrets.compare_digest(q.get("secret", "").encode(), st.api.app_secret.encode()):
        return web.json_response(error(40125))
    code = q.get("code", "")
    if not code:
        return web.json_response(error(41008))
    c: Optional[_Code] = st.codes.get(code)
    if c is None or st.api.now() - c.issued_at > CODE_TTL:
        return web.json_response(error(40029))
    if c.used:
        return web.json_response(error(40163))
    c.used = True
    return web.json_response({
        "access_token": secrets.token_urlsafe(32), "expires_in": 7200, "refresh_token": secrets.token_urlsafe(32),
        "openid": c.openid, "scope": c.scope,
    })


def add_oauth_routes(app: web.Application, api_state: EmulatorState) -> OAuthState:
    st = OAuthState(api_state)
    app[OAUTH_KEY] = st
    app.router.add_get("/connect/oauth2/authorize", _authorize)
    app.router.add_get("/sns/oauth2/access_token", _access_token)
    app.router.add_get("/_emu/webview", _webview)
    return st
