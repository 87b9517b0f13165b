"""本市转出: the form (TransferOutDetails), which results may leave (the office's rules), what
stops a submission, and the 转出编号 of an approval."""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Database
from storage.models import Course, KeyValue, ScoreRecord, utcnow
from storage.models_applications import Application, ApplicationItem
from storage.transfers.common import PROVINCES, SHANGHAI, SHANGHAI_PROVINCE, target_admission_number

# --- 本市转出: the form ---------------------------------------------------------------------------------

TRANSFER_OUT_LEVELS = ("专科", "本科")
REASON_MAX = 200
MAJOR_MAX = 64

# The reasons the platform lists (转出原因), and 其他 for anything else.
TRANSFER_OUT_REASONS = ("工作调动", "户籍迁移", "居住地变更", "随迁家属", "升学或就读", "其他")


@dataclass
class TransferOutDetails:
    """本市转出's form (applications.details): where the results go and how to reach the candidate."""

    province: str = ""  # 转入地
    admission_number: str = ""  # 转入准考证号
    level: str = ""  # 转入层次: 专科 / 本科
    major: str = ""  # 转入专业 (as the destination names it)
    reason: str = ""  # 转出原因
    phone: str = ""  # 联系电话
    reference: str = ""  # 转出编号, given on approval

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v}

    @classmethod
    def from_dict(cls, d: Optional[Mapping[str, Any]]) -> TransferOutDetails:
        d = d or {}
        return cls(**{k: str(d.get(k) or "") for k in cls.__dataclass_fields__})


def details_problems(d: TransferOutDetails) -> list[str]:
    """What the form lacks (one line each)."""
    out = []
    if not d.province:
        out.append("请选择转入地。")
    elif d.province not in PROVINCES or d.province == SHANGHAI_PROVINCE:
        out.append("转入地应为上海以外的省份。")
    try:
        target_admission_number(d.admission_number)
    except ValueError as exc:
        out.append(str(exc) if d.admission_number else "请填写转入准考证号。")
    if d.level not in TRANSFER_OUT_LEVELS:
        out.append("请选择转入层次（专科或本科）。")
    if not d.major.strip():
        out.append("请填写转入专业。")
    elif len(d.major) > MAJOR_MAX:
        out.append(f"转入专业最多{MAJOR_MAX}字。")
    if not d.reason.strip():
        out.append("请填写转出原因。")
    elif len(d.reason) > REASON_MAX:
        out.append(f"转出原因最多{REASON_MAX}字。")
    if not d.phone:
        out.append("请填写联系电话。")
    return out


# --- 本市转出: which results may leave ------------------------------------------------------------------

RULES_KEY = "transfer_out.rules"


