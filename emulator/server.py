"""WeChat's server side: what WeChat's servers do when a user writes to the account.

`WeChatServer` builds the inbound XML exactly as WeChat does, signs every request, encrypts it
in compatible and safe mode (with wechatpy's `WeChatCrypto`, so the emulator does not share code
with the bot's own crypto), posts it to the bot with WeChat's 5-second timeout and three attempts
(every attempt carries the same MsgId and CreateTime), and reads the reply as WeChat would: an
empty body or ``success`` means "no reply", a well-formed (and, when encrypted, correctly signed)
XML reply is shown to the user, anything else makes the user see WeChat's error line.

`sign()` and `build_xml()` are plain functions so that a load generator and tests can reuse them.
"""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import random
import secrets
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Union

import aiohttp
from bot.logsafe import redact
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException

log = logging.getLogger(__name__)

#: What WeChat shows the user when the account's server failed to answer properly.
SERVICE_ERROR = "该公众号暂时无法提供服务，请稍后再试"

#: A passive text reply longer than this (UTF-8 bytes of Content) is not delivered.
TEXT_REPLY_LIMIT = 2048

MODES = ("plain", "compat", "safe")

class RawXml(str):
    """A field value inserted as XML, not as text (e.g. SendPicsInfo's nested elements)."""


FieldValue = Union[str, int, float, None]
Fields = Union[Mapping[str, FieldValue], Iterable[tuple[str, FieldValue]]]


# --------------------------------------------------------------------------------------------
# Reusable helpers


def sign(token: str, timestamp: str | int, nonce: str, *more: str) -> str:
    """WeChat's signature: sha1 of the sorted, concatenated values.

    ``sign(token, timestamp, nonce)`` is the ``signature`` query parameter;
    ``sign(token, timestamp, nonce, encrypt)`` is ``msg_signature``.
    """
    parts = sorted(str(p) for p in (token, timestamp, nonce, *more))
    return hashlib.sha1("".join(parts).encode("utf-8")).hexdigest()


_nonce_counter = itertools.count(secrets.randbelow(9_000_000_000))


def make_nonce() -> str:
    """WeChat's nonces are decimal digits (e.g. ``1320562132``). A counter from a random start:
    never the same twice in a process, so the bot's replay check never refuses one of ours."""
    return str(1_000_000_000 + next(_nonce_counter) % 9_000_000_000)


def cdata(text: str) -> str:
    """Wrap text in CDATA, splitting any ``]]>`` the way XML requires."""
    return "<![CDATA[" + str(text).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def build_xml(
    to_user: str,
    from_user: str,
    msg_type: str,
    create_time: int | None = None,
    fields: Fields = (),
) -> str:
    """One inbound message as WeChat writes it.

    Strings go into CDATA, numbers are written bare (CreateTime, MsgId, Location_X ...), `RawXml`
    values are inserted as they are (nested elements), ``None`` values are left out. The order of ``fields`` is kept, as WeChat's own order matters to no
    parser but makes the XML easy to compare with the documentation.
    """
    if create_time is None:
        create_time = int(time.time())
    items = fields.items() if isinstance(fields, Mapping) else fields
    lines = [
        "<xml>",
        f"<ToUserName>{cdata(to_user)}</ToUserName>",
        f"<FromUserName>{cdata(from_user)}</FromUserName>",
        f"<CreateTime>{int(create_time)}</CreateTime>",
        f"<MsgType>{cdata(msg_type)}</MsgType>",
    ]
    for name, value in items:
        if value is None:
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        if isinstance(value, RawXml):
            lines.append(f"<{name}>{value}</{name}>")
        elif isinstance(value, (int, float)):
            lines.append(f"<{name}>{value}</{name}>")
        else:
            lines.append(f"<{name}>{cdata(value)}</{name}>")
    lines.append("</xml>")
    return "\n".join(lines)


def account_id_for(app_id: str) -> str:
    """A stable original id (gh_ + 12 hex digits) for an AppID, as the emulator's account."""
    return "gh_" + hashlib.sha1(app_id.encode("utf-8")).hexdigest()[:12]


_msg_id_counter = itertools.count(random.randrange(10**17, 5 * 10**17))


