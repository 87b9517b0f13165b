"""The H5 pages and WeChat's web authorisation: the bot against the emulator over real HTTP."""
from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest

from bot.app import DB, SETTINGS
from storage import accounts
from storage.passwords import verify_password
from storage.models import Candidate
from tests.dialog_fixtures import ID_NUMBER, MOBILE, NEW_PASSWORD, PASSWORD, add_candidate
from tests.h5_client import WebView, bind
from tests.test_e2e import APP_ID, SECRET, scheduler_options, stack  # noqa: F401 (fixtures)

OPENID = "o_h5_user_0000000000000001"


def _bases(stack) -> tuple[str, str]:
    bot, _state, _wechat = stack
    settings = bot.app[SETTINGS]
    return settings.public_base, settings.wechat_api_base


async def _with_candidate(stack):
    """A verified candidate in the bot's database; returns (db, bot base URL, emulator base URL)."""
    bot, _state, _wechat = stack
    await add_candidate(bot.app[DB], verified=True)
    return (bot.app[DB], *_bases(stack))


async def test_a_page_without_session_sends_the_visitor_to_wechats_authorize_url(stack):
    bot_base, emu_base = _bases(stack)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{bot_base}/h5/bind", allow_redirects=False) as resp:
            assert resp.status == 302
            location = resp.headers["Location"]
            cookie = resp.cookies["zikao_h5"]
    u = urlparse(location)
    assert f"{u.scheme}://{u.netloc}{u.path}" == f"{emu_base}/connect/oauth2/authorize"
    assert u.fragment == "wechat_redirect"
    q = parse_qs(u.query)
    assert q["appid"] == [APP_ID] and q["scope"] == ["snsapi_base"] and q["response_type"] == ["code"]
    assert q["redirect_uri"] == [f"{bot_base}/h5/oauth"] and len(q["state"][0]) >= 16
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/h5/"


async def test_the_callback_refuses_a_state_it_did_not_issue(stack):
    bot_base, emu_base = _bases(stack)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{bot_base}/h5/bind", allow_redirects=False) as resp:
            state = parse_qs(urlparse(resp.headers["Location"]).query)["state"][0]
        async with http.get(f"{bot_base}/h5/oauth", params={"code": "anything", "state": state + "x"}) as resp:
            assert resp.status == 400 and "页面已失效" in await resp.text()
        # A callback with no session at all (a link replayed elsewhere) is refused the same way.
    async with aiohttp.ClientSession() as fresh:
        async with fresh.get(f"{bot_base}/h5/oauth", params={"code": "c", "state": state}) as resp:
            assert resp.status == 400


async def test_codes_work_once_for_five_minutes_with_wechats_errors(stack):
    bot, state, _wechat = stack
    bot_base, emu_base = _bases(stack)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{emu_base}/_emu/webview", params={"openid": OPENID, "url": f"{bot_base}/healthz"}):
            pass

        async def new_code() -> str:
            async with http.get(f"{emu_base}/connect/oauth2/authorize", allow_redirects=False, params={
                    "appid": APP_ID, "redirect_uri": "https://zikao.example.cn/h5/oauth", "response_type": "code",
                    "scope": "snsapi_base", "state": "s1"}) as resp:
                assert resp.status == 302
                q = parse_qs(urlparse(resp.headers["Location"]).query)
                assert q["state"] == ["s1"]
                return q["code"][0]

        async def exchange(code: str, secret: str = SECRET) -> dict:
            async with http.get(f"{emu_base}/sns/oauth2/access_token", params={
                    "appid": APP_ID, "secret": secret, "code": code, "grant_type": "authorization_code"}) as resp:
                assert resp.status == 200
                return await resp.json()

        code = await new_code()
        assert (await exchange(code, "wrong-secret"))["errcode"] == 40125
        first = await exchange(code)
        assert first["openid"] == OPENID and first["scope"] == "snsapi_base" and first["expires_in"] == 7200
        assert (await exchange(code))["errcode"] == 40163
        assert (await exchange("no-such-code"))["errcode"] == 40029
        late = await new_code()
        state.advance(301)
        assert (await exchange(late))["errcode"] == 40029


