"""外省转入: the office's records (status life, courses accepted or not, 现场确认), their pushes in
the transaction of each change, the day-before reminder, and 已完成 courses credited as 转入."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage import outbox, queries
from storage.db import Database
from storage.models import Candidate, Course, Major, ScoreRecord, utcnow
from storage.models_transfers import TRANSFER_IN_STATUSES, TransferIn, TransferInCourse
from storage.transfers.common import SHANGHAI, TransferError

# --- 外省转入: the life of a record ------------------------------------------------------------------

# The order of the way forward; 'rejected' may come at any point before 已完成.
FORWARD = ("pending", "reviewing", "confirming", "completed")


def status_label(status: str) -> str:
    return TRANSFER_IN_STATUSES[status]


def transition_problem(before: Optional[str], after: str) -> Optional[str]:
    """Why the office cannot move a record from `before` to `after` (None: it can).

    Forward along 待审核 → 审核中 → 待现场确认 → 已完成 (steps may be skipped), 未通过 from any
    state before 已完成, and a 未通过 record may be taken up again (待审核 / 审核中). 已完成 is final.
    """
    if after not in TRANSFER_IN_STATUSES:
        return f"状态应为 {'/'.join(TRANSFER_IN_STATUSES.values())} 之一"
    if before is None or before == after:
        return None
    if before == "completed":
        return f"转入已办理完成，不能再改为“{status_label(after)}”"
    if before == "rejected":
        if after in ("pending", "reviewing"):
            return None
        return f"未通过的转入须先改为“待审核”或“审核中”，不能直接改为“{status_label(after)}”"
    if after == "rejected":
        return None
    if FORWARD.index(after) < FORWARD.index(before):
        return f"状态不能从“{status_label(before)}”退回“{status_label(after)}”"
    return None


def record_problems(status: str, *, reason: Optional[str], confirm_at: Optional[dt.datetime],
                    place: Optional[str]) -> list[str]:
    """What a record in `status` must carry: a reason when 未通过, time and place when 待现场确认."""
    out = []
    if status == "rejected" and not (reason or "").strip():
        out.append("未通过的转入须填写原因（考生会看到）")
    if status == "confirming":
        if confirm_at is None:
            out.append("待现场确认的转入须填写现场确认时间")
        if not (place or "").strip():
            out.append("待现场确认的转入须填写现场确认地点")
    return out


MAX_COURSE_NOTE = 255  # transfer_in_courses.note


def course_problem(accepted: Optional[bool], note: Optional[str]) -> Optional[str]:
    """A course marked 不认定 must say why (the candidate reads it); 认定 or not decided need nothing."""
    if accepted is False and not (note or "").strip():
        return "不认定的课程须写明原因（考生会看到）"
    if len((note or "").strip()) > MAX_COURSE_NOTE:
        return f"不认定原因最多 {MAX_COURSE_NOTE} 个字"
    return None


REMINDER_HOUR = 9  # Shanghai time, the day before the 现场确认


def reminder_due(confirm_at: dt.datetime) -> dt.datetime:
    """When the 现场确认 reminder goes out: 09:00 Shanghai time on the day before."""
    day = confirm_at.astimezone(SHANGHAI).date() - dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(REMINDER_HOUR), tzinfo=SHANGHAI).astimezone(dt.timezone.utc)


def reminder_is_due(confirm_at: Optional[dt.datetime], now: dt.datetime) -> bool:
    """From the day before (09:00) until the 现场确认 starts; a slot set later is reminded at once."""
    return confirm_at is not None and reminder_due(confirm_at) <= now < confirm_at


# --- 外省转入: what the candidate sees --------------------------------------------------------------


@dataclass(frozen=True)
class TransferInCourseView:
    course_code: str
    course_name: str
    source_name: str
    score: Optional[Decimal]
    grade: Optional[str]
    passed_on: Optional[dt.date]
    accepted: Optional[bool]
    note: str


@dataclass(frozen=True)
class TransferInView:
    id: int
    reference: str
    admission_number: str
    from_province: str
    from_admission_number: str
    major_code: str
    major_name: str
    applied_on: Optional[dt.date]
    status: str
    reason: str
    confirm_at: Optional[dt.datetime]
    confirm_ends_at: Optional[dt.datetime]
    confirm_place: str
    confirm_bring: str
    status_changed_at: Optional[dt.datetime]
    courses: tuple[TransferInCourseView, ...] = ()
    candidate_id: int = 0
    candidate_name: str = ""
    created_at: Optional[dt.datetime] = None
    status_changes: int = 0

    @property
    def status_label(self) -> str:
        return status_label(self.status)


async def transfers_in_of(db: Database, candidate_id: int) -> list[TransferInView]:
    """A candidate's 外省转入 records, newest first, with their courses."""
    async with db.session() as s:
        return await _views(s, select(TransferIn).where(TransferIn.candidate_id == candidate_id))


