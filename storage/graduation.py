"""申请毕业 in the database: what an application holds beyond the common columns, the checks of its
submission, and what its approval adds (the 毕业审定费 order and the push's lines).

A graduation application keeps its form in `applications.details` (`GraduationDetails`): the
personal information confirmed, the qualifying results as the candidate confirmed them (a
snapshot, also what the reviewer reads), the 加考选项 chosen, the missing requirements with a
情况说明 each, the 自我鉴定 and, for 本科 majors, the prior education with its photos. What is
missing is computed in the dialog by the 毕业进度 rules (dialogs/progress.py, which storage does
not import) and kept here with the application; the checks below use storage/graduation_rules.py.

On approval (storage.applications._decide calls `on_approval` in the decision's transaction) the
毕业审定费 order is created in `orders`: amount from the major's `graduation_rules["graduation_fee"]`
(yuan), else DEFAULT_FEE; order number `GF<yyyymmdd>A<application id>`; and the push says when
the payment period (business window `graduation_fee`) opens, or that it will be announced.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping, Optional

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import graduation_rules as gr
from storage.models import BusinessWindow, CandidateMajor, Major
from storage.models_applications import Application
from storage.models_service import GRADUATION_FEE, Order
from storage.outbox import KIND_KEYWORDS, SHANGHAI, shanghai_time

KIND = "graduation"
KEYWORD = KIND_KEYWORDS[KIND]  # "申请毕业": what the candidate replies to open the flow
FEE_WINDOW = "graduation_fee"
# The 毕业审定费 when the major's graduation_rules name none (docs/import.md, docs/payments.md).
DEFAULT_FEE = Decimal("150.00")
EXPLANATION_MAX_CHARS = 500


@dataclass
class ResultLine:
    """One qualifying result as shown to the candidate and the reviewer."""

    course_code: str
    course_name: str
    course_kind: str = ""  # 类型: 理论 / 实践 / 论文
    result: str = ""  # 成绩: '76分', '合格'
    credits: int = 0
    passed: str = ""  # 通过时间 'YYYY-MM'
    note: str = ""  # 备注: 免考 / 转入 / 补登
    admission_number: str = ""  # 准考证号 the result is under


@dataclass
class GraduationDetails:
    profile_checked: bool = False  # personal information and mobile confirmed current
    level: str = ""  # the major's level when chosen (专科 skips prior education)
    results: list[ResultLine] = field(default_factory=list)
    results_confirmed: bool = False
    extra_choice: Optional[str] = None  # the 加考选项 label
    missing: list[dict[str, str]] = field(default_factory=list)  # [{key, label}] from the 毕业进度 rules
    explanations: dict[str, str] = field(default_factory=dict)  # key -> 情况说明
    self_assessment: str = ""
    diploma: Optional[dict[str, Any]] = None  # graduation_rules.PriorDiploma as a dict
    companion: Optional[dict[str, Any]] = None  # graduation_rules.Companion as a dict
    fee_order: str = ""  # the 毕业审定费 order number, once approved

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GraduationDetails:
        d = dict(d or {})
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["results"] = [ResultLine(**r) for r in known.get("results") or []]
        known["missing"] = [dict(m) for m in known.get("missing") or []]
        known["explanations"] = dict(known.get("explanations") or {})
        return cls(**known)

    def prior(self) -> tuple[Optional[gr.PriorDiploma], Optional[gr.Companion]]:
        diploma = gr.PriorDiploma(**{**self.diploma, "photo_ids": list(self.diploma.get("photo_ids") or [])}) \
            if self.diploma else None
        companion = gr.Companion(**{**self.companion, "photo_ids": list(self.companion.get("photo_ids") or [])}) \
            if self.companion else None
        return diploma, companion

    def missing_items(self) -> list[gr.MissingItem]:
        return [gr.MissingItem(m["key"], m["label"]) for m in self.missing]

    def photo_ids(self) -> list[int]:
        out = []
        for part in (self.diploma, self.companion):
            out += [int(p) for p in (part or {}).get("photo_ids") or []]
        return out


def details_photo_ids(kind: str, details: Mapping[str, Any]) -> list[int]:
    """Photos a graduation application names in its details (the prior-education evidence)."""
    return GraduationDetails.from_dict(details).photo_ids() if kind == KIND and details else []


# --- The major's settings -----------------------------------------------------------------------------


def needs_prior(level: str, rules: Mapping[str, Any]) -> bool:
    """专科 skips prior education; a 本科 major asks for it unless its rules say otherwise."""
    return gr.needs_prior_education(level) and bool(rules.get("prior_education_required", True))


def self_assessment_min(rules: Mapping[str, Any]) -> int:
    try:
        return max(1, int(rules.get("self_assessment_min_chars", gr.SELF_ASSESSMENT_MIN_CHARS)))
    except (TypeError, ValueError):
        return gr.SELF_ASSESSMENT_MIN_CHARS


def fee_amount(rules: Mapping[str, Any]) -> Decimal:
    """The 毕业审定费 in yuan: the major's `graduation_fee`, else DEFAULT_FEE."""
    raw = rules.get("graduation_fee")
    try:
        amount = Decimal(str(raw)).quantize(Decimal("0.01")) if raw not in (None, "") else DEFAULT_FEE
    except InvalidOperation:
        return DEFAULT_FEE
    return amount if amount >= 0 else DEFAULT_FEE


