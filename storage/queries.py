"""The read side: plans, scores, textbooks, windows, notices and orders as plain values.

Every function takes a `storage.db.Database` and returns frozen dataclasses; the candidate-facing
wording is in dialogs/queries.py.

Read-mostly data is served from memory (see docs/queries.md for the measurements behind it):

- *Reference data* (courses, majors, plans, textbooks, sittings, business windows) changes only
  when the office imports files. It is loaded whole, in one go, per process.
- *A candidate's own data* (enrolments and results) is loaded on first use, in one statement,
  and kept for a minute at most, so a repeated score query costs no database round trip.

Both are invalidated by version stamps in `key_values` that `mark_changed` bumps inside the
writing transaction (the importer calls it). Each process re-reads the stamps at most once a
second (one primary-key lookup), so another process's import is seen within about a second, and
this process's own commits at once. A writer that does not call `mark_changed` is still seen
within `CANDIDATE_TTL` (results) or `REFERENCE_TTL` (reference data) seconds.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import difflib
import gc
import re
import time
import unicodedata
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable, Optional

from sqlalchemy import ARRAY, Integer, and_, any_, bindparam, event, exists, literal, null, or_, select, union_all
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage.batch import Coalescer
from storage.db import Database
from storage.models_service import ORDER_STATUSES, Feedback, NoticeRead, Order

REFERENCE_KEY = "queries.version.reference"
RESULTS_KEY = "queries.version.results"

RECHECK_SECONDS = 1.0
CANDIDATE_TTL = 60.0
REFERENCE_TTL = 600.0
MAX_CANDIDATES = 50_000
# Candidates loaded between two gc.freeze() calls (see _freeze_long_lived).
FREEZE_EVERY = 1_000

# ScoreRecord.kind -> the plan's 状态 of a course completed that way.
STATUS_BY_KIND = {"exam": "已通过", "backfill": "补登", "exemption": "免考", "transfer": "转入"}
# Which record decides a course's status when several passed: the first to complete it, and on
# the same day an exam before the other ways.
_KIND_ORDER = {"exam": 0, "backfill": 1, "transfer": 2, "exemption": 3}
NOT_PASSED = "未通过"
NOT_TAKEN = "-"


# --- Values -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CourseInfo:
    code: str
    name: str
    kind: str  # 理论 / 实践 / 论文


@dataclass(frozen=True, slots=True)
class MajorInfo:
    code: str
    name: str
    level: str
    required_credits: int
    university: Optional[str]
    notes: Optional[str]
    graduation_rules: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PlanEntry:
    """One course of a major's 考试计划 (satisfies dialogs.progress.PlanCourseLike)."""

    major_code: str
    course_code: str
    course_name: str
    course_kind: str
    credits: int
    category: str  # 必考 / 选考 / 加考
    position: int


@dataclass(frozen=True, slots=True)
class TextbookInfo:
    course_code: str
    title: str
    publisher: Optional[str]
    editor: Optional[str]
    edition: str
    syllabus_name: Optional[str]
    syllabus_author: Optional[str]
    syllabus_version: Optional[str]


@dataclass(frozen=True, slots=True)
class SittingInfo:
    code: str
    name: str
    exam_date: Optional[dt.date]
    scores_released_at: Optional[dt.datetime]

    def released(self, now: dt.datetime) -> bool:
        return self.scores_released_at is None or self.scores_released_at <= now


@dataclass(frozen=True, slots=True)
class WindowInfo:
    id: int
    kind: str
    title: str
    sitting_code: Optional[str]
    opens_at: dt.datetime
    closes_at: dt.datetime
    notice: str


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A major the candidate is registered in, and under which 准考证号."""

    major_code: str
    major_name: str
    level: str
    admission_number: Optional[str]


@dataclass(frozen=True, slots=True)
class Result:
    """One of the candidate's score records (satisfies dialogs.progress.ResultLike)."""

    admission_number: str
    course_code: str
    kind: str  # exam / exemption / transfer / backfill
    sitting_code: str
    score: Optional[Decimal]
    grade: Optional[str]
    passed: bool
    passed_on: Optional[dt.date]
    note: Optional[str]


@dataclass(frozen=True, slots=True)
class CandidateData:
    enrolments: tuple[Enrolment, ...]
    results: tuple[Result, ...]


@dataclass(frozen=True, slots=True)
class PlanRow:
    course_code: str
    course_name: str
    course_kind: str
    credits: int
    category: str
    status: str  # 已通过 / 免考 / 转入 / 补登 / 未通过 / -
    score: Optional[Decimal]  # of the deciding record: the passing one, else the latest attempt
    grade: Optional[str]
    passed_on: Optional[dt.date]
    sitting_code: str
    attempts: int  # exam sittings taken

    @property
    def passed(self) -> bool:
        return self.status in STATUS_BY_KIND.values()


@dataclass(frozen=True, slots=True)
class PlanSummary:
    """The platform's 已考课程 x/y, 免考 n, 转入 n, 已得学分."""

    major_code: str
    major_name: str
    courses: int  # y: courses in the plan
    exam_passed: int  # x: passed by examination (old results registered by 补登 included)
    exempted: int
    transferred: int
    credits: int  # credits of every passed course of the plan
    required_credits: int


@dataclass(frozen=True, slots=True)
class PlanView:
    major: MajorInfo
    admission_number: Optional[str]
    rows: tuple[PlanRow, ...]
    summary: PlanSummary