async def _views(s: AsyncSession, q) -> list[TransferInView]:
    rows = (await s.execute(
        q.options(selectinload(TransferIn.courses)).order_by(TransferIn.created_at.desc(), TransferIn.id.desc())
    )).scalars().all()
    codes = {c.course_code for r in rows for c in r.courses}
    majors = {r.major_code for r in rows}
    names = dict((await s.execute(select(Course.code, Course.name).where(Course.code.in_(codes))))
                 .all()) if codes else {}
    major_names = dict((await s.execute(select(Major.code, Major.name).where(Major.code.in_(majors))))
                       .all()) if majors else {}
    people = {r.candidate_id for r in rows}
    candidates = dict((await s.execute(select(Candidate.id, Candidate.name).where(Candidate.id.in_(people))))
                      .all()) if people else {}
    return [
        TransferInView(
            r.id, r.reference, r.admission_number, r.from_province, r.from_admission_number, r.major_code,
            major_names.get(r.major_code, r.major_code), r.applied_on, r.status, r.reason or "", r.confirm_at,
            r.confirm_ends_at, r.confirm_place or "", r.confirm_bring or "", r.status_changed_at,
            tuple(TransferInCourseView(c.course_code, names.get(c.course_code, c.course_code), c.source_name or "",
                                       c.score, c.grade, c.passed_on, c.accepted, c.note or "")
                  for c in r.courses),
            r.candidate_id, candidates.get(r.candidate_id, ""), r.created_at, r.status_changes or 0,
        )
        for r in rows
    ]


async def list_transfers_in(db: Database, *, status: Optional[str] = None, reference: Optional[str] = None,
                            limit: int = 100) -> list[TransferInView]:
    """Records for the staff command, newest first."""
    q = select(TransferIn)
    if status is not None:
        q = q.where(TransferIn.status == status)
    if reference is not None:
        q = q.where(TransferIn.reference == reference)
    async with db.session() as s:
        return (await _views(s, q.limit(limit)))


async def search_transfers_in(db: Database, *, status: str = "", who: str = "", page: int = 1,
                              per_page: int = 50) -> tuple[list[TransferInView], int]:
    """One page of records for the console (newest first) and how many match: by status and by
    准考证号 (or its start) or the candidate's name (or part of it), as the review queues search."""
    from storage.review_queue import who_condition  # review_queue -> applications -> transfers

    conds = [TransferIn.status == status] if status else []
    who_cond = who_condition(who, TransferIn.admission_number, Candidate.name)
    if who_cond is not None:
        conds.append(TransferIn.id.in_(select(TransferIn.id).join(Candidate, Candidate.id == TransferIn.candidate_id)
                                       .where(who_cond)))
    async with db.session() as s:
        total = await s.scalar(select(func.count()).select_from(TransferIn).where(*conds)) or 0
        q = select(TransferIn).where(*conds).offset((max(1, page) - 1) * per_page).limit(per_page)
        return await _views(s, q), total


# --- 外省转入: changes (import, staff command) ---------------------------------------------------------


async def status_changed(session: AsyncSession, row: TransferIn, now: dt.datetime) -> int:
    """Record that `row` reached its current status: number the change, push it, and on 已完成
    credit the accepted courses. Call in the transaction that changed the status (or inserted
    the record). Returns the pushes written."""
    row.status_changes = (row.status_changes or 0) + 1
    row.status_changed_at = now
    row.updated_at = now
    await session.flush()
    if row.status == "completed":
        await credit_accepted(session, [row.id])
    return await outbox.transfer_in_progress(
        session, candidate_id=row.candidate_id, transfer_id=row.id, change_no=row.status_changes,
        status=row.status, label=status_label(row.status), changed_at=now, confirm_at=row.confirm_at,
        place=row.confirm_place,
    )


