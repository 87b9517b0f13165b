"""Applications with evidence (申请免考, 成绩补登 ...): their rules, drafts, submission and decisions.

The rules are plain functions over plain values (`next_status`, `check_window`,
`exemption_choices`, `evidence_problems`, `backfill_date_problem` ...), testable without a
database. The database operations below use them and work on `ApplicationData`, a plain copy of
an application that a dialog can keep in its state (`to_dict` / `from_dict`) between messages.

Life cycle (one table, `TRANSITIONS`):

    draft     --submit-->  submitted (待审核)
    submitted --submit-->  submitted            an edit while 待审核, submitted again
    submitted --approve--> approved (审核通过)   score records written
    submitted --reject-->  rejected (未通过)     with the reason
    rejected  --submit-->  submitted            重新提交
    draft, rejected --save--> unchanged         work kept between visits

Candidates save and submit only while a window of the business is open; staff decide at any
time. A decision, its push to the candidate (storage.outbox.review_outcome) and, on approval,
its score records are written in one transaction.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Optional

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.orm.exc import StaleDataError

from storage import degree, graduation, identifiers, outbox, queries, thesis, transfers
from storage.db import Database
from storage.models import (
    AdmissionNumber,
    BusinessWindow,
    Candidate,
    CandidateMajor,
    Course,
    PlanCourse,
    ScoreRecord,
    utcnow,
)
from storage.models_applications import (
    APPLICATION_KINDS,
    DEFAULT_EVIDENCE_TYPES,
    ENTRY_KINDS,
    STATUS_LABELS,
    Application,
    ApplicationEvent,
    ApplicationItem,
    Evidence,
    EvidencePhoto,
    EvidenceType,
    Photo,
)
from storage.models_degree import ApplicationPhoto
from storage.vocab import GRADES, WINDOW_KINDS, score_passes

SHANGHAI = outbox.SHANGHAI

MAX_PHOTOS_PER_EVIDENCE = 9  # what WeChat lets one pick at once
MAX_REASON = 500
EARLIEST_MONTH = "1950-01"
# 成绩补登's limits (FLOWS 16-18): older results only; newer business has its own flows.
THEORY_LATEST_MONTH = "2002-12"
LEGACY_BEFORE_MONTH = "2020-01"

# Candidate-facing words for the states a course can be in.
COURSE_STATES: dict[str, str] = {
    "passed": "已通过",
    "exempted": "已免考",
    "transferred": "已转入",
    "pending": "已在申请中，等待审核",
}


# --- Errors ----------------------------------------------------------------------------------------


class ApplicationError(ValueError):
    """A refused request; the message is short Chinese the candidate or staff member can read."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApplicationNotFound(ApplicationError):
    pass


class TransitionRefused(ApplicationError):
    """The status does not allow the action (see TRANSITIONS)."""


class WindowClosed(ApplicationError):
    """A candidate action outside the business's window; `check` says when it opens next."""

    def __init__(self, message: str, check: WindowCheck) -> None:
        super().__init__(message)
        self.check = check


class StaleApplication(ApplicationError):
    """The application changed since this copy was loaded (another device, a decision ...)."""


class SubmissionRefused(ApplicationError):
    """What is missing or wrong before the application can be submitted, one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


STALE = "这份申请刚刚有了变化（可能在别处修改或已被审核），请重新查看后再操作。"


# --- The transition table --------------------------------------------------------------------------

ACTIONS: dict[str, str] = {"save": "保存", "submit": "提交", "approve": "审核通过", "reject": "审核不通过"}

TRANSITIONS: dict[tuple[str, str], str] = {
    ("draft", "save"): "draft",
    ("draft", "submit"): "submitted",
    ("submitted", "submit"): "submitted",  # edited while 待审核 and submitted again
    ("submitted", "approve"): "approved",
    ("submitted", "reject"): "rejected",
    ("rejected", "save"): "rejected",  # a 重新提交 prepared over several visits
    ("rejected", "submit"): "submitted",  # 重新提交
}
# Actions of the candidate: only while a window of the business is open.
CANDIDATE_ACTIONS = frozenset({"save", "submit"})

_REFUSALS: dict[tuple[str, str], str] = {
    ("approved", "save"): "申请已审核通过，不能再修改。",
    ("approved", "submit"): "申请已审核通过，不能再修改或重新提交。",
    ("approved", "approve"): "申请已审核通过，不能再次审核。",
    ("approved", "reject"): "申请已审核通过，不能再改为不通过。",
    ("rejected", "approve"): "申请未通过，考生重新提交后才能再审核。",
    ("rejected", "reject"): "申请已是未通过，考生重新提交后才能再审核。",
    ("draft", "approve"): "申请还是草稿，考生提交后才能审核。",
    ("draft", "reject"): "申请还是草稿，考生提交后才能审核。",
    ("submitted", "save"): "申请正在审核中，修改后请直接提交。",
}


def next_status(status: str, action: str) -> str:
    """The status after `action`, or TransitionRefused with the reason."""
    if status not in STATUS_LABELS:
        raise ValueError(f"unknown application status {status!r}")
    if action not in ACTIONS:
        raise ValueError(f"unknown application action {action!r}")
    after = TRANSITIONS.get((status, action))
    if after is None:
        raise TransitionRefused(
            _REFUSALS.get((status, action), f"“{STATUS_LABELS[status]}”的申请不能{ACTIONS[action]}。")
        )
    return after


def kind_name(kind: str) -> str:
    """'exemption' -> '申请免考', 'backfill' -> '成绩补登'."""
    return WINDOW_KINDS.get(kind, kind)


# --- Business windows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowInfo:
    id: Optional[int]
    kind: str
    title: str
    opens_at: dt.datetime
    closes_at: dt.datetime
    notice: str = ""

    @classmethod
    def of(cls, w: Any) -> WindowInfo:
        return cls(getattr(w, "id", None), w.kind, w.title, w.opens_at, w.closes_at, getattr(w, "notice", "") or "")


@dataclass(frozen=True)
class WindowCheck:
    kind: str
    open: Optional[WindowInfo]  # the window open now (the one closing last when several are)
    next: Optional[WindowInfo]  # the next one to open, when none is open

    @property
    def is_open(self) -> bool:
        return self.open is not None


def check_window(windows: Iterable[Any], kind: str, now: dt.datetime) -> WindowCheck:
    """Is a window of `kind` open at `now` (opens_at <= now < closes_at), and if not, which is next?"""
    mine = [WindowInfo.of(w) for w in windows if w.kind == kind]
    open_now = [w for w in mine if w.opens_at <= now < w.closes_at]
    if open_now:
        return WindowCheck(kind, max(open_now, key=lambda w: w.closes_at), None)
    later = [w for w in mine if w.opens_at > now]
    return WindowCheck(kind, None, min(later, key=lambda w: w.opens_at) if later else None)


def window_closed_text(check: WindowCheck) -> str:
    """What a candidate reads outside the window: when it opens next, if the office has said."""
    name = kind_name(check.kind)
    if check.next is None:
        return f"{name}现在不在办理时间内，下一次办理时间还没有公布，请留意站内消息。"
    return (f"{name}现在不在办理时间内。下一次办理时间：{outbox.shanghai_time(check.next.opens_at)}"
            f" 至 {outbox.shanghai_time(check.next.closes_at)}。")


async def window_check(session: AsyncSession, kind: str, now: dt.datetime | None = None) -> WindowCheck:
    now = now or utcnow()
    rows = (await session.execute(
        select(BusinessWindow).where(BusinessWindow.kind == kind, BusinessWindow.closes_at > now)
    )).scalars().all()
    return check_window(rows, kind, now)


async def business_window(db: Database, kind: str, now: dt.datetime | None = None) -> WindowCheck:
    """The window state of a business, for a dialog's first step."""
    async with db.session() as s:
        return await window_check(s, kind, now)


