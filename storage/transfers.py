"""省际转考: 外省转入 records (the office's, with their progress and 现场确认) and the rules of 本市转出.

Plain rules first (provinces, the 准考证号 check, status transitions, when the 现场确认 reminder is
due, which results may leave Shanghai), then the database operations the import, the staff
command, the scheduler and the dialogs call. Every status change of a 外省转入 record writes its
push (storage.outbox) in the transaction of the change; reaching 已完成 writes the accepted courses
as results of kind 'transfer', so they count in 考试计划 and 毕业进度 as 转入.
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage import outbox, queries
from storage.db import Database
from storage.models import Course, KeyValue, Major, ScoreRecord, utcnow
from storage.models_applications import Application, ApplicationItem
from storage.models_transfers import TRANSFER_IN_STATUSES, TransferIn, TransferInCourse

SHANGHAI = outbox.SHANGHAI


class TransferError(ValueError):
    """A refused request; the message is short Chinese for the staff member or the candidate."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- Provinces -------------------------------------------------------------------------------------

# The 31 provincial-level divisions of the mainland that run a self-study examination office.
PROVINCES: tuple[str, ...] = (
    "北京市", "天津市", "河北省", "山西省", "内蒙古自治区", "辽宁省", "吉林省", "黑龙江省", "上海市",
    "江苏省", "浙江省", "安徽省", "福建省", "江西省", "山东省", "河南省", "湖北省", "湖南省", "广东省",
    "广西壮族自治区", "海南省", "重庆市", "四川省", "贵州省", "云南省", "西藏自治区", "陕西省", "甘肃省",
    "青海省", "宁夏回族自治区", "新疆维吾尔自治区",
)
SHANGHAI_PROVINCE = "上海市"


def _short(name: str) -> str:
    for suffix in ("壮族自治区", "回族自治区", "维吾尔自治区", "自治区", "省", "市"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


_BY_NAME: dict[str, str] = {}
for _p in PROVINCES:
    _BY_NAME[_p] = _p
    _BY_NAME[_short(_p)] = _p
_BY_NAME.update({"广西自治区": "广西壮族自治区", "宁夏自治区": "宁夏回族自治区", "新疆自治区": "新疆维吾尔自治区",
                 "内蒙": "内蒙古自治区", "黑龙江": "黑龙江省"})


def province_of(text: str) -> Optional[str]:
    """'江苏', '江苏省', ' 广西 ' -> the full name; None when it is no province of the mainland."""
    t = re.sub(r"\s+", "", unicodedata.normalize("NFKC", text or ""))
    return _BY_NAME.get(t)


def province_choices(*, exclude_shanghai: bool = True) -> tuple[str, ...]:
    return tuple(p for p in PROVINCES if not (exclude_shanghai and p == SHANGHAI_PROVINCE))


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
    return [
        TransferInView(
            r.id, r.reference, r.admission_number, r.from_province, r.from_admission_number, r.major_code,
            major_names.get(r.major_code, r.major_code), r.applied_on, r.status, r.reason or "", r.confirm_at,
            r.confirm_ends_at, r.confirm_place or "", r.confirm_bring or "", r.status_changed_at,
            tuple(TransferInCourseView(c.course_code, names.get(c.course_code, c.course_code), c.source_name or "",
                                       c.score, c.grade, c.passed_on, c.accepted, c.note or "")
                  for c in r.courses),
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


@dataclass(frozen=True)
class StatusChange:
    transfer: TransferInView
    pushes: int


async def set_status(db: Database, reference: str, status: str, *, reason: Optional[str] = None,
                     confirm_at: Optional[dt.datetime] = None, confirm_ends_at: Optional[dt.datetime] = None,
                     place: Optional[str] = None, bring: Optional[str] = None,
                     now: Optional[dt.datetime] = None) -> StatusChange:
    """The office moves a record (and may set its 现场确认 slot); the push goes in the same transaction.

    Setting only the slot of a record already 待现场确认 pushes the new time too (a new change)."""
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
        ref = row.reference
    return StatusChange((await list_transfers_in(db, reference=ref))[0], pushes)


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


_FULLWIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")


def target_admission_number(text: str) -> str:
    """转入准考证号: digits only (spaces, dashes removed), 10 to 15 of them — provinces differ in
    length (Shanghai's are 12) — not one digit repeated. Raises ValueError with the reason."""
    t = re.sub(r"[\s\u3000\-]+", "", (text or "").translate(_FULLWIDTH_DIGITS))
    if not t:
        raise ValueError("请输入转入省的准考证号。")
    if not t.isdigit():
        raise ValueError("准考证号应全部是数字，请核对后重新输入。")
    if not 10 <= len(t) <= 15:
        raise ValueError(f"准考证号一般是10到15位数字，您输入的是{len(t)}位，请核对。")
    if len(set(t)) == 1:
        raise ValueError("这个准考证号看起来不对，请核对后重新输入。")
    return t


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


def month_text(day: Optional[dt.date]) -> str:
    return f"{day.year}年{day.month:02d}月" if day else "-"


def result_text(r: ResultInfo) -> str:
    """'78分' / '合格' / '免考' / '转入': how a result reads in a list."""
    if r.kind == "exemption":
        return "免考"
    if r.score is not None:
        return f"{r.score.normalize():f}分" if r.score == r.score.to_integral() else f"{r.score}分"
    return r.grade or ("转入" if r.kind == "transfer" else "-")


__all__ = [
    "PROVINCES", "TRANSFER_OUT_LEVELS", "TRANSFER_OUT_REASONS", "ResultInfo", "StatusChange", "TransferChoice",
    "TransferError", "TransferInView", "TransferOutDetails", "TransferOutRules", "approval_detail",
    "confirmation_reminders", "credit_accepted", "details_problems", "list_transfers_in", "province_of",
    "record_problems", "reference_number", "reminder_due", "reminder_is_due", "set_status", "status_changed",
    "target_admission_number", "transfer_out_choices", "transfer_out_problems", "transfer_out_results",
    "transfer_out_rules", "transfers_in_of", "transition_problem",
]
