"""本科论文与专科毕设 (FLOWS.md item 19): what a thesis application holds, what stops its
submission, its 预审结果 and the 指导教师 the office assigns (at approval, or later by file).

A thesis application (storage.models_applications.Application, kind 'thesis') is one per major
(the partial unique index there). It holds:
- `major_code`: the major whose thesis it is;
- one item: the major's thesis course (kind 论文 in its plan) with, for 本科 / 专升本 majors, the
  前置学历毕业证书 as its evidence (编号, year-month, 省份, 备注, photos); 专科 majors skip it
  (storage.graduation_rules.needs_prior_education);
- `details` (ThesisDetails): the 加考选项 chosen where the major defines them, that the score
  list was confirmed, and — once decided — the 指导教师 and how to contact them.

审核通过 is the 预审 passed; 未通过 carries the reason (the application's `reason`). The
advisor is pushed in the transaction that records it (storage.outbox).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Mapping, Optional, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import graduation_rules, outbox
from storage.db import Database
from storage.models import AdmissionNumber, CandidateMajor, Course, Major, PlanCourse
from storage.models_applications import Application

KIND = "thesis"
KEYWORD = outbox.KIND_KEYWORDS[KIND]  # "论文"
BUSINESS = outbox.application_name(KIND)  # "本科论文与专科毕设申请"
THESIS_COURSE_KIND = "论文"
DIPLOMA = graduation_rules.DIPLOMA  # evidence type of the 前置学历毕业证书
ADVISOR_MAX = 32
CONTACT_MAX = 64


class AdvisorError(ValueError):
    """An advisor that cannot be recorded; the message is short Chinese for the staff member."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class ThesisDetails:
    """`Application.details` of a thesis application."""

    extra_option: str = ""  # the 加考选项 chosen ('' when the major defines none)
    scores_confirmed: bool = False  # the candidate checked the score list of the major
    advisor: str = ""  # 指导教师, set by the office
    advisor_contact: str = ""  # how to contact them (phone, e-mail, office hours ...)
    advisor_by: str = ""  # who recorded it
    advisor_at: str = ""  # when, ISO
    advisor_changes: int = 0  # numbers each advisor push (a changed advisor is pushed again)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", 0, False)}

    @classmethod
    def from_dict(cls, d: Optional[Mapping[str, Any]]) -> ThesisDetails:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in names})

    @property
    def has_advisor(self) -> bool:
        return bool(self.advisor)


@dataclass(frozen=True)
class Advisor:
    name: str
    contact: str


def advisor_of(name: Optional[str], contact: Optional[str]) -> Optional[Advisor]:
    """The advisor given with a decision (both or neither), checked; None when neither."""
    name, contact = (name or "").strip(), (contact or "").strip()
    if not name and not contact:
        return None
    if not name:
        raise AdvisorError("请写明指导教师姓名（--advisor）。")
    if not contact:
        raise AdvisorError("请写明指导教师的联系方式（--advisor-contact），考生要据此联系。")
    if len(name) > ADVISOR_MAX:
        raise AdvisorError(f"指导教师姓名最多{ADVISOR_MAX}字。")
    if len(contact) > CONTACT_MAX:
        raise AdvisorError(f"联系方式最多{CONTACT_MAX}字。")
    return Advisor(name, contact)


def advisor_lines(d: ThesisDetails) -> list[str]:
    """How the candidate reads the advisor (or that one will be assigned)."""
    if not d.has_advisor:
        return ["指导教师：待分配，分配后会通过微信通知您。"]
    return [f"指导教师：{d.advisor}", f"联系方式：{d.advisor_contact}"]


def approval_detail(d: ThesisDetails) -> str:
    """The lines an approval push adds."""
    return "\n".join(["预审结果：通过", *advisor_lines(d), "请尽快与指导教师联系，商定论文选题和写作安排。" if d.has_advisor else ""]).strip()


def record_advisor(details: Optional[Mapping[str, Any]], advisor: Advisor, *, by: str,
                   now: dt.datetime) -> tuple[dict[str, Any], bool]:
    """The details with this advisor, and whether anything changed (the same advisor again: no)."""
    d = ThesisDetails.from_dict(details)
    if d.advisor == advisor.name and d.advisor_contact == advisor.contact:
        return dict(details or {}), False
    d.advisor, d.advisor_contact, d.advisor_by = advisor.name, advisor.contact, by[:64]
    d.advisor_at = now.isoformat()
    d.advisor_changes += 1
    return {**dict(details or {}), **d.to_dict()}, True


async def approve_thesis(s: AsyncSession, row: Application, advisor: Optional[Advisor], *, by: str,
                         now: dt.datetime) -> tuple[str, str]:
    """预审通过 (inside the decision's transaction): the advisor kept; (push detail, template hint)."""
    if advisor is not None:
        row.details, _ = record_advisor(row.details, advisor, by=by, now=now)
    d = ThesisDetails.from_dict(row.details)
    hint = f"指导教师{d.advisor}，回复“{KEYWORD}”查看" if d.has_advisor else f"回复“{KEYWORD}”查看详情"
    return approval_detail(d), hint