async def _require_open(session: AsyncSession, kind: str, now: dt.datetime) -> WindowInfo:
    check = await window_check(session, kind, now)
    if check.open is None:
        raise WindowClosed(window_closed_text(check), check)
    return check.open


# --- Plain data ------------------------------------------------------------------------------------


@dataclass
class EvidenceData:
    type_code: str
    number: str = ""  # 编号
    obtained_month: Optional[str] = None  # 获取凭证时间 'YYYY-MM'
    province: str = ""  # 获取凭证省份 / 取得凭证地点
    note: str = ""  # 备注
    photo_ids: list[int] = field(default_factory=list)


@dataclass
class ItemData:
    course_code: str
    entry_kind: Optional[str] = None  # 成绩补登: theory / exemption / transfer
    passed_month: Optional[str] = None  # 通过时间 / 办理免考时间 / 办理转入时间 'YYYY-MM'
    score: Optional[Decimal] = None
    grade: Optional[str] = None  # 合格 / 通过 instead of a number
    note: str = ""  # 说明
    from_province: str = ""  # 来源省
    from_admission_number: str = ""  # 来源准考证号
    evidences: list[EvidenceData] = field(default_factory=list)


@dataclass
class ApplicationData:
    """An application as plain values. `version` is the one loaded: saving a stale copy fails."""

    kind: str
    candidate_id: int
    openid: str
    admission_number: str
    major_code: Optional[str] = None
    items: list[ItemData] = field(default_factory=list)
    id: Optional[int] = None
    status: str = "draft"
    version: int = 0
    window_id: Optional[int] = None
    created_at: Optional[dt.datetime] = None
    submitted_at: Optional[dt.datetime] = None
    decided_at: Optional[dt.datetime] = None
    decided_by: Optional[str] = None
    reason: Optional[str] = None  # why 未通过
    # Form fields beyond courses (本市转出: storage.transfers.TransferOutDetails.to_dict()).
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]

    def item(self, course_code: str) -> Optional[ItemData]:
        return next((i for i in self.items if i.course_code == course_code), None)

    def photo_count(self) -> int:
        return sum(len(e.photo_ids) for i in self.items for e in i.evidences)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (dates as ISO text, scores as text), e.g. for DialogState.data."""
        d = asdict(self)
        for k in ("created_at", "submitted_at", "decided_at"):
            d[k] = d[k].isoformat() if d[k] else None
        for i in d["items"]:
            i["score"] = str(i["score"]) if i["score"] is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ApplicationData:
        d = dict(d)
        items = []
        for i in d.pop("items", []) or []:
            i = dict(i)
            evs = [EvidenceData(**{**e, "photo_ids": list(e.get("photo_ids") or [])}) for e in i.pop("evidences", []) or []]
            score = i.get("score")
            i["score"] = Decimal(str(score)) if score not in (None, "") else None
            items.append(ItemData(**i, evidences=evs))
        for k in ("created_at", "submitted_at", "decided_at"):
            if d.get(k):
                d[k] = dt.datetime.fromisoformat(d[k])
        d["details"] = dict(d.get("details") or {})
        return cls(**d, items=items)


def photo_in_application(data: ApplicationData, photo_id: int) -> bool:
    """Was this photo already sent for this application? (A duplicate upload.)"""
    return any(photo_id in e.photo_ids for i in data.items for e in i.evidences)


# --- Rules on plain data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EvidenceTypeInfo:
    code: str
    name: str
    needs_companion: bool = False
    companion: bool = False
    for_exemption: bool = True
    active: bool = True
    position: int = 100

    @classmethod
    def of(cls, t: EvidenceType) -> EvidenceTypeInfo:
        return cls(t.code, t.name, t.needs_companion, t.companion, t.for_exemption, t.active, t.position)


_YM = re.compile(r"^(\d{4})-(\d{2})$")


def month_of(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def month_label(ym: str | None) -> str:
    """'2018-06' -> '2018年6月'."""
    if not ym:
        return "（未填）"
    return f"{ym[:4]}年{int(ym[5:7])}月"


def today_in_shanghai(now: dt.datetime | None = None) -> dt.date:
    return (now or utcnow()).astimezone(SHANGHAI).date()


def month_problem(ym: str | None, today: dt.date, what: str) -> str | None:
    """A year-month that is missing, malformed, before 1950 or in the future."""
    if not ym:
        return f"请填写{what}。"
    m = _YM.match(ym)
    if not m or not 1 <= int(m.group(2)) <= 12:
        return f"{what}格式不对，应为年月，如 2018年6月。"
    if ym < EARLIEST_MONTH:
        return f"{what}太早了，请核对。"
    if ym > month_of(today):
        return f"{what}不能晚于本月。"
    return None


def evidence_problems(e: EvidenceData, types: Mapping[str, EvidenceTypeInfo], today: dt.date, *,
                      details: bool = True, photos: bool = True, exemption: bool = True) -> list[str]:
    """What an evidence lacks. `details`: 编号, 获取凭证时间 and 省份 are required; `photos`: at
    least one photo; `exemption`: the type must be one offered for 申请免考."""
    out: list[str] = []
    t = types.get(e.type_code)
    if t is None or (exemption and not t.for_exemption):
        return ["请从列表中选择凭证类型。"]
    if details:
        if not (e.number or "").strip():
            out.append(f"{t.name}：请填写凭证编号。")
        p = month_problem(e.obtained_month, today, "获取凭证时间")
        if p:
            out.append(f"{t.name}：{p}")
        if not (e.province or "").strip():
            out.append(f"{t.name}：请填写获取凭证的省份。")
    elif e.obtained_month:
        p = month_problem(e.obtained_month, today, "获取凭证时间")
        if p:
            out.append(f"{t.name}：{p}")
    if photos and not e.photo_ids:
        out.append(f"{t.name}：请上传凭证照片。")
    if len(e.photo_ids) > MAX_PHOTOS_PER_EVIDENCE:
        out.append(f"{t.name}：照片最多{MAX_PHOTOS_PER_EVIDENCE}张。")
    return out


def companion_problem(evidences: Sequence[EvidenceData], types: Mapping[str, EvidenceTypeInfo]) -> str | None:
    """A 毕业证书 (a type that needs a companion) without a 备案表 or 认证报告 next to it."""
    codes = [e.type_code for e in evidences]
    needing = [types[c] for c in codes if c in types and types[c].needs_companion]
    if not needing or any(c in types and types[c].companion for c in codes):
        return None
    companions = "或".join(t.name for t in sorted(types.values(), key=lambda t: t.position)
                          if t.companion and t.active) or "相应的证明材料"
    return f"使用{needing[0].name}申请免考，还须提供{companions}。"


@dataclass(frozen=True)
class PlanCourseInfo:
    code: str
    name: str
    credits: int = 0
    kind: str = "理论"  # 理论 / 实践 / 论文


@dataclass(frozen=True)
class CourseChoice:
    code: str
    name: str
    credits: int
    eligible: bool
    why_not: Optional[str] = None  # e.g. 已通过, 已免考, 已在申请中，等待审核

    def label(self) -> str:
        return f"{self.code} {self.name}" + (f"（{self.why_not}）" if self.why_not else "")


def exemption_choices(plan: Sequence[PlanCourseInfo], states: Mapping[str, str]) -> list[CourseChoice]:
    """The courses of a major's plan, each eligible for 申请免考 or not, and why.

    `states`: course code -> passed / exempted / transferred / pending (in another application).
    A thesis (论文) is never exempted.
    """
    out = []
    for c in plan:
        state = states.get(c.code)
        if state is not None:
            out.append(CourseChoice(c.code, c.name, c.credits, False, COURSE_STATES[state]))
        elif c.kind == "论文":
            out.append(CourseChoice(c.code, c.name, c.credits, False, "论文不能申请免考"))
        else:
            out.append(CourseChoice(c.code, c.name, c.credits, True))
    return out


def exemption_item_problems(item: ItemData, course_name: str, types: Mapping[str, EvidenceTypeInfo],
                            today: dt.date) -> list[str]:
    """What one course of 申请免考 lacks: at least one complete evidence with photos, and the
    companion of a 毕业证书."""
    if not item.evidences:
        return [f"{course_name}：请至少提供一份凭证。"]
    out = [f"{course_name}：{p}" for e in item.evidences for p in evidence_problems(e, types, today)]
    p = companion_problem(item.evidences, types)
    if p:
        out.append(f"{course_name}：{p}")
    return out


def backfill_date_problem(entry_kind: str, passed_month: str | None, today: dt.date) -> str | None:
    """成绩补登's date limits, each with where newer business goes instead."""
    what = {"theory": "考试通过时间", "exemption": "办理免考时间", "transfer": "办理转入时间"}[entry_kind]
    p = month_problem(passed_month, today, what)
    if p:
        return p
    assert passed_month is not None
    if entry_kind == "theory" and passed_month > THEORY_LATEST_MONTH:
        return ("理论与实践成绩只能补登2002年12月及以前取得的成绩。"
                "之后的成绩平台上都有记录，如有遗漏请联系考办。")
    if entry_kind == "exemption" and passed_month >= LEGACY_BEFORE_MONTH:
        return (f"免考补登只限2020年以前已审核通过的免考。"
                f"2020年及以后的免考请回复“{outbox.KIND_KEYWORDS['exemption']}”，通过“申请免考”办理。")
    if entry_kind == "transfer" and passed_month >= LEGACY_BEFORE_MONTH:
        return (f"转入补登只限2020年以前办理的转入。"
                f"2020年及以后的转入请回复“{outbox.KIND_KEYWORDS['transfer_in']}”，通过“外省转入”办理。")
    return None


