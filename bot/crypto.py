"""WeChat message signatures and AES message crypto, with EncodingAESKey rotation.

Written on `cryptography` rather than wechatpy's WeChatCrypto because that one compares
signatures with `!=` and draws its random prefix from `random` (see shared/wechat/PROTOCOL.md).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
import time
from dataclasses import dataclass
from typing import Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # WeChat pads to 32 bytes, not AES's 16


class SignatureError(Exception):
    """The request's signature or msg_signature does not match."""


class DecryptError(Exception):
    """The Encrypt field could not be decrypted with any key, or its AppID is wrong."""


def signature(token: str, *parts: str) -> str:
    return hashlib.sha1("".join(sorted([token, *parts])).encode()).hexdigest()


def check_signature(token: str, sig: str | None, *parts: str) -> bool:
    """Constant-time check of sha1(sorted(token, *parts)) against `sig`."""
    if not sig:
        return False
    return hmac.compare_digest(signature(token, *parts).encode(), sig.strip().lower().encode())


def _pad(data: bytes) -> bytes:
    n = BLOCK - len(data) % BLOCK
    return data + bytes([n]) * n


def _unpad(data: bytes) -> bytes:
    n = data[-1] if data else 0
    if not 1 <= n <= BLOCK or len(data) < n:
        raise DecryptError("bad padding")
    return data[:-n]


@dataclass(frozen=True)
class Decrypted:
    xml: str
    key_index: int  # 0 = current key, 1 = previous key


class MessageCrypto:
    """Encrypts and decrypts WeChat message bodies for one account.

    `keys` are the 32-byte AES keys, current first; decryption falls back to the previous key
    during rotation and the reply must use the key that worked.
    """

    def __init__(self, token: str, keys: Sequence[bytes], app_id: str) -> None:
        if not keys:
            raise ValueError("at least one AES key")
        self.token = token
        self.keys = list(keys)
        self.app_id = app_id

    def _cipher(self, key: bytes) -> Cipher:
        return Cipher(algorithms.AES(key), modes.CBC(key[:16]))

    def decrypt(self, encrypt: str, msg_signature: str | None, timestamp: str, nonce: str) -> Decrypted:
        if not check_signature(self.token, msg_signature, timestamp, nonce, encrypt):
            raise SignatureError("msg_signature mismatch")
        try:
            raw = base64.b64decode(encrypt, validate=True)
        except ValueError:
            raise DecryptError("Encrypt is not base64") from None
        if not raw or len(raw) % 16:
            raise DecryptError("Encrypt has a bad length")
        for index, key in enumerate(self.keys):
            try:
                return Decrypted(self._decrypt_with(key, raw), index)
            except DecryptError:
                continue
        raise DecryptError("no key decrypts this message")

    def _decrypt_with(self, key: bytes, raw: bytes) -> str:
        dec = self._cipher(key).decryptor()
        plain = _unpad(dec.update(raw) + dec.finalize())
        if len(plain) < 20:
            raise DecryptError("too short")
        (length,) = struct.unpack(">I", plain[16:20])
        body, app_id = plain[20 : 20 + length], plain[20 + length :]
        if len(body) != length or not hmac.compare_digest(app_id, self.app_id.encode()):
            raise DecryptError("AppID mismatch")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptError("not UTF-8") from None

    def encrypt(self, xml: str, *, key_index: int = 0, nonce: str | None = None, timestamp: str | None = None) -> str:
        """The reply envelope `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>`."""
        body = xml.encode("utf-8")
        plain = _pad(os.urandom(16) + struct.pack(">I", len(body)) + body + self.app_id.encode())
        enc = self._cipher(self.keys[key_index]).encryptor()
        encrypt = base64.b64encode(enc.update(plain) + enc.finalize()).decode()
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or str(int.from_bytes(os.urandom(4), "big"))
        sig = signature(self.token, timestamp, nonce, encrypt)
        return (
            f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{sig}]]></MsgSignature>"
            f"<TimeStamp>{timestamp}</TimeStamp>"
            f"<Nonce><![CDATA[{nonce}]]></Nonce></xml>"
        )