@dataclass(frozen=True, slots=True)
class ScoreRow:
    course_code: str
    course_name: str
    course_kind: str
    kind: str
    score: Optional[Decimal]
    grade: Optional[str]
    passed: bool
    credits: Optional[int]  # from the candidate's plan containing the course; None when none does
    sitting_code: str
    sitting_name: str  # '' for exemptions, transfers and backfills
    passed_on: Optional[dt.date]
    admission_number: str
    note: Optional[str]


@dataclass(frozen=True, slots=True)
class ScoreSheet:
    rows: tuple[ScoreRow, ...]
    summaries: tuple[PlanSummary, ...]
    sitting: Optional[SittingInfo] = None  # latest_scores: the sitting shown
    # latest_scores: a sitting released after `sitting` in which the candidate has no result.
    newer_sitting: Optional[SittingInfo] = None


@dataclass(frozen=True, slots=True)
class WindowState:
    """A business that is not open now: when it next opens, or when it last closed."""

    kind: str
    upcoming: Optional[WindowInfo]
    last_closed: Optional[WindowInfo]


@dataclass(frozen=True, slots=True)
class Windows:
    open: tuple[WindowInfo, ...]  # by closing time
    not_open: tuple[WindowState, ...]


@dataclass(frozen=True, slots=True)
class NoticeItem:
    id: int
    category: str
    title: str
    body: str
    publish_at: dt.datetime
    read: bool


@dataclass(frozen=True, slots=True)
class OrderInfo:
    order_number: str
    item: str
    major_code: str
    major_name: str
    admission_number: str
    amount: Decimal
    status: str
    status_label: str
    created_at: dt.datetime
    paid_at: Optional[dt.datetime]
    closed_at: Optional[dt.datetime]


# --- Reference data -----------------------------------------------------------------------------


@dataclass
class Reference:
    courses: dict[str, CourseInfo]
    majors: dict[str, MajorInfo]
    plans: dict[str, tuple[PlanEntry, ...]]
    textbooks: dict[str, tuple[TextbookInfo, ...]]
    sittings: dict[str, SittingInfo]
    windows: tuple[WindowInfo, ...]
    # (normalised course name, code), longest names first, for free-text lookup.
    names: tuple[tuple[str, str], ...] = ()
    plan_credits: dict[tuple[str, str], int] = field(default_factory=dict)  # (major, course) -> credits

    def __post_init__(self) -> None:
        self.names = tuple(sorted(((normalize(c.name), c.code) for c in self.courses.values()),
                                  key=lambda nc: (-len(nc[0]), nc[1])))
        self.plan_credits = {(p.major_code, p.course_code): p.credits for ps in self.plans.values() for p in ps}


async def load_reference(session: AsyncSession) -> Reference:
    """Everything read-mostly, in six statements."""
    courses = {c.code: CourseInfo(c.code, c.name, c.kind) for c in await session.scalars(select(m.Course))}
    majors = {
        mj.code: MajorInfo(mj.code, mj.name, mj.level, mj.required_credits, mj.university, mj.notes,
                           dict(mj.graduation_rules or {}))
        for mj in await session.scalars(select(m.Major))
    }
    plans: dict[str, list[PlanEntry]] = {}
    for pc in await session.scalars(select(m.PlanCourse).order_by(m.PlanCourse.major_code, m.PlanCourse.position,
                                                                  m.PlanCourse.course_code)):
        c = courses.get(pc.course_code) or CourseInfo(pc.course_code, pc.course_code, "理论")
        plans.setdefault(pc.major_code, []).append(
            PlanEntry(pc.major_code, pc.course_code, c.name, c.kind, pc.credits, pc.category, pc.position))
    books: dict[str, list[TextbookInfo]] = {}
    for b in await session.scalars(select(m.Textbook).order_by(m.Textbook.course_code, m.Textbook.id)):
        books.setdefault(b.course_code, []).append(TextbookInfo(
            b.course_code, b.title, b.publisher, b.editor, b.edition or "", b.syllabus_name, b.syllabus_author,
            b.syllabus_version))
    sittings = {s.code: SittingInfo(s.code, s.name, s.exam_date, s.scores_released_at)
                for s in await session.scalars(select(m.Sitting))}
    windows = tuple(
        WindowInfo(w.id, w.kind, w.title, w.sitting_code, w.opens_at, w.closes_at, w.notice or "")
        for w in await session.scalars(select(m.BusinessWindow).order_by(m.BusinessWindow.opens_at,
                                                                        m.BusinessWindow.id))
    )
    return Reference(courses, majors, {k: tuple(v) for k, v in plans.items()},
                     {k: tuple(v) for k, v in books.items()}, sittings, windows)


def _candidate_statement(ids):
    """Enrolments and results of candidates in one statement (a UNION ALL on candidate_id).

    One round trip instead of two: on results day most candidates ask once or twice, so the
    first, uncached answer is the common one. Result columns come first so that their types
    (numeric, boolean, date) apply to the union on SQLite too. `ids` is the condition's right
    side: one candidate, or a list (an expanding IN on SQLite, `= ANY(array)` on PostgreSQL, so
    that asyncpg prepares one statement for every batch size).
    """
    t, cm = m.ScoreRecord.__table__, m.CandidateMajor.__table__
    results = select(literal("r").label("what"), t.c.candidate_id, t.c.admission_number, t.c.course_code, t.c.kind,
                     t.c.sitting_code, t.c.score, t.c.grade, t.c.passed, t.c.passed_on, t.c.note
                     ).where(ids(t.c.candidate_id))
    majors = select(literal("m"), cm.c.candidate_id, cm.c.admission_number, cm.c.major_code, null(), null(), null(),
                    null(), null(), null(), null()).where(ids(cm.c.candidate_id))
    return union_all(results, majors)