def parse_score(text: str) -> tuple[Decimal | None, str | None]:
    """'85', '85.5', '合格', '通过' -> (score, grade); ValueError when it is neither."""
    s = (text or "").strip()
    if s in GRADES:
        return None, s
    try:
        score = Decimal(s)
    except InvalidOperation:
        raise ValueError("成绩应为0到100的数字，或“合格”“通过”。") from None
    if not score.is_finite() or not 0 <= score <= 100 or score != score.quantize(Decimal("0.1")):
        raise ValueError("成绩应为0到100的数字，最多一位小数。")
    return score, None


def backfill_item_problems(item: ItemData, course_name: str, types: Mapping[str, EvidenceTypeInfo],
                           today: dt.date) -> list[str]:
    """What one course of a 成绩补登 registration lacks, by its kind (FLOWS 16-18)."""
    if item.entry_kind not in ENTRY_KINDS:
        return [f"{course_name}：请选择补登类型（理论与实践、免考或转入）。"]
    out: list[str] = []
    p = backfill_date_problem(item.entry_kind, item.passed_month, today)
    if p:
        out.append(p)
    if item.entry_kind == "theory":
        if item.score is None and item.grade is None:
            out.append(f"{course_name}：请填写成绩。")
        elif not score_passes(item.score, item.grade):
            out.append(f"{course_name}：只能补登合格的成绩（60分及以上，或“合格”“通过”）。")
        if not any(e.photo_ids for e in item.evidences):
            out.append(f"{course_name}：请上传成绩证明的照片。")
        for e in item.evidences:
            out += [f"{course_name}：{q}" for q in evidence_problems(e, types, today, details=False, photos=False,
                                                                   exemption=False)]
    elif item.entry_kind == "exemption":
        if not item.evidences:
            out.append(f"{course_name}：请填写免考所用的凭证（类型、取得时间、编号、取得地点）。")
        for e in item.evidences:
            out += [f"{course_name}：{q}" for q in evidence_problems(e, types, today, photos=False)]
            if e.obtained_month and item.passed_month and e.obtained_month > item.passed_month:
                out.append(f"{course_name}：取得凭证的时间不能晚于办理免考时间（{month_label(item.passed_month)}）。")
    else:  # transfer
        if not (item.from_province or "").strip():
            out.append("请填写来源省（转出省）。")
        if not (item.from_admission_number or "").strip():
            out.append("请填写来源准考证号。")
    return out