async def push_advisor(s: AsyncSession, row: Application, now: dt.datetime) -> int:
    """Tell the candidate the advisor recorded on an approved application (a later assignment or
    a change); in the transaction that records it."""
    d = ThesisDetails.from_dict(row.details)
    text = "\n".join([f"您的{BUSINESS}（第{row.id}号）已分配指导教师：", *advisor_lines(d),
                      f"请尽快与指导教师联系。回复“{KEYWORD}”查看详情。"])
    data = {"thing1": "论文指导教师", "phrase2": "已分配", "time3": outbox.shanghai_time(now),
            "thing4": f"指导教师{d.advisor}，回复“{KEYWORD}”查看"}
    return await outbox.thesis_advisor(s, candidate_id=row.candidate_id, application_ref=f"app{row.id}",
                                       change_no=d.advisor_changes, text=text, data=data)


# --- Submission ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MajorFacts:
    """What the rules need of one major."""

    code: str
    name: str
    level: str
    rules: Mapping[str, Any]
    thesis_courses: tuple[str, ...]  # codes of the 论文 courses in its plan

    @property
    def extra_labels(self) -> list[str]:
        return [str(o.get("label", "")) for o in self.rules.get("extra_exam_options") or ()]

    @property
    def needs_diploma(self) -> bool:
        return graduation_rules.needs_prior_education(self.level)


def thesis_problems(data: Any, major: Optional[MajorFacts], *, enrolled: Iterable[str], current_month: str,
                    born: Optional[str] = None) -> list[str]:
    """Everything that stops a thesis application from being submitted, each a sentence."""
    out: list[str] = []
    if not data.major_code:
        return ["请选择专业。"]
    if major is None or data.major_code not in set(enrolled):
        return ["所选专业不是您报考的专业。"]
    if not major.thesis_courses:
        return [f"{major.name}的考试计划中没有论文（毕设）课程，不需要申请。"]
    d = ThesisDetails.from_dict(data.details)
    if not d.scores_confirmed:
        out.append("请核对成绩列表。")
    if major.extra_labels and d.extra_option not in major.extra_labels:
        out.append("请选择加考选项。")
    if not major.extra_labels and d.extra_option:
        out.append("该专业没有加考选项。")
    items = list(data.items)
    if len(items) != 1 or items[0].course_code not in major.thesis_courses:
        out.append("申请的论文课程与专业不符，请重新选择专业。")
        return out
    evidences = items[0].evidences
    if not major.needs_diploma:
        return out
    diploma = next((e for e in evidences if e.type_code == DIPLOMA), None)
    if diploma is None:
        out.append("请上传前置学历毕业证书。")
        return out
    if not (diploma.number or "").strip():
        out.append("请填写毕业证书编号。")
    month = diploma.obtained_month or ""
    if not month:
        out.append("请填写取得毕业证书的年月。")
    elif month > current_month:
        out.append("取得毕业证书的年月不能晚于本月。")
    elif born and month < born:
        out.append("取得毕业证书的年月早于出生年月，请核对。")
    if not (diploma.province or "").strip():
        out.append("请填写取得毕业证书的省份。")
    if not diploma.photo_ids:
        out.append("请上传毕业证书照片。")
    return out


async def major_facts(s: AsyncSession, codes: Iterable[str]) -> dict[str, MajorFacts]:
    codes = set(codes)
    if not codes:
        return {}
    majors = (await s.execute(select(Major.code, Major.name, Major.level, Major.graduation_rules)
                              .where(Major.code.in_(codes)))).all()
    theses: dict[str, list[str]] = {}
    for major, course in (await s.execute(
            select(PlanCourse.major_code, PlanCourse.course_code).join(Course, Course.code == PlanCourse.course_code)
            .where(PlanCourse.major_code.in_(codes), Course.kind == THESIS_COURSE_KIND)
            .order_by(PlanCourse.position, PlanCourse.course_code))).all():
        theses.setdefault(major, []).append(course)
    return {c: MajorFacts(c, n, lv, dict(r or {}), tuple(theses.get(c, ()))) for c, n, lv, r in majors}


async def majors_of(db: Database, codes: Iterable[str]) -> dict[str, MajorFacts]:
    """MajorFacts of these majors, for the dialogs (which read no SQL of their own)."""
    async with db.session() as s:
        return await major_facts(s, codes)


async def problems(s: AsyncSession, data: Any, now: dt.datetime, *, born: Optional[str] = None) -> list[str]:
    """thesis_problems with what it needs read in `s` (storage.applications calls it at submission)."""
    enrolled = set((await s.execute(select(CandidateMajor.major_code)
                                    .where(CandidateMajor.candidate_id == data.candidate_id))).scalars())
    facts = await major_facts(s, [data.major_code] if data.major_code else [])
    month = now.astimezone(outbox.SHANGHAI).strftime("%Y-%m")
    return thesis_problems(data, facts.get(data.major_code or ""), enrolled=enrolled, current_month=month, born=born)


