"""Checks, normalisation and masking of the identifiers candidates type: ID, 准考证号, codes, mobile."""
from __future__ import annotations

import datetime as dt
import re

# GB 11643-1999: ISO 7064 MOD 11-2 over the first 17 digits.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"  # indexed by the weighted sum mod 11

_ID_RE = re.compile(r"^\d{17}[\dX]$")
_ADMISSION_RE = re.compile(r"^\d{12}$")
_COURSE_RE = re.compile(r"^\d{5}$")
_MAJOR_RE = re.compile(r"^\d{6}[KT]?$")
_MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
_SITTING_RE = re.compile(r"^(\d{4})\s*(?:年\s*(\d{1,2})\s*月?|-(\d{1,2})|/(\d{1,2})|\.(\d{1,2})|(\d{2}))$")

# Whitespace of every kind people paste from Excel or WeChat, including full-width space.
_SPACES = re.compile(r"[\s\u3000\u00a0\u200b]+")
_FULLWIDTH = str.maketrans("０１２３４５６７８９ＸｘＫｋＴｔ－", "0123456789XxKkTt-")


def _clean(s: str) -> str:
    return _SPACES.sub("", str(s)).translate(_FULLWIDTH)


def id_check_digit(first17: str) -> str:
    """The GB 11643 check character ('0'-'9' or 'X') for the first 17 digits of an ID number."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("need exactly 17 digits")
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS))
    return _ID_CHECK[total % 11]


def normalize_id_number(s: str) -> str:
    """Strip spaces (also full-width ones), full-width digits to ASCII, a trailing x to X."""
    return _clean(s).upper()


def id_birth_date(s: str) -> dt.date | None:
    """The birth date encoded in an 18-character ID number, or None if it is not a real date."""
    s = normalize_id_number(s)
    if len(s) != 18 or not s[6:14].isdigit():
        return None
    try:
        return dt.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return None


def valid_id_number(s: str, *, today: dt.date | None = None) -> bool:
    """An 18-character resident ID: right check digit and a plausible birth date (1900..today)."""
    if s is None:
        return False
    s = normalize_id_number(s)
    if not _ID_RE.match(s):
        return False
    if id_check_digit(s[:17]) != s[17]:
        return False
    born = id_birth_date(s)
    today = today or dt.date.today()
    return born is not None and dt.date(1900, 1, 1) <= born <= today


def valid_admission_number(s: str) -> bool:
    """准考证号: exactly 12 digits."""
    return s is not None and bool(_ADMISSION_RE.match(_clean(s)))


def valid_course_code(s: str) -> bool:
    """课程代码: exactly 5 digits."""
    return s is not None and bool(_COURSE_RE.match(_clean(s)))


def valid_major_code(s: str) -> bool:
    """专业代码: 6 digits with an optional K or T suffix (020301K, 120402, 080901T)."""
    return s is not None and bool(_MAJOR_RE.match(_clean(s).upper()))


def normalize_major_code(s: str) -> str:
    return _clean(s).upper()


def valid_mobile(s: str) -> bool:
    """A mainland mobile number: 11 digits starting 13-19 (an optional +86 / 86 prefix is allowed)."""
    if s is None:
        return False
    return bool(_MOBILE_RE.match(normalize_mobile(s)))


def normalize_mobile(s: str) -> str:
    s = _clean(s).replace("-", "")
    if s.startswith("+86"):
        s = s[3:]
    elif s.startswith("86") and len(s) == 13:
        s = s[2:]
    return s


def mask_id_number(s: str) -> str:
    """'310101199001011234' -> '3101**********1234': first 4 and last 4 kept, the rest starred."""
    s = normalize_id_number(s or "")
    if len(s) <= 8:
        # Too short to keep 8 characters and still hide anything: hide all but the last one.
        return "*" * max(len(s) - 1, 0) + s[-1:]
    return s[:4] + "*" * (len(s) - 8) + s[-4:]


def mask_mobile(s: str) -> str:
    """'13812341234' -> '138****1234'."""
    s = normalize_mobile(s or "")
    if len(s) < 8:
        return "*" * len(s)
    return s[:3] + "*" * (len(s) - 7) + s[-4:]


def mask_document_number(s: str) -> str:
    """A certificate's or report's 编号 as shown back: the last 3-4 characters (and the first 2 of a
    long one) kept, so the candidate can tell their documents apart. An ID number is masked as one."""
    s = (s or "").strip()
    if valid_id_number(s):
        return mask_id_number(s)
    if len(s) <= 4:
        return "*" * len(s)
    if len(s) < 10:
        return "*" * (len(s) - 3) + s[-3:]
    return s[:2] + "*" * (len(s) - 6) + s[-4:]


def parse_sitting(s: str) -> str | None:
    """A 考次 as 'YYYYMM': accepts '2024年04月', '2024年4月', '202404', '2024-04', '2024/4', '2024.04'.

    Returns None when the text is not a year and month (month 1..12, year 1980..2099).
    """
    if s is None:
        return None
    m = _SITTING_RE.match(_clean(s))
    if not m:
        return None
    year = int(m.group(1))
    month = int(next(g for g in m.groups()[1:] if g is not None))
    if not (1980 <= year <= 2099 and 1 <= month <= 12):
        return None
    return f"{year:04d}{month:02d}"


def sitting_label(code: str) -> str:
    """'202404' -> '2024年04月', as the platform writes a 考次."""
    return f"{code[:4]}年{code[4:6]}月"