def new_msg_id() -> int:
    """A 64-bit MsgId like WeChat's (19 digits), unique within the process."""
    return 6_000_000_000_000_000_000 + next(_msg_id_counter)


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class ParsedReply:
    """The bot's passive reply as WeChat understood it."""

    type: str  # text, image, voice, video, music, news, transfer_customer_service, ...
    content: str = ""  # text
    media_id: Optional[str] = None  # image, voice, video
    title: Optional[str] = None  # video, music
    description: Optional[str] = None
    articles: list[dict[str, str]] = field(default_factory=list)  # news
    to_user: str = ""
    from_user: str = ""
    create_time: Optional[int] = None
    xml: str = ""  # the reply XML (decrypted when it came encrypted)
    encrypted: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "encrypted": self.encrypted}
        if self.type == "text":
            out["content"] = self.content
        if self.media_id is not None:
            out["media_id"] = self.media_id
        if self.title is not None:
            out["title"] = self.title
        if self.description is not None:
            out["description"] = self.description
        if self.type == "news":
            out["articles"] = self.articles
        return out


@dataclass
class Attempt:
    """One POST to the bot."""

    status: Optional[int]  # None when it timed out or the connection failed
    latency: float  # seconds
    outcome: str  # "answered", "timeout", "connection error: ..."


@dataclass
class DeliveryResult:
    """What happened to one inbound message: the reply, or the error the user sees."""

    msg_type: str
    openid: str
    msg_id: Optional[int]
    create_time: int
    request_xml: str  # the plain message XML (before encryption)
    attempts: list[Attempt] = field(default_factory=list)
    reply: Optional[ParsedReply] = None
    error: Optional[str] = None  # what WeChat shows the user (SERVICE_ERROR) or None
    detail: str = ""  # why, for developers
    raw_body: bytes = b""  # the last answered body

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def statuses(self) -> list[Optional[int]]:
        return [a.status for a in self.attempts]

    @property
    def latency(self) -> float:
        """Seconds from the first attempt to the end of the last one."""
        return sum(a.latency for a in self.attempts)

    @property
    def no_reply(self) -> bool:
        return self.error is None and self.reply is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "msg_type": self.msg_type,
            "msg_id": str(self.msg_id) if self.msg_id is not None else None,
            "create_time": self.create_time,
            "attempts": len(self.attempts),
            "statuses": self.statuses,
            "outcomes": [a.outcome for a in self.attempts],
            "latency": round(self.latency, 4),
            "reply": self.reply.as_dict() if self.reply else None,
            "error": self.error,
            "detail": self.detail,
        }


class ReplyError(Exception):
    """The bot's answer is not something WeChat accepts; the message says why."""


@dataclass(frozen=True)
class PreparedRequest:
    """A signed (and, in compat/safe mode, encrypted) request, ready to post."""

    params: dict[str, str]
    body: bytes


# --------------------------------------------------------------------------------------------
# The server