def current_month(now: dt.datetime) -> str:
    return f"{now.astimezone(SHANGHAI):%Y-%m}"


# --- Submission -------------------------------------------------------------------------------------


def problems_of(d: GraduationDetails, *, major_code: Optional[str], enrolled: bool, level: str,
                rules: Mapping[str, Any], other_open: bool, now: dt.datetime) -> list[str]:
    """Everything that stops a graduation application from being submitted (plain values)."""
    out: list[str] = []
    if not major_code:
        return ["请选择申请毕业的专业。"]
    if not enrolled:
        out.append("所选专业不是您报考的专业。")
    if other_open:
        out.append("该专业已有一份毕业申请（待审核或已通过），同一专业只能有一份。")
    if not d.profile_checked:
        out.append("请核对个人信息并确认手机号码。")
    if not d.results_confirmed:
        out.append("请核对本专业的合格成绩。")
    options = [str(o.get("label", "")) for o in rules.get("extra_exam_options") or ()]
    if options and d.extra_choice not in options:
        out.append("请选择加考选项。")
    out += gr.explanation_problems(d.missing_items(), d.explanations)
    problem = gr.self_assessment_problem(d.self_assessment, self_assessment_min(rules))
    if problem:
        out.append(problem)
    if needs_prior(level, rules):
        diploma, companion = d.prior()
        out += gr.prior_education_problems(level, diploma, companion, current_month=current_month(now))
    return out


async def submission_problems(s: AsyncSession, data: Any, now: dt.datetime) -> list[str]:
    """`problems_of` for an ApplicationData of kind graduation, reading the major and the others."""
    d = GraduationDetails.from_dict(data.details)
    major = await s.get(Major, data.major_code) if data.major_code else None
    enrolled = bool(data.major_code) and await s.scalar(select(func.count()).select_from(CandidateMajor).where(
        CandidateMajor.candidate_id == data.candidate_id, CandidateMajor.major_code == data.major_code)) > 0
    other_open = bool(data.major_code) and await s.scalar(select(func.count()).select_from(Application).where(
        Application.candidate_id == data.candidate_id, Application.kind == KIND,
        Application.major_code == data.major_code, Application.status.in_(("submitted", "approved")),
        Application.id != (data.id or 0))) > 0
    return problems_of(d, major_code=data.major_code, enrolled=enrolled, level=major.level if major else "",
                       rules=(major.graduation_rules or {}) if major else {}, other_open=other_open, now=now)


# --- Approval: the 毕业审定费 order ---------------------------------------------------------------------


def order_number(application_id: int, now: dt.datetime) -> str:
    """GF + the Shanghai date + A + the application id: 6-32 characters, WeChat Pay's out_trade_no."""
    return f"GF{now.astimezone(SHANGHAI):%Y%m%d}A{application_id:06d}"


def payment_period_text(window: Optional[BusinessWindow], now: dt.datetime) -> str:
    if window is None:
        return "缴费时间另行通知，开放时会通知您。"
    if window.opens_at <= now:
        return f"现在可以缴费，截止到{shanghai_time(window.closes_at)}。"
    return f"缴费时间：{shanghai_time(window.opens_at)} 至 {shanghai_time(window.closes_at)}。"


async def fee_period(s: AsyncSession, now: dt.datetime) -> Optional[BusinessWindow]:
    """The payment period open now, else the next one (None: not yet set by the office)."""
    return await s.scalar(select(BusinessWindow).where(
        BusinessWindow.kind == FEE_WINDOW, BusinessWindow.closes_at > now).order_by(BusinessWindow.opens_at).limit(1))


async def on_approval(s: AsyncSession, row: Application, now: dt.datetime) -> tuple[str, str]:
    """In the approval's transaction: the 毕业审定费 order (once per application) and the push's
    (detail, hint)."""
    major = await s.get(Major, row.major_code) if row.major_code else None
    rules = (major.graduation_rules or {}) if major else {}
    d = GraduationDetails.from_dict(row.details or {})
    number = d.fee_order or order_number(row.id, now)
    amount = fee_amount(rules)
    if await s.scalar(select(Order.id).where(Order.order_number == number)) is None:
        admission = await s.scalar(select(CandidateMajor.admission_number).where(
            CandidateMajor.candidate_id == row.candidate_id, CandidateMajor.major_code == row.major_code))
        s.add(Order(order_number=number, candidate_id=row.candidate_id, admission_number=admission or row.admission_number,
                    major_code=row.major_code, item=GRADUATION_FEE, amount=amount, status="pending", created_at=now))
    d.fee_order = number
    row.details = d.to_dict()
    period = payment_period_text(await fee_period(s, now), now)
    name = major.name if major else (row.major_code or "")
    detail = (f"专业：{name}\n毕业审定费{amount:.2f}元的订单已生成（订单号{number}）。\n{period}\n"
              "回复“我的订单”查看和缴费。")
    return detail, "订单已生成，回复“我的订单”"