_CANDIDATE = _candidate_statement(lambda col: col == bindparam("candidate_id"))
_CANDIDATES = {
    "sqlite": _candidate_statement(lambda col: col.in_(bindparam("ids", expanding=True))),
    "postgresql": _candidate_statement(lambda col: col == any_(bindparam("ids", type_=ARRAY(Integer)))),
}


def _candidate_data(rows: Iterable[Any], majors: dict[str, MajorInfo]) -> dict[int, CandidateData]:
    # The cold path of results day (one call per batch of new candidates): rows are unpacked by
    # position (the statement's column order) rather than read by name, and scores converted once
    # per distinct value (_score).
    enrolments: dict[int, list[Enrolment]] = {}
    results: dict[int, list[Result]] = {}
    for what, cid, number, code, kind, sitting, score, grade, passed, passed_on, note in rows:
        if what == "m":
            info = majors.get(code)
            e = Enrolment(code, info.name if info else code, info.level if info else "", number)
            got = enrolments.get(cid)
            if got is None:
                enrolments[cid] = [e]
            else:
                got.append(e)
        else:
            r = Result(number, code, kind, sitting or "", _score(score), grade, bool(passed), passed_on, note)
            got = results.get(cid)
            if got is None:
                results[cid] = [r]
            else:
                got.append(r)
    out = {}
    for cid in enrolments.keys() | results.keys():
        e, res = enrolments.get(cid, []), results.get(cid, [])
        if len(e) > 1:
            e.sort(key=_enrolment_order)
        res.sort(key=_result_order)
        out[cid] = CandidateData(tuple(e), tuple(res))
    return out


def _enrolment_order(x: Enrolment) -> tuple[str, str]:
    return x.admission_number or "", x.major_code


def _result_order(x: Result) -> tuple[str, str, str]:
    return x.sitting_code, x.course_code, x.kind


async def load_candidate(session: AsyncSession, candidate_id: int,
                         majors: Optional[dict[str, MajorInfo]] = None) -> CandidateData:
    """A candidate's enrolments and results; names of majors from `majors` (the reference data)."""
    rows = await session.execute(_CANDIDATE, {"candidate_id": candidate_id})
    return _candidate_data(rows, majors or {}).get(candidate_id, CandidateData((), ()))


async def load_candidates(conn: Any, candidate_ids: Iterable[int],
                          majors: Optional[dict[str, MajorInfo]] = None) -> dict[int, CandidateData]:
    """Several candidates in one statement, on a session or a Core connection."""
    ids = sorted(set(candidate_ids))
    if not ids:
        return {}
    dialect = conn.get_bind().dialect.name if isinstance(conn, AsyncSession) else conn.dialect.name
    rows = (await conn.execute(_CANDIDATES["postgresql" if dialect == "postgresql" else "sqlite"], {"ids": ids})).all()
    found = _candidate_data(rows, majors or {})
    return {cid: found.get(cid, CandidateData((), ())) for cid in ids}


_SCORES: dict[Any, Decimal] = {}
_TENTH = Decimal("0.1")


def _score(v: Any) -> Optional[Decimal]:
    # SQLite hands back floats for NUMERIC; one decimal is all a score has. Scores take a few
    # hundred distinct values: each is converted once (equal keys convert to equal Decimals).
    if v is None:
        return None
    d = _SCORES.get(v)
    if d is None:
        d = Decimal(str(v)).quantize(_TENTH)
        if len(_SCORES) < 10_000:
            _SCORES[v] = d
    return d


# --- The cache ----------------------------------------------------------------------------------

# Bumped after this process commits a change (see mark_changed): caches re-read the stamps at once.
_local_generation = 0


def _after_commit(_session: Any) -> None:
    global _local_generation
    _local_generation += 1


async def mark_changed(session: AsyncSession, *, reference: bool = True, results: bool = True) -> None:
    """Record, in the caller's transaction, that imported data changed.

    `reference`: courses, majors, plans, textbooks, sittings or business windows; `results`:
    score records or enrolments (candidate_majors). Every process drops what it cached within
    about a second of the commit (this process at once).
    """
    keys = ([REFERENCE_KEY] if reference else []) + ([RESULTS_KEY] if results else [])
    if not keys:
        return
    now = m.utcnow()
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for key in keys:
        value = {"stamp": uuid.uuid4().hex, "at": now.isoformat()}
        stmt = insert(m.KeyValue.__table__).values(key=key, value=value, updated_at=now)
        await session.execute(stmt.on_conflict_do_update(index_elements=["key"],
                                                         set_={"value": value, "updated_at": now}))
    event.listen(session.sync_session, "after_commit", _after_commit, once=True)


