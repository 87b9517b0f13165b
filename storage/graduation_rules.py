"""The rules of 申请毕业 (and its family: 本科论文与专科毕设, 申请学位) as plain functions over plain data.

From the platform manual (五、毕业业务) and FLOWS.md items 19-21:
- 本科 (专升本) majors need the prior education (前置学历): the 毕业证书 (编号, year-month, 省份,
  photo) and, for a prior graduation in **2002 or later**, the 教育部学历证书电子注册备案表
  (在线验证码, photo), **before 2002** the 中国高等教育学历认证报告 (报告编号, photo).
  专科 majors skip the step.
- the 自我鉴定 (printed on the 毕业生登记表) has at least N characters; N is the office's setting.
- where courses are missing but the candidate believes they qualify, a 情况说明 for each missing
  item, and only for those. What is missing comes from the 毕业进度 rules (dialogs/progress.py:
  its `Progress` fits `ProgressLike` below; this module does not import dialogs).
- one open application per business and major; 重新申请 only after 未通过 and inside the window;
  审核通过 is final (the fee follows: storage/payments.py pays an order once).

No database here; storage/graduation.py, dialogs/graduation.py and their tests call these.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Protocol, Sequence

# The year that decides which companion the prior diploma needs.
COMPANION_CUTOFF_YEAR = 2002
REGISTRATION_FORM = "chsi_record"  # 教育部学历证书电子注册备案表 (storage.models_applications evidence code)
VERIFICATION_REPORT = "cdgdc_report"  # 中国高等教育学历认证报告
DIPLOMA = "diploma"  # 毕业证书
COMPANION_NAMES = {REGISTRATION_FORM: "教育部学历证书电子注册备案表", VERIFICATION_REPORT: "中国高等教育学历认证报告"}
# The manual leaves the number blank ("不少于 ●字"): the office sets it; this is the default.
SELF_ASSESSMENT_MIN_CHARS = 200
SELF_ASSESSMENT_MAX_CHARS = 2000
EXPLANATION_MIN_CHARS = 10
# 在线验证码 of a 备案表: 12 letters or digits (凭证样例); 报告编号 of an 认证报告: letters and digits.
_ONLINE_CODE = re.compile(r"[0-9A-Za-z]{12}")
_REPORT_NUMBER = re.compile(r"[0-9A-Za-z]{6,32}")
_YEAR_MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
OPEN_STATUSES = ("draft", "submitted", "approved")


# --- Prior education (前置学历) -----------------------------------------------------------------


def needs_prior_education(level: str) -> bool:
    """专升本 / 本科 majors ask for the prior diploma; 专科 majors skip the step."""
    return level != "专科"


def companion_for(graduated: str) -> str:
    """The evidence that must go with a diploma obtained in `graduated` ('YYYY-MM')."""
    m = _YEAR_MONTH.fullmatch(graduated)
    if not m:
        raise ValueError(f"not a year-month: {graduated!r}")
    return REGISTRATION_FORM if int(m.group(1)) >= COMPANION_CUTOFF_YEAR else VERIFICATION_REPORT


@dataclass
class PriorDiploma:
    number: str = ""  # 毕业证编号
    graduated: str = ""  # 取得毕业证年月 'YYYY-MM'
    province: str = ""
    photo_ids: list[int] = field(default_factory=list)


@dataclass
class Companion:
    kind: str  # REGISTRATION_FORM or VERIFICATION_REPORT
    number: str = ""  # 在线验证码 / 报告编号
    photo_ids: list[int] = field(default_factory=list)


def prior_education_problems(level: str, diploma: Optional[PriorDiploma], companion: Optional[Companion],
                             *, current_month: str) -> list[str]:
    """Everything wrong with the prior-education step, each a sentence for the candidate."""
    if not needs_prior_education(level):
        return []
    if diploma is None:
        return ["本科专业须上传前置学历毕业证书。"]
    problems = []
    if not diploma.number.strip():
        problems.append("请填写毕业证书编号。")
    if not _YEAR_MONTH.fullmatch(diploma.graduated):
        problems.append("请填写取得毕业证书的年月。")
    elif diploma.graduated > current_month or diploma.graduated < "1950-01":
        problems.append("取得毕业证书的年月不对，请核对。")
    if not diploma.province.strip():
        problems.append("请填写取得毕业证书的省份。")
    if not diploma.photo_ids:
        problems.append("请上传毕业证书照片。")
    if not _YEAR_MONTH.fullmatch(diploma.graduated):
        return problems
    wanted = companion_for(diploma.graduated)
    year = diploma.graduated[:4]
    when = "2002年及以后" if wanted == REGISTRATION_FORM else "2002年以前"
    if companion is None or companion.kind != wanted:
        problems.append(f"毕业时间为{year}年（{when}毕业），须上传{COMPANION_NAMES[wanted]}。")
        return problems
    if wanted == REGISTRATION_FORM and not _ONLINE_CODE.fullmatch(companion.number.strip()):
        problems.append("请填写备案表上的12位在线验证码。")
    if wanted == VERIFICATION_REPORT and (not _REPORT_NUMBER.fullmatch(companion.number.strip())
                                          or looks_like_online_code(companion.number)):
        problems.append("请填写认证报告编号（2002年以前毕业的学历没有电子注册备案表）。")
    if not companion.photo_ids:
        problems.append(f"请上传{COMPANION_NAMES[wanted]}照片。")
    return problems


def looks_like_online_code(text: str) -> bool:
    """The shape of a 备案表's 在线验证码: 12 letters and digits, letters among them."""
    t = text.strip()
    return bool(_ONLINE_CODE.fullmatch(t)) and any(c.isalpha() for c in t)


