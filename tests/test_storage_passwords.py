"""Password hashing with scrypt and the platform's initial-password rule."""
from __future__ import annotations

import base64
import hashlib
import subprocess
import sys

import pytest

from storage import passwords
from storage.passwords import (
    hash_initial_password,
    hash_password,
    initial_password,
    needs_rehash,
    verify_password,
)


def test_production_cost_is_owasp_scrypt_n_2_17_r8_p1() -> None:
    # The suite hashes cheaply (tests/conftest.py); a process that does not lower the cost, as
    # production never does, hashes at N=2^17, r=8, p=1.
    assert (passwords.DEFAULT_N, passwords.DEFAULT_R, passwords.DEFAULT_P) == (2**17, 8, 1)
    out = subprocess.run([sys.executable, "-c", "from storage.passwords import hash_password; print(hash_password('x'))"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split("$")[1:4] == [str(2**17), "8", "1"]


def test_hash_encodes_scheme_parameters_salt_and_hash() -> None:
    stored = hash_password("Zikao@2024", n=2**17)
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**17), "8", "1")
    salt_bytes = base64.b64decode(salt + "=" * (-len(salt) % 4))
    assert len(salt_bytes) == 16
    # The digest is scrypt of the password under exactly those parameters.
    expected = hashlib.scrypt(b"Zikao@2024", salt=salt_bytes, n=2**17, r=8, p=1, dklen=32, maxmem=256 * 1024 * 1024)
    assert base64.b64decode(digest + "=" * (-len(digest) % 4)) == expected


def test_verify_accepts_the_password_and_nothing_else() -> None:
    stored = hash_password("154215")
    assert verify_password("154215", stored)
    assert not verify_password("154216", stored)
    assert not verify_password("", stored)
    assert not verify_password("154215 ", stored)


def test_same_password_gets_a_fresh_salt_each_time() -> None:
    a, b = hash_password("same"), hash_password("same")
    assert a != b
    assert verify_password("same", a) and verify_password("same", b)


def test_non_ascii_passwords_work() -> None:
    stored = hash_password("自考密码ＡＢ")
    assert verify_password("自考密码ＡＢ", stored)
    assert not verify_password("自考密码AB", stored)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain-text",
        "bcrypt$12$abc$def$ghi$jkl",
        "scrypt$16384$8$1$not base64!$AAAA",
        "scrypt$16383$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAA",  # n not a power of two
        "scrypt$1073741824$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAA",  # absurd cost: refused, not computed
        "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$",  # no digest
        "scrypt$16384$8$AAAAAAAAAAAAAAAAAAAAAA$AAAA",  # a field missing
    ],
)
def test_malformed_stored_hashes_never_verify(stored: str) -> None:
    assert verify_password("anything", stored) is False


def test_parameters_are_read_from_the_stored_string() -> None:
    stored = hash_password("pw", n=2**11, r=4, p=2)
    assert stored.split("$")[1:4] == ["2048", "4", "2"]
    assert verify_password("pw", stored)
    assert needs_rehash(stored)
    assert not needs_rehash(hash_password("pw"))


def test_initial_password_is_last_six_characters_upper_case() -> None:
    assert initial_password("310115199203154215") == "154215"
    assert initial_password("31011219990605262x") == "05262X"
    assert initial_password(" 31011219990605262X ") == "05262X"
    with pytest.raises(ValueError):
        initial_password("12345")


def test_initial_password_hash_is_full_strength_and_verifies() -> None:
    stored = hash_initial_password("31011219990605262x")
    assert not needs_rehash(stored)
    assert verify_password("05262X", stored)
    assert not verify_password("05262x", stored)  # the rule says letters upper-case
