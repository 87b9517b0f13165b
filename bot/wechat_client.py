"""Outbound WeChat API client: the shared access_token, bounded retries, WeChat's error quirks.

Retry policy (one place, `_call`):
- errcode -1 (busy), 45009 and 45011 (frequency limits), timeouts and connection errors: retried
  with exponential backoff and jitter, at most `max_retries` times, then raised as `WeChatBusy`;
- 40001 / 40014 / 42001 (token refused): one forced token refresh and one more try, never more;
- customer-service messages are not idempotent: when a send may have reached WeChat (a timeout
  or a hang-up after the request went out) it is not repeated but raised as
  `WeChatNetworkError(maybe_delivered=True)`, so a user never gets the same message twice.
  Template messages carry a `client_msg_id` (one is made up when the caller gives none), which
  WeChat dedupes, so they are retried like everything else.
Errors a caller acts on have their own types, all `WeChatAPIError` with `.errcode`: `WeChatBusy`
(transient: try again later; `WeChatNetworkError` is one), `MediaExpired` (40007 / 41006: the
media_id is unknown or gone, asking again will not help), `WeChatArgumentError` (refused before
sending), `MediaTooLarge`.
The access_token and the AppSecret never reach a log line or an exception message.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any, Awaitable, Callable

import aiohttp

from bot.token_store import REFRESH_MARGIN, TokenStore, get_or_refresh
from storage.models import utcnow

log = logging.getLogger(__name__)

TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
# -1 system busy; 45009 api quota / frequency limit; 45011 api called too often ("retry later").
BUSY_ERRCODES = frozenset({-1, 45009, 45011})
# 40007 invalid media_id (unknown, or expired after 3 days); 41006 media_id missing.
MEDIA_ERRCODES = frozenset({40007, 41006})
TEXT_MAX_BYTES = 2048
TEMPLATE_VALUE_MAX = 20
MAX_JSON_BYTES = 1024 * 1024


class WeChatAPIError(Exception):
    """WeChat refused a call (errcode, errmsg), or no answer came (see the subclasses)."""

    def __init__(self, errcode: int, errmsg: str, endpoint: str = "") -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.endpoint = endpoint
        where = f"{endpoint}: " if endpoint else ""
        super().__init__(f"{where}errcode {errcode}: {errmsg}")

    @property
    def transient(self) -> bool:
        """Worth trying again later (WeChat busy, frequency limit, network)."""
        return False


class WeChatBusy(WeChatAPIError):
    """WeChat is busy or the call rate is over its limit (-1, 45009, 45011): try again later."""

    @property
    def transient(self) -> bool:
        return True


class MediaExpired(WeChatAPIError):
    """The media_id is unknown, expired (temporary media lives 3 days) or missing (40007, 41006)."""


def api_error(errcode: int, errmsg: str, endpoint: str = "") -> WeChatAPIError:
    """The typed exception for an errcode WeChat answered."""
    if errcode in BUSY_ERRCODES:
        return WeChatBusy(errcode, errmsg, endpoint)
    if errcode in MEDIA_ERRCODES:
        return MediaExpired(errcode, errmsg, endpoint)
    return WeChatAPIError(errcode, errmsg, endpoint)


class WeChatNetworkError(WeChatBusy):
    """No usable answer: timeout, connection error, HTTP 5xx or a body that is not JSON.
    errcode is -1 (WeChat's "busy, try later"). `maybe_delivered` is True when the request may
    have reached WeChat before the failure."""

    def __init__(self, errmsg: str, endpoint: str = "", *, maybe_delivered: bool) -> None:
        super().__init__(-1, errmsg, endpoint)
        self.maybe_delivered = maybe_delivered


class MediaTooLarge(WeChatAPIError):
    """A downloaded file went past the caller's limit; the download was stopped."""

    def __init__(self, limit: int, endpoint: str = "media/get") -> None:
        super().__init__(40009, f"media larger than {limit} bytes", endpoint)
        self.limit = limit


class WeChatArgumentError(WeChatAPIError, ValueError):
    """Rejected before sending, with the errcode WeChat would have answered."""


class _NoAnswer(Exception):
    def __init__(self, reason: str, *, maybe_delivered: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.maybe_delivered = maybe_delivered


@dataclass(frozen=True)
class _Media:
    data: bytes
    content_type: str


Reader = Callable[[aiohttp.ClientResponse], Awaitable[Any]]


class WeChatClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_base: str,
        app_id: str,
        app_secret: str,
        token_store: TokenStore,
        timeout: float = 5.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        media_timeout: float = 60.0,
        refresh_margin: float = REFRESH_MARGIN,
        token_wait: float | None = None,
    ) -> None:
        self.session = session
        self.api_base = api_base.rstrip("/")
        self.app_id = app_id
        self._app_secret = app_secret
        self.token_store = token_store
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.media_timeout = media_timeout
        self.refresh_margin = refresh_margin
        self.token_wait = token_wait  # for another process's refresh; None: three leases
        self._token: tuple[str, dt.datetime] | None = None  # (token, expires_at): this process's copy
        self._token_lock = asyncio.Lock()
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests record backoffs here
        self._random = random.Random()

    def __repr__(self) -> str:
        return f"<WeChatClient {self.app_id} at {self.api_base}>"

    # --- access_token -------------------------------------------------------------------------

    def _cached(self, rejected: str | None) -> str | None:
        cached = self._token
        if cached and cached[0] != rejected and (cached[1] - utcnow()).total_seconds() > self.refresh_margin:
            return cached[0]
        return None

    async def access_token(self, force: bool = False, *, rejected: str | None = None) -> str:
        """The shared token. `force`: a token other than `rejected` (default: the current one),
        fetched with stable_token's force_refresh unless another caller already replaced it."""
        if force and rejected is None and self._token:
            rejected = self._token[0]
        if token := self._cached(rejected if force else None):
            return token
        async with self._token_lock:  # one coroutine per process goes to the store
            if token := self._cached(rejected if force else None):
                return token
            try:
                token, expires_at = await get_or_refresh(
                    self.token_store, self.app_id, partial(self._fetch_token, force),
                    force=force, rejected=rejected, margin=self.refresh_margin, max_wait=self.token_wait,
                )
            except TimeoutError:  # our own fetches turn timeouts into WeChatNetworkError
                raise WeChatNetworkError(
                    "no access_token: another process holds the refresh and stored none",
                    "stable_token", maybe_delivered=False,
                ) from None
            self._token = (token, expires_at)
            return token

    async def _fetch_token(self, force_refresh: bool) -> tuple[str, int]:
        body = {
            "grant_type": "client_credential", "appid": self.app_id, "secret": self._app_secret,
            "force_refresh": force_refresh,
        }
        answer = await self._call("POST", "stable_token", body=body, with_token=False)
        token, expires_in = answer.get("access_token"), answer.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(expires_in, int):
            raise WeChatBusy(-1, "stable_token answer without access_token/expires_in", "stable_token")
        log.info("wechat access_token fetched (force_refresh=%s, expires_in=%ss)", force_refresh, expires_in)
        return token, expires_in

    # --- messages -----------------------------------------------------------------------------

    async def send_text(self, openid: str, content: str) -> None:
        """A customer-service text; WeChat allows it within 48 h of the user's last action."""
        if not content:
            raise WeChatArgumentError(44004, "empty content", "message/custom/send")
        if len(content.encode("utf-8")) > TEXT_MAX_BYTES:
            raise WeChatArgumentError(45002, f"text over {TEXT_MAX_BYTES} bytes: page it", "message/custom/send")
        body = {"touser": openid, "msgtype": "text", "text": {"content": content}}
        await self._call("POST", "message/custom/send", body=body, resend_safe=False)

    async def send_image(self, openid: str, media_id: str) -> None:
        body = {"touser": openid, "msgtype": "image", "image": {"media_id": media_id}}
        await self._call("POST", "message/custom/send", body=body, resend_safe=False)

    async def send_template(
        self,
        openid: str,
        template_id: str,
        data: dict[str, str],
        url: str | None = None,
        client_msg_id: str | None = None,
    ) -> int:
        """A template message; returns WeChat's msgid (the TEMPLATESENDJOBFINISH event names it).
        Pass a stable `client_msg_id` (e.g. the outbox row's) so that resending the same
        message, even from another process, delivers it once."""
        for key, value in data.items():
            if not isinstance(value, str):
                raise WeChatArgumentError(47003, f"data.{key}: a string is required", "message/template/send")
            if len(value) > TEMPLATE_VALUE_MAX:
                raise WeChatArgumentError(
                    47003, f"data.{key}: at most {TEMPLATE_VALUE_MAX} characters, got {len(value)}",
                    "message/template/send",
                )
            if "\n" in value or "\r" in value:
                raise WeChatArgumentError(47003, f"data.{key}: no line breaks allowed", "message/template/send")
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": {key: {"value": value} for key, value in data.items()},
            "client_msg_id": client_msg_id or uuid.uuid4().hex,
        }
        if url:
            body["url"] = url
        answer = await self._call("POST", "message/template/send", body=body)
        return int(answer["msgid"])

    # --- media --------------------------------------------------------------------------------

    async def download_media(self, media_id: str, max_bytes: int = 10 * 1024 * 1024) -> tuple[bytes, str]:
        """The file and its Content-Type. WeChat answers errors (expired or unknown media) as
        JSON inside HTTP 200, so the Content-Type decides what the body is."""

        async def read(resp: aiohttp.ClientResponse) -> dict[str, Any] | _Media:
            ctype = resp.content_type.lower()
            if resp.status != 200 or ctype.startswith("text/") or ctype.endswith("json"):
                return await self._read_json(resp)
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise MediaTooLarge(max_bytes)
            buf = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                buf += chunk
                if len(buf) > max_bytes:
                    raise MediaTooLarge(max_bytes)
            return _Media(bytes(buf), ctype)

        media = await self._call("GET", "media/get", params={"media_id": media_id}, read=read, media=True)
        return media.data, media.content_type

    async def upload_media(self, kind: str, data: bytes, filename: str, content_type: str) -> str:
        """Uploads temporary media (3 days) and returns its media_id; kind: image/voice/video/thumb."""

        def form() -> aiohttp.FormData:
            f = aiohttp.FormData()
            f.add_field("media", data, filename=filename, content_type=content_type)
            return f

        answer = await self._call("POST", "media/upload", params={"type": kind}, make_form=form, media=True)
        return str(answer["media_id"])

    # --- menu ---------------------------------------------------------------------------------

    async def create_menu(self, menu: dict[str, Any]) -> None:
        await self._call("POST", "menu/create", body=menu)

    async def get_menu(self) -> dict[str, Any] | None:
        """WeChat's answer ({"menu": {"button": [...]}, ...}), or None when no menu is set."""
        try:
            answer = await self._call("GET", "menu/get")
        except WeChatAPIError as e:
            if e.errcode == 46003:
                return None
            raise
        answer.pop("errcode", None)
        answer.pop("errmsg", None)
        return answer

    # --- the one request path -----------------------------------------------------------------

    async def _call(
        self,
        method: str,
        endpoint: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        make_form: Callable[[], aiohttp.FormData] | None = None,
        read: Reader | None = None,
        with_token: bool = True,
        resend_safe: bool = True,
        media: bool = False,
    ) -> Any:
        retries = 0
        refreshed = False
        while True:
            query = dict(params or {})
            token = None
            if with_token:
                token = await self.access_token()
                query["access_token"] = token
            try:
                answer = await self._once(method, endpoint, query, body, make_form, read, media)
            except _NoAnswer as e:
                if retries >= self.max_retries or (e.maybe_delivered and not resend_safe):
                    raise WeChatNetworkError(e.reason, endpoint, maybe_delivered=e.maybe_delivered) from None
                retries += 1
                await self._backoff(endpoint, e.reason, retries)
                continue
            if not isinstance(answer, dict):
                return answer
            errcode = answer.get("errcode", 0)
            if not isinstance(errcode, int):
                errcode = -1
            if errcode == 0:
                return answer
            errmsg = str(answer.get("errmsg", ""))
            if errcode in TOKEN_ERRCODES and with_token and not refreshed:
                refreshed = True
                log.warning("wechat %s: errcode %s, refreshing the access_token once", endpoint, errcode)
                await self.access_token(force=True, rejected=token)
                continue
            if errcode in BUSY_ERRCODES and retries < self.max_retries:
                retries += 1
                await self._backoff(endpoint, f"errcode {errcode}", retries)
                continue
            raise api_error(errcode, errmsg, endpoint)

    async def _once(
        self,
        method: str,
        endpoint: str,
        query: dict[str, str],
        body: dict[str, Any] | None,
        make_form: Callable[[], aiohttp.FormData] | None,
        read: Reader | None,
        media: bool,
    ) -> Any:
        kwargs: dict[str, Any] = {"params": query}
        if body is not None:
            # UTF-8 as is: WeChat shows \u escapes literally in some places (menus, texts).
            kwargs["data"] = json.dumps(body, ensure_ascii=False).encode("utf-8")
            kwargs["headers"] = {"Content-Type": "application/json; charset=utf-8"}
        elif make_form is not None:
            kwargs["data"] = make_form()
        if media:
            kwargs["timeout"] = aiohttp.ClientTimeout(
                total=self.media_timeout, sock_connect=self.timeout, sock_read=self.timeout
            )
        else:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=self.timeout)
        url = f"{self.api_base}/cgi-bin/{endpoint}"
        try:
            async with self.session.request(method, url, **kwargs) as resp:
                return await (read or self._read_json)(resp)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
            raise _NoAnswer("cannot connect", maybe_delivered=False) from None  # nothing was sent
        except asyncio.TimeoutError:
            raise _NoAnswer("no answer within the timeout", maybe_delivered=True) from None
        except aiohttp.ClientError as e:
            # Class name only: some aiohttp errors quote the URL, which holds the token.
            raise _NoAnswer(f"connection failed ({type(e).__name__})", maybe_delivered=True) from None

    @staticmethod
    async def _read_json(resp: aiohttp.ClientResponse) -> dict[str, Any]:
        if resp.status >= 500:
            raise _NoAnswer(f"HTTP {resp.status}", maybe_delivered=True)
        raw = bytearray()
        async for chunk in resp.content.iter_chunked(64 * 1024):
            raw += chunk
            if len(raw) > MAX_JSON_BYTES:
                raise _NoAnswer("answer too large to be WeChat's JSON", maybe_delivered=True)
        if resp.status != 200:
            # Not an answer of WeChat's (a proxy, a wrong api_base): errcode is the HTTP status.
            raise WeChatAPIError(resp.status, f"unexpected HTTP {resp.status}")
        try:
            answer = json.loads(raw)
        except ValueError:
            raise _NoAnswer("answer is not JSON", maybe_delivered=True) from None
        if not isinstance(answer, dict):
            raise _NoAnswer("answer is not a JSON object", maybe_delivered=True)
        return answer

    async def _backoff(self, endpoint: str, reason: str, attempt: int) -> None:
        cap = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        delay = cap / 2 + self._random.uniform(0, cap / 2)  # "equal jitter": spread, never ~0
        log.warning("wechat %s: %s; retry %d/%d in %.2fs", endpoint, reason, attempt, self.max_retries, delay)
        await self._sleep(delay)
