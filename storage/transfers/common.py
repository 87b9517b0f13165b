"""What both directions of 省际转考 share: the provinces, the check of another province's
准考证号, how a refusal reads."""
from __future__ import annotations

import datetime as dt
import re
from typing import Optional

from storage import outbox, vocab

SHANGHAI = outbox.SHANGHAI


class TransferError(ValueError):
    """A refused request; the message is short Chinese for the staff member or the candidate."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- Provinces -------------------------------------------------------------------------------------

PROVINCES = vocab.MAINLAND_PROVINCES  # where a transfer can come from or go to
SHANGHAI_PROVINCE = "上海市"


def province_of(text: str) -> Optional[str]:
    """'江苏', '江苏省', ' 广西 ' -> the full name; None when it is no province of the mainland."""
    return vocab.province_of(text, mainland_only=True)


def province_choices(*, exclude_shanghai: bool = True) -> tuple[str, ...]:
    return tuple(p for p in PROVINCES if not (exclude_shanghai and p == SHANGHAI_PROVINCE))


_FULLWIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")


def target_admission_number(text: str) -> str:
    """转入准考证号: digits only (spaces, dashes removed), 10 to 15 of them — provinces differ in
    length (Shanghai's are 12) — not one digit repeated. Raises ValueError with the reason."""
    t = re.sub(r"[\s\u3000\-]+", "", (text or "").translate(_FULLWIDTH_DIGITS))
    if not t:
        raise ValueError("请输入转入省的准考证号。")
    if not t.isdigit():
        raise ValueError("准考证号应全部是数字，请核对后重新输入。")
    if not 10 <= len(t) <= 15:
        raise ValueError(f"准考证号一般是10到15位数字，您输入的是{len(t)}位，请核对。")
    if len(set(t)) == 1:
        raise ValueError("这个准考证号看起来不对，请核对后重新输入。")
    return t


def month_text(day: Optional[dt.date]) -> str:
    return f"{day.year}年{day.month:02d}月" if day else "-"


__all__ = ["PROVINCES", "SHANGHAI", "SHANGHAI_PROVINCE", "TransferError", "month_text", "province_choices",
           "province_of", "target_admission_number"]
