"""The plain values dialogs receive and return: no XML, no WeChat API, no HTTP."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class Message:
    """One thing a user did: sent text or a photo, clicked the menu, followed the account ..."""

    openid: str
    kind: str  # text, image, voice, video, location, link, event, unknown
    text: str = ""  # the text, or a voice message's recognition
    media_id: Optional[str] = None  # image / voice / video
    pic_url: Optional[str] = None
    event: Optional[str] = None  # subscribe, unsubscribe, CLICK, VIEW, SCAN, TEMPLATESENDJOBFINISH ...
    event_key: Optional[str] = None
    msg_id: Optional[str] = None
    status: Optional[str] = None  # TEMPLATESENDJOBFINISH's Status
    received_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    # What the router's `prefetch` read for this message in the edge's dedupe round trip, if any.
    prefetched: Any = field(default=None, compare=False, repr=False)
    # The edge's dedupe key of this message (FromUserName + MsgId ...): a step records it with the
    # state it changed, so a retry after a crash is answered, not applied twice.
    key: Optional[str] = field(default=None, compare=False, repr=False)


@dataclass
class Reply:
    """What to answer: text (paged by the edge when long), an image, or nothing ('success');
    and, for the router, what to do next."""

    text: str = ""
    image_media_id: Optional[str] = None
    then: Optional[str] = None  # "intent|arg" to run after this reply (what was asked before binding)
    intent: Optional[str] = None  # run this intent instead (a consultation that is really a request)
    arg: str = ""  # the intent's argument
    pending: Optional[dict[str, Any]] = None  # numbered choices to remember for the next message
    # Set by the router on the answer of a query that changed nothing: the edge may store it
    # behind (answering the message twice after a crash is harmless). See docs/delivery.md.
    read_only: bool = field(default=False, compare=False)

    @property
    def empty(self) -> bool:
        return not self.text and not self.image_media_id


NO_REPLY = Reply()