def companion_number_problem(graduated: str, number: str) -> Optional[str]:
    """The 在线验证码 / 报告编号 typed for a diploma obtained in `graduated` ('YYYY-MM'), as the
    candidate types it: a sentence saying what is wrong, or None. A diploma from before 2002 has
    no 备案表: its 在线验证码 is refused with the reason."""
    t = number.strip().replace(" ", "")
    year = graduated[:4]
    if companion_for(graduated) == REGISTRATION_FORM:
        if not _ONLINE_CODE.fullmatch(t):
            return f"在线验证码是备案表上的12位字母或数字，您输入的是{len(t)}位。"
        return None
    if looks_like_online_code(t):
        return (f"这是电子注册备案表的在线验证码。{year}年毕业（2002年以前）的学历没有电子注册备案表，"
                "须提供中国高等教育学历认证报告，请输入认证报告编号。")
    if not _REPORT_NUMBER.fullmatch(t):
        return "认证报告编号是6到32位字母或数字，请对照报告填写。"
    return None


# --- 自我鉴定 -------------------------------------------------------------------------------------


def text_length(text: str) -> int:
    """Characters as the 毕业生登记表 counts them: spaces and line breaks do not count."""
    return len(re.sub(r"\s", "", text))


def self_assessment_problem(text: str, minimum: int = SELF_ASSESSMENT_MIN_CHARS,
                            maximum: int = SELF_ASSESSMENT_MAX_CHARS) -> Optional[str]:
    n = text_length(text)
    if n < minimum:
        return f"自我鉴定不少于{minimum}字，现在{n}字，还差{minimum - n}字。"
    if n > maximum:
        return f"自我鉴定最多{maximum}字，现在{n}字，请删减。"
    return None


# --- 情况说明 for what is missing -----------------------------------------------------------------


class MissingLike(Protocol):
    course_code: str
    course_name: str


class ExtraOptionLike(Protocol):
    label: str

    @property
    def done(self) -> bool: ...