def application_problems(data: ApplicationData, *, course_names: Mapping[str, str],
                         types: Mapping[str, EvidenceTypeInfo], states: Mapping[str, str],
                         plan: Mapping[str, PlanCourseInfo] | None = None,
                         majors: Iterable[str] = (), today: dt.date) -> list[str]:
    """Everything that stops `data` from being submitted (empty: it can be submitted).

    `states`: the candidate's courses already passed / exempted / transferred / pending in
    another application; `plan`: the chosen major's plan (申请免考); `majors`: the candidate's.
    """
    out: list[str] = []
    if not data.items:
        out.append("请至少选择一门课程。")
    seen: set[str] = set()
    for item in data.items:
        name = course_names.get(item.course_code, item.course_code)
        if item.course_code in seen:
            out.append(f"{name}：同一门课程只能填写一次。")
        seen.add(item.course_code)
        state = states.get(item.course_code)
        if data.kind == "exemption":
            if state is not None:
                out.append(f"{name}：{COURSE_STATES[state]}，不能再申请免考。")
            elif plan is not None and item.course_code not in plan:
                out.append(f"{name}：不在所选专业的考试计划中。")
            elif plan is not None and plan[item.course_code].kind == "论文":
                out.append(f"{name}：论文不能申请免考。")
            out += exemption_item_problems(item, name, types, today)
        elif data.kind == "backfill":
            if state is not None:
                out.append(f"{name}：{COURSE_STATES[state]}，无需补登。")
            out += backfill_item_problems(item, name, types, today)
    if data.kind == "exemption":
        if not data.major_code:
            out.append("请选择专业。")
        elif data.major_code not in set(majors):
            out.append("所选专业不是您报考的专业。")
    if data.kind == "backfill" and data.items:
        kinds = {i.entry_kind for i in data.items}
        if len(kinds) > 1:
            out.append("一次登记只能是一种补登类型，请分开登记。")
        elif kinds == {"transfer"}:
            if not data.major_code:
                out.append("请选择转入专业。")
            elif data.major_code not in set(majors):
                out.append("转入专业应为您报考的专业。")
        elif len(data.items) > 1:
            out.append("理论与实践和免考补登每次登记一门课程。")
    # One line per problem, in order, without repeats (a shared field is reported once).
    return list(dict.fromkeys(out))


# --- Reading from the database ---------------------------------------------------------------------


def _eager():
    return (
        selectinload(Application.items).selectinload(ApplicationItem.evidences)
        .selectinload(Evidence.photo_links),
    )


def _to_data(row: Application) -> ApplicationData:
    return ApplicationData(
        kind=row.kind, candidate_id=row.candidate_id, openid=row.openid, admission_number=row.admission_number,
        major_code=row.major_code, id=row.id, status=row.status, version=row.version, window_id=row.window_id,
        created_at=row.created_at, submitted_at=row.submitted_at, decided_at=row.decided_at,
        decided_by=row.decided_by, reason=row.reason, details=dict(row.details or {}),
        items=[
            ItemData(
                course_code=i.course_code, entry_kind=i.entry_kind, passed_month=i.passed_month, score=i.score,
                grade=i.grade, note=i.note or "", from_province=i.from_province or "",
                from_admission_number=i.from_admission_number or "",
                evidences=[
                    EvidenceData(type_code=e.type_code, number=e.number or "", obtained_month=e.obtained_month,
                                 province=e.province or "", note=e.note or "",
                                 photo_ids=[link.photo_id for link in e.photo_links])
                    for e in i.evidences
                ],
            )
            for i in row.items
        ],
    )


async def evidence_types(db: Database, *, for_exemption: bool | None = None,
                         include_inactive: bool = False) -> list[EvidenceTypeInfo]:
    """The 凭证类型 list in display order (for_exemption=True: what 申请免考 offers)."""
    async with db.session() as s, s.begin():
        return await _evidence_types(s, for_exemption=for_exemption, include_inactive=include_inactive)


async def _evidence_types(s: AsyncSession, *, for_exemption: bool | None = None,
                          include_inactive: bool = True) -> list[EvidenceTypeInfo]:
    q = select(EvidenceType).order_by(EvidenceType.position, EvidenceType.code)
    rows = (await s.execute(q)).scalars().all()
    if not rows:
        # Migration 0005 seeds the list; an emptied table (by hand, or the test fixtures'
        # truncation) gets the shipped types back rather than leaving 申请免考 with no choice.
        ins = (pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert)(EvidenceType.__table__)
        await s.execute(ins.on_conflict_do_nothing(index_elements=["code"]), [
            {"code": c, "name": n, "position": p, "active": True, "for_exemption": fe, "needs_companion": nc,
             "companion": co}
            for c, n, p, fe, nc, co in DEFAULT_EVIDENCE_TYPES
        ])
        rows = (await s.execute(q)).scalars().all()
    return [EvidenceTypeInfo.of(t) for t in rows
            if (include_inactive or t.active) and (for_exemption is None or t.for_exemption == for_exemption)]


async def add_evidence_type(db: Database, name: str, *, code: str | None = None, needs_companion: bool = False,
                            companion: bool = False, for_exemption: bool = True,
                            position: int | None = None) -> EvidenceTypeInfo:
    """The office adds a 凭证类型 (shown after the existing ones unless `position` says otherwise)."""
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise ApplicationError("凭证类型名称不能为空，最多64字。")
    async with db.session() as s, s.begin():
        existing = await _evidence_types(s)
        if any(t.name == name for t in existing):
            raise ApplicationError(f"凭证类型“{name}”已存在。")
        codes = {t.code for t in existing}
        if code is None:
            n = 1
            while f"custom{n}" in codes:
                n += 1
            code = f"custom{n}"
        elif not re.fullmatch(r"[a-z0-9_]{1,32}", code) or code in codes:
            raise ApplicationError(f"凭证类型代码 {code} 不可用（小写字母、数字、下划线，且不能重复）。")
        if position is None:
            position = max((t.position for t in existing), default=0) + 10
        t = EvidenceType(code=code, name=name, position=position, active=True, for_exemption=for_exemption,
                         needs_companion=needs_companion, companion=companion)
        s.add(t)
    return EvidenceTypeInfo.of(t)


async def course_states(session: AsyncSession, candidate_id: int, *,
                        exclude_application_id: int | None = None) -> dict[str, str]:
    """course code -> passed / exempted / transferred / pending, for one candidate."""
    states: dict[str, str] = {}
    rank = {"passed": 0, "exempted": 1, "transferred": 2, "pending": 3}
    kind_state = {"exam": "passed", "backfill": "passed", "exemption": "exempted", "transfer": "transferred"}
    res = await session.execute(
        select(ScoreRecord.course_code, ScoreRecord.kind)
        .where(ScoreRecord.candidate_id == candidate_id, ScoreRecord.passed.is_(True))
    )
    pending = select(ApplicationItem.course_code).join(Application).where(
        Application.candidate_id == candidate_id, Application.status == "submitted",
        Application.kind != "thesis",  # its item is the thesis course carrying the diploma, not a result
    )
    if exclude_application_id is not None:
        pending = pending.where(Application.id != exclude_application_id)
    found = [(code, kind_state[kind]) for code, kind in res]
    found += [(code, "pending") for code in (await session.execute(pending)).scalars()]
    for code, state in found:
        if code not in states or rank[state] < rank[states[code]]:
            states[code] = state
    return states


