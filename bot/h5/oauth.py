"""WeChat web authorisation (网页授权, scope snsapi_base): the authorize URL and the code exchange.

See shared/wechat/PROTOCOL.md: WeChat redirects to `redirect_uri?code=CODE&state=STATE`; the code
lives 5 minutes and works once; `sns/oauth2/access_token` turns it into the visitor's openid.
"""
from __future__ import annotations

import logging
from urllib.parse import urlencode

import aiohttp

log = logging.getLogger("zikao.h5")


class OAuthError(Exception):
    """The code exchange failed; `errcode` is WeChat's (40029 invalid code, 40163 code used ...)
    or 0 when WeChat could not be reached or answered nonsense."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"{errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


def authorize_url(oauth_base: str, app_id: str, redirect_uri: str, state: str) -> str:
    """Where to send the visitor: WeChat answers with a redirect to `redirect_uri` with a code."""
    query = urlencode({"appid": app_id, "redirect_uri": redirect_uri, "response_type": "code",
                       "scope": "snsapi_base", "state": state})
    return f"{oauth_base.rstrip('/')}/connect/oauth2/authorize?{query}#wechat_redirect"


async def exchange_code(session: aiohttp.ClientSession, api_base: str, app_id: str, app_secret: str,
                        code: str, *, timeout: float = 5.0) -> str:
    """The openid behind `code`. Raises OAuthError; never logs the code or the secret."""
    params = {"appid": app_id, "secret": app_secret, "code": code, "grant_type": "authorization_code"}
    url = f"{api_base.rstrip('/')}/sns/oauth2/access_token"
    try:
        async with session.get(url, params=params, timeout=aiohttp.ClientTimeout(total=timeout),
                               allow_redirects=False) as resp:
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        log.warning("oauth code exchange failed: %s", type(e).__name__)
        raise OAuthError(0, type(e).__name__) from None
    if not isinstance(body, dict):
        raise OAuthError(0, "not a JSON object")
    if body.get("errcode"):
        log.info("oauth code exchange refused: %s", body.get("errcode"))
        raise OAuthError(int(body["errcode"]), str(body.get("errmsg", "")))
    openid = body.get("openid")
    if not isinstance(openid, str) or not openid:
        raise OAuthError(0, "no openid in the answer")
    return openid