class ReadCache:
    """Per-process cache of one database's read-mostly data (see the module docstring)."""

    def __init__(self, db: Database, *, recheck_seconds: float = RECHECK_SECONDS,
                 candidate_ttl: float = CANDIDATE_TTL, reference_ttl: float = REFERENCE_TTL,
                 max_candidates: int = MAX_CANDIDATES) -> None:
        self.db = db
        self.recheck_seconds = recheck_seconds
        self.candidate_ttl = candidate_ttl
        self.reference_ttl = reference_ttl
        self.max_candidates = max_candidates
        self._reference: Optional[Reference] = None
        self._reference_stamp: Optional[str] = None
        self._reference_loaded_at = float("-inf")
        self._results_stamp: Optional[str] = None
        self._checked_at = float("-inf")
        self._seen_generation = -1
        self._candidates: OrderedDict[int, tuple[float, CandidateData]] = OrderedDict()
        # 当次成绩 sheets computed from the cached objects (see latest_scores).
        self.sheets: OrderedDict[int, tuple[Any, Any, tuple[str, ...], Any]] = OrderedDict()
        self._lock = asyncio.Lock()
        self.stats = {"reference_loads": 0, "candidate_hits": 0, "candidate_loads": 0, "candidate_batches": 0,
                      "candidate_preloads": 0, "stamp_checks": 0}
        self._since_freeze = 0
        self._loads: Coalescer[int, CandidateData] = Coalescer(self._load_batch, parallel=1 if db.is_sqlite else 4)

    def _fresh(self) -> bool:
        return (self._seen_generation == _local_generation
                and time.monotonic() - self._checked_at < self.recheck_seconds)

    async def _stamps(self, session: AsyncSession) -> tuple[Optional[str], Optional[str]]:
        self.stats["stamp_checks"] += 1
        rows = dict((await session.execute(
            select(m.KeyValue.key, m.KeyValue.value).where(m.KeyValue.key.in_((REFERENCE_KEY, RESULTS_KEY)))
        )).all())
        return (rows.get(REFERENCE_KEY) or {}).get("stamp"), (rows.get(RESULTS_KEY) or {}).get("stamp")

    async def _check(self) -> None:
        if self._fresh() and self._reference is not None:
            return
        async with self._lock:
            if self._fresh() and self._reference is not None:
                return
            generation = _local_generation
            async with self.db.session() as s:
                reference_stamp, results_stamp = await self._stamps(s)
                if results_stamp != self._results_stamp or reference_stamp != self._reference_stamp:
                    self._candidates.clear()  # their enrolments carry names of majors, too
                    self._results_stamp = results_stamp
                if (self._reference is None or reference_stamp != self._reference_stamp
                        or time.monotonic() - self._reference_loaded_at >= self.reference_ttl):
                    # The stamp is read before the data: a change committed meanwhile is picked
                    # up by the next check rather than lost.
                    self._reference = await load_reference(s)
                    self._reference_stamp = reference_stamp
                    self._reference_loaded_at = time.monotonic()
                    self.stats["reference_loads"] += 1
            self._checked_at = time.monotonic()
            self._seen_generation = generation

    async def reference(self) -> Reference:
        await self._check()
        assert self._reference is not None
        return self._reference

    async def candidate(self, candidate_id: int) -> CandidateData:
        await self._check()
        hit = self._cached(candidate_id)
        if hit is not None:
            self.stats["candidate_hits"] += 1
            return hit
        # Cold: every candidate missed while a load runs is read by the next one, in one
        # statement (results day: most candidates ask once or twice, so this is the common case).
        return await self._loads.submit(candidate_id)

    def _cached(self, candidate_id: int) -> Optional[CandidateData]:
        hit = self._candidates.get(candidate_id)
        if hit is not None and time.monotonic() - hit[0] < self.candidate_ttl:
            self._candidates.move_to_end(candidate_id)
            return hit[1]
        return None

    def _keep(self, loaded: dict[int, CandidateData], stamp: Optional[str]) -> None:
        # Only what was read under the stamp still current: an import meanwhile may have changed it.
        if self.candidate_ttl <= 0 or stamp != self._results_stamp:
            return
        now = time.monotonic()
        for cid, data in loaded.items():
            self._candidates[cid] = (now, data)
            self._candidates.move_to_end(cid)
        while len(self._candidates) > self.max_candidates:
            self._candidates.popitem(last=False)
        self._since_freeze += len(loaded)
        if self._since_freeze >= FREEZE_EVERY:
            self._since_freeze = 0
            _freeze_long_lived()

    async def _load_batch(self, candidate_ids: list[int]) -> list[CandidateData]:
        stamp = self._results_stamp
        async with self.db.engine.connect() as conn:
            loaded = await load_candidates(conn, candidate_ids, self._reference.majors if self._reference else None)
        self.stats["candidate_loads"] += len(loaded)
        self.stats["candidate_batches"] += 1
        self._keep(loaded, stamp)
        return [loaded[cid] for cid in candidate_ids]

    async def preload(self, conn: Any, candidate_ids: Iterable[int]) -> None:
        """Load the candidates among `candidate_ids` not in memory yet, on the caller's connection
        (the edge's dedupe round trip): their first question then needs no round trip of its own.
        Does nothing while the stamps are due for a re-check (the question's own path does that)."""
        if not self._fresh() or self._reference is None:
            return
        missing = [cid for cid in candidate_ids if self._cached(cid) is None]
        if missing:
            stamp = self._results_stamp
            loaded = await load_candidates(conn, missing, self._reference.majors)
            self.stats["candidate_loads"] += len(loaded)
            self.stats["candidate_preloads"] += len(loaded)
            self._keep(loaded, stamp)

    def forget(self, candidate_id: Optional[int] = None) -> None:
        """Drop one candidate's cached data (or everything) in this process."""
        if candidate_id is None:
            self._candidates.clear()
            self._reference = None
        else:
            self._candidates.pop(candidate_id, None)


def _freeze_long_lived() -> None:
    """Move what is alive now out of the garbage collector's scans (gc.freeze), after collecting
    the young generations so that little garbage is frozen with it.

    Results day fills the cache with ~20 tracked objects per candidate; without this, every
    full collection walks all of them, and with 100,000 candidates those pauses reach hundreds
    of milliseconds (measured: p99 of the cold phase). Cached objects are freed by reference
    counting when evicted (they hold no cycles); the cost is that a cycle that was already
    garbage in the old generation at the moment of a freeze is never collected (rare: the
    young generations are collected first), at most once per FREEZE_EVERY candidate loads.
    """
    gc.collect(1)
    gc.freeze()