async def _plan(session: AsyncSession, major_code: str) -> list[PlanCourseInfo]:
    res = await session.execute(
        select(PlanCourse.course_code, Course.name, PlanCourse.credits, Course.kind)
        .join(Course, Course.code == PlanCourse.course_code)
        .where(PlanCourse.major_code == major_code).order_by(PlanCourse.position, PlanCourse.course_code)
    )
    return [PlanCourseInfo(*r) for r in res]


async def exemption_courses(db: Database, candidate_id: int, major_code: str, *,
                            exclude_application_id: int | None = None) -> list[CourseChoice]:
    """The plan of a major for 申请免考: each course eligible or not, and why not."""
    async with db.session() as s:
        plan = await _plan(s, major_code)
        states = await course_states(s, candidate_id, exclude_application_id=exclude_application_id)
    return exemption_choices(plan, states)


async def find_courses(db: Database, typed: str, *, limit: int = 8) -> list[tuple[str, str]]:
    """Courses whose code or name starts with what the candidate typed (then: name contains it)."""
    t = (typed or "").strip()
    if not t:
        return []
    t_like = t.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    async with db.session() as s:
        base = select(Course.code, Course.name).where(Course.kind != "论文").order_by(Course.code).limit(limit)
        rows = (await s.execute(base.where(or_(Course.code.like(f"{t_like}%", escape="\\"),
                                                Course.name.like(f"{t_like}%", escape="\\"))))).all()
        if not rows:
            rows = (await s.execute(base.where(Course.name.like(f"%{t_like}%", escape="\\")))).all()
    return [(c, n) for c, n in rows]


async def _load_row(session: AsyncSession, application_id: int, *, lock: bool) -> Application:
    q = select(Application).where(Application.id == application_id).options(*_eager())
    if lock:
        q = q.with_for_update(of=Application)
    row = (await session.execute(q.execution_options(populate_existing=True))).scalar_one_or_none()
    if row is None:
        raise ApplicationNotFound(f"申请 #{application_id} 不存在。")
    return row


async def load_application(db: Database, application_id: int, *, candidate_id: int | None = None) -> ApplicationData:
    """One application; with `candidate_id`, only if it is that candidate's."""
    async with db.session() as s:
        row = await _load_row(s, application_id, lock=False)
    if candidate_id is not None and row.candidate_id != candidate_id:
        raise ApplicationNotFound(f"申请 #{application_id} 不存在。")
    return _to_data(row)


async def find_draft(db: Database, candidate_id: int, kind: str) -> ApplicationData | None:
    async with db.session() as s:
        app_id = await s.scalar(select(Application.id).where(
            Application.candidate_id == candidate_id, Application.kind == kind, Application.status == "draft"))
        if app_id is None:
            return None
        return _to_data(await _load_row(s, app_id, lock=False))


async def list_applications(db: Database, *, candidate_id: int | None = None, kind: str | None = None,
                            status: str | Sequence[str] | None = None, limit: int | None = None) -> list[ApplicationData]:
    """Applications, newest first (by submission, then creation)."""
    q = select(Application).options(*_eager())
    if candidate_id is not None:
        q = q.where(Application.candidate_id == candidate_id)
    if kind is not None:
        q = q.where(Application.kind == kind)
    if status is not None:
        q = q.where(Application.status.in_([status] if isinstance(status, str) else list(status)))
    q = q.order_by(func.coalesce(Application.submitted_at, Application.created_at).desc(), Application.id.desc())
    if limit:
        q = q.limit(limit)
    async with db.session() as s:
        return [_to_data(r) for r in (await s.execute(q)).scalars()]


# --- Drafts and submission -------------------------------------------------------------------------


def _event(s: AsyncSession, row: Application, action: str, before: str | None, after: str, actor: str,
           at: dt.datetime, reason: str | None = None) -> None:
    # Added by id, not through row.events: that collection is never loaded on these paths.
    s.add(ApplicationEvent(application_id=row.id, action=action, from_status=before, to_status=after,
                           actor=actor[:64], at=at, reason=reason))


async def open_draft(db: Database, *, kind: str, candidate_id: int, openid: str, admission_number: str,
                     major_code: str | None = None, now: dt.datetime | None = None) -> ApplicationData:
    """The candidate's draft of this business: the one left earlier (resumed as it was), or a new one.

    Only while a window of the business is open (WindowClosed says when it opens next).
    """
    if kind not in APPLICATION_KINDS:
        raise ValueError(f"unknown application kind {kind!r}")
    now = now or utcnow()
    existing = await find_draft(db, candidate_id, kind)
    if existing is not None:
        async with db.session() as s:
            await _require_open(s, kind, now)
        return existing
    try:
        async with db.session() as s, s.begin():
            window = await _require_open(s, kind, now)
            owner = await s.scalar(
                select(AdmissionNumber.candidate_id).where(AdmissionNumber.number == admission_number))
            if owner != candidate_id:
                raise ApplicationError("准考证号不属于该考生。")
            row = Application(kind=kind, status="draft", candidate_id=candidate_id, openid=openid,
                              admission_number=admission_number, major_code=major_code, window_id=window.id,
                              created_at=now, updated_at=now, decisions=0)
            s.add(row)
            await s.flush()
            _event(s, row, "create", None, "draft", "candidate", now)
            app_id = row.id
    except IntegrityError:
        # Another message of the same candidate created the draft a moment ago (one draft per business).
        again = await find_draft(db, candidate_id, kind)
        if again is None:
            raise
        return again
    return await load_application(db, app_id)


async def _check_references(s: AsyncSession, data: ApplicationData) -> None:
    """Codes and ids that must exist, checked up front: a clear message instead of a foreign-key error."""
    codes = {i.course_code for i in data.items}
    if codes:
        known = set((await s.execute(select(Course.code).where(Course.code.in_(codes)))).scalars())
        if codes - known:
            raise ApplicationError(f"课程代码 {'、'.join(sorted(codes - known))} 不存在。")
    types = {e.type_code for i in data.items for e in i.evidences}
    if types:
        known = {t.code for t in await _evidence_types(s)}
        if types - known:
            raise ApplicationError("请从列表中选择凭证类型。")
    photos = {p for i in data.items for e in i.evidences for p in e.photo_ids}
    photos |= set(details_photo_ids(data.kind, data.details))
    if photos:
        known = set((await s.execute(select(Photo.id).where(Photo.id.in_(photos)))).scalars())
        if photos - known:
            raise ApplicationError("有照片没有保存成功，请重新发送。")
    for i in data.items:
        if i.entry_kind is not None and i.entry_kind not in ENTRY_KINDS:
            raise ApplicationError("请选择补登类型（理论与实践、免考或转入）。")
        if i.score is not None and not (0 <= i.score <= 100):
            raise ApplicationError("成绩应在0到100之间。")
        if i.grade is not None and i.grade not in GRADES:
            raise ApplicationError("成绩应为数字，或“合格”“通过”。")
        for ym in [i.passed_month] + [e.obtained_month for e in i.evidences]:
            if ym is not None and not _YM.match(ym):
                raise ApplicationError("时间格式不对，应为年月，如 2018年6月。")


