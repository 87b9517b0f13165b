"""Conversations as transcripts: lines sent, replies expected (Bot Framework's DialogTestClient).

A transcript is plain text::

    > 绑定                      send this text
    < 请输入您的证件号码          the reply contains this (several '<' lines: all of them)
    <! 密码                     the reply must not contain this
    [click query:plan]          a menu click with this key
    [photo MEDIA_ID]            an image message
    [event subscribe]           an event

The same transcript runs against the router in-process (`router_sender`) and through the WeChat
emulator over HTTP with signatures and encryption (`emulator_sender`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Optional

from dialogs.types import Message


@dataclass
class Line:
    kind: str  # text, click, photo, event
    value: str
    expect: list[str] = field(default_factory=list)
    refuse: list[str] = field(default_factory=list)
    lineno: int = 0


Sender = Callable[[Line], Awaitable[str]]


def parse(script: str) -> list[Line]:
    lines: list[Line] = []
    for n, raw in enumerate(script.splitlines(), 1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("<!"):
            lines[-1].refuse.append(s[2:].strip())
        elif s.startswith("<"):
            lines[-1].expect.append(s[1:].strip())
        elif s.startswith(">"):
            lines.append(Line("text", s[1:].strip(), lineno=n))
        else:
            m = re.fullmatch(r"\[(click|photo|event)\s+(\S+)\]", s)
            if not m:
                raise ValueError(f"transcript line {n}: cannot read {raw!r}")
            lines.append(Line(m.group(1), m.group(2), lineno=n))
    return lines


async def run(send: Sender, script: str, values: Optional[Callable[[], dict[str, str]]] = None) -> list[str]:
    """Plays the transcript; fails at the first reply that does not match, showing it.

    `{name}` in a sent line is filled from `values()` at the moment it is sent (e.g. the SMS
    code the gateway just received)."""
    replies = []
    for line in parse(script):
        if values is not None and "{" in line.value:
            line = Line(line.kind, line.value.format_map(values()), line.expect, line.refuse, line.lineno)
        reply = await send(line)
        replies.append(reply)
        for want in line.expect:
            assert want in reply, f"line {line.lineno} ({line.kind} {line.value!r}): expected {want!r} in reply:\n{reply}"
        for bad in line.refuse:
            assert bad not in reply, f"line {line.lineno} ({line.kind} {line.value!r}): {bad!r} must not be in reply:\n{reply}"
    return replies


def message_for(openid: str, line: Line) -> Message:
    if line.kind == "text":
        return Message(openid=openid, kind="text", text=line.value)
    if line.kind == "click":
        return Message(openid=openid, kind="event", event="CLICK", event_key=line.value)
    if line.kind == "photo":
        return Message(openid=openid, kind="image", media_id=line.value)
    return Message(openid=openid, kind="event", event=line.value)


def router_sender(router, openid: str) -> Sender:
    async def send(line: Line) -> str:
        return (await router.handle(message_for(openid, line))).text
    return send


def emulator_sender(wechat, openid: str, media: Optional[dict[str, str]] = None) -> Sender:
    """Through the emulator's WeChat server side: signed (and encrypted) XML posted to the bot."""

    async def send(line: Line) -> str:
        if line.kind == "text":
            result = await wechat.send_text(openid, line.value)
        elif line.kind == "click":
            result = await wechat.send_event(openid, "CLICK", line.value)
        elif line.kind == "photo":
            result = await wechat.send_image(openid, (media or {}).get(line.value, line.value))
        else:
            result = await wechat.send_event(openid, line.value)
        assert result.ok, f"line {line.lineno}: the bot did not answer: {result.as_dict()}"
        return result.reply.content if result.reply is not None else ""
    return send