class ProgressLike(Protocol):
    """What dialogs.progress.Progress offers."""

    missing_required: Sequence[MissingLike]
    elective_credits_needed: int  # credits still to come from 选考 courses beyond the missing 必考 ones
    thesis_required: bool
    extra_options: Sequence[ExtraOptionLike]

    @property
    def thesis_done(self) -> bool: ...


@dataclass(frozen=True)
class MissingItem:
    key: str  # stable: 'course:00261', 'credits', 'thesis', 'extra:<label>'
    label: str  # how the 情况说明 window names it


def missing_items(progress: ProgressLike, extra_choice: Optional[str] = None) -> list[MissingItem]:
    """What a 情况说明 must be written for: each missing required course, the 选考 credits still
    short, the thesis, and the chosen 加考选项 when its courses are not all passed."""
    items = [MissingItem(f"course:{m.course_code}", f"{m.course_name}({m.course_code})未取得合格成绩")
             for m in progress.missing_required]
    # Credits the missing courses would bring are not asked about twice.
    if progress.elective_credits_needed > 0:
        items.append(MissingItem("credits", f"选考课程学分还差{progress.elective_credits_needed}学分"))
    if progress.thesis_required and not progress.thesis_done:
        items.append(MissingItem("thesis", "毕业论文（设计）未取得合格成绩"))
    if extra_choice is not None:
        option = next((o for o in progress.extra_options if o.label == extra_choice), None)
        if option is not None and not option.done:
            items.append(MissingItem(f"extra:{option.label}", option.label))
    return items


def explanation_problems(missing: Sequence[MissingItem], explanations: Mapping[str, str],
                         minimum: int = EXPLANATION_MIN_CHARS) -> list[str]:
    """One 情况说明 per missing item, of at least `minimum` characters; none for anything else."""
    problems = []
    for i, item in enumerate(missing, 1):
        text = explanations.get(item.key, "")
        if text_length(text) < minimum:
            problems.append(f"{i}.{item.label}：请如实填写情况说明（不少于{minimum}字）。")
    keys = {m.key for m in missing}
    if any(k not in keys for k in explanations):
        problems.append("只需为缺少的项目填写情况说明。")
    return problems


# --- Applying, once per major -------------------------------------------------------------------


class ApplicationLike(Protocol):
    kind: str
    major_code: Optional[str]
    status: str  # draft / submitted / approved / rejected


@dataclass(frozen=True)
class ApplyDecision:
    action: str  # 'new' / 'continue' (a draft) / 'edit' (待审核) / 'reapply' (未通过) / 'refused'
    reason: str = ""  # for 'refused' (and what 'continue'/'edit' tell the candidate)


def apply_decision(existing: Iterable[ApplicationLike], *, kind: str, major_code: str, window_open: bool,
                   window_text: str = "") -> ApplyDecision:
    """What 申请 in this major leads to, given the candidate's applications of this business.

    One application per business and major: a draft is continued, a 待审核 one edited, a 未通过
    one applied again (重新申请) — all only inside the window (`window_text` says when it opens);
    审核通过 is final. Another major is a new application ("申请另一专业").
    """
    mine = [a for a in existing if a.kind == kind and a.major_code == major_code]
    status = {a.status for a in mine}
    if "approved" in status:
        return ApplyDecision("refused", "该专业已审核通过，无需再次申请。")
    if not window_open:
        return ApplyDecision("refused", window_text or "现在不在办理时间内。")
    if "draft" in status:
        return ApplyDecision("continue", "您有未提交的申请，继续填写。")
    if "submitted" in status:
        return ApplyDecision("edit", "该专业的申请正在审核（待审核），可以修改后再次提交。")
    if "rejected" in status:
        return ApplyDecision("reapply")
    return ApplyDecision("new")


def open_majors(existing: Iterable[ApplicationLike], kind: str) -> set[str]:
    """Majors with an open (草稿, 待审核, 审核通过) application of the business."""
    return {a.major_code for a in existing if a.kind == kind and a.status in OPEN_STATUSES and a.major_code}