async def _replace_content(s: AsyncSession, row: Application, data: ApplicationData, now: dt.datetime) -> None:
    """Make the stored items, evidences and photo links those of `data` (children are replaced)."""
    row.items.clear()
    await s.flush()  # the old items go before the new ones meet the (application, course) key
    for pos, i in enumerate(data.items):
        item = ApplicationItem(
            position=pos, course_code=i.course_code, entry_kind=i.entry_kind, passed_month=i.passed_month,
            score=i.score, grade=i.grade, note=i.note or None, from_province=i.from_province or None,
            from_admission_number=i.from_admission_number or None,
        )
        for epos, e in enumerate(i.evidences):
            ev = Evidence(position=epos, type_code=e.type_code, number=(e.number or "").strip() or None,
                          obtained_month=e.obtained_month, province=e.province or None, note=e.note or None)
            # The same photo twice on one evidence is a repeated upload: kept once.
            ev.photo_links = [EvidencePhoto(photo_id=p, position=n) for n, p in enumerate(dict.fromkeys(e.photo_ids))]
            item.evidences.append(ev)
        row.items.append(item)
    if data.major_code and data.major_code != row.major_code:
        # The 准考证号 the major is registered under (论文/学位 offer majors of every 准考证号, not
        # only the active one): the office reads one 准考证号 and its major, never a mismatch.
        held = await s.scalar(select(CandidateMajor.admission_number).where(
            CandidateMajor.candidate_id == row.candidate_id, CandidateMajor.major_code == data.major_code))
        if held:
            row.admission_number = held
    row.major_code = data.major_code
    row.details = dict(data.details) or None
    await _link_detail_photos(s, row, data)
    row.updated_at = now
    # Always an UPDATE of the row, so its version moves even when only children changed.
    flag_modified(row, "updated_at")


def details_photo_ids(kind: str, details: Mapping[str, Any] | None) -> list[int]:
    """The photos an application's form (`details`) holds rather than a course's evidence:
    申请学位's materials, 申请毕业's prior education. The one place that knows which kinds have them."""
    if not details:
        return []
    if kind == "degree":
        return degree.photo_ids_of(details)
    if kind == "graduation":
        return graduation.details_photo_ids(kind, details)
    return []


async def _link_detail_photos(s: AsyncSession, row: Application, data: ApplicationData) -> None:
    """The photos of the form's details as application_photos rows (the console serves photos by them)."""
    wanted = set(details_photo_ids(data.kind, data.details))
    with s.no_autoflush:  # the row's changes are flushed by _flush, which maps its integrity errors
        have = set((await s.execute(select(ApplicationPhoto.photo_id).where(
            ApplicationPhoto.application_id == row.id))).scalars())
    if have - wanted:
        await s.execute(ApplicationPhoto.__table__.delete().where(
            ApplicationPhoto.application_id == row.id, ApplicationPhoto.photo_id.in_(have - wanted)))
    s.add_all(ApplicationPhoto(application_id=row.id, photo_id=p) for p in sorted(wanted - have))


async def _row_for_candidate(s: AsyncSession, data: ApplicationData) -> Application:
    if data.id is None:
        raise ValueError("the application has no id: start it with open_draft")
    row = await _load_row(s, data.id, lock=True)
    if row.candidate_id != data.candidate_id:
        raise ApplicationNotFound(f"申请 #{data.id} 不存在。")
    if row.version != data.version:
        raise StaleApplication(STALE)
    return row


async def _flush(s: AsyncSession) -> None:
    try:
        await s.flush()
    except StaleDataError:
        raise StaleApplication(STALE) from None
    except IntegrityError as e:
        if "one_open_per_major" in str(e) or "applications.major_code" in str(e):
            # 论文, 毕业, 学位: one open application per major (uq_applications_one_open_per_major).
            raise ApplicationError("该专业已有一份申请（草稿、待审核或审核通过），不能重复申请。") from None
        raise


async def save_draft(db: Database, data: ApplicationData, *, now: dt.datetime | None = None) -> ApplicationData:
    """Keep what the candidate has entered so far (a draft, or a 未通过 one being reworked).

    Nothing is checked beyond what the database needs; `submit` checks everything. Returns the
    saved copy with its new version.
    """
    now = now or utcnow()
    async with db.session() as s, s.begin():
        row = await _row_for_candidate(s, data)
        next_status(row.status, "save")
        await _require_open(s, row.kind, now)
        await _check_references(s, data)
        await _replace_content(s, row, data, now)
        await _flush(s)
        app_id = row.id
    return await load_application(db, app_id)


async def submission_problems(db: Database, data: ApplicationData, *, now: dt.datetime | None = None) -> list[str]:
    """What stops `data` from being submitted now (empty: nothing), for a dialog's summary step."""
    now = now or utcnow()
    async with db.session() as s:
        return await _problems(s, data, now)


async def _problems(s: AsyncSession, data: ApplicationData, now: dt.datetime) -> list[str]:
    if data.kind == "thesis":
        born = identifiers.id_birth_date(await s.scalar(select(Candidate.id_number).where(
            Candidate.id == data.candidate_id)) or "")
        return await thesis.problems(s, data, now, born=month_of(born) if born else None)
    if data.kind == "transfer_out":
        choices = await transfers.choices_for(s, data.candidate_id, exclude_application_id=data.id, now=now)
        return transfers.transfer_out_problems([i.course_code for i in data.items],
                                               transfers.TransferOutDetails.from_dict(data.details), choices)
    if data.kind == "degree":
        return await degree.problems(s, data, today_in_shanghai(now))
    if data.kind == "graduation":
        return await graduation.submission_problems(s, data, now)
    codes = {i.course_code for i in data.items}
    names = dict((await s.execute(select(Course.code, Course.name).where(Course.code.in_(codes)))).all()) if codes else {}
    types = {t.code: t for t in await _evidence_types(s)}
    states = await course_states(s, data.candidate_id, exclude_application_id=data.id)
    majors = set((await s.execute(
        select(CandidateMajor.major_code).where(CandidateMajor.candidate_id == data.candidate_id)
    )).scalars())
    plan = None
    if data.kind == "exemption" and data.major_code:
        plan = {c.code: c for c in await _plan(s, data.major_code)}
    return application_problems(data, course_names=names, types=types, states=states, plan=plan, majors=majors,
                                today=today_in_shanghai(now))


