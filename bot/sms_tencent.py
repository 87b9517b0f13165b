"""Tencent Cloud SMS (短信, API 3.0 `SendSms`, version 2021-01-11) behind `dialogs.services.SmsGateway`.

Chinese carriers only deliver SMS from a registered signature (签名, here 上海自考) through an
approved template, so the provider does not take free text: the gateway finds the verification
code and its validity in the text the dialogs wrote (`dialogs.account.SMS_TEXT`) and sends them as
the parameters of the approved template

    您的验证码是{1}，{2}分钟内有效。如非本人操作，请忽略。

A text that is not a verification code is refused with a reason (no template fits it).

The request is signed with TC3-HMAC-SHA256 as Tencent Cloud documents it
(https://cloud.tencent.com/document/api/382/52072 and the signing page, .../52071 "签名方法 v3").
Tencent's Python SDK (tencentcloud-sdk-python) does the same but sends with the blocking
`requests` library, which would stall the service's event loop for the length of the call; the
signing is twenty lines, written here on aiohttp and checked against the SDK's own signing by the
emulator (emulator/sms_tencent.py), which verifies every request with it.

Answers are always HTTP 200 JSON: `{"Response": {"Error": {"Code", "Message"}, "RequestId"}}` for a
refused call (bad signature, unknown template ...), else `SendStatusSet` with one status per
number whose `Code` is "Ok" or the reason (LimitExceeded.PhoneNumberThirtySecondLimit ...).
Every failure is an `SmsError` with a short, scrubbed reason; the secret key, the number and
the text are never logged.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import time
from typing import Any, Callable, Optional
from urllib.parse import urlparse

import aiohttp

from bot.sms import _json_object, _scrub, _short, post_bounded
from dialogs.services import SmsError
from storage.identifiers import mask_mobile, normalize_mobile

log = logging.getLogger("zikao.sms")

ENDPOINT = "https://sms.tencentcloudapi.com"
SERVICE = "sms"
ACTION = "SendSms"
VERSION = "2021-01-11"
ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json; charset=utf-8"
# The code and the minutes it is valid, as dialogs.account.SMS_TEXT writes them.
CODE_TEXT = re.compile(r"验证码(?:是|为)?[:：]?\s*(\d{4,8})[^\d]*?(\d{1,3})\s*分钟")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def tc3_authorization(secret_id: str, secret_key: str, *, host: str, path: str, body: bytes,
                      timestamp: int, service: str = SERVICE, content_type: str = CONTENT_TYPE) -> str:
    """The Authorization header of one POST (TC3-HMAC-SHA256, signed headers content-type;host)."""
    date = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d")
    canonical_request = "\n".join([
        "POST", path or "/", "",  # method, canonical URI, canonical query string (none for POST)
        f"content-type:{content_type}\nhost:{host}\n", "content-type;host", sha256_hex(body),
    ])
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join([ALGORITHM, str(timestamp), scope, sha256_hex(canonical_request.encode("utf-8"))])
    signing_key = _hmac(_hmac(_hmac(("TC3" + secret_key).encode("utf-8"), date), service), "tc3_request")
    signature = hmac.new(signing_key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders=content-type;host, Signature={signature}"


def template_params(text: str) -> Optional[list[str]]:
    """[code, minutes] of a verification-code text, or None when the text is something else."""
    m = CODE_TEXT.search(text or "")
    return [m.group(1), m.group(2)] if m else None


class TencentSmsGateway:
    """Sends a verification code through Tencent Cloud SMS; raises `SmsError` on any failure."""

    def __init__(self, session: aiohttp.ClientSession, *, secret_id: str, secret_key: str, sdk_app_id: str,
                 sign_name: str, template_id: str, region: str = "ap-guangzhou", endpoint: str = ENDPOINT,
                 timeout: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        parsed = urlparse(endpoint or "")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"Tencent Cloud SMS endpoint: expected an http(s) URL, got {endpoint!r}")
        for name, value in (("secret id", secret_id), ("secret key", secret_key), ("SmsSdkAppId", sdk_app_id),
                            ("sign name", sign_name), ("template id", template_id)):
            if not value:
                raise ValueError(f"Tencent Cloud SMS: {name} is required")
        self._session = session
        self.url = endpoint.rstrip("/") + "/"
        self.host = parsed.netloc
        self.path = (parsed.path.rstrip("/") or "") + "/"
        self._secret_id, self._secret_key = secret_id, secret_key
        self.sdk_app_id, self.sign_name, self.template_id, self.region = sdk_app_id, sign_name, template_id, region
        self.timeout = float(timeout)
        self.clock = clock

    def __repr__(self) -> str:  # never shows the key
        return f"TencentSmsGateway({self.url!r}, app {self.sdk_app_id}, template {self.template_id}, timeout={self.timeout})"

    def request(self, mobile: str, text: str) -> tuple[bytes, dict[str, str]]:
        """The body and headers of the SendSms call for one message (SmsError if no template fits)."""
        params = template_params(text)
        if params is None:
            raise SmsError("no approved template for this text (only verification codes are sent)")
        body = json.dumps({
            "PhoneNumberSet": [f"+86{normalize_mobile(mobile) or mobile}"],
            "SmsSdkAppId": self.sdk_app_id, "SignName": self.sign_name,
            "TemplateId": self.template_id, "TemplateParamSet": params,
        }, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        timestamp = int(self.clock())
        headers = {
            "Authorization": tc3_authorization(self._secret_id, self._secret_key, host=self.host, path=self.path,
                                               body=body, timestamp=timestamp),
            "Content-Type": CONTENT_TYPE, "Host": self.host, "X-TC-Action": ACTION,
            "X-TC-Timestamp": str(timestamp), "X-TC-Version": VERSION, "X-TC-Region": self.region,
        }
        return body, headers

    async def send(self, mobile: str, text: str) -> None:
        masked = mask_mobile(mobile)
        body, headers = self.request(mobile, text)
        scrub: Callable[[str], str] = lambda s: _scrub(s, mobile, text)  # noqa: E731
        started = time.monotonic()
        status, raw = await post_bounded(self._session, self.url, self.timeout, mobile, text, data=body, headers=headers)
        ms = (time.monotonic() - started) * 1000
        answer = _json_object(raw)
        response = answer.get("Response") if answer is not None else None
        if status != 200 or not isinstance(response, dict):
            reason = f"HTTP {status}" if status != 200 else "unexpected answer (no Response)"
            log.info("SMS to %s failed: %s (%.0f ms)", masked, reason, ms)
            raise SmsError(reason)
        request_id = _short(response.get("RequestId"))
        error = response.get("Error")
        if isinstance(error, dict):
            reason = "refused: " + " ".join(_short(scrub(str(error.get(k, "")))) for k in ("Code", "Message")).strip()
            log.info("SMS to %s failed: %s (request %s, %.0f ms)", masked, reason, request_id, ms)
            raise SmsError(reason)
        statuses = response.get("SendStatusSet")
        first = statuses[0] if isinstance(statuses, list) and statuses and isinstance(statuses[0], dict) else None
        if first is None:
            reason = "unexpected answer (no SendStatusSet)"
        elif first.get("Code") == "Ok":
            log.info("SMS to %s accepted (serial %s, request %s, %.0f ms)", masked, _short(first.get("SerialNo")),
                     request_id, ms)
            return
        else:
            reason = "refused: " + " ".join(_short(scrub(str(first.get(k, "")))) for k in ("Code", "Message")).strip()
        log.info("SMS to %s failed: %s (request %s, %.0f ms)", masked, reason, request_id, ms)
        raise SmsError(reason)


def build_tencent_gateway(settings: Any, session: aiohttp.ClientSession) -> TencentSmsGateway:
    return TencentSmsGateway(
        session, secret_id=settings.tencent_sms_secret_id, secret_key=settings.tencent_sms_secret_key,
        sdk_app_id=settings.tencent_sms_sdk_app_id, sign_name=settings.tencent_sms_sign_name,
        template_id=settings.tencent_sms_template_id, region=settings.tencent_sms_region,
        endpoint=settings.sms_api_base or ENDPOINT, timeout=float(settings.api_timeout_seconds or 5.0),
    )
