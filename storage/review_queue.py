"""The review queues of the exam office: applications by business and status, filtered and paged.

What the console's queues and home page read; decisions themselves go through
storage.applications.approve / reject, the same path as `zikao-bot review`.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import func, select

from storage import applications as apps
from storage.applications import details_photo_ids
from storage.db import Database
from storage.models import BusinessWindow, Candidate, Course, Major
from storage.models_degree import ApplicationPhoto
from storage.models_applications import (
    APPLICATION_KINDS,
    STATUS_LABELS,
    Application,
    ApplicationEvent,
    ApplicationItem,
    Evidence,
    EvidencePhoto,
    Photo,
)

PER_PAGE = 50
SHANGHAI = apps.SHANGHAI


@dataclass(frozen=True)
class QueueFilter:
    kind: str
    status: str = "submitted"  # a STATUS_LABELS code, or "" for every status
    sitting: str = ""  # the sitting of the application's window (e.g. 202610)
    major: str = ""
    submitted_from: Optional[dt.date] = None  # Shanghai dates, inclusive
    submitted_to: Optional[dt.date] = None
    who: str = ""  # 准考证号 (or its start) or the candidate's name (or part of it)


@dataclass(frozen=True)
class QueueRow:
    id: int
    kind: str
    status: str
    candidate_name: str
    admission_number: str
    major_code: Optional[str]
    major_name: str
    sitting: str
    courses: tuple[str, ...]  # 'code name'
    submitted_at: Optional[dt.datetime]
    decided_by: Optional[str]
    decided_at: Optional[dt.datetime]
    version: int

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


@dataclass(frozen=True)
class QueuePage:
    rows: tuple[QueueRow, ...]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _day_start(d: dt.date) -> dt.datetime:
    return dt.datetime.combine(d, dt.time(), SHANGHAI).astimezone(dt.timezone.utc)


def filter_problems(f: QueueFilter) -> list[str]:
    """What is wrong with a filter a reviewer typed (empty: fine)."""
    out = []
    if f.kind not in APPLICATION_KINDS:
        out.append("没有这种业务。")
    if f.status and f.status not in STATUS_LABELS:
        out.append("状态不对。")
    if f.submitted_from and f.submitted_to and f.submitted_from > f.submitted_to:
        out.append("提交日期的开始晚于结束。")
    return out


def _conditions(f: QueueFilter) -> list:
    conds = [Application.kind == f.kind]
    if f.status:
        conds.append(Application.status == f.status)
    else:
        conds.append(Application.status != "draft")  # a draft is the candidate's business
    if f.sitting:
        conds.append(BusinessWindow.sitting_code == f.sitting)
    if f.major:
        conds.append(Application.major_code == f.major.strip().upper())
    if f.submitted_from:
        conds.append(Application.submitted_at >= _day_start(f.submitted_from))
    if f.submitted_to:
        conds.append(Application.submitted_at < _day_start(f.submitted_to + dt.timedelta(days=1)))
    who = who_condition(f.who, Application.admission_number, Candidate.name)
    if who is not None:
        conds.append(who)
    return conds


def who_condition(who: str, number_column, name_column):
    """The staff's one search box: a 准考证号 (or its start) or the candidate's name (or part of it);
    None when empty. Shared by the review queues and the 外省转入 list."""
    who = (who or "").strip()
    if not who:
        return None
    if re.fullmatch(r"\d{1,12}", who):
        return number_column.like(f"{who}%")
    escaped = who.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return name_column.like(f"%{escaped}%", escape="\\")


def _base(columns: Sequence):
    return (select(*columns).select_from(Application)
            .join(Candidate, Candidate.id == Application.candidate_id)
            .outerjoin(BusinessWindow, BusinessWindow.id == Application.window_id))


async def search(db: Database, f: QueueFilter, *, page: int = 1, per_page: int = PER_PAGE) -> QueuePage:
    """One page of a queue. 待审核 oldest first (first come, first decided); others newest first."""
    page = max(1, page)
    conds = _conditions(f)
    order = (Application.submitted_at.asc(), Application.id.asc()) if f.status == "submitted" \
        else (func.coalesce(Application.decided_at, Application.submitted_at).desc(), Application.id.desc())
    async with db.session() as s:
        total = await s.scalar(_base([func.count()]).where(*conds)) or 0
        res = (await s.execute(
            _base([Application.id, Application.kind, Application.status, Candidate.name, Application.admission_number,
                   Application.major_code, BusinessWindow.sitting_code, Application.submitted_at,
                   Application.decided_by, Application.decided_at, Application.version])
            .where(*conds).order_by(*order).offset((page - 1) * per_page).limit(per_page)
        )).all()
        ids = [r[0] for r in res]
        courses: dict[int, list[str]] = {i: [] for i in ids}
        if ids:
            for app_id, code, name in await s.execute(
                select(ApplicationItem.application_id, ApplicationItem.course_code, Course.name)
                .join(Course, Course.code == ApplicationItem.course_code)
                .where(ApplicationItem.application_id.in_(ids)).order_by(ApplicationItem.position)
            ):
                courses[app_id].append(f"{code} {name}")
        majors = {r[5] for r in res if r[5]}
        names = dict((await s.execute(select(Major.code, Major.name).where(Major.code.in_(majors)))).all()) \
            if majors else {}
    rows = tuple(QueueRow(r[0], r[1], r[2], r[3], r[4], r[5], names.get(r[5], ""), r[6] or "",
                          tuple(courses[r[0]]), r[7], r[8], r[9], r[10]) for r in res)
    return QueuePage(rows, total, page, per_page)


async def next_pending(db: Database, kind: str, *, after: int) -> Optional[int]:
    """The 待审核 application of `kind` a reviewer takes next (the oldest), other than `after`."""
    async with db.session() as s:
        return await s.scalar(
            select(Application.id).where(Application.kind == kind, Application.status == "submitted",
                                         Application.id != after)
            .order_by(Application.submitted_at.asc(), Application.id.asc()).limit(1))


async def counts(db: Database, kinds: Iterable[str]) -> dict[str, dict[str, int]]:
    """kind -> status -> number of applications (drafts left out), for the given kinds."""
    kinds = [k for k in kinds if k in APPLICATION_KINDS]
    out = {k: {s: 0 for s in STATUS_LABELS if s != "draft"} for k in kinds}
    if not kinds:
        return out
    async with db.session() as s:
        for kind, status, n in await s.execute(
            select(Application.kind, Application.status, func.count())
            .where(Application.kind.in_(kinds), Application.status != "draft")
            .group_by(Application.kind, Application.status)
        ):
            out[kind][status] = n
    return out


async def sittings_in_windows(db: Database) -> list[str]:
    """Sittings that windows name, newest first (the queue's sitting filter offers these)."""
    async with db.session() as s:
        return [c for c in (await s.execute(
            select(BusinessWindow.sitting_code).where(BusinessWindow.sitting_code.is_not(None))
            .distinct().order_by(BusinessWindow.sitting_code.desc())
        )).scalars() if c]


@dataclass(frozen=True)
class BulkOutcome:
    id: int
    ok: bool
    message: str


async def approve_many(db: Database, ids_and_versions: Sequence[tuple[int, Optional[int]]], *, by: str,
                       allowed_kinds: Iterable[str]) -> list[BulkOutcome]:
    """审核通过 for several applications, each on its own (one refusal does not stop the others).

    Each goes through storage.applications.approve with the version the reviewer saw, so one
    decided or changed meanwhile is refused with the reason. Kinds the reviewer does not decide are
    refused without being touched.
    """
    allowed = set(allowed_kinds)
    out = []
    for app_id, version in ids_and_versions:
        try:
            current = await apps.load_application(db, app_id)
            if current.kind not in allowed:
                raise apps.ApplicationNotFound(f"申请 #{app_id} 不存在。")
            await apps.approve(db, app_id, by=by, version=version)
            out.append(BulkOutcome(app_id, True, "审核通过"))
        except apps.ApplicationError as e:
            out.append(BulkOutcome(app_id, False, await already_decided_text(db, app_id) or e.message))
    return out


async def already_decided_text(db: Database, app_id: int) -> Optional[str]:
    """When a decision lost a race: who decided the application, when and how."""
    try:
        d = await apps.load_application(db, app_id)
    except apps.ApplicationNotFound:
        return None
    if d.status in ("approved", "rejected") and d.decided_at:
        when = d.decided_at.astimezone(SHANGHAI).strftime("%m-%d %H:%M")
        return f"申请 #{app_id} 已由 {d.decided_by} 于 {when} 审核为“{d.status_label}”，你的决定没有保存。"
    return None


# --- One application, with everything a reviewer reads ------------------------------------------------


@dataclass(frozen=True)
class ApplicationView:
    data: apps.ApplicationData
    candidate_name: str
    mobile: Optional[str]
    major_name: str
    window: Optional[BusinessWindow]
    course_names: dict[str, str]
    type_names: dict[str, str]
    photos: dict[int, Photo]
    events: list[ApplicationEvent]


async def application_view(db: Database, app_id: int) -> ApplicationView:
    """An application with its candidate, major, window, course and 凭证类型 names, photo rows and history
    (what `zikao-bot review show` prints and the console's application page shows)."""
    d = await apps.load_application(db, app_id)
    types = {t.code: t.name for t in await apps.evidence_types(db, include_inactive=True)}
    events = await apps.application_events(db, app_id)
    codes = {i.course_code for i in d.items}
    photo_ids = {p for i in d.items for e in i.evidences for p in e.photo_ids}
    photo_ids |= set(details_photo_ids(d.kind, d.details))  # 申请学位's materials, 申请毕业's prior education
    async with db.session() as s:
        cand = await s.get(Candidate, d.candidate_id)
        courses = dict((await s.execute(select(Course.code, Course.name).where(Course.code.in_(codes)))).all()) \
            if codes else {}
        photos = {p.id: p for p in (await s.execute(select(Photo).where(Photo.id.in_(photo_ids)))).scalars()} \
            if photo_ids else {}
        major = await s.get(Major, d.major_code) if d.major_code else None
        window = await s.get(BusinessWindow, d.window_id) if d.window_id else None
    return ApplicationView(d, cand.name if cand else "-", cand.mobile if cand else None,
                           major.name if major else "", window, courses, types, photos, events)


async def photo_for_kinds(db: Database, photo_id: int, kinds: Iterable[str]) -> Optional[Photo]:
    """The photo, if it is evidence in an application of one of `kinds` (what a reviewer may see)."""
    kinds = [k for k in kinds if k in APPLICATION_KINDS]
    if not kinds:
        return None
    async with db.session() as s:
        found = await s.scalar(
            select(EvidencePhoto.photo_id)
            .join(Evidence, Evidence.id == EvidencePhoto.evidence_id)
            .join(ApplicationItem, ApplicationItem.id == Evidence.item_id)
            .join(Application, Application.id == ApplicationItem.application_id)
            .where(EvidencePhoto.photo_id == photo_id, Application.kind.in_(kinds)).limit(1)
        )
        if found is None:  # a photo of the form's details (申请学位's materials, 申请毕业's prior education)
            found = await s.scalar(
                select(ApplicationPhoto.photo_id).join(Application, Application.id == ApplicationPhoto.application_id)
                .where(ApplicationPhoto.photo_id == photo_id, Application.kind.in_(kinds)).limit(1))
        return await s.get(Photo, photo_id) if found is not None else None
