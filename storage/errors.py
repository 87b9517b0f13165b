"""The one shape of a refused request in storage/: a ValueError carrying one line of Chinese to show."""
from __future__ import annotations


class Refused(ValueError):
    """What the staff member (or candidate) reads is `message`; nothing was changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
