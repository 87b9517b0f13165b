"""The closed vocabularies of the schema (kinds, levels, grades) with their Chinese names."""
from __future__ import annotations

from decimal import Decimal

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
