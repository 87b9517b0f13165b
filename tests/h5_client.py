"""A phone's in-app browser for the tests: opens a chat link through the emulator's web view (so
web authorisation knows the openid, as in WeChat) and fills the H5 pages' forms."""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Optional

import aiohttp

LINK = re.compile(r'<a href="([^"]+)">([^<]+)</a>')
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ERROR = re.compile(r'<div class="error"[^>]*>(.*?)</div>', re.S)
STAGE_FORMS = {"credentials": "form-credentials", "identity": "form-identity", "code": "form-code",
               "new_password": "form-new-password"}


def link_in(reply_text: str) -> str:
    m = LINK.search(reply_text)
    assert m, f"no link in reply:\n{reply_text}"
    return html.unescape(m.group(1))


@dataclass
class Page:
    status: int
    url: str
    text: str

    @property
    def csrf(self) -> str:
        m = CSRF.search(self.text)
        assert m, f"no form on the page {self.url}:\n{self.text[:2000]}"
        return m.group(1)

    @property
    def error(self) -> Optional[str]:
        m = ERROR.search(self.text)
        return html.unescape(m.group(1)).strip() if m else None

    def has_form(self, stage: str) -> bool:
        return f'id="{STAGE_FORMS[stage]}"' in self.text


class WebView:
    """One openid's in-app browser: cookies kept across the emulator and the bot."""

    def __init__(self, emulator_base: str, openid: str) -> None:
        self.emulator_base = emulator_base.rstrip("/")
        self.openid = openid
        # unsafe: cookies for IP-address hosts (127.0.0.1), as browsers keep them.
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def close(self) -> None:
        await self.http.close()

    async def __aenter__(self) -> "WebView":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def open(self, url: str) -> Page:
        async with self.http.get(f"{self.emulator_base}/_emu/webview",
                                 params={"openid": self.openid, "url": url}) as resp:
            return Page(resp.status, str(resp.url), await resp.text())

    async def post(self, page: Page, action: str, **fields: str) -> Page:
        url = page.url.split("?")[0]
        data = {"csrf": page.csrf, "action": action, **fields}
        async with self.http.post(url, data=data) as resp:
            return Page(resp.status, str(resp.url), await resp.text())

    async def sms_code(self, mobile: str) -> str:
        async with self.http.get(f"{self.emulator_base}/_emu/sms", params={"mobile": mobile}) as resp:
            messages = (await resp.json())["messages"]
        return re.search(r"\d{6}", messages[0]["text"]).group(0)


async def bind(view: WebView, link: str, *, id_number: str, password: str, mobile: str,
               new_password: str = "Zikao2026ok", identity: Optional[tuple[str, str]] = None) -> Page:
    """Go through the binding page from the chat's link to the end; returns the last page."""
    page = await view.open(link)
    assert page.has_form("credentials"), page.text[:2000]
    page = await view.post(page, "credentials", id_number=id_number, password=password)
    if page.has_form("identity"):
        assert identity is not None, "the page asks for 姓名 and 准考证号"
        page = await view.post(page, "identity", name=identity[0], admission_number=identity[1], mobile=mobile)
    assert page.has_form("code"), page.error or page.text[:2000]
    page = await view.post(page, "code", code=await view.sms_code(mobile))
    if page.has_form("new_password"):
        page = await view.post(page, "new_password", new=new_password, again=new_password)
    return page