async def submit(db: Database, data: ApplicationData, *, now: dt.datetime | None = None) -> ApplicationData:
    """Save `data` and submit it: 提交, 修改后重新提交 while 待审核, or 重新提交 after 未通过.

    Raises TransitionRefused, WindowClosed, StaleApplication, or SubmissionRefused listing every
    problem; then nothing is changed.
    """
    now = now or utcnow()
    async with db.session() as s, s.begin():
        row = await _row_for_candidate(s, data)
        before = row.status
        after = next_status(before, "submit")
        window = await _require_open(s, row.kind, now)
        await _check_references(s, data)
        problems = await _problems(s, data, now)
        if problems:
            raise SubmissionRefused(problems)
        await _replace_content(s, row, data, now)
        row.status = after
        row.submitted_at = now
        row.window_id = window.id
        # A new submission awaits a new decision; the old one stays in the events.
        row.decided_at = row.decided_by = row.reason = None
        _event(s, row, "submit", before, after, "candidate", now)
        await _flush(s)
        app_id = row.id
    return await load_application(db, app_id)


async def discard_draft(db: Database, application_id: int, *, candidate_id: int) -> None:
    """Throw away a draft (the candidate starts over). Only drafts can be thrown away."""
    async with db.session() as s, s.begin():
        row = await _load_row(s, application_id, lock=True)
        if row.candidate_id != candidate_id:
            raise ApplicationNotFound(f"申请 #{application_id} 不存在。")
        if row.status != "draft":
            raise TransitionRefused("只有草稿可以删除，已提交的申请不能删除。")
        await s.delete(row)


# --- Decisions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    application: ApplicationData
    pushes: int  # outbox rows written for the candidate (0: no bound, subscribed WeChat user)
    score_records: int  # score records written (approval only)


def _month_start(ym: str | None) -> dt.date | None:
    return dt.date(int(ym[:4]), int(ym[5:7]), 1) if ym else None


def score_records_of(data: ApplicationData, decided_on: dt.date,
                     type_names: Mapping[str, str]) -> list[dict[str, Any]]:
    """The score records an approved application becomes (values for score_records rows).

    申请免考: each course exempted (kind 'exemption', passed on the day of approval).
    成绩补登: 理论与实践 -> 'backfill' with its score; 免考 -> 'exemption'; 转入 -> 'transfer';
    each passed in the month registered.
    """
    rows = []
    for i in data.items:
        evidence = "、".join(dict.fromkeys(type_names.get(e.type_code, e.type_code) for e in i.evidences))
        base = {"candidate_id": data.candidate_id, "admission_number": data.admission_number,
                "course_code": i.course_code, "sitting_code": "", "score": None, "grade": None, "passed": True}
        if data.kind == "exemption":
            rows.append({**base, "kind": "exemption", "passed_on": decided_on, "note": f"免考：{evidence}"[:255]})
        elif data.kind == "backfill" and i.entry_kind == "theory":
            rows.append({**base, "kind": "backfill", "score": i.score, "grade": i.grade,
                         "passed": score_passes(i.score, i.grade), "passed_on": _month_start(i.passed_month),
                         "note": "成绩补登"})
        elif data.kind == "backfill" and i.entry_kind == "exemption":
            rows.append({**base, "kind": "exemption", "passed_on": _month_start(i.passed_month),
                         "note": f"成绩补登（免考）：{evidence}"[:255]})
        elif data.kind == "backfill" and i.entry_kind == "transfer":
            rows.append({**base, "kind": "transfer", "passed_on": _month_start(i.passed_month),
                         "note": f"成绩补登（自{i.from_province}转入）"[:255]})
    return rows


