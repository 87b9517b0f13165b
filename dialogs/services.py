"""What dialogs may ask of the outside world, as interfaces: SMS, WeChat media. The edge (bot/)
supplies the implementations, so the same flows run against the emulator, the real services,
or a test double."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional, Protocol


class MediaUnavailable(Exception):
    """A user's photo could not be fetched. `reason`: "expired" (the media id is gone: WeChat keeps
    3 days), "too_large" (over the download limit), "busy" (WeChat down, busy or slow), "other".
    The edge translates its client's errors into this, so dialogs know no WeChat error codes."""

    REASONS = ("expired", "too_large", "busy", "other")

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} {detail}".strip())
        self.reason = reason if reason in self.REASONS else "other"
        self.detail = detail


class SmsError(Exception):
    """The SMS gateway did not take the message."""


class SmsGateway(Protocol):
    async def send(self, mobile: str, text: str) -> None:
        """Send `text` to `mobile`; raise SmsError when the gateway refuses or cannot be reached."""


@dataclass
class Services:
    sms: Optional[SmsGateway] = None
    # WeChat media: download a user's photo by MediaId (-> bytes, Content-Type; raises
    # MediaUnavailable); upload a
    # picture (bytes, file name) and get a media id.
    download_media: Optional[Callable[[str], Awaitable[tuple[bytes, str]]]] = None
    upload_image: Optional[Callable[[bytes, str], Awaitable[str]]] = None
    # Where evidence photos are kept (storage.photos.PhotoStore).
    photo_store: Optional[Any] = None
    # The link to an H5 page of the service ("bind", "password"): binding and password changes
    # happen there, never in the chat. None: the service has no pages.
    web_page: Optional[Callable[[str], str]] = None
    # WeChat Pay (bot/pay.py): the payment page of an order for a follower (order number, openid
    # -> URL); None: the fee is not paid in WeChat.
    pay_link: Optional[Callable[[str, str], str]] = None
