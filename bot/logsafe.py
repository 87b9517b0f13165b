"""Log lines without credentials or identities, for the service and the emulator.

WeChat calls `/wechat?signature=…&timestamp=…&nonce=…&openid=…[&msg_signature=…]` and the bot
calls WeChat's API with `?access_token=…`; aiohttp's default access log writes the whole request
line, so every signature, nonce, openid and live access_token would end up in the log, where
a signed query is enough to replay a request within the freshness window (docs/security.md).

- `SafeAccessLogger`: the access log line is method, path *without* the query, status, size,
  time and the client address. Pass it to `web.run_app` / `web.AppRunner` as `access_log_class`.
- `RedactingFilter`: on the log handlers, replaces the value of any sensitive query parameter or
  XML field that still appears in a message (an exception text quoting a URL, a library's debug
  line) with `***`. Defence in depth; the code itself never formats those values.

aiohttp's access-log format language has no "path without query" atom, hence the small class.
"""
from __future__ import annotations

import logging
import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

SENSITIVE_PARAMS = ("signature", "msg_signature", "access_token", "openid", "nonce", "timestamp",
                    "echostr", "secret", "code", "ticket", "refresh_token", "api_key")
SENSITIVE_FIELDS = ("FromUserName", "ToUserName", "Encrypt", "MsgSignature", "touser", "openid",
                    "access_token")

_PARAM_RE = re.compile(r"(?i)\b(" + "|".join(map(re.escape, SENSITIVE_PARAMS)) + r")=([^&\s\"'<>,;)]+)")
_FIELD_RE = re.compile(r"<(" + "|".join(SENSITIVE_FIELDS) + r")>(.*?)</\1>", re.S)
_JSON_RE = re.compile(r"([\"'](?:" + "|".join(SENSITIVE_FIELDS) + r")[\"']\s*:\s*[\"'])([^\"']*)")


def redact(text: str) -> str:
    """`text` with the values of sensitive parameters and fields replaced by ***."""
    if "=" in text:
        text = _PARAM_RE.sub(r"\1=***", text)
    if "<" in text:
        text = _FIELD_RE.sub(r"<\1>***</\1>", text)
    if ":" in text:
        text = _JSON_RE.sub(r"\1***", text)
    return text


class RedactingFilter(logging.Filter):
    """Redacts the formatted message (and the exception text) of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler to report
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            cleaned_exc = redact(text)
            if cleaned_exc != text:
                record.exc_text, record.exc_info = cleaned_exc, None
        return True


class SafeAccessLogger(AbstractAccessLogger):
    """`POST /wechat 200 7b 0.004s 127.0.0.1`: never the query string."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %sb %.3fs %s", request.method, request.path, response.status,
                         response.body_length, time, request.remote)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def install(level: str = "INFO", fmt: str = "text") -> None:
    """The service's logging set-up (bot/logs.py), whose handler carries the redacting filter;
    the emulator uses it too."""
    from bot.logs import setup_logging

    setup_logging(level, fmt)