async def _write_scores(s: AsyncSession, db: Database, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    # A record that already exists (imported meanwhile) stays as it is.
    stmt = db.insert(ScoreRecord.__table__).on_conflict_do_nothing(
        index_elements=["admission_number", "course_code", "sitting_code", "kind"]
    ).returning(ScoreRecord.__table__.c.id)
    return len((await s.execute(stmt, rows)).all())


async def _decide(db: Database, application_id: int, action: str, *, by: str, reason: str | None,
                  now: dt.datetime | None, version: int | None, advisor: thesis.Advisor | None = None) -> Decision:
    now = now or utcnow()
    by = (by or "").strip()
    if not by:
        raise ApplicationError("请写明审核人（--by）。")
    if len(by) > 64:
        raise ApplicationError("审核人名称最多64字。")
    async with db.session() as s, s.begin():
        row = await _load_row(s, application_id, lock=True)
        if version is not None and row.version != version:
            raise StaleApplication(f"申请 #{application_id} 在你查看后有了变化（版本 {version} -> {row.version}），"
                                   "请重新查看后再审核。")
        if advisor is not None and row.kind != "thesis":
            raise ApplicationError("只有论文申请的审核通过需要指导教师。")
        before = row.status
        after = next_status(before, action)
        row.status = after
        row.decided_at = now
        row.decided_by = by
        row.reason = reason
        row.decisions += 1
        row.updated_at = now
        _event(s, row, action, before, after, by, now, reason)
        written = 0
        if action == "approve":
            names = {t.code: t.name for t in await _evidence_types(s)}
            written = await _write_scores(s, db, score_records_of(_to_data(row), today_in_shanghai(now), names))
            if written:
                # Cached plans and score lists (storage.queries) must see the new records at once.
                await queries.mark_changed(s, reference=False, results=True)
        detail = hint = None
        if action == "approve" and row.kind == "transfer_out":
            # The 转出编号 the destination asks for, kept with the application and pushed.
            reference = transfers.reference_number(row.id, now)
            row.details = {**(row.details or {}), "reference": reference}
            names = dict((await s.execute(select(Course.code, Course.name).where(
                Course.code.in_([i.course_code for i in row.items])))).all())
            detail = transfers.approval_detail(reference, [(i.course_code, names.get(i.course_code, i.course_code))
                                                           for i in row.items])
            hint = f"转出编号{reference}"  # a template has no room for more: the number first
        if action == "approve" and row.kind == "thesis":
            # 预审通过 with the 指导教师 (or "待分配" until an advisor file or a staff member names one).
            detail, hint = await thesis.approve_thesis(s, row, advisor, by=by, now=now)
        elif action == "approve" and row.kind == "degree":
            detail = degree.APPROVED_DETAIL
        elif action == "approve" and row.kind == "graduation":
            # The 毕业审定费 order, in this transaction; the push says when payment opens.
            detail, hint = await graduation.on_approval(s, row, now)
        await _flush(s)
        pushes = await outbox.review_outcome(
            s, candidate_id=row.candidate_id, business=outbox.application_name(row.kind),
            approved=action == "approve", decided_at=now, application_ref=f"app{row.id}",
            decision_no=row.decisions, keyword=outbox.KIND_KEYWORDS.get(row.kind), detail=detail, hint=hint,
        )
        app_id = row.id
    return Decision(await load_application(db, app_id), pushes, written)


async def approve(db: Database, application_id: int, *, by: str, now: dt.datetime | None = None,
                  version: int | None = None, advisor: thesis.Advisor | None = None) -> Decision:
    """审核通过: record who and when, write the score records and the candidate's push, together.

    `version`: refuse if the application changed since the reviewer looked at it. `advisor`:
    the 指导教师 of a thesis application (storage.thesis), pushed with the decision.
    """
    return await _decide(db, application_id, "approve", by=by, reason=None, now=now, version=version,
                         advisor=advisor)


async def reject(db: Database, application_id: int, *, reason: str, by: str, now: dt.datetime | None = None,
                 version: int | None = None) -> Decision:
    """未通过 with the reason the candidate will read; they may 重新提交 while the window is open."""
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("请写明不通过的原因（考生会看到）。")
    if len(reason) > MAX_REASON:
        raise ApplicationError(f"原因最多{MAX_REASON}字。")
    return await _decide(db, application_id, "reject", by=by, reason=reason, now=now, version=version)


async def application_events(db: Database, application_id: int) -> list[ApplicationEvent]:
    async with db.session() as s:
        return list((await s.execute(
            select(ApplicationEvent).where(ApplicationEvent.application_id == application_id)
            .order_by(ApplicationEvent.id)
        )).scalars())


__all__ = [
    "ACTIONS", "TRANSITIONS", "ApplicationData", "ApplicationError", "ApplicationNotFound", "CourseChoice",
    "Decision", "EvidenceData", "EvidenceTypeInfo", "ItemData", "StaleApplication", "SubmissionRefused",
    "TransitionRefused", "WindowCheck", "WindowClosed", "add_evidence_type", "application_problems", "approve",
    "backfill_date_problem", "business_window", "check_window", "companion_problem", "discard_draft",
    "evidence_problems", "evidence_types", "exemption_choices", "exemption_courses", "find_courses", "find_draft",
    "list_applications", "load_application", "next_status", "open_draft", "parse_score", "photo_in_application",
    "reject", "save_draft", "score_records_of", "submission_problems", "submit", "window_closed_text",
]


# --- What the application dialogs read (dialogs/ run no SQL of their own) --------------------------

# 在线验证码 of an 教育部学历证书电子注册备案表: 12 digits (凭证样例, dialogs/queries.py SAMPLES).
_CHSI_CODE = re.compile(r"^\d{12}$")
# A 编号 as printed: letters, digits, Chinese characters and the usual separators, with a digit.
_NUMBER = re.compile(r"^[0-9A-Za-z\u4e00-\u9fff\-_/.()（）·]{2,64}$")
_LOOKS_LIKE_DATE = re.compile(r"^\d{4}\s*(年|[-/.])\s*\d{1,2}\s*(月|[-/.]\s*\d{1,2}\s*[日号]?)?$|^(19|20)\d{2}(0[1-9]|1[0-2])$")
EARLIEST_AGE = 6  # before school age a result or certificate is a typo (the youngest candidates sit at primary school)


def evidence_number_problem(type_code: str, number: str, type_name: str = "") -> str | None:
    """Whether `number` can be the 编号 of an evidence of this type: a date typed at the wrong
    step, an emoji or a word without a digit is not; a 备案表's 在线验证码 has its fixed form."""
    s = (number or "").replace(" ", "")
    if _LOOKS_LIKE_DATE.match(s):
        return "这是一个时间，不是凭证编号。请填写证书、成绩单或报告上印的编号。"
    if type_code == "chsi_record":
        if not _CHSI_CODE.match(s):
            return "电子注册备案表的在线验证码是12位数字（见备案表右下方），请核对后重新输入。"
        return None
    if not _NUMBER.match(s) or not re.search(r"\d", s):
        return f"{type_name or '凭证'}的编号由数字和字母组成（可以有“-”），请照证书上印的填写。"
    return None


def evidence_month_problem(month: str, *, born: str | None = None, not_after: str | None = None,
                           not_after_label: str = "") -> str | None:
    """A 获取凭证时间 / 考试通过时间 that cannot be: before the candidate was EARLIEST_AGE, or
    after the date it led to (an exemption is granted after its evidence was obtained)."""
    if born and month < f"{int(born[:4]) + EARLIEST_AGE:04d}{born[4:]}":
        return f"这个时间您还不满{EARLIEST_AGE}周岁（按证件号码中的出生日期），请核对年份。"
    if not_after and month > not_after:
        return f"取得凭证的时间不能晚于{not_after_label or '办理时间'}（{month_label(not_after)}），请核对。"
    return None


async def birth_month(db: Database, candidate_id: int | None) -> str | None:
    """The candidate's birth month from the 证件号码 ('YYYY-MM'), when it is a resident ID."""
    if candidate_id is None:
        return None
    async with db.session() as s:
        id_number = await s.scalar(select(Candidate.id_number).where(Candidate.id == candidate_id))
    born = identifiers.id_birth_date(id_number or "")
    return month_of(born) if born else None


async def first_admission_number(db: Database, candidate_id: int) -> str | None:
    """The 准考证号 an application is filed under when none is active: the candidate's first."""
    async with db.session() as s:
        return await s.scalar(select(AdmissionNumber.number).where(AdmissionNumber.candidate_id == candidate_id)
                              .order_by(AdmissionNumber.registered_on, AdmissionNumber.number).limit(1))


async def course_names(db: Database, codes: Iterable[str]) -> dict[str, str]:
    codes = set(codes)
    if not codes:
        return {}
    async with db.session() as s:
        return dict((await s.execute(select(Course.code, Course.name).where(Course.code.in_(codes)))).all())


async def plan_credits(db: Database, candidate_id: int, codes: Iterable[str]) -> dict[str, int]:
    """Credits of courses in the candidate's plans (a course in several plans: the largest)."""
    codes = set(codes)
    if not codes:
        return {}
    async with db.session() as s:
        rows = (await s.execute(
            select(PlanCourse.course_code, PlanCourse.credits)
            .join(CandidateMajor, CandidateMajor.major_code == PlanCourse.major_code)
            .where(CandidateMajor.candidate_id == candidate_id, PlanCourse.course_code.in_(codes))
        )).all()
    out: dict[str, int] = {}
    for code, credits in rows:
        out[code] = max(out.get(code, 0), credits or 0)
    return out


async def course_state_of(db: Database, candidate_id: int, code: str, *,
                          exclude_application_id: int | None = None) -> str | None:
    """Why a course needs no registration (passed, exempted, transferred, pending), or None."""
    async with db.session() as s:
        states = await course_states(s, candidate_id, exclude_application_id=exclude_application_id)
    return COURSE_STATES[states[code]] if code in states else None
