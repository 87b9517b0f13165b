"""The closed vocabularies of the schema (kinds, levels, grades) with their Chinese names."""
from __future__ import annotations

import re
import unicodedata
from decimal import Decimal
from typing import Optional

# BusinessWindow.kind -> what the platform calls the business.
WINDOW_KINDS: dict[str, str] = {
    "exemption": "申请免考",
    "backfill": "成绩补登",
    "thesis": "本科论文与专科毕设",
    "graduation": "申请毕业",
    "degree": "申请学位",
    "transfer_out": "本市转出",
    "transfer_in": "外省转入",
    "graduation_fee": "毕业审定费缴费",
}

# ScoreRecord.kind -> how a score list labels it.
SCORE_KINDS: dict[str, str] = {
    "exam": "考试",
    "exemption": "免考",
    "transfer": "转入",
    "backfill": "补登",
}

COURSE_KINDS = ("理论", "实践", "论文")
MAJOR_LEVELS = ("专科", "专升本", "本科")
PLAN_CATEGORIES = ("必考", "选考", "加考")

# ScoreRecord.grade values for results that are not a number.
PASSING_GRADES = ("合格", "通过")
FAILING_GRADES = ("不合格", "缺考")
GRADES = PASSING_GRADES + FAILING_GRADES

PASS_MARK = Decimal(60)

# 证件类型. Only the resident ID card and the residence permit for Hong Kong, Macao and Taiwan
# residents follow GB 11643 (check digit); the others are checked for shape only.
ID_TYPES_WITH_CHECK_DIGIT = ("身份证", "港澳台居民居住证")
ID_TYPES = ID_TYPES_WITH_CHECK_DIGIT + (
    "护照",
    "港澳居民来往内地通行证",
    "台湾居民来往大陆通行证",
    "外国人永久居留身份证",
    "其他",
)


def score_passes(score: Decimal | None, grade: str | None) -> bool:
    """60 or more, or a passing grade (合格/通过)."""
    if score is not None:
        return score >= PASS_MARK
    return grade in PASSING_GRADES


# --- Provinces -------------------------------------------------------------------------------------

# The 34 provincial-level divisions; the first 31 are the mainland's, each with a self-study
# examination office (where a transfer can go or come from). One table for every field and rule.
PROVINCES: tuple[str, ...] = (
    "北京市", "天津市", "河北省", "山西省", "内蒙古自治区", "辽宁省", "吉林省", "黑龙江省",
    "上海市", "江苏省", "浙江省", "安徽省", "福建省", "江西省", "山东省", "河南省", "湖北省",
    "湖南省", "广东省", "广西壮族自治区", "海南省", "重庆市", "四川省", "贵州省", "云南省",
    "西藏自治区", "陕西省", "甘肃省", "青海省", "宁夏回族自治区", "新疆维吾尔自治区",
    "台湾省", "香港特别行政区", "澳门特别行政区",
)
MAINLAND_PROVINCES: tuple[str, ...] = PROVINCES[:31]


def _short(name: str) -> str:
    for suffix in ("特别行政区", "维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "省", "市"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


_PROVINCE_BY_NAME: dict[str, str] = {n: p for p in PROVINCES for n in (p, _short(p))}
_PROVINCE_BY_NAME.update({"内蒙": "内蒙古自治区", "新疆自治区": "新疆维吾尔自治区", "广西自治区": "广西壮族自治区",
                          "宁夏自治区": "宁夏回族自治区", "香港特区": "香港特别行政区", "澳门特区": "澳门特别行政区"})
# One-character abbreviations people type for the commonest neighbours; ambiguous enough that the
# transfer form (a formal destination) does not take them.
_ONE_CHARACTER = {"沪": "上海市", "京": "北京市", "苏": "江苏省", "浙": "浙江省"}


def province_of(text: str, *, mainland_only: bool = False, one_character: bool = False) -> Optional[str]:
    """'江苏', '江苏省', ' 广西 ' -> the full name; None when it names no province (of the mainland)."""
    t = re.sub(r"\s+", "", unicodedata.normalize("NFKC", text or ""))
    found = _PROVINCE_BY_NAME.get(t) or (_ONE_CHARACTER.get(t) if one_character else None)
    if found is not None and mainland_only and found not in MAINLAND_PROVINCES:
        return None
    return found