def transfer_score_rows(transfer: Mapping[str, Any], courses: Iterable[Mapping[str, Any]],
                        completed_on: dt.date) -> list[dict[str, Any]]:
    """The results a completed 外省转入 becomes: one 'transfer' record per accepted course, passed
    on its date in the other province (else the day of completion)."""
    out = []
    for c in courses:
        if c.get("accepted") is not True:
            continue
        out.append({
            "candidate_id": transfer["candidate_id"], "admission_number": transfer["admission_number"],
            "course_code": c["course_code"], "sitting_code": "", "kind": "transfer", "score": c.get("score"),
            "grade": c.get("grade"), "passed": True, "passed_on": c.get("passed_on") or completed_on,
            "note": f"自{transfer['from_province']}转入"[:255],
        })
    return out


async def credit_accepted(session: AsyncSession, transfer_ids: Sequence[int]) -> int:
    """Write the accepted courses of these (completed) records as results; existing ones stay."""
    ids = sorted(set(transfer_ids))
    if not ids:
        return 0
    rows: list[dict[str, Any]] = []
    transfers = (await session.execute(
        select(TransferIn).where(TransferIn.id.in_(ids), TransferIn.status == "completed")
        .options(selectinload(TransferIn.courses)).execution_options(populate_existing=True)
    )).scalars().all()
    for t in transfers:
        done = (t.status_changed_at or utcnow()).astimezone(SHANGHAI).date()
        rows += transfer_score_rows(
            {"candidate_id": t.candidate_id, "admission_number": t.admission_number, "from_province": t.from_province},
            [{"course_code": c.course_code, "score": c.score, "grade": c.grade, "passed_on": c.passed_on,
              "accepted": c.accepted} for c in t.courses], done)
    if not rows:
        return 0
    dialect_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = dialect_insert(ScoreRecord.__table__).on_conflict_do_nothing(
        index_elements=["admission_number", "course_code", "sitting_code", "kind"]
    ).returning(ScoreRecord.__table__.c.id)
    written = len((await session.execute(stmt, rows)).all())
    if written:
        await queries.mark_changed(session, reference=False, results=True)
    return written


# The console's audit hook: called with the session of the change and the record before and after.
Audit = Callable[[AsyncSession, dict, dict], None]


def _audited(row: TransferIn) -> dict[str, Any]:
    at = lambda t: t.isoformat() if t else None  # noqa: E731
    return {"status": row.status, "reason": row.reason, "confirm_at": at(row.confirm_at),
            "confirm_ends_at": at(row.confirm_ends_at), "place": row.confirm_place, "bring": row.confirm_bring}


@dataclass(frozen=True)
class StatusChange:
    transfer: TransferInView
    pushes: int


