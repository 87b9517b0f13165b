"""Identifier checks: GB 11643 ID numbers, admission numbers, codes, mobiles, masking, sittings."""
from __future__ import annotations

import datetime as dt

import pytest

from storage.identifiers import (
    id_birth_date,
    id_check_digit,
    mask_id_number,
    mask_mobile,
    normalize_id_number,
    parse_sitting,
    sitting_label,
    valid_admission_number,
    valid_course_code,
    valid_id_number,
    valid_major_code,
    valid_mobile,
)


# The GB 11643 standard's own example and hand-checked numbers.
@pytest.mark.parametrize(
    "first17, digit",
    [
        ("11010519491231002", "X"),  # the example printed in GB 11643-1999
        ("44052419800101001", "3"),  # weighted sum 196, 196 mod 11 = 9 -> "3"
        ("31011519920315421", "5"),
        ("31011219990605262", "X"),
    ],
)
def test_check_digit_matches_mod_11_2(first17: str, digit: str) -> None:
    assert id_check_digit(first17) == digit


def test_check_digit_covers_every_remainder() -> None:
    # Walk the last digit until every remainder 0..10 has been seen, and check the mapping table.
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    mapping = "10X98765432"
    seen = set()
    for n in range(10_000):
        first17 = f"3101011990010{n:04d}"
        remainder = sum(int(d) * w for d, w in zip(first17, weights)) % 11
        seen.add(remainder)
        assert id_check_digit(first17) == mapping[remainder]
    assert seen == set(range(11))


@pytest.mark.parametrize("bad", ["", "1234567890123456", "3101151992031542a", "310115199203154"])
def test_check_digit_refuses_anything_but_17_digits(bad: str) -> None:
    with pytest.raises(ValueError):
        id_check_digit(bad)


def test_valid_id_number_accepts_right_check_digit_and_lower_case_x() -> None:
    assert valid_id_number("310115199203154215")
    assert valid_id_number("31011219990605262X")
    assert valid_id_number("31011219990605262x")
    assert valid_id_number(" 3101 1219 9906 0526 2x ")  # pasted with spaces
    assert valid_id_number("３１０１１５１９９２０３１５４２１５")  # full-width digits from a Chinese IME


def _with_check(first17: str) -> str:
    return first17 + id_check_digit(first17)


@pytest.mark.parametrize(
    "bad",
    [
        "310115199203154216",  # wrong check digit
        "31011219990605262Y",
        "3101151992031542",  # too short
        "3101151992031542155",  # too long
        _with_check("31011519921315421"),  # month 13, check digit right
        _with_check("31011519920230421"),  # 30 February
        _with_check("31011518990101421"),  # born 1899
        "",
    ],
)
def test_valid_id_number_rejects(bad: str) -> None:
    assert not valid_id_number(bad)


def test_valid_id_number_rejects_birth_in_the_future() -> None:
    first17 = "31011520990101421"
    n = first17 + id_check_digit(first17)
    assert not valid_id_number(n, today=dt.date(2025, 1, 1))
    assert valid_id_number(n, today=dt.date(2100, 1, 1))


def test_birth_date_and_normalize() -> None:
    assert id_birth_date("310115199203154215") == dt.date(1992, 3, 15)
    assert id_birth_date("310115199202304215") is None  # 30 February
    assert normalize_id_number(" 31011219990605262x ") == "31011219990605262X"


def test_admission_course_and_major_codes() -> None:
    assert valid_admission_number("012323200117")
    assert not valid_admission_number("01232320011")
    assert not valid_admission_number("0123232001171")
    assert not valid_admission_number("01232320011A")
    assert valid_course_code("00015") and valid_course_code("11291")
    assert not valid_course_code("0015") and not valid_course_code("000151") and not valid_course_code("0001A")
    for good in ("020301K", "120402", "120103", "080901T", "020301k"):
        assert valid_major_code(good), good
    for bad in ("02030K", "0203011", "020301X", "020301KK", ""):
        assert not valid_major_code(bad), bad


def test_mobile() -> None:
    for good in ("13816452371", "19912345678", "+86 138 1645 2371", "138-1645-2371"):
        assert valid_mobile(good), good
    for bad in ("12816452371", "1381645237", "138164523711", "021-58761234", "", "1381645237a"):
        assert not valid_mobile(bad), bad


def test_masks_keep_first_and_last_four_of_id_and_hide_the_middle_of_mobile() -> None:
    assert mask_id_number("31011219990605262x") == "3101**********262X"
    assert mask_id_number("310115199203154215") == "3101**********4215"
    assert mask_id_number("E1234567") == "*******7"  # short passports: nothing useful kept
    assert mask_mobile("13816451234") == "138****1234"
    assert mask_mobile("+8613816451234") == "138****1234"


@pytest.mark.parametrize(
    "text, code",
    [
        ("2024年04月", "202404"),
        ("2024年4月", "202404"),
        ("2024 年 10 月", "202410"),
        ("202404", "202404"),
        ("2024-04", "202404"),
        ("2024/4", "202404"),
        ("2017.12", "201712"),
    ],
)
def test_parse_sitting(text: str, code: str) -> None:
    assert parse_sitting(text) == code


@pytest.mark.parametrize("text", ["2024年13月", "202400", "2024", "24年4月", "abc", "", "2024-04-13"])
def test_parse_sitting_rejects(text: str) -> None:
    assert parse_sitting(text) is None


def test_sitting_label_is_the_platform_form() -> None:
    assert sitting_label("201712") == "2017年12月"