_caches: "weakref.WeakKeyDictionary[Database, ReadCache]" = weakref.WeakKeyDictionary()


def cache_for(db: Database) -> ReadCache:
    """The cache of `db` in this process (created on first use)."""
    cache = _caches.get(db)
    if cache is None:
        cache = _caches[db] = ReadCache(db)
    return cache


# --- Plans and scores ---------------------------------------------------------------------------


def visible_results(results: Iterable[Result], ref: Reference, now: dt.datetime) -> list[Result]:
    """Results a candidate may see: exam results of a sitting whose release time has not come are held."""
    held = {code for code, s in ref.sittings.items() if not s.released(now)}
    if not held:  # results day, after the release: everything shows
        return list(results)
    return [r for r in results if not (r.kind == "exam" and r.sitting_code in held)]


def _deciding_order(r: Result) -> tuple[dt.date, int, str]:
    return r.passed_on or dt.date.max, _KIND_ORDER.get(r.kind, 9), r.sitting_code


def _deciding(records: list[Result]) -> Optional[Result]:
    """The record that completed a course: the earliest pass (an exam first on the same day)."""
    passed = [r for r in records if r.passed]
    if not passed:
        return None
    return min(passed, key=_deciding_order)


def _latest(records: list[Result]) -> Optional[Result]:
    return max(records, key=lambda r: (r.sitting_code, r.passed_on or dt.date.min), default=None)


def plan_rows(entries: Iterable[PlanEntry], results: Iterable[Result]) -> tuple[PlanRow, ...]:
    by_course: dict[str, list[Result]] = {}
    for r in results:
        by_course.setdefault(r.course_code, []).append(r)
    rows = []
    for e in entries:
        records = by_course.get(e.course_code, [])
        done = _deciding(records)
        shown = done or _latest(records)
        status = STATUS_BY_KIND.get(done.kind, "已通过") if done else (NOT_PASSED if records else NOT_TAKEN)
        rows.append(PlanRow(
            e.course_code, e.course_name, e.course_kind, e.credits, e.category, status,
            shown.score if shown else None, shown.grade if shown else None,
            done.passed_on if done else None, shown.sitting_code if shown else "",
            sum(1 for r in records if r.kind == "exam"),
        ))
    return tuple(rows)


def summarize(major: MajorInfo, rows: Iterable[PlanRow]) -> PlanSummary:
    rows = list(rows)
    return PlanSummary(
        major.code, major.name, len(rows),
        exam_passed=sum(1 for r in rows if r.status in ("已通过", "补登")),
        exempted=sum(1 for r in rows if r.status == "免考"),
        transferred=sum(1 for r in rows if r.status == "转入"),
        credits=sum(r.credits for r in rows if r.passed),
        required_credits=major.required_credits,
    )


def _major_info(ref: Reference, code: str) -> MajorInfo:
    return ref.majors.get(code) or MajorInfo(code, code, "", 0, None, None, {})


def _plan_view(ref: Reference, enrolment: Enrolment, results: list[Result]) -> PlanView:
    major = _major_info(ref, enrolment.major_code)
    rows = plan_rows(ref.plans.get(major.code, ()), results)
    return PlanView(major, enrolment.admission_number, rows, summarize(major, rows))


async def candidate_majors(db: Database, candidate_id: int, *, active: Optional[str] = None) -> list[Enrolment]:
    """The candidate's majors; those under the active 准考证号 first."""
    data = await cache_for(db).candidate(candidate_id)
    return sorted(data.enrolments, key=lambda e: (e.admission_number != active, e.admission_number or "", e.major_code))


async def plan(db: Database, candidate_id: int, major_code: str, *, now: Optional[dt.datetime] = None) -> Optional[PlanView]:
    """A major's 考试计划 with the candidate's status per course; None when not enrolled in it."""
    cache = cache_for(db)
    ref, data = await cache.reference(), await cache.candidate(candidate_id)
    enrolment = next((e for e in data.enrolments if e.major_code == major_code), None)
    if enrolment is None:
        return None
    return _plan_view(ref, enrolment, visible_results(data.results, ref, now or m.utcnow()))


async def major_plan(db: Database, major_code: str) -> Optional[tuple[MajorInfo, tuple[PlanEntry, ...]]]:
    """A major and its plan, for anyone (no candidate data)."""
    ref = await cache_for(db).reference()
    if major_code not in ref.majors:
        return None
    return ref.majors[major_code], ref.plans.get(major_code, ())


def _credits_for(ref: Reference, enrolments: tuple[Enrolment, ...], r: Result) -> Optional[int]:
    # The plan of the major registered under the record's 准考证号 first, then the candidate's others.
    ordered = sorted(enrolments, key=lambda e: e.admission_number != r.admission_number)
    for e in ordered:
        credits = ref.plan_credits.get((e.major_code, r.course_code))
        if credits is not None:
            return credits
    return None


def _score_row(ref: Reference, enrolments: tuple[Enrolment, ...], r: Result) -> ScoreRow:
    c = ref.courses.get(r.course_code) or CourseInfo(r.course_code, r.course_code, "理论")
    sitting = ref.sittings.get(r.sitting_code) if r.sitting_code else None
    name = sitting.name if sitting else (f"{r.sitting_code[:4]}年{r.sitting_code[4:]}月" if r.sitting_code else "")
    return ScoreRow(c.code, c.name, c.kind, r.kind, r.score, r.grade, r.passed, _credits_for(ref, enrolments, r),
                    r.sitting_code, name, r.passed_on, r.admission_number, r.note)


