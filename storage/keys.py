"""The service's SECRET_KEY at work on personal data: blind indexes and encryption at rest.

Two keys are derived from SECRET_KEY with HKDF (one per job, so that the index key never
encrypts and the other way round):

- `blind_index(kind, value)`: HMAC-SHA256 of a normalised ID number or mobile. Equal values give
  equal indexes, so lookups work; without SECRET_KEY nobody can enumerate the ID space against it.
- `encrypt(text)` / `decrypt(token)`: AES-256-GCM with a random 96-bit nonce, written
  `v1:<base64(nonce | ciphertext | tag)>`. Non-deterministic: equal IDs give different tokens,
  which is why lookups go through the blind index.

`EncryptedString` is the column type that does this transparently for the ORM and Core alike.
The key is process-wide (column types cannot reach the settings); `configure()` sets it at
start-up (bot/config.py `apply_secret_key`), and every use before that is an error rather than a
silent default.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any, Optional

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import String, TypeDecorator

from storage.identifiers import normalize_id_number, normalize_mobile

MIN_SECRET_KEY_LENGTH = 32
PREFIX = "v1:"
# Never for production: `zikao-bot demo` and the test suite run with it when SECRET_KEY is unset.
DEMO_SECRET_KEY = "zikao-demo-secret-key-not-for-production-use-000"


class KeyNotConfigured(RuntimeError):
    """Personal data was touched before SECRET_KEY was configured."""


@dataclass(frozen=True)
class _Keys:
    index: bytes
    aead: AESGCM
    session: bytes
    fingerprint: str


_keys: Optional[_Keys] = None


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"zikao-bot", info=info).derive(secret)


def configure(secret_key: str) -> None:
    """Use `secret_key` from now on (process-wide)."""
    global _keys
    if not secret_key or len(secret_key) < MIN_SECRET_KEY_LENGTH:
        raise ValueError(f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters")
    raw = secret_key.encode("utf-8")
    index = _derive(raw, b"blind-index v1")
    _keys = _Keys(index=index, aead=AESGCM(_derive(raw, b"encryption v1")),
                  session=_derive(raw, b"h5-session v1"), fingerprint=hashlib.sha256(index).hexdigest()[:8])


def configured() -> bool:
    return _keys is not None


def fingerprint() -> str:
    """A short, non-secret name of the key in use (for logs: which key, never the key)."""
    return _current().fingerprint


def _current() -> _Keys:
    if _keys is None:
        raise KeyNotConfigured("SECRET_KEY is not configured (storage.keys.configure)")
    return _keys


def blind_index(kind: str, value: str) -> str:
    """HMAC-SHA256 (hex) of `value` under the index key, separated per kind ('id', 'mobile', 'openid')."""
    return hmac.new(_current().index, f"{kind}:{value}".encode("utf-8"), hashlib.sha256).hexdigest()


def encrypt(text: str) -> str:
    nonce = os.urandom(12)
    sealed = _current().aead.encrypt(nonce, text.encode("utf-8"), PREFIX.encode())
    return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")


def decrypt(token: str) -> str:
    """The text of `token`; a value without the prefix is returned as it is (rows written before
    the encrypting migration, read during a rolling upgrade)."""
    if not token.startswith(PREFIX):
        return token
    raw = base64.b64decode(token[len(PREFIX):])
    try:
        return _current().aead.decrypt(raw[:12], raw[12:], PREFIX.encode()).decode("utf-8")
    except InvalidTag:
        raise KeyNotConfigured("stored value does not decrypt with this SECRET_KEY") from None


class EncryptedString(TypeDecorator):
    """A string column stored encrypted (AES-GCM). Not comparable in SQL: look rows up by a
    blind-index column instead."""

    impl = String
    cache_ok = True

    class comparator_factory(String.Comparator):
        # Encryption is randomised: `col == value` could never match. Fail loudly instead of
        # silently finding nothing; compare the blind index (e.g. Candidate.with_id_number).
        def operate(self, op: Any, *other: Any, **kwargs: Any) -> Any:
            if any(isinstance(o, (str, list, tuple, set)) for o in other):
                raise TypeError("an encrypted column cannot be compared with a value in SQL; use its blind index")
            return super().operate(op, *other, **kwargs)

    def __init__(self, length: int = 255, **kw: Any) -> None:
        super().__init__(length, **kw)

    def process_bind_param(self, value: Optional[str], dialect: Any) -> Optional[str]:
        if value is None:
            return None
        return encrypt(str(value))

    def process_result_value(self, value: Optional[str], dialect: Any) -> Optional[str]:
        if value is None:
            return None
        return decrypt(value)


def id_index(id_number: str) -> str:
    """The blind index of an ID number (normalised first: '...x' and '...X' are one person)."""
    return blind_index("id", normalize_id_number(id_number))


def mobile_index(mobile: str) -> str:
    return blind_index("mobile", normalize_mobile(mobile))


def openid_tag(openid: str) -> str:
    """A stable pseudonym of an openid for the audit log: events of one openid can be followed
    without the log naming it."""
    return blind_index("openid", openid)[:16]


def session_key() -> bytes:
    """32 bytes for the H5 pages' encrypted session cookie (its own derivation of SECRET_KEY)."""
    return _current().session
