"""What both directions of 省际转考 share: the provinces, the check of another province's
准考证号, how a refusal reads."""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Optional

from storage import outbox

SHANGHAI = outbox.SHANGHAI


class TransferError(ValueError):
    """A refused request; the message is short Chinese for the staff member or the candidate."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- Provinces -------------------------------------------------------------------------------------

# The 31 provincial-level divisions of the mainland that run a self-study examination office.
PROVINCES: tuple[str, ...] = (
    "北京市", "天津市", "河北省", "山西省", "内蒙古自治区", "辽宁省", "吉林省", "黑龙江省", "上海市",
    "江苏省", "浙江省", "安徽省", "福建省", "江西省", "山东省", "河南省", "湖北省", "湖南省", "广东省",
    "广西壮族自治区", "海南省", "重庆市", "四川省", "贵州省", "云南省", "西藏自治区", "陕西省", "甘肃省",
    "青海省", "宁夏回族自治区", "新疆维吾尔自治区",
)
SHANGHAI_PROVINCE = "上海市"


def _short(name: str) -> str:
    for suffix in ("壮族自治区", "回族自治区", "维吾尔自治区", "自治区", "省", "市"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


_BY_NAME: dict[str, str] = {}
for _p in PROVINCES:
    _BY_NAME[_p] = _p
    _BY_NAME[_short(_p)] = _p
_BY_NAME.update({"广西自治区": "广西壮族自治区", "宁夏自治区": "宁夏回族自治区", "新疆自治区": "新疆维吾尔自治区",
                 "内蒙": "内蒙古自治区", "黑龙江": "黑龙江省"})


def province_of(text: str) -> Optional[str]:
    """'江苏', '江苏省', ' 广西 ' -> the full name; None when it is no province of the mainland."""
    t = re.sub(r"\s+", "", unicodedata.normalize("NFKC", text or ""))
    return _BY_NAME.get(t)


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
