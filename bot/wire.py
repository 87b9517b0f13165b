"""WeChat's XML: inbound bodies to plain dicts and Messages, Replies to passive-reply XML."""
from __future__ import annotations

import time
import xml.etree.ElementTree as ET

from dialogs.types import Message, Reply


class BadXML(Exception):
    """Not a WeChat message body."""


def parse_xml(body: bytes | str) -> dict[str, str]:
    """Flat `<xml><Field>value</Field>...</xml>` to a dict; refuses DTDs (entity expansion)."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise BadXML("DTD not allowed")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise BadXML(str(e)) from None
    if root.tag != "xml":
        raise BadXML("root is not <xml>")
    out: dict[str, str] = {}
    for child in root:
        if len(child):  # nested (e.g. ScanCodeInfo): keep the children flat
            for sub in child:
                out[sub.tag] = (sub.text or "").strip()
        else:
            out[child.tag] = (child.text or "").strip()
    return out


KNOWN_KINDS = {"text", "image", "voice", "video", "shortvideo", "location", "link", "event"}


def to_message(fields: dict[str, str]) -> Message:
    msg_type = fields.get("MsgType", "").lower()
    kind = msg_type if msg_type in KNOWN_KINDS else "unknown"
    text = fields.get("Content", "")
    if kind == "voice":
        text = fields.get("Recognition", "")
    return Message(
        openid=fields.get("FromUserName", ""),
        kind=kind,
        text=text,
        media_id=fields.get("MediaId") or None,
        pic_url=fields.get("PicUrl") or None,
        event=fields.get("Event") or None,
        event_key=fields.get("EventKey") or None,
        # TEMPLATESENDJOBFINISH spells it MsgID.
        msg_id=fields.get("MsgId") or fields.get("MsgID") or None,
        status=fields.get("Status") or None,
    )


def _cdata(value: str) -> str:
    # A CDATA section cannot contain "]]>": split it across two sections.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def reply_xml(reply: Reply, to_user: str, from_user: str, now: int | None = None) -> str:
    """Passive reply XML; the caller answers 'success' for an empty Reply."""
    ts = now or int(time.time())
    head = (
        f"<xml><ToUserName>{_cdata(to_user)}</ToUserName>"
        f"<FromUserName>{_cdata(from_user)}</FromUserName>"
        f"<CreateTime>{ts}</CreateTime>"
    )
    if reply.image_media_id and not reply.text:
        return head + f"<MsgType><![CDATA[image]]></MsgType><Image><MediaId>{_cdata(reply.image_media_id)}</MediaId></Image></xml>"
    return head + f"<MsgType><![CDATA[text]]></MsgType><Content>{_cdata(reply.text)}</Content></xml>"