@dataclass(frozen=True)
class TransferOutRules:
    """Which passed results may be transferred out, as the office sets it (key_values
    'transfer_out.rules', `zikao-bot transfer rules`). Each exclusion carries the reason the
    candidate reads."""

    # By the kind of the result (exam, backfill, exemption, transfer).
    exclude_kinds: Mapping[str, str] = field(default_factory=lambda: {
        "exemption": "免考课程不能转出",
        "transfer": "外省转入的成绩不能再转出",
    })
    # By the kind of the course (理论, 实践, 论文).
    exclude_course_kinds: Mapping[str, str] = field(default_factory=lambda: {
        "论文": "毕业论文（设计）成绩不能转出",
    })
    # By course code, e.g. a course only Shanghai examines.
    exclude_courses: Mapping[str, str] = field(default_factory=dict)
    # Results passed before this month ('YYYY-MM') cannot leave (None: no limit).
    earliest_month: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return {"exclude_kinds": dict(self.exclude_kinds), "exclude_course_kinds": dict(self.exclude_course_kinds),
                "exclude_courses": dict(self.exclude_courses), "earliest_month": self.earliest_month}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TransferOutRules:
        """Rules from JSON; ValueError (in English, for the staff command) when malformed."""
        known = {"exclude_kinds", "exclude_course_kinds", "exclude_courses", "earliest_month"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown keys: {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
        base = cls()
        kw: dict[str, Any] = {}
        for k in ("exclude_kinds", "exclude_course_kinds", "exclude_courses"):
            if k in d:
                v = d[k]
                if not isinstance(v, Mapping) or not all(isinstance(a, str) and isinstance(b, str) and b.strip()
                                                         for a, b in v.items()):
                    raise ValueError(f"{k} must map codes to the reason candidates read")
                kw[k] = dict(v)
        if "exclude_kinds" in kw and set(kw["exclude_kinds"]) - {"exam", "backfill", "exemption", "transfer"}:
            raise ValueError("exclude_kinds: keys are exam, backfill, exemption, transfer")
        if "exclude_course_kinds" in kw and set(kw["exclude_course_kinds"]) - {"理论", "实践", "论文"}:
            raise ValueError("exclude_course_kinds: keys are 理论, 实践, 论文")
        if "exclude_courses" in kw and not all(re.fullmatch(r"\d{5}", c) for c in kw["exclude_courses"]):
            raise ValueError("exclude_courses: keys are 5-digit course codes")
        month = d.get("earliest_month", base.earliest_month)
        if month is not None and not (isinstance(month, str) and re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month)):
            raise ValueError("earliest_month must be 'YYYY-MM' or null")
        return cls(**kw, earliest_month=month)


@dataclass(frozen=True)
class ResultInfo:
    """One of the candidate's results, as the rule sees it."""

    course_code: str
    course_name: str
    course_kind: str  # 理论 / 实践 / 论文
    kind: str  # exam / backfill / exemption / transfer
    passed: bool
    score: Optional[Decimal] = None
    grade: Optional[str] = None
    passed_on: Optional[dt.date] = None
    admission_number: str = ""


@dataclass(frozen=True)
class TransferChoice:
    result: ResultInfo
    eligible: bool
    why_not: Optional[str] = None

    @property
    def course_code(self) -> str:
        return self.result.course_code


def transfer_out_choices(results: Iterable[ResultInfo], rules: TransferOutRules, *,
                         pending: Iterable[str] = (), transferred: Iterable[str] = ()) -> list[TransferChoice]:
    """The candidate's passed results, one per course, each transferable or not and why.

    `pending`: courses in another 本市转出 application awaiting review; `transferred`: courses
    of an approved one. A course passed several ways is offered by its earliest passing result.
    """
    pending, transferred = set(pending), set(transferred)
    best: dict[str, ResultInfo] = {}
    for r in results:
        if not r.passed:
            continue
        first = best.get(r.course_code)
        if first is None or (r.passed_on or dt.date.max, r.kind != "exam") < (first.passed_on or dt.date.max,
                                                                               first.kind != "exam"):
            best[r.course_code] = r
    out = []
    for r in sorted(best.values(), key=lambda r: (r.passed_on or dt.date.min, r.course_code), reverse=True):
        why = None
        if r.course_code in transferred:
            why = "已办理转出"
        elif r.course_code in pending:
            why = "已在另一份转出申请中，等待审核"
        elif r.kind in rules.exclude_kinds:
            why = rules.exclude_kinds[r.kind]
        elif r.course_kind in rules.exclude_course_kinds:
            why = rules.exclude_course_kinds[r.course_kind]
        elif r.course_code in rules.exclude_courses:
            why = rules.exclude_courses[r.course_code]
        elif rules.earliest_month and r.passed_on and f"{r.passed_on:%Y-%m}" < rules.earliest_month:
            why = f"{rules.earliest_month[:4]}年{int(rules.earliest_month[5:])}月以前通过的成绩不能转出"
        out.append(TransferChoice(r, why is None, why))
    return out


def transfer_out_problems(course_codes: Sequence[str], details: TransferOutDetails,
                          choices: Sequence[TransferChoice]) -> list[str]:
    """Everything that stops a 本市转出 application from being submitted (empty: nothing)."""
    out = details_problems(details)
    by_code = {c.course_code: c for c in choices}
    if not course_codes:
        out.append("请至少勾选一门要转出的成绩。")
    seen: set[str] = set()
    for code in course_codes:
        c = by_code.get(code)
        if code in seen:
            out.append(f"{code}：同一门课程只能勾选一次。")
        seen.add(code)
        if c is None:
            out.append(f"{code}：没有这门课程的合格成绩，不能转出。")
        elif not c.eligible:
            out.append(f"{c.result.course_name}：{c.why_not}。")
    return list(dict.fromkeys(out))


def reference_number(application_id: int, decided_at: dt.datetime) -> str:
    """转出编号 of an approved application: 'ZC' + year + 6-digit application number."""
    return f"ZC{decided_at.astimezone(SHANGHAI).year}{application_id:06d}"


def approval_detail(reference: str, courses: Sequence[tuple[str, str]]) -> str:
    """The lines an approval push adds: the reference, the courses (no scores), what to do next."""
    names = "、".join(f"{n}" for _, n in courses[:8]) + (f"等{len(courses)}门" if len(courses) > 8 else "")
    return (f"转出编号：{reference}\n转出课程：{names}（共{len(courses)}门）\n"
            "请凭转出编号到转入省自考办办理转入手续。")


async def load_rules(s: AsyncSession) -> TransferOutRules:
    row = await s.get(KeyValue, RULES_KEY)
    if row is None or not row.value:
        return TransferOutRules()
    try:
        return TransferOutRules.from_dict(row.value)
    except ValueError:
        # Stored by an older version: the shipped rules rather than no 本市转出 at all.
        return TransferOutRules()


async def transfer_out_rules(db: Database) -> TransferOutRules:
    async with db.session() as s:
        return await load_rules(s)


async def save_rules(db: Database, rules: TransferOutRules) -> None:
    value = rules.to_dict()
    now = utcnow()
    async with db.session() as s, s.begin():
        ins = db.insert(KeyValue.__table__).values(key=RULES_KEY, value=value, updated_at=now)
        await s.execute(ins.on_conflict_do_update(index_elements=["key"], set_={"value": value, "updated_at": now}))


async def candidate_results(s: AsyncSession, candidate_id: int, now: dt.datetime) -> list[ResultInfo]:
    """The candidate's results with their course kinds; exam results of a sitting not yet
    released are left out, as everywhere."""
    from storage.models import Sitting

    res = await s.execute(
        select(ScoreRecord.course_code, Course.name, Course.kind, ScoreRecord.kind, ScoreRecord.passed,
               ScoreRecord.score, ScoreRecord.grade, ScoreRecord.passed_on, ScoreRecord.admission_number,
               Sitting.scores_released_at)
        .join(Course, Course.code == ScoreRecord.course_code)
        .outerjoin(Sitting, Sitting.code == ScoreRecord.sitting_code)
        .where(ScoreRecord.candidate_id == candidate_id)
    )
    return [ResultInfo(code, name, ckind, kind, bool(passed), score, grade, on, number)
            for code, name, ckind, kind, passed, score, grade, on, number, released in res
            if not (kind == "exam" and released is not None and released > now)]


async def choices_for(s: AsyncSession, candidate_id: int, *, exclude_application_id: Optional[int] = None,
                      now: Optional[dt.datetime] = None) -> list[TransferChoice]:
    now = now or utcnow()
    rules = await load_rules(s)
    items = select(ApplicationItem.course_code, Application.status).join(Application).where(
        Application.candidate_id == candidate_id, Application.kind == "transfer_out",
        Application.status.in_(("submitted", "approved")),
    )
    if exclude_application_id is not None:
        items = items.where(Application.id != exclude_application_id)
    pending, transferred = set(), set()
    for code, status in await s.execute(items):
        (transferred if status == "approved" else pending).add(code)
    return transfer_out_choices(await candidate_results(s, candidate_id, now), rules, pending=pending,
                                transferred=transferred)


async def transfer_out_results(db: Database, candidate_id: int, *, exclude_application_id: Optional[int] = None,
                               now: Optional[dt.datetime] = None) -> list[TransferChoice]:
    """The candidate's passed results for 本市转出: each transferable or not, and why not."""
    async with db.session() as s:
        return await choices_for(s, candidate_id, exclude_application_id=exclude_application_id, now=now)


def result_text(r: ResultInfo) -> str:
    """'78分' / '合格' / '免考' / '转入': how a result reads in a list."""
    if r.kind == "exemption":
        return "免考"
    if r.score is not None:
        return f"{r.score.normalize():f}分" if r.score == r.score.to_integral() else f"{r.score}分"
    return r.grade or ("转入" if r.kind == "transfer" else "-")


__all__ = ["MAJOR_MAX", "REASON_MAX", "RULES_KEY", "TRANSFER_OUT_LEVELS", "TRANSFER_OUT_REASONS", "ResultInfo",
           "TransferChoice", "TransferOutDetails", "TransferOutRules", "approval_detail", "candidate_results",
           "choices_for", "details_problems", "load_rules", "reference_number", "result_text", "save_rules",
           "transfer_out_choices", "transfer_out_problems", "transfer_out_results", "transfer_out_rules"]
