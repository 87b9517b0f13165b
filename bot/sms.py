"""The SMS gateway the dialogs send verification codes through (`dialogs.services.SmsGateway`).

`HttpSmsGateway` speaks a small JSON HTTP API (see docs/sms.md); the emulator serves it
(`emulator/sms.py`), and a real provider is reached through a thin adapter that offers the same
API, or through another class with the same `send` method.

    POST {base}/sms/send   {"mobile": "13812341234", "text": "..."}
                           Authorization: Bearer <api key>        (when one is configured)
    -> 2xx {"ok": true, "id": "..."}
    -> {"ok": false, "code": ..., "message": "..."}   (any status; non-2xx also fails without it)

Verification codes are secrets: neither the mobile number nor the text is ever logged, and the
reasons carried by `SmsError` are scrubbed of both (the dialogs log them).
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any, Callable, Optional
from urllib.parse import urlparse

import aiohttp

from dialogs.services import SmsError, SmsGateway
from storage.identifiers import mask_mobile, normalize_mobile

log = logging.getLogger("zikao.sms")

SEND_PATH = "/sms/send"
MAX_ANSWER_BYTES = 64 * 1024  # a provider's answer is a small JSON object
MAX_REASON_CHARS = 160


class HttpSmsGateway:
    """Sends one SMS per call through the gateway at `base_url`; raises `SmsError` on any failure.

    `timeout` bounds the whole call (connect, send, answer). The session is the caller's
    (the service's shared `aiohttp.ClientSession`); the gateway never closes it.
    """

    def __init__(self, session: aiohttp.ClientSession, base_url: str, *, api_key: str = "", timeout: float = 5.0) -> None:
        parsed = urlparse(base_url or "")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"SMS gateway base URL: expected an http(s) URL, got {base_url!r}")
        if timeout <= 0:
            raise ValueError("SMS gateway timeout: must be positive")
        self._session = session
        self.url = base_url.rstrip("/") + SEND_PATH
        self._api_key = api_key
        self.timeout = float(timeout)

    def __repr__(self) -> str:  # never shows the key
        return f"HttpSmsGateway({self.url!r}, api_key={'set' if self._api_key else 'none'}, timeout={self.timeout})"

    async def send(self, mobile: str, text: str) -> None:
        masked = mask_mobile(mobile)
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        started = time.monotonic()
        status, raw = await post_bounded(self._session, self.url, self.timeout, mobile, text,
                                         json={"mobile": mobile, "text": text}, headers=headers)
        ms = (time.monotonic() - started) * 1000
        answer = _json_object(raw)
        if 200 <= status < 300 and answer is not None and answer.get("ok") is True:
            log.info("SMS to %s accepted (id %s, %.0f ms)", masked, _short(answer.get("id")), ms)
            return
        reason = _failure(status, answer, lambda s: _scrub(s, mobile, text))
        log.info("SMS to %s failed: %s (%.0f ms)", masked, reason, ms)
        raise SmsError(reason)


async def post_bounded(session: aiohttp.ClientSession, url: str, timeout: float, mobile: str, text: str,
                       **kwargs: Any) -> tuple[int, bytes]:
    """POST to a provider within `timeout`: (status, the answer's first bytes), or `SmsError` with
    a scrubbed reason when no answer came (logged with the masked number only)."""
    try:
        async with session.post(url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False,
                                **kwargs) as resp:
            return resp.status, await _read_limited(resp)
    except (asyncio.TimeoutError, TimeoutError):
        reason = f"no answer within {timeout:g} s"
    except (aiohttp.ClientError, OSError) as e:
        reason = _scrub(f"unreachable ({type(e).__name__}: {e})", mobile, text)
    log.info("SMS to %s failed: %s", mask_mobile(mobile), reason)
    raise SmsError(reason) from None


async def _read_limited(resp: aiohttp.ClientResponse) -> bytes:
    """The answer's body, at most MAX_ANSWER_BYTES of it (the rest is not needed)."""
    chunks = bytearray()
    while len(chunks) < MAX_ANSWER_BYTES:
        chunk = await resp.content.read(MAX_ANSWER_BYTES - len(chunks))
        if not chunk:
            break
        chunks += chunk
    return bytes(chunks)


def _json_object(raw: bytes) -> Optional[dict[str, Any]]:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _short(value: Any, limit: int = 64) -> str:
    s = str(value) if value is not None else "-"
    s = " ".join(s.split())  # no line breaks in a log line
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _failure(status: int, answer: Optional[dict[str, Any]], scrub: Callable[[str], str]) -> str:
    """A short reason: the provider's code and message when it gave them (scrubbed first)."""
    refused = answer is not None and answer.get("ok") is False
    detail = ""
    if refused or (answer is not None and ("code" in answer or "message" in answer)):
        code = answer.get("code")
        message = answer.get("message")
        detail = " ".join(_short(scrub(str(x))) for x in (code, message) if x not in (None, ""))
    if 200 <= status < 300:
        if refused:
            return f"refused: {detail}" if detail else "refused"
        return "unexpected answer (no ok=true)"
    return f"HTTP {status}: {detail}" if detail else f"HTTP {status}"


def _scrub(reason: str, mobile: str, text: str) -> str:
    """The reason without the mobile number or the message text (a provider may echo them, or
    only the code in it: every run of 4+ digits of the text is starred too)."""
    secrets = [(text, "<text>"), (mobile, mask_mobile(mobile)), (normalize_mobile(mobile or ""), mask_mobile(mobile))]
    secrets += [(digits, "*" * len(digits)) for digits in re.findall(r"\d{4,}", text or "")]
    for secret, stand_in in secrets:
        if secret and len(secret) >= 4:
            reason = reason.replace(secret, stand_in)
    return _short(reason, MAX_REASON_CHARS)


def build_gateway(settings: Any, session: aiohttp.ClientSession) -> Optional[SmsGateway]:
    """The gateway `settings` configure (SMS_API_BASE, SMS_API_KEY), or None without a base URL.

    The call timeout is the service's API timeout (API_TIMEOUT_SECONDS) when the settings have one.
    """
    if getattr(settings, "sms_provider", "http") == "tencent":
        from bot.sms_tencent import build_tencent_gateway

        return build_tencent_gateway(settings, session)
    base = (getattr(settings, "sms_api_base", "") or "").strip()
    if not base:
        return None
    api_key = (getattr(settings, "sms_api_key", "") or "").strip()
    timeout = getattr(settings, "api_timeout_seconds", None) or 5.0
    return HttpSmsGateway(session, base, api_key=api_key, timeout=float(timeout))