async def test_wechat_shows_its_error_pages_outside_wechat_and_for_a_wrong_appid(stack):
    _bot_base, emu_base = _bases(stack)
    params = {"appid": APP_ID, "redirect_uri": "https://zikao.example.cn/h5/oauth", "response_type": "code",
              "scope": "snsapi_base", "state": "s"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{emu_base}/connect/oauth2/authorize", params=params, allow_redirects=False) as resp:
            assert resp.status == 200 and "请在微信客户端打开链接" in await resp.text()
    async with aiohttp.ClientSession(cookies={"emu_webview_openid": OPENID}) as http:
        async with http.get(f"{emu_base}/connect/oauth2/authorize", params={**params, "appid": "wx0000"},
                            allow_redirects=False) as resp:
            assert resp.status == 400 and "appid" in await resp.text()
        async with http.get(f"{emu_base}/connect/oauth2/authorize", params={**params, "scope": "snsapi_x"},
                            allow_redirects=False) as resp:
            assert resp.status == 400 and "scope" in await resp.text()


async def test_a_form_without_the_sessions_csrf_token_is_refused(stack):
    db, bot_base, emu_base = await _with_candidate(stack)
    async with WebView(emu_base, OPENID) as view:
        page = await view.open(f"{bot_base}/h5/bind")
        assert page.has_form("credentials") and "证件号码" in page.text
        async with view.http.post(f"{bot_base}/h5/bind", data={
                "action": "credentials", "id_number": ID_NUMBER, "password": PASSWORD, "csrf": "forged"}) as resp:
            assert resp.status == 403
    # Another browser (no session) posting the form is sent to authorisation first, never served.
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{bot_base}/h5/bind", data={"action": "credentials"}, allow_redirects=False) as resp:
            assert resp.status == 302 and "/connect/oauth2/authorize" in resp.headers["Location"]
    assert (await accounts.binding(db, OPENID)).candidate_id is None


async def test_wrong_password_on_the_page_keeps_the_form_and_says_why(stack):
    _db, bot_base, emu_base = await _with_candidate(stack)
    async with WebView(emu_base, OPENID) as view:
        page = await view.open(f"{bot_base}/h5/bind")
        page = await view.post(page, "credentials", id_number=ID_NUMBER, password="wrong")
        assert page.status == 400 and page.has_form("credentials")
        assert page.error == "证件号码或密码不正确，还可以再试4次。初始密码是证件号码后6位（字母大写）。"
        assert "wrong" not in page.text and 'value="' + ID_NUMBER not in page.text


async def test_password_page_needs_binding_then_changes_the_password(stack):
    bot, _state, _wechat = stack
    db = bot.app[DB]
    cid = await add_candidate(db, verified=True)
    bot_base, emu_base = _bases(stack)
    async with WebView(emu_base, OPENID) as view:
        page = await view.open(f"{bot_base}/h5/password")
        assert "请先在聊天中回复“绑定”" in page.text
        page = await bind(view, f"{bot_base}/h5/bind", id_number=ID_NUMBER, password=PASSWORD, mobile=MOBILE)
        assert "绑定成功" in page.text
        page = await view.open(f"{bot_base}/h5/password")
        async with view.http.post(f"{bot_base}/h5/password", data={
                "csrf": page.csrf, "old": NEW_PASSWORD, "new": "Fresh2026pw", "again": "Fresh2026pw"}) as resp:
            assert resp.status == 200 and "密码已修改" in await resp.text()
    async with db.session() as s:
        assert verify_password("Fresh2026pw", (await s.get(Candidate, cid)).password_hash)


@pytest.mark.parametrize("page", ["bind", "password"])
async def test_pages_are_not_cached_and_speak_chinese_on_a_phone(stack, page):
    bot_base, emu_base = _bases(stack)
    async with WebView(emu_base, OPENID) as view:
        async with view.http.get(f"{emu_base}/_emu/webview", params={"openid": OPENID, "url": f"{bot_base}/h5/{page}"}) as resp:
            text = await resp.text()
            assert resp.headers["Cache-Control"] == "no-store"
    assert 'lang="zh-CN"' in text and 'name="viewport"' in text


async def test_a_redirect_uri_outside_the_registered_domains_is_refused(aiohttp_client):
    from emulator.app import create_emulator_app
    from emulator.oauth import OAUTH_KEY

    app = create_emulator_app(bot_url="http://127.0.0.1:9/wechat", token="tok", app_id=APP_ID, app_secret=SECRET,
                              aes_key=None, mode="plain")
    app[OAUTH_KEY].domains = {"zikao.example.cn"}
    client = await aiohttp_client(app)
    client.session.cookie_jar.update_cookies({"emu_webview_openid": OPENID})
    params = {"appid": APP_ID, "response_type": "code", "scope": "snsapi_base", "state": "s"}
    resp = await client.get("/connect/oauth2/authorize", allow_redirects=False,
                            params={**params, "redirect_uri": "https://evil.example.com/h5/oauth"})
    assert resp.status == 400 and "10003" in await resp.text()
    resp = await client.get("/connect/oauth2/authorize", allow_redirects=False,
                            params={**params, "redirect_uri": "https://zikao.example.cn/h5/oauth?x=1"})
    assert resp.status == 302
    q = parse_qs(urlparse(resp.headers["Location"]).query)
    assert q["x"] == ["1"] and q["state"] == ["s"] and q["code"]