class WeChatServer:
    """Posts what users do to the bot, the way WeChat's servers do."""

    def __init__(
        self,
        bot_url: str,
        token: str,
        app_id: str,
        *,
        aes_key: str | None = None,
        mode: str = "plain",
        session: aiohttp.ClientSession | None = None,
        timeout: float = 5.0,
        attempts: int = 3,
        account_id: str | None = None,
        wait_out_timeout: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode != "plain" and not aes_key:
            raise ValueError(f"mode {mode!r} needs an EncodingAESKey (aes_key)")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.bot_url = bot_url
        self.token = token
        self.app_id = app_id
        self.aes_key = aes_key or None
        self.mode = mode
        self.timeout = timeout
        self.attempts = attempts
        # A refused or broken connection: retry at once (False, quick tests) or only when the
        # timeout has passed, as WeChat does (True: what a process crash looks like to WeChat).
        self.wait_out_timeout = wait_out_timeout
        self.account_id = account_id or account_id_for(app_id)
        self._crypto = WeChatCrypto(token, aes_key, app_id) if aes_key else None
        self._session = session
        self._own_session = session is None

    # -- lifecycle

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()

    async def __aenter__(self) -> "WeChatServer":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- building requests

    def message_xml(
        self,
        openid: str,
        msg_type: str,
        fields: Fields = (),
        create_time: int | None = None,
    ) -> str:
        return build_xml(self.account_id, openid, msg_type, create_time, fields)

    def prepare(self, xml: str, openid: str, timestamp: str | None = None, nonce: str | None = None) -> PreparedRequest:
        """Sign (and encrypt) one attempt of a message."""
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or make_nonce()
        params = {
            "signature": sign(self.token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "openid": openid,
        }
        if self.mode == "plain":
            return PreparedRequest(params, xml.encode("utf-8"))
        assert self._crypto is not None
        envelope = ET.fromstring(self._crypto.encrypt_message(xml, nonce, timestamp))
        encrypt = envelope.findtext("Encrypt") or ""
        msg_signature = envelope.findtext("MsgSignature") or ""
        params["encrypt_type"] = "aes"
        params["msg_signature"] = msg_signature
        if self.mode == "safe":
            body = (
                "<xml>\n"
                f"<ToUserName>{cdata(self.account_id)}</ToUserName>\n"
                f"<Encrypt>{cdata(encrypt)}</Encrypt>\n"
                "</xml>"
            )
        else:  # compat: the plain fields and Encrypt
            body = xml[: xml.rindex("</xml>")] + f"<Encrypt>{cdata(encrypt)}</Encrypt>\n</xml>"
        return PreparedRequest(params, body.encode("utf-8"))

    # -- what users do

    async def send_text(self, openid: str, content: str, msg_id: int | None = None) -> DeliveryResult:
        msg_id = msg_id if msg_id is not None else new_msg_id()
        return await self.deliver(openid, "text", [("Content", content), ("MsgId", msg_id)], msg_id=msg_id)

    async def send_image(
        self, openid: str, media_id: str, pic_url: str | None = None, msg_id: int | None = None
    ) -> DeliveryResult:
        msg_id = msg_id if msg_id is not None else new_msg_id()
        pic_url = pic_url or f"http://mmbiz.qpic.cn/mmbiz_jpg/{media_id}/0"
        return await self.deliver(
            openid, "image", [("PicUrl", pic_url), ("MsgId", msg_id), ("MediaId", media_id)], msg_id=msg_id
        )

    async def send_voice(
        self,
        openid: str,
        media_id: str,
        recognition: str | None = None,
        fmt: str = "amr",
        msg_id: int | None = None,
    ) -> DeliveryResult:
        msg_id = msg_id if msg_id is not None else new_msg_id()
        fields: list[tuple[str, FieldValue]] = [("MediaId", media_id), ("Format", fmt), ("MsgId", msg_id)]
        if recognition is not None:
            fields.append(("Recognition", recognition))
        return await self.deliver(openid, "voice", fields, msg_id=msg_id)

    async def send_video(
        self, openid: str, media_id: str, thumb_media_id: str, short: bool = False, msg_id: int | None = None
    ) -> DeliveryResult:
        msg_id = msg_id if msg_id is not None else new_msg_id()
        return await self.deliver(
            openid,
            "shortvideo" if short else "video",
            [("MediaId", media_id), ("ThumbMediaId", thumb_media_id), ("MsgId", msg_id)],
            msg_id=msg_id,
        )

    async def send_location(
        self,
        openid: str,
        latitude: float,
        longitude: float,
        scale: int = 15,
        label: str = "",
        msg_id: int | None = None,
    ) -> DeliveryResult:
        msg_id = msg_id if msg_id is not None else new_msg_id()
        return await self.deliver(
            openid,
            "location",
            [
                ("Location_X", latitude),
                ("Location_Y", longitude),
                ("Scale", scale),
                ("Label", label),
                ("MsgId", msg_id),
            ],
            msg_id=msg_id,
        )

    async def send_link(
        self, openid: str, title: str, description: str, url: str, msg_id: int | None = None
    ) -> DeliveryResult:
        msg_id = msg_id if msg_id is not None else new_msg_id()
        return await self.deliver(
            openid,
            "link",
            [("Title", title), ("Description", description), ("Url", url), ("MsgId", msg_id)],
            msg_id=msg_id,
        )

    async def send_event(self, openid: str, event: str, event_key: str | None = None, **extra: FieldValue) -> DeliveryResult:
        """An event: subscribe, unsubscribe, CLICK, VIEW, SCAN, LOCATION, TEMPLATESENDJOBFINISH ...

        ``extra`` adds fields by their WeChat names: ``Ticket`` (subscribe by QR code, SCAN),
        ``MenuId`` (VIEW), ``Latitude``/``Longitude``/``Precision`` (LOCATION), ``MsgID`` and
        ``Status`` (TEMPLATESENDJOBFINISH).
        """
        fields: list[tuple[str, FieldValue]] = [("Event", event)]
        if event_key is not None:
            fields.append(("EventKey", event_key))
        elif event in ("subscribe", "unsubscribe"):
            fields.append(("EventKey", ""))  # WeChat sends an empty EventKey here
        fields.extend(extra.items())
        return await self.deliver(openid, "event", fields)

    async def send_pic_event(
        self, openid: str, event: str, event_key: str, pic_md5s: Iterable[str] = ()
    ) -> DeliveryResult:
        """pic_sysphoto / pic_photo_or_album / pic_weixin: the menu's photo buttons, before the images."""
        md5s = list(pic_md5s)
        items = "".join(f"<item><PicMd5Sum>{cdata(m)}</PicMd5Sum></item>" for m in md5s)
        info = RawXml(f"<Count>{len(md5s)}</Count><PicList>{items}</PicList>")
        return await self.send_event(openid, event, event_key, SendPicsInfo=info)

    async def send_template_finish(self, openid: str, msg_id: int | str, status: str = "success") -> DeliveryResult:
        """TEMPLATESENDJOBFINISH: note WeChat's ``MsgID`` spelling."""
        return await self.send_event(openid, "TEMPLATESENDJOBFINISH", MsgID=int(msg_id), Status=status)

    # -- the URL check

    async def verify_url(self, echostr: str | None = None) -> tuple[bool, int | None, str]:
        """The GET WeChat makes when the URL is configured: (echoed correctly, status, body)."""
        echostr = echostr or str(secrets.randbelow(10**19))
        timestamp = str(int(time.time()))
        nonce = make_nonce()
        params = {"signature": sign(self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce, "echostr": echostr}
        try:
            async with self.session.get(
                self.bot_url, params=params, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as resp:
                body = await resp.text(errors="replace")
                return resp.status == 200 and body == echostr, resp.status, body
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            return False, None, f"{type(exc).__name__}: {exc}"

    # -- posting

    async def deliver(
        self,
        openid: str,
        msg_type: str,
        fields: Fields,
        *,
        msg_id: int | None = None,
        create_time: int | None = None,
    ) -> DeliveryResult:
        """Post one message with WeChat's timeout and retries, and read the reply."""
        create_time = create_time or int(time.time())
        xml = self.message_xml(openid, msg_type, fields, create_time)
        result = DeliveryResult(msg_type=msg_type, openid=openid, msg_id=msg_id, create_time=create_time, request_xml=xml)
        for _ in range(self.attempts):
            request = self.prepare(xml, openid)  # same XML (MsgId, CreateTime); fresh nonce
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.timeout):
                    async with self.session.post(
                        self.bot_url,
                        params=request.params,
                        data=request.body,
                        headers={"Content-Type": "text/xml"},
                    ) as resp:
                        body = await resp.read()
                        status = resp.status
            except TimeoutError:
                result.attempts.append(Attempt(None, time.monotonic() - started, "timeout"))
                continue
            except aiohttp.ClientError as exc:
                result.attempts.append(
                    Attempt(None, time.monotonic() - started, f"connection error: {type(exc).__name__}")
                )
                # WeChat treats an unreachable server like a silent one, after its own timeout;
                # the emulator retries at once unless told to wait it out as WeChat does.
                if self.wait_out_timeout:
                    await asyncio.sleep(max(0.0, self.timeout - (time.monotonic() - started)))
                continue
            result.attempts.append(Attempt(status, time.monotonic() - started, "answered"))
            result.raw_body = body
            self._read_answer(result, status, body, openid)
            return result
        result.error = SERVICE_ERROR
        outcomes = sorted({a.outcome for a in result.attempts})
        result.detail = f"no answer in {self.attempts} attempts ({', '.join(outcomes)}; timeout {self.timeout:g} s)"
        log.warning("%s message: %s", msg_type, result.detail)
        return result

    def _read_answer(self, result: DeliveryResult, status: int, body: bytes, openid: str) -> None:
        if status != 200:
            result.error = SERVICE_ERROR
            result.detail = f"HTTP {status}: {_snippet(body)}"
            log.warning("%s message: the bot answered %s", result.msg_type, result.detail)
            return
        try:
            result.reply = self.parse_reply(body, openid)
        except ReplyError as exc:
            result.error = SERVICE_ERROR
            result.detail = str(exc)
            log.warning("%s message: the bot's answer was refused: %s", result.msg_type, redact(str(exc)))

    def parse_reply(self, body: bytes, openid: str | None = None) -> Optional[ParsedReply]:
        """Read an answer as WeChat does: None for "no reply"; ReplyError when it is invalid."""
        text = body.decode("utf-8", errors="replace").strip()
        if text == "" or text == "success":
            return None
        if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
            raise ReplyError(f"reply with a DTD (WeChat's parser refuses it): {_snippet(body)}")
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise ReplyError(f"not XML ({exc}): {_snippet(body)}") from None
        if root.tag != "xml":
            raise ReplyError(f"root element <{root.tag}>, expected <xml>: {_snippet(body)}")
        encrypted = root.find("Encrypt") is not None
        if encrypted:
            if self._crypto is None:
                raise ReplyError("encrypted reply, but the account is in plaintext mode")
            msg_signature = root.findtext("MsgSignature") or ""
            timestamp = root.findtext("TimeStamp") or ""
            nonce = root.findtext("Nonce") or ""
            if not (msg_signature and timestamp and nonce):
                raise ReplyError("encrypted reply without MsgSignature, TimeStamp and Nonce")
            try:
                text = self._crypto.decrypt_message(text, msg_signature, timestamp, nonce)
            except InvalidSignatureException:
                raise ReplyError("the reply's MsgSignature does not match its Encrypt") from None
            except InvalidAppIdException:
                raise ReplyError("the encrypted reply carries another AppID") from None
            except Exception as exc:  # bad padding, bad base64, bad key
                raise ReplyError(f"cannot decrypt the reply: {type(exc).__name__}: {exc}") from None
            text = text.strip()
            if text == "" or text == "success":
                return None
            try:
                root = ET.fromstring(text)
            except ET.ParseError as exc:
                raise ReplyError(f"decrypted reply is not XML ({exc})") from None
        elif self.mode == "safe":
            raise ReplyError("plaintext reply in safe mode (the reply must be encrypted)")
        reply = _parse_reply_xml(root, text, encrypted)
        if openid is not None and reply.to_user != openid:
            # No openids in the text: it reaches the emulator's log.
            raise ReplyError(f"reply ToUserName (…{reply.to_user[-4:]}) is not the user who wrote (…{openid[-4:]})")
        if reply.from_user != self.account_id:
            raise ReplyError(f"reply FromUserName {reply.from_user!r} is not the account {self.account_id!r}")
        return reply


def _parse_reply_xml(root: ET.Element, text: str, encrypted: bool) -> ParsedReply:
    msg_type = (root.findtext("MsgType") or "").strip()
    if not msg_type:
        raise ReplyError("reply without MsgType")
    create = (root.findtext("CreateTime") or "").strip()
    reply = ParsedReply(
        type=msg_type,
        to_user=(root.findtext("ToUserName") or "").strip(),
        from_user=(root.findtext("FromUserName") or "").strip(),
        create_time=int(create) if create.isdigit() else None,
        xml=text,
        encrypted=encrypted,
    )
    if msg_type == "text":
        content = root.findtext("Content")
        if content is None:
            raise ReplyError("text reply without Content")
        size = len(content.encode("utf-8"))
        if size > TEXT_REPLY_LIMIT:
            raise ReplyError(f"text reply of {size} bytes, over WeChat's {TEXT_REPLY_LIMIT}-byte limit")
        reply.content = content
    elif msg_type in ("image", "voice", "video"):
        node = root.find(msg_type.capitalize())
        media_id = node.findtext("MediaId") if node is not None else None
        if not media_id:
            raise ReplyError(f"{msg_type} reply without {msg_type.capitalize()}/MediaId")
        reply.media_id = media_id.strip()
        if node is not None and msg_type == "video":
            reply.title = node.findtext("Title")
            reply.description = node.findtext("Description")
    elif msg_type == "music":
        node = root.find("Music")
        if node is None:
            raise ReplyError("music reply without Music")
        reply.title = node.findtext("Title")
        reply.description = node.findtext("Description")
        reply.media_id = node.findtext("ThumbMediaId")
    elif msg_type == "news":
        items = root.findall("Articles/item")
        count = (root.findtext("ArticleCount") or "").strip()
        if not items or not count.isdigit() or int(count) != len(items):
            raise ReplyError("news reply whose ArticleCount does not match its items")
        if len(items) > 8:
            raise ReplyError("news reply with more than 8 articles")
        reply.articles = [
            {k: (item.findtext(k) or "") for k in ("Title", "Description", "PicUrl", "Url")} for item in items
        ]
    elif msg_type != "transfer_customer_service":
        raise ReplyError(f"unknown reply MsgType {msg_type!r}")
    return reply


def _snippet(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", errors="replace").strip().replace("\n", " ")
    return text[:limit] + ("…" if len(text) > limit else "")


__all__ = [
    "SERVICE_ERROR",
    "TEXT_REPLY_LIMIT",
    "MODES",
    "sign",
    "make_nonce",
    "cdata",
    "RawXml",
    "build_xml",
    "account_id_for",
    "new_msg_id",
    "ParsedReply",
    "Attempt",
    "DeliveryResult",
    "ReplyError",
    "PreparedRequest",
    "WeChatServer",
]