async def assign_advisor(db: Database, application_id: int, advisor: Advisor, *, by: str,
                         now: Optional[dt.datetime] = None) -> tuple[ThesisDetails, int]:
    """Name or change the 指导教师 of an approved thesis application (zikao-bot review advisor):
    recorded and pushed together. Returns the details and the pushes written (0: unchanged)."""
    from storage.models import utcnow

    now = now or utcnow()
    by = (by or "").strip()
    if not by:
        raise AdvisorError("请写明操作人（--by）。")
    async with db.session() as s, s.begin():
        row = await s.get(Application, application_id, with_for_update=True)
        if row is None or row.kind != KIND:
            raise AdvisorError(f"申请 #{application_id} 不是论文申请。")
        if row.status != "approved":
            raise AdvisorError(f"论文申请 #{application_id} 现在是“{_label(row.status)}”，预审通过后才能分配指导教师。")
        _, _, pushes = await apply_advisors(s, [(row, advisor)], by=by, now=now)
        details = ThesisDetails.from_dict(row.details)
    return details, pushes


# --- Advisors assigned by file (thesis_advisors.csv) -----------------------------------------------


@dataclass(frozen=True)
class AdvisorTarget:
    """One line of the file: the application it names, or the 准考证号 and major that find it."""

    line: int
    application_id: Optional[int]
    admission_number: str
    major_code: str
    advisor: Advisor


async def find_targets(s: AsyncSession, targets: Sequence[AdvisorTarget]) -> dict[int, tuple[Optional[Application], str]]:
    """line -> (the approved thesis application it names, or None with why not)."""
    ids = {t.application_id for t in targets if t.application_id is not None}
    numbers = {t.admission_number for t in targets if t.admission_number}
    owners = dict((await s.execute(select(AdmissionNumber.number, AdmissionNumber.candidate_id)
                                   .where(AdmissionNumber.number.in_(numbers)))).all()) if numbers else {}
    by_id = {a.id: a for a in (await s.execute(select(Application).where(Application.id.in_(ids)))).scalars()} if ids else {}
    cands = set(owners.values())
    by_owner: dict[tuple[int, str], list[Application]] = {}
    if cands:
        for a in (await s.execute(select(Application).where(Application.kind == KIND,
                                                             Application.candidate_id.in_(cands)))).scalars():
            by_owner.setdefault((a.candidate_id, a.major_code or ""), []).append(a)
    out: dict[int, tuple[Optional[Application], str]] = {}
    for t in targets:
        if t.application_id is not None:
            app = by_id.get(t.application_id)
            if app is None or app.kind != KIND:
                out[t.line] = (None, f"申请编号 {t.application_id} 不是论文申请")
                continue
            if t.admission_number and owners.get(t.admission_number) != app.candidate_id:
                out[t.line] = (None, f"申请 {t.application_id} 不属于准考证号 {t.admission_number}")
                continue
            if t.major_code and app.major_code != t.major_code:
                out[t.line] = (None, f"申请 {t.application_id} 的专业是 {app.major_code}，不是 {t.major_code}")
                continue
        else:
            owner = owners.get(t.admission_number)
            if owner is None:
                out[t.line] = (None, f"准考证号 {t.admission_number} 不存在")
                continue
            found = by_owner.get((owner, t.major_code), [])
            app = next((a for a in found if a.status == "approved"), found[0] if found else None)
            if app is None:
                out[t.line] = (None, f"准考证号 {t.admission_number} 没有专业 {t.major_code} 的论文申请")
                continue
        if app.status != "approved":
            out[t.line] = (None, f"论文申请 #{app.id} 现在是“{_label(app.status)}”，预审通过后才能分配指导教师")
            continue
        out[t.line] = (app, "")
    return out


def _label(status: str) -> str:
    from storage.models_applications import STATUS_LABELS

    return STATUS_LABELS.get(status, status)


async def apply_advisors(s: AsyncSession, found: Sequence[tuple[Application, Advisor]], *, by: str,
                         now: dt.datetime) -> tuple[int, int, int]:
    """Record each advisor on its application and push the changed ones: (updated, unchanged, pushes)."""
    updated = unchanged = pushes = 0
    for row, advisor in found:
        details, changed = record_advisor(row.details, advisor, by=by, now=now)
        if not changed:
            unchanged += 1
            continue
        row.details = details
        row.updated_at = now
        updated += 1
        await s.flush()
        pushes += await push_advisor(s, row, now)
    return updated, unchanged, pushes


__all__ = [
    "Advisor", "AdvisorError", "AdvisorTarget", "MajorFacts", "ThesisDetails", "advisor_lines", "advisor_of",
    "apply_advisors", "approval_detail", "assign_advisor", "approve_thesis", "find_targets", "major_facts", "majors_of", "problems",
    "push_advisor", "record_advisor", "thesis_problems",
]
