"""An emulated SMS provider: the gateway the bot sends verification codes through.

It speaks the JSON API of docs/sms.md, as `bot.sms.HttpSmsGateway` expects it:

    POST /sms/send  {"mobile": "13812341234", "text": "..."}   [Authorization: Bearer <key>]
    -> 200 {"ok": true, "id": "sms-..."}
    -> 4xx/5xx (or 200) {"ok": false, "code": <int>, "message": "..."}

and behaves like a real provider: it checks the number and the text, limits how often one number
gets a message (`MIN_INTERVAL`, `PER_MINUTE`), and takes the emulator's fault rules for the
target "sms" (`POST /_emu/faults {"endpoint": "sms", ...}`: `errcode` answers that error code,
`delay` answers late (the message is still delivered, as with a provider whose answer got lost),
`drop` hangs up). Messages it accepts are kept (`SmsState.messages`, newest last) and shown on the
chat page's 短信 panel, which a phone would be.

Control routes: `GET /_emu/sms` (newest first; `?mobile=` one number's, `?limit=`) and
`DELETE /_emu/sms` (forget the messages and the rate-limit history).

The emulator logs no full number and no text: the text carries the code.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from aiohttp import web

from storage.identifiers import mask_mobile

from .faults import Faults

log = logging.getLogger(__name__)

FAULT_TARGET = "sms"  # the fault rules' `endpoint` for this gateway; "*" rules do not apply
SEND_PATH = "/sms/send"
TEXT_MAX_CHARS = 500
MIN_INTERVAL = 10.0  # seconds between two messages to one number
PER_MINUTE = 5  # messages to one number within 60 s
MAX_RECORDS = 1000  # messages kept, the oldest dropped first
_MOBILE = re.compile(r"1[3-9][0-9]{9}")

OK = 0
BAD_REQUEST = 1001
INVALID_MOBILE = 1002
INVALID_TEXT = 1003
UNAUTHORIZED = 1004
TOO_FREQUENT = 1005
MINUTE_LIMIT = 1006
CARRIER_REFUSED = 1007
INTERNAL_ERROR = 1500
UNAVAILABLE = 1503

#: code -> (HTTP status, message). A fault's unknown errcode is answered with HTTP 500.
ERRORS: dict[int, tuple[int, str]] = {
    BAD_REQUEST: (400, "bad request: expected a JSON object with mobile and text"),
    INVALID_MOBILE: (400, "invalid mobile: 11 digits starting 13-19"),
    INVALID_TEXT: (400, f"invalid text: empty or longer than {TEXT_MAX_CHARS} characters"),
    UNAUTHORIZED: (401, "unauthorized: missing or wrong API key"),
    TOO_FREQUENT: (429, f"too frequent: one message per {MIN_INTERVAL:g} s to a number"),
    MINUTE_LIMIT: (429, f"limit reached: {PER_MINUTE} messages per minute to a number"),
    CARRIER_REFUSED: (200, "refused by the carrier"),
    INTERNAL_ERROR: (500, "internal error"),
    UNAVAILABLE: (503, "service unavailable"),
}


def segments(text: str) -> int:
    """How many SMS a text is billed as: 70 characters fit one, longer texts go in parts of 67."""
    return 1 if len(text) <= 70 else math.ceil(len(text) / 67)


@dataclass
class SmsRefusal:
    code: int
    status: int
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"ok": False, "code": self.code, "message": self.message}


def _error(code: int, message: str | None = None) -> SmsRefusal:
    status, default = ERRORS.get(code, (500, "injected fault"))
    return SmsRefusal(code, status, message or default)


class SmsState:
    """What the emulated provider knows: the messages it took and when each number got one.

    It shares the WeChat API state's clock (`state.now()`, which tests move with
    `state.advance`) and fault rules when given one; on its own it has its own rules and wall time.
    `api_key`, when set, must come as ``Authorization: Bearer <key>``.
    """

    def __init__(self, api_state: Any = None, *, api_key: Optional[str] = None) -> None:
        self.api_key = api_key or None
        self.faults: Faults = api_state.faults if api_state is not None else Faults()
        self._clock: Callable[[], float] = api_state.now if api_state is not None else time.time
        self.min_interval = MIN_INTERVAL
        self.per_minute = PER_MINUTE
        self.text_max_chars = TEXT_MAX_CHARS
        self.max_records = MAX_RECORDS
        #: Called with each accepted message's record (the chat page's panel listens).
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self.clear()

    def clear(self) -> None:
        """Forget the messages and the rate-limit history (not the faults)."""
        self.messages: list[dict[str, Any]] = []
        self._sent_at: dict[str, list[float]] = {}

    def now(self) -> float:
        return self._clock()

    def list_messages(self, mobile: Optional[str] = None, limit: Optional[int] = None) -> list[dict[str, Any]]:
        """Messages newest first, optionally those to one number."""
        out = [m for m in reversed(self.messages) if mobile is None or m["mobile"] == mobile]
        return out if limit is None else out[:limit]

    def check_key(self, authorization: Optional[str]) -> bool:
        if not self.api_key:
            return True
        scheme, _, value = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(value.strip().encode(), self.api_key.encode())

    def submit(self, mobile: Any, text: Any) -> dict[str, Any] | SmsRefusal:
        """Validate, rate-limit and record one message; the record, or the error to answer."""
        if not isinstance(mobile, str) or not _MOBILE.fullmatch(mobile):
            return _error(INVALID_MOBILE)
        if not isinstance(text, str) or not text.strip() or len(text) > self.text_max_chars:
            return _error(INVALID_TEXT)
        now = self.now()
        recent = [t for t in self._sent_at.get(mobile, []) if now - t < 60.0]
        if recent and now - recent[-1] < self.min_interval:
            return _error(TOO_FREQUENT)
        if len(recent) >= self.per_minute:
            return _error(MINUTE_LIMIT)
        recent.append(now)
        self._sent_at[mobile] = recent
        record = {
            "id": f"sms-{next(self._ids):06d}-{secrets.token_hex(3)}",
            "mobile": mobile,
            "masked": mask_mobile(mobile),
            "text": text,
            "segments": segments(text),
            "at": now,
        }
        self.messages.append(record)
        del self.messages[: -self.max_records]
        log.info("SMS %s to %s accepted (%d characters)", record["id"], record["masked"], len(text))
        for listener in list(self.listeners):
            try:
                listener(record)
            except Exception:
                log.exception("SMS listener failed")
        return record

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Cancel sends still being served (a delay fault) when the app stops."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


SMS_KEY = web.AppKey("emulator_sms", SmsState)


def sms_state(app: web.Application) -> SmsState:
    """The SMS gateway's state of an emulator app (`start_emulator`'s `runner.app`)."""
    return app[SMS_KEY]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _answer(result: dict[str, Any] | SmsRefusal) -> web.Response:
    if isinstance(result, SmsRefusal):
        return _json(result.as_dict(), result.status)
    return _json({"ok": True, "id": result["id"]})


async def take_fault(sms: SmsState, request: web.Request) -> tuple[bytes, Any, Optional[web.Response]]:
    """(the request's body, the next SMS fault rule, a response to return at once). The rule is
    applied as far as every provider API shares it: waited out (`delay`) and, for `drop`, the
    connection closed. The caller answers the rule's `errcode` in its API's terms."""
    raw = await request.read()
    fault = sms.faults.take(FAULT_TARGET, wildcard=False)
    if fault is None:
        return raw, None, None
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.drop:
        log.info("SMS send dropped by fault %d", fault.id)
        if request.transport is not None:
            request.transport.close()  # no status line, no body: the client sees a hang-up
        return raw, fault, web.Response()
    return raw, fault, None


def finished_even_if_abandoned(sms: SmsState, serve: Callable[[web.Request], Any]):
    """A route handler that, like a real provider, finishes a send whose client gave up waiting."""
    async def send(request: web.Request) -> web.StreamResponse:
        return await asyncio.shield(sms._spawn(serve(request)))

    return send


def add_sms_routes(app: web.Application, sms: SmsState) -> SmsState:
    """Serve the gateway (POST /sms/send) and its control routes (/_emu/sms) on `app`."""
    app[SMS_KEY] = sms

    async def serve(request: web.Request) -> web.StreamResponse:
        raw, fault, dropped = await take_fault(sms, request)
        if dropped is not None:
            return dropped
        if fault is not None:
            if fault.errcode is not None:
                log.info("SMS send failed by fault %d (code %d)", fault.id, fault.errcode)
                return _answer(_error(fault.errcode))
        if not sms.check_key(request.headers.get("Authorization")):
            return _answer(_error(UNAUTHORIZED))
        try:
            body = json.loads(raw.decode("utf-8")) if raw.strip() else None
        except (UnicodeDecodeError, ValueError):
            body = None
        if not isinstance(body, dict) or "mobile" not in body or "text" not in body:
            return _answer(_error(BAD_REQUEST))
        result = sms.submit(body["mobile"], body["text"])
        if isinstance(result, SmsRefusal):
            log.info("SMS to %s refused: %d %s", mask_mobile(str(body["mobile"])), result.code, result.message)
        return _answer(result)

    async def list_messages(request: web.Request) -> web.Response:
        mobile = request.query.get("mobile") or None
        limit: Optional[int] = None
        if "limit" in request.query:
            try:
                limit = int(request.query["limit"])
            except ValueError:
                limit = -1
            if limit < 0:
                return _json({"error": "limit: a number, 0 or more"}, 400)
        return _json({"messages": sms.list_messages(mobile.strip() if mobile else None, limit)})

    async def clear_messages(request: web.Request) -> web.Response:
        cleared = len(sms.messages)
        sms.clear()
        return _json({"ok": True, "cleared": cleared})

    async def on_cleanup(app: web.Application) -> None:
        await sms.close()

    app.router.add_post(SEND_PATH, finished_even_if_abandoned(sms, serve))
    from .sms_tencent import add_tencent_routes

    add_tencent_routes(app, sms)  # the same gateway as Tencent Cloud SMS speaks it (POST /)
    app.router.add_get("/_emu/sms", list_messages)
    app.router.add_delete("/_emu/sms", clear_messages)
    app.on_cleanup.append(on_cleanup)
    return sms