async def set_status(db: Database, reference: str, status: str, *, reason: Optional[str] = None,
                     confirm_at: Optional[dt.datetime] = None, confirm_ends_at: Optional[dt.datetime] = None,
                     place: Optional[str] = None, bring: Optional[str] = None,
                     now: Optional[dt.datetime] = None, audit: Optional[Audit] = None) -> StatusChange:
    """The office moves a record (and may set its 现场确认 slot); the push goes in the same transaction.

    Setting only the slot of a record already 待现场确认 pushes the new time too (a new change).
    `audit(session, before, after)` (the console's log) is called in that transaction too."""
    now = now or utcnow()
    async with db.session() as s, s.begin():
        row = (await s.execute(select(TransferIn).where(TransferIn.reference == reference).with_for_update()
                               .execution_options(populate_existing=True))).scalar_one_or_none()
        if row is None:
            raise TransferError(f"转入编号 {reference} 不存在。")
        problem = transition_problem(row.status, status)
        if problem:
            raise TransferError(problem + "。")
        slot_before = (row.confirm_at, row.confirm_place)
        before = _audited(row)
        if reason is not None:
            row.reason = reason.strip() or None
        if confirm_at is not None:
            if confirm_at != row.confirm_at and confirm_ends_at is None:
                row.confirm_ends_at = None  # the end of the old slot says nothing about the new one
            row.confirm_at = confirm_at
        if confirm_ends_at is not None:
            row.confirm_ends_at = confirm_ends_at
        if place is not None:
            row.confirm_place = place.strip() or None
        if bring is not None:
            row.confirm_bring = bring.strip() or None
        problems = record_problems(status, reason=row.reason, confirm_at=row.confirm_at, place=row.confirm_place)
        if row.confirm_at is not None and row.confirm_ends_at is not None and row.confirm_ends_at <= row.confirm_at:
            problems.append("现场确认结束时间应晚于开始时间")
        if problems:
            raise TransferError("；".join(problems) + "。")
        changed = row.status != status or (status == "confirming" and (row.confirm_at, row.confirm_place) != slot_before)
        row.status = status
        row.updated_at = now
        pushes = await status_changed(s, row, now) if changed else 0
        if audit is not None:
            audit(s, before, _audited(row) | {"pushes": pushes})
        ref = row.reference
    return StatusChange((await list_transfers_in(db, reference=ref))[0], pushes)


async def set_course(db: Database, reference: str, course_code: str, accepted: Optional[bool], note: str = "", *,
                     now: Optional[dt.datetime] = None, audit: Optional[Audit] = None) -> TransferInView:
    """The office marks one course of a record 认定 (True), 不认定 (False, with why) or not decided
    (None), as a line of transfer_in_courses.csv does. On a record already 已完成 a course accepted
    now becomes a result at once; a result already credited stays (nothing is ever removed)."""
    now = now or utcnow()
    problem = course_problem(accepted, note)
    if problem:
        raise TransferError(problem + "。")
    async with db.session() as s, s.begin():
        row = (await s.execute(
            select(TransferInCourse).join(TransferIn, TransferIn.id == TransferInCourse.transfer_id)
            .where(TransferIn.reference == reference, TransferInCourse.course_code == course_code).with_for_update()
            .execution_options(populate_existing=True))).scalar_one_or_none()
        if row is None:
            raise TransferError(f"转入编号 {reference} 没有课程 {course_code}。")
        before = {"course": course_code, "accepted": row.accepted, "note": row.note}
        row.accepted = accepted
        row.note = (note or "").strip() or None if accepted is False else None
        transfer = await s.get(TransferIn, row.transfer_id)
        transfer.updated_at = now
        await s.flush()
        credited = await credit_accepted(s, [row.transfer_id]) if accepted else 0
        if audit is not None:
            audit(s, before, {"course": course_code, "accepted": accepted, "note": row.note, "credited": credited})
    return (await list_transfers_in(db, reference=reference))[0]


async def confirmation_reminders(db: Database, now: Optional[dt.datetime] = None) -> dict[int, int]:
    """The scheduled job: remind each candidate of a 现场确认 the day before (once per slot).

    Returns record id -> rows written (0 when the reminder was already sent)."""
    now = now or utcnow()
    out: dict[int, int] = {}
    async with db.session() as s, s.begin():
        rows = (await s.execute(
            select(TransferIn.id, TransferIn.candidate_id, TransferIn.confirm_at, TransferIn.confirm_place)
            .where(TransferIn.status == "confirming", TransferIn.confirm_at > now,
                   TransferIn.confirm_at <= now + dt.timedelta(days=2))
        )).all()
        for tid, cid, at, place in rows:
            if reminder_is_due(at, now):
                out[tid] = await outbox.confirmation_reminder(s, candidate_id=cid, transfer_id=tid, confirm_at=at,
                                                              place=place, now=now)
    return out


__all__ = ["FORWARD", "MAX_COURSE_NOTE", "REMINDER_HOUR", "StatusChange", "TransferInCourseView", "TransferInView", "confirmation_reminders",
           "course_problem", "credit_accepted", "list_transfers_in", "record_problems", "reminder_due", "reminder_is_due", "search_transfers_in", "set_course", "set_status",
           "status_changed", "status_label", "transfer_score_rows", "transfers_in_of", "transition_problem"]