def _summaries(ref: Reference, data: CandidateData, results: list[Result]) -> tuple[PlanSummary, ...]:
    """summarize(major, plan_rows(...)) of each enrolment, without building the rows: only the
    passed records decide a summary (the cold 成绩 path computes this once per new candidate)."""
    if not data.enrolments:
        return ()
    passed: dict[str, list[Result]] = {}
    for r in results:
        if r.passed:
            got = passed.get(r.course_code)
            if got is None:
                passed[r.course_code] = [r]
            else:
                got.append(r)
    # (major, course) is unique in a plan (uq_plan_courses_major_course): each passed course of
    # the plan counts once, found through plan_credits instead of a walk over the plan.
    plan_credits = ref.plan_credits
    out = []
    for enrolment in data.enrolments:
        major = _major_info(ref, enrolment.major_code)
        exam = exempted = transferred = credits = 0
        for course, records in passed.items():
            course_credits = plan_credits.get((major.code, course))
            if course_credits is None:
                continue
            done = records[0] if len(records) == 1 else min(records, key=_deciding_order)
            status = STATUS_BY_KIND.get(done.kind, "已通过")
            credits += course_credits
            if status == "免考":
                exempted += 1
            elif status == "转入":
                transferred += 1
            else:  # 已通过 / 补登
                exam += 1
        courses = len(ref.plans.get(major.code, ()))
        out.append(PlanSummary(major.code, major.name, courses, exam_passed=exam, exempted=exempted,
                               transferred=transferred, credits=credits, required_credits=major.required_credits))
    return tuple(out)


def latest_sheet(ref: Reference, data: CandidateData, now: dt.datetime) -> ScoreSheet:
    """当次成绩 from loaded data: the exam results of the latest released sitting, and the summaries."""
    results = visible_results(data.results, ref, now)
    latest = max((r.sitting_code for r in results if r.kind == "exam" and r.sitting_code), default="")
    rows = tuple(_score_row(ref, data.enrolments, r) for r in results if r.kind == "exam" and r.sitting_code == latest)
    # A sitting released since, in which this candidate has nothing: say so rather than let old
    # results pass for new ones on results day.
    newer = [s for s in ref.sittings.values()
             if s.code > latest and s.scores_released_at is not None and s.scores_released_at <= now]
    return ScoreSheet(rows, _summaries(ref, data, results), ref.sittings.get(latest) if latest else None,
                      max(newer, key=lambda s: s.code) if newer else None)


async def latest_scores(db: Database, candidate_id: int, *, now: Optional[dt.datetime] = None) -> ScoreSheet:
    """当次成绩 of a candidate, from the cache (no database round trip when warm)."""
    cache = cache_for(db)
    ref, data = await cache.reference(), await cache.candidate(candidate_id)
    now = now or m.utcnow()
    # Results day: the same candidates ask again and again. The sheet depends only on the cached
    # objects and on which sittings are released, so it is computed once per change of those.
    held = tuple(sorted(code for code, st in ref.sittings.items() if not st.released(now)))
    memo = cache.sheets.get(candidate_id)
    if memo is not None and memo[0] is ref and memo[1] is data and memo[2] == held:
        cache.sheets.move_to_end(candidate_id)
        return memo[3]
    sheet = latest_sheet(ref, data, now)
    cache.sheets[candidate_id] = (ref, data, held, sheet)
    while len(cache.sheets) > cache.max_candidates:
        cache.sheets.popitem(last=False)
    return sheet


async def all_scores(db: Database, candidate_id: int, *, now: Optional[dt.datetime] = None) -> ScoreSheet:
    """历史成绩: every result, exams newest sitting first, then exemptions, transfers and backfills."""
    now = now or m.utcnow()
    cache = cache_for(db)
    ref, data = await cache.reference(), await cache.candidate(candidate_id)
    results = visible_results(data.results, ref, now)
    # Newest sitting first, courses in code order within a sitting.
    exams = sorted((r for r in results if r.kind == "exam"), key=lambda r: (-int(r.sitting_code or 0), r.course_code))
    others = sorted((r for r in results if r.kind != "exam"),
                    key=lambda r: (_KIND_ORDER.get(r.kind, 9), r.passed_on or dt.date.min, r.course_code))
    rows = tuple(_score_row(ref, data.enrolments, r) for r in exams + others)
    return ScoreSheet(rows, _summaries(ref, data, results))


async def course_results(db: Database, candidate_id: int, course_code: str, *,
                         now: Optional[dt.datetime] = None) -> tuple[ScoreRow, ...]:
    """Every visible result of one course, oldest first."""
    now = now or m.utcnow()
    cache = cache_for(db)
    ref, data = await cache.reference(), await cache.candidate(candidate_id)
    rows = [_score_row(ref, data.enrolments, r) for r in visible_results(data.results, ref, now)
            if r.course_code == course_code]
    return tuple(sorted(rows, key=lambda r: (r.sitting_code or "", r.passed_on or dt.date.min)))


async def candidate_results(db: Database, candidate_id: int, *, now: Optional[dt.datetime] = None) -> list[Result]:
    """The candidate's visible results (for rules such as dialogs.progress)."""
    cache = cache_for(db)
    ref, data = await cache.reference(), await cache.candidate(candidate_id)
    return visible_results(data.results, ref, now or m.utcnow())


# --- Courses, textbooks, majors -----------------------------------------------------------------

_PUNCT = re.compile(r"[\s\u3000()（）\[\]【】《》<>〈〉·•、，,。.．:：;；!！?？~～\"'“”‘’_\-—/|+]+")
_DIGIT_NUMERAL = {"1": "一", "2": "二", "3": "三", "4": "四", "5": "五"}
_LONE_DIGIT = re.compile(r"(?<![0-9])([1-5])(?![0-9])")

