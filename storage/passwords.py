"""Password hashing (scrypt, parameters stored with the hash) and the platform's initial password."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from storage.identifiers import normalize_id_number

SCHEME = "scrypt"
# OWASP Password Storage Cheat Sheet (2024): scrypt N=2^17, r=8, p=1 (128 MiB, ~0.3 s a hash).
DEFAULT_N = 2**17
DEFAULT_R = 8
DEFAULT_P = 1
# The cost new hashes get; only tests lower it (`use_cost`), production keeps DEFAULT_N.
_cost_n = DEFAULT_N
SALT_BYTES = 16
HASH_BYTES = 32
# Refuse stored parameters that would make one verification eat the machine.
_MAX_N = 2**20
_MAX_R = 32
_MAX_P = 16


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii").rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # maxmem above OpenSSL's 32 MiB default so that n=2**15..2**17 also work.
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=256 * 1024 * 1024
    )


def use_cost(n: int) -> None:
    """Make new hashes with N=`n` (a power of two). For the test suite only, which would otherwise
    spend most of its time in scrypt; hashes of another cost are rehashed on the next login."""
    global _cost_n
    if n < 2 or n & (n - 1) or n > _MAX_N:
        raise ValueError("scrypt N must be a power of two")
    _cost_n = n


def current_cost() -> int:
    return _cost_n


def hash_password(password: str, *, n: int | None = None, r: int = DEFAULT_R, p: int = DEFAULT_P) -> str:
    """'scrypt$n$r$p$salt$hash' with a fresh random 16-byte salt (base64 without padding)."""
    if not isinstance(password, str):
        raise TypeError("password must be str")
    n = n or _cost_n
    salt = os.urandom(SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p, HASH_BYTES)
    return f"{SCHEME}${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True if `password` matches `stored`; False for a wrong password or a malformed hash."""
    if not isinstance(password, str) or not stored:
        return False
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, expected = _unb64(parts[4]), _unb64(parts[5])
    except (ValueError, binascii.Error):
        return False
    if not (1 < n <= _MAX_N and n & (n - 1) == 0 and 0 < r <= _MAX_R and 0 < p <= _MAX_P and expected):
        return False
    try:
        actual = _scrypt(password, salt, n, r, p, len(expected))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


def needs_rehash(stored: str) -> bool:
    """True if `stored` was made with other parameters than the ones new hashes get."""
    parts = (stored or "").split("$")
    return len(parts) != 6 or parts[0] != SCHEME or parts[1:4] != [str(_cost_n), str(DEFAULT_R), str(DEFAULT_P)]


def hash_initial_password(id_number: str) -> str:
    """hash_password(initial_password(id_number)), at full strength like every stored password:
    the row holding it may leave the database (a backup, an export) without its ID column."""
    return hash_password(initial_password(id_number))


def initial_password(id_number: str) -> str:
    """The platform's initial password: the last 6 characters of the ID number, letters upper-case."""
    s = normalize_id_number(id_number)
    if len(s) < 6:
        raise ValueError("ID number too short for an initial password")
    return s[-6:].upper()