# Names candidates use for courses -> a part of the official name (after normalize()).
ALIASES: dict[str, tuple[str, ...]] = {
    "英二": ("英语二",), "英一": ("英语一",), "大英": ("英语",),
    "线代": ("线性代数",),
    "概率": ("概率论与数理统计",), "概统": ("概率论与数理统计",), "概率统计": ("概率论与数理统计",),
    "马原": ("马克思主义基本原理",), "马哲": ("马克思主义基本原理",),
    "近代史": ("中国近现代史纲要",), "近现代史": ("中国近现代史纲要",), "史纲": ("中国近现代史纲要",),
    "毛概": ("毛泽东思想和中国特色社会主义理论体系概论",), "毛中特": ("毛泽东思想和中国特色社会主义理论体系概论",),
    "思修": ("思想道德修养与法律基础", "思想道德与法治"), "思想道德": ("思想道德修养与法律基础", "思想道德与法治"),
    "高数": ("高等数学",), "政经": ("政治经济学",), "国金": ("国际金融",), "财管": ("财务管理学",),
    "人力": ("人力资源管理",), "管信": ("管理系统中计算机应用",), "计算机基础": ("计算机应用基础",),
}

# Words that make a text a question about a result ("英语二考了多少分", "00015成绩", "线代过了吗").
INTENT_WORDS = (
    "多少分", "几分", "分数", "成绩", "考了", "考得", "考的", "过了", "过没过", "通过", "及格", "过没",
)
# Everything said around a course name in such a question, removed before matching the rest.
_FILLER = INTENT_WORDS + ("怎么样", "如何", "查询", "查一下", "查下", "查", "请问", "我的", "我", "吗", "么",
                          "呢", "了", "的", "没有", "没", "啊", "呀")
_INTENT_RE = re.compile("|".join(sorted(map(re.escape, _FILLER), key=len, reverse=True)))
_CODE_RE = re.compile(r"(?<![0-9])([0-9]{5})(?![0-9])")


def normalize(text: str) -> str:
    """For matching course names: NFKC, no spaces or punctuation, lone 1-5 as 一..五 ('英语 2' = '英语(二)')."""
    t = unicodedata.normalize("NFKC", text or "").lower()
    t = _PUNCT.sub("", t)
    return _LONE_DIGIT.sub(lambda mt: _DIGIT_NUMERAL[mt.group(1)], t)


def has_intent(text: str) -> bool:
    """Whether the text asks about a result (成绩, 多少分, 过了吗 ...)."""
    return any(w in text for w in INTENT_WORDS)


def _bare(text: str) -> str:
    return normalize(_INTENT_RE.sub("", unicodedata.normalize("NFKC", text or "")))


def names_only(text: str, course: CourseInfo) -> bool:
    """Whether the text is just this course (its code, name or short name), nothing else said:
    "马原" is, "英语二考试时间是什么时候" is not."""
    b = _bare(text)
    if b in (course.code, _bare(course.name)):
        return True
    return any(b == alias and any(x in normalize(course.name) for x in targets) for alias, targets in ALIASES.items())


def match_courses(ref: Reference, text: str, scope: Optional[Iterable[str]] = None, *,
                  loose: bool = True) -> list[CourseInfo]:
    """Courses a free text names, best first: a 5-digit code, a common short name, the name.

    `scope` (course codes) narrows the search, e.g. to the candidate's own courses. `loose`
    allows a part of a name ("金融市场" -> 金融市场学) and near misses ("金融市场雪"); callers
    turn it off when the text may be about something else entirely.
    """
    codes = set(scope) if scope is not None else None

    def within(code: str) -> bool:
        return code in ref.courses and (codes is None or code in codes)

    found = [c for c in _CODE_RE.findall(text) if within(c)]
    if found:
        return [ref.courses[c] for c in dict.fromkeys(found)]
    t = normalize(text)
    if not t:
        return []
    names = [(n, c) for n, c in ref.names if within(c)]
    # Whole names inside the text, longest first; a name inside a longer match is not another hit.
    hits: list[tuple[str, str]] = []
    for n, c in names:
        if len(n) >= 2 and n in t and not any(n in h for h, _ in hits):
            hits.append((n, c))
    if hits:
        return [ref.courses[c] for _, c in hits]
    for alias in sorted(ALIASES, key=len, reverse=True):
        if alias in t:
            targets = ALIASES[alias]
            out = [ref.courses[c] for n, c in names if any(x in n for x in targets)]
            if out:
                return sorted(out, key=lambda c: (len(c.name), c.code))
    rest = _bare(text)
    if not loose or len(rest) < 2:
        return []
    part = [ref.courses[c] for n, c in names if rest in n]
    if part:
        return sorted(part, key=lambda c: (len(c.name), c.code))
    close = difflib.get_close_matches(rest, [n for n, _ in names], n=3, cutoff=0.75)
    by_name = {n: c for n, c in names}
    return [ref.courses[by_name[n]] for n in close]


async def find_courses(db: Database, text: str, scope: Optional[Iterable[str]] = None, *,
                       loose: bool = True) -> list[CourseInfo]:
    return match_courses(await cache_for(db).reference(), text, scope, loose=loose)


async def candidate_course_codes(db: Database, candidate_id: int) -> set[str]:
    """Courses of the candidate's plans and of their results."""
    cache = cache_for(db)
    ref, data = await cache.reference(), await cache.candidate(candidate_id)
    codes = {r.course_code for r in data.results}
    for e in data.enrolments:
        codes.update(p.course_code for p in ref.plans.get(e.major_code, ()))
    return codes


async def course(db: Database, code: str) -> Optional[CourseInfo]:
    return (await cache_for(db).reference()).courses.get(code)


async def textbooks(db: Database, course_code: str) -> tuple[TextbookInfo, ...]:
    return (await cache_for(db).reference()).textbooks.get(course_code, ())


async def major(db: Database, major_code: str) -> Optional[MajorInfo]:
    return (await cache_for(db).reference()).majors.get(major_code)


async def sitting(db: Database, code: str) -> Optional[SittingInfo]:
    return (await cache_for(db).reference()).sittings.get(code)


# --- Business windows ---------------------------------------------------------------------------

# How long after closing a window still shows under 未开放办理的业务 when nothing follows it.
CLOSED_SHOWN_FOR = dt.timedelta(days=365)


def window_states(windows: Iterable[WindowInfo], now: dt.datetime) -> Windows:
    """Open now (soonest closing first); for every other business its next or last window."""
    by_kind: dict[str, list[WindowInfo]] = {}
    for w in windows:
        by_kind.setdefault(w.kind, []).append(w)
    open_, not_open = [], []
    for kind, ws in by_kind.items():
        current = [w for w in ws if w.opens_at <= now < w.closes_at]
        if current:
            open_.extend(current)
            continue
        upcoming = min((w for w in ws if w.opens_at > now), key=lambda w: w.opens_at, default=None)
        closed = max((w for w in ws if w.closes_at <= now), key=lambda w: w.closes_at, default=None)
        if closed is not None and now - closed.closes_at > CLOSED_SHOWN_FOR and upcoming is None:
            continue
        not_open.append(WindowState(kind, upcoming, closed))
    open_.sort(key=lambda w: (w.closes_at, w.id))
    not_open.sort(key=lambda s: (s.upcoming is None, s.upcoming.opens_at if s.upcoming else now,
                                 -(s.last_closed.closes_at.timestamp() if s.last_closed else 0), s.kind))
    return Windows(tuple(open_), tuple(not_open))


async def business_windows(db: Database, now: Optional[dt.datetime] = None) -> Windows:
    return window_states((await cache_for(db).reference()).windows, now or m.utcnow())


# --- 站内消息 and 新闻通知 --------------------------------------------------------------------------


def _audience(candidate_id: Optional[int]):
    n = m.Notice
    if candidate_id is None:
        return n.audience == "all"
    return or_(
        n.audience == "all",
        and_(n.audience == "major", exists().where(m.CandidateMajor.candidate_id == candidate_id,
                                                   m.CandidateMajor.major_code == n.audience_value)),
        and_(n.audience == "sitting", exists().where(m.ScoreRecord.candidate_id == candidate_id,
                                                     m.ScoreRecord.sitting_code == n.audience_value,
                                                     m.ScoreRecord.kind == "exam")),
    )


async def notices(db: Database, *, openid: str, candidate_id: Optional[int], category: str = "站内消息",
                  now: Optional[dt.datetime] = None, limit: int = 20) -> list[NoticeItem]:
    """Published notices this follower may read, newest first, with their read marks (one statement)."""
    now = now or m.utcnow()
    n = m.Notice
    read = (select(NoticeRead.read_at).where(NoticeRead.notice_id == n.id, NoticeRead.openid == openid)
            .correlate(n).scalar_subquery())
    q = (select(n.id, n.category, n.title, n.body, n.publish_at, read.label("read_at"))
         .where(n.category == category, n.publish_at <= now, _audience(candidate_id))
         .order_by(n.publish_at.desc(), n.id.desc()).limit(limit))
    async with db.session() as s:
        rows = (await s.execute(q)).all()
    return [NoticeItem(r.id, r.category, r.title, r.body, r.publish_at, r.read_at is not None) for r in rows]


async def mark_notice_read(db: Database, openid: str, notice_id: int, now: Optional[dt.datetime] = None) -> None:
    """The follower opened the notice; the first time counts."""
    stmt = db.insert(NoticeRead.__table__).values(openid=openid, notice_id=notice_id, read_at=now or m.utcnow())
    async with db.session() as s, s.begin():
        await s.execute(stmt.on_conflict_do_nothing(index_elements=["openid", "notice_id"]))


# --- Orders and feedback ------------------------------------------------------------------------


async def orders(db: Database, candidate_id: int) -> list[OrderInfo]:
    """The candidate's orders, newest first."""
    o = Order.__table__
    async with db.session() as s:
        rows = (await s.execute(
            select(o, m.Major.name.label("major_name")).join(m.Major, m.Major.code == o.c.major_code)
            .where(o.c.candidate_id == candidate_id).order_by(o.c.created_at.desc(), o.c.id.desc())
        )).mappings().all()
    return [
        OrderInfo(r["order_number"], r["item"], r["major_code"], r["major_name"], r["admission_number"],
                  Decimal(str(r["amount"])).quantize(Decimal("0.01")), r["status"],
                  ORDER_STATUSES.get(r["status"], r["status"]), r["created_at"], r["paid_at"], r["closed_at"])
        for r in rows
    ]


async def add_feedback(db: Database, *, openid: str, candidate_id: Optional[int], title: str, body: str,
                       contact_name: Optional[str] = None, contact_phone: Optional[str] = None,
                       now: Optional[dt.datetime] = None) -> int:
    """Store a 反馈建议; returns its number."""
    row = Feedback(openid=openid, candidate_id=candidate_id, title=title, body=body, contact_name=contact_name,
                   contact_phone=contact_phone, created_at=now or m.utcnow(), handled=False)
    async with db.session() as s, s.begin():
        s.add(row)
        await s.flush()
        return row.id
