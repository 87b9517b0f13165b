"""The causes of pushes: each writes its outbox rows in the caller's transaction, once per recipient.

Every row carries a deterministic `client_msg_id` (cause + recipient), inserted with ON CONFLICT DO
NOTHING: running a cause twice (a re-import, a retried job) adds nothing. The delivery engine
(bot/delivery.py) sends the rows; this module only decides what is pushed, to whom and when.

Who gets what: only bound (candidate_id set) and subscribed followers get pushes; notices, score
releases and reminders also skip followers who opted out of notices (WechatUser.notices_opt_out),
while review outcomes about a candidate's own applications ignore that opt-out.

Texts are for a phone screen; template values are at most 20 characters on one line (WeChat's rule
since 2023-05), and no push carries a score or an ID number.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, exists, func, literal, select, union, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Database
from storage.models import (
    BusinessWindow,
    CandidateMajor,
    DialogState,
    KeyValue,
    Notice,
    Outbox,
    ScoreRecord,
    Sitting,
    WechatUser,
    utcnow,
)
from storage.vocab import WINDOW_KINDS

log = logging.getLogger(__name__)

SHANGHAI = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")  # no DST since 1991

# "feedback_reply": the office's answer to a follower's 反馈建议 (storage.feedback);
# "account": alerts about the candidate's account (a binding moved, failed attempts).
KINDS = ("review_outcome", "notice", "score_release", "reminder", "feedback_reply", "account",
         "payment_receipt")
STATUSES = ("pending", "claimed", "sent", "failed", "waiting")
PRIORITY_OWN = 0  # a candidate's own review outcome goes before bulk pushes
PRIORITY_BULK = 5

TEMPLATE_VALUE_MAX = 20
CLIENT_MSG_ID_MAX = 64
# A customer-service text is limited to about 2048 bytes; keep a margin for the hint line.
TEXT_MAX_BYTES = 1900

# What a candidate replies to reach each business (window kind). The application flows answer
# these words; pushes name them in their hint.
KIND_KEYWORDS: dict[str, str] = {
    "exemption": "免考",
    "backfill": "成绩补登",
    "thesis": "论文",
    "graduation": "申请毕业",  # "毕业" alone is the 毕业与学位 submenu (dialogs/menu.py)
    "degree": "学位",
    "transfer_out": "转出",
    "transfer_in": "转入",
    "graduation_fee": "我的订单",
}
BUSINESS_KEYWORDS: dict[str, str] = {WINDOW_KINDS[k]: w for k, w in KIND_KEYWORDS.items()}
NOTICE_KEYWORD = "站内消息"

# The keywords (关键词) each template the service sends fills, with the label to choose for
# each when applying for the template in the 公众平台 (docs/wechat-setup.md). The emulator
# registers the same templates; tests/test_template_keywords.py holds the three together.
TEMPLATE_KEYWORDS: dict[str, dict[str, str]] = {
    "review_result": {"thing1": "业务名称", "phrase2": "审核结果", "time3": "审核时间", "thing4": "备注"},
    "exam_notice": {"thing1": "通知标题", "time2": "发布时间", "thing3": "说明"},
    "score_release": {"thing1": "考次", "time2": "发布时间", "thing3": "查询方式"},
    "business_reminder": {"thing1": "业务名称", "time2": "截止时间", "thing3": "温馨提示"},
}
SCORES_KEYWORD = "成绩"

# A sitting whose scores were released longer ago than this is history: importing more of its
# scores (a data migration, a late correction) tells nobody that "results are out".
SCORE_RELEASE_HISTORY = dt.timedelta(days=30)
# Windows that opened while nothing checked (first start, a long outage) are still announced if
# they opened at most this long ago and are still open.
OPENING_LOOKBACK = dt.timedelta(days=3)
CLOSING_AHEAD = dt.timedelta(hours=24)
REMINDER_CHECK_KEY = "pushes.window_reminders.checked_at"

# Lookups by key lists go in chunks well below SQLite's and asyncpg's parameter limits.
CHUNK = 500


# --- Small pure helpers --------------------------------------------------------------------------


def client_msg_id(*parts: object) -> str:
    """Deterministic id of one push (cause + recipient), at most 64 characters.

    Short keys stay readable ("review:A123:1:openid"); longer ones keep a readable prefix and
    end in a hash of the whole key.
    """
    key = ":".join(str(p) for p in parts)
    if len(key) <= CLIENT_MSG_ID_MAX:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"{key[:CLIENT_MSG_ID_MAX - 33]}~{digest}"


_SPACES = re.compile(r"\s+")


def template_value(text: object, limit: int = TEMPLATE_VALUE_MAX) -> str:
    """One line of at most `limit` characters: line breaks become spaces, overflow ends in '…'."""
    s = _SPACES.sub(" ", str(text)).strip()
    if len(s) <= limit:
        return s
    return s[:limit - 1].rstrip() + "…"


def fit_text(text: str, max_bytes: int = TEXT_MAX_BYTES) -> str:
    """Cut `text` to at most `max_bytes` of UTF-8, at a line boundary when one is near, with '……'."""
    if len(text.encode("utf-8")) <= max_bytes:
        return text
    budget = max_bytes - len("……".encode("utf-8"))
    cut = text.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    line_end = cut.rfind("\n")
    if line_end > len(cut) * 2 // 3:
        cut = cut[:line_end]
    return cut.rstrip() + "……"


def shanghai_time(t: dt.datetime) -> str:
    """'2026年12月01日 09:00': how a time keyword and a candidate read a moment."""
    return t.astimezone(SHANGHAI).strftime("%Y年%m月%d日 %H:%M")


def payload(text: str, template: str, data: dict[str, str], url: str | None = None) -> dict[str, Any]:
    """The outbox payload the delivery engine reads; template values are forced into shape."""
    out: dict[str, Any] = {
        "text": text,
        "template": {"kind": template, "data": {k: template_value(v) for k, v in data.items()}},
    }
    if url:
        out["url"] = url
    return out


def business_keyword(business: str) -> str:
    return BUSINESS_KEYWORDS.get(business, business)


# --- Writing rows --------------------------------------------------------------------------------


def _insert_for(session: AsyncSession, db_or_dialect: Database | str | None = None):
    if isinstance(db_or_dialect, Database):
        name = db_or_dialect.dialect
    elif isinstance(db_or_dialect, str):
        name = db_or_dialect
    else:
        name = session.get_bind().dialect.name
    return (pg_insert if name == "postgresql" else sqlite_insert)(Outbox.__table__)


def _row(*, openid: str, kind: str, payload: dict[str, Any], client_msg_id: str, priority: int,
         due_at: dt.datetime, notice_id: int | None, now: dt.datetime) -> dict[str, Any]:
    if kind not in KINDS:
        raise ValueError(f"unknown push kind {kind!r}")
    if len(client_msg_id) > CLIENT_MSG_ID_MAX:
        raise ValueError("client_msg_id longer than 64 characters")
    return {
        "openid": openid, "kind": kind, "payload": payload, "client_msg_id": client_msg_id,
        "status": "pending", "attempts": 0, "priority": priority, "due_at": due_at,
        "notice_id": notice_id, "created_at": now,
    }


async def enqueue_many(session: AsyncSession, rows: Sequence[dict[str, Any]],
                       db_or_dialect: Database | str | None = None) -> int:
    """Insert outbox rows (dicts from `_row`) in the session's transaction; returns how many were new.

    One executemany (batched multi-VALUES under the hood), never a statement per row.
    """
    if not rows:
        return 0
    table = Outbox.__table__
    stmt = _insert_for(session, db_or_dialect).on_conflict_do_nothing(index_elements=["client_msg_id"])
    result = await session.execute(stmt.returning(table.c.id), list(rows))
    return len(result.all())


async def enqueue(session: AsyncSession, db_or_dialect: Database | str | None = None, *, openid: str, kind: str,
                  payload: dict[str, Any], client_msg_id: str, priority: int = PRIORITY_BULK,
                  due_at: dt.datetime | None = None, notice_id: int | None = None) -> bool:
    """One outbox row in the caller's transaction; False when that client_msg_id already exists."""
    now = utcnow()
    row = _row(openid=openid, kind=kind, payload=payload, client_msg_id=client_msg_id, priority=priority,
               due_at=due_at or now, notice_id=notice_id, now=now)
    return await enqueue_many(session, [row], db_or_dialect) == 1


async def queue_reply(db: Database, openid: str, *, text: str = "", image: str | None = None, reason: str = "",
                      wait: bool = True) -> int:
    """A reply to the user's own message that could not be given in time nor sent at once (kind
    "reply", its own transaction: there is no cause to join). `wait`: until the user writes again
    (the 48-hour window or the message quota refused it), else due now. Returns the row's id."""
    now = utcnow()
    row = {"openid": openid, "kind": "reply", "payload": {"text": text, "image": image},
           "client_msg_id": f"reply:{uuid.uuid4().hex}", "status": "waiting" if wait else "pending",
           "attempts": 0, "priority": PRIORITY_OWN, "due_at": now, "created_at": now,
           "last_error": reason[:255] or None}
    async with db.session() as s, s.begin():
        return (await s.execute(_insert_for(s, db).values(**row).returning(Outbox.__table__.c.id))).scalar_one()


async def enqueue_audience(session: AsyncSession, openids: Select, *, kind: str, payload: dict[str, Any],
                           cause: tuple[object, ...], priority: int = PRIORITY_BULK, due_at: dt.datetime | None = None,
                           notice_id: int | None = None) -> int:
    """One row per openid that `openids` (a SELECT of one column) yields, all with the same payload.

    Runs as INSERT ... SELECT in the database: 100,000 recipients are one statement, the payload
    is sent once. client_msg_id = client_msg_id(*cause, openid), as `enqueue` would make it;
    the rare openid too long for the readable form goes through `enqueue_many`. Returns new rows.
    """
    now = utcnow()
    due = due_at or now
    prefix = client_msg_id(*cause, "")
    room = CLIENT_MSG_ID_MAX - len(prefix)
    aud = openids.order_by(None).subquery()
    t = Outbox.__table__
    columns = ["openid", "kind", "payload", "client_msg_id", "status", "attempts", "priority", "due_at",
               "created_at", "notice_id"]
    rows = select(
        aud.c.openid, literal(kind), literal(payload, type_=t.c.payload.type), literal(prefix) + aud.c.openid,
        literal("pending"), literal(0), literal(priority), literal(due, type_=t.c.due_at.type),
        literal(now, type_=t.c.created_at.type), literal(notice_id, type_=t.c.notice_id.type),
    ).where(func.length(aud.c.openid) <= room)
    stmt = _insert_for(session).from_select(columns, rows).on_conflict_do_nothing(index_elements=["client_msg_id"])
    written = max((await session.execute(stmt)).rowcount or 0, 0)
    long_ones = (await session.execute(select(aud.c.openid).where(func.length(aud.c.openid) > room))).scalars()
    written += await enqueue_many(session, [
        _row(openid=o, kind=kind, payload=payload, client_msg_id=client_msg_id(*cause, o), priority=priority,
             due_at=due, notice_id=notice_id, now=now)
        for o in long_ones
    ])
    return written


# --- Recipients ----------------------------------------------------------------------------------


def _reachable(*, notices: bool):
    """Followers a push may go to: bound and subscribed; for notices also not opted out."""
    conds = [WechatUser.candidate_id.is_not(None), WechatUser.subscribed.is_(True)]
    if notices:
        conds.append(WechatUser.notices_opt_out.is_(False))
    return and_(*conds)


async def _openids_of_candidates(session: AsyncSession, candidate_ids: Iterable[int], *, notices: bool) -> list[str]:
    ids = sorted(set(candidate_ids))
    if not ids:
        return []
    base = select(WechatUser.openid, WechatUser.candidate_id).where(_reachable(notices=notices))
    if len(ids) > CHUNK * 4:
        # Many candidates (a whole sitting): one scan of the followers beats hundreds of IN lists.
        wanted = set(ids)
        return sorted(o for o, c in await session.execute(base) if c in wanted)
    out: list[str] = []
    for i in range(0, len(ids), CHUNK):
        res = await session.execute(base.where(WechatUser.candidate_id.in_(ids[i:i + CHUNK])))
        out.extend(o for o, _ in res)
    return sorted(out)


# --- Review outcomes -----------------------------------------------------------------------------


def review_texts(business: str, approved: bool, decided_at: dt.datetime,
                 keyword: str | None = None, detail: str | None = None,
                 hint: str | None = None) -> tuple[str, dict[str, str]]:
    """(customer-service text, review_result template data) of one decision.

    `detail`: lines a business adds to an approval (本市转出: its 转出编号 and courses); `hint`:
    the template's last value instead of "回复…查看详情" (本市转出: the 转出编号 itself)."""
    kw = keyword or business_keyword(business)
    template_hint = hint
    if approved:
        extra = f"\n{detail.strip()}" if detail and detail.strip() else ""
        text = fit_text(f"您的{business}审核结果：已通过。{extra}", TEXT_MAX_BYTES - 64) + f"\n回复“{kw}”查看详情。"
        hint = f"回复“{kw}”查看详情"
    else:
        text = f"您的{business}审核结果：未通过。\n回复“{kw}”查看原因并重新提交。"
        hint = f"回复“{kw}”查看原因"
    data = {
        "thing1": business,
        "phrase2": "已通过" if approved else "未通过",
        "time3": shanghai_time(decided_at),
        "thing4": template_hint or hint,
    }
    return text, data


async def review_outcome(session: AsyncSession, *, candidate_id: int, business: str, approved: bool,
                         decided_at: dt.datetime, application_ref: str, decision_no: int = 1,
                         keyword: str | None = None, url: str | None = None, detail: str | None = None,
                         hint: str | None = None) -> int:
    """Tell the candidate (every bound, subscribed openid) a decision on their application.

    Call it inside the decision's transaction: the push exists exactly when the decision does.
    `application_ref` + `decision_no` name the decision (a resubmitted application gets a new
    decision number); `keyword` is what the candidate replies to see the reason or next step
    (default: the business's keyword). Ignores the notices opt-out. Returns the rows written.
    """
    text, data = review_texts(business, approved, decided_at, keyword, detail, hint)
    body = payload(text, "review_result", data, url)
    now = utcnow()
    openids = await _openids_of_candidates(session, [candidate_id], notices=False)
    rows = [
        _row(openid=o, kind="review_outcome", payload=body,
             client_msg_id=client_msg_id("review", application_ref, decision_no, o),
             priority=PRIORITY_OWN, due_at=now, notice_id=None, now=now)
        for o in openids
    ]
    return await enqueue_many(session, rows)


async def thesis_advisor(session: AsyncSession, *, candidate_id: int, application_ref: str, change_no: int,
                         text: str, data: dict[str, str]) -> int:
    """Tell the candidate the 指导教师 assigned to their approved thesis application (by file or by
    a staff member after the decision), in the transaction that records it; `change_no` numbers
    the assignments, so a changed advisor is pushed again and a repeated one is not."""
    body = payload(text, "review_result", data)
    now = utcnow()
    openids = await _openids_of_candidates(session, [candidate_id], notices=False)
    rows = [
        _row(openid=o, kind="review_outcome", payload=body,
             client_msg_id=client_msg_id("advisor", application_ref, change_no, o),
             priority=PRIORITY_OWN, due_at=now, notice_id=None, now=now)
        for o in openids
    ]
    return await enqueue_many(session, rows)


# --- Account security notices --------------------------------------------------------------------


async def account_alert(session: AsyncSession, *, openid: str, text: str, cause: tuple[object, ...]) -> bool:
    """Tell `openid` something about the security of its account (its binding moved to another
    WeChat, someone is trying passwords on it). Goes out whatever the opt-outs, ahead of bulk
    pushes; `cause` names it, so the same cause (e.g. one alert per candidate per hour) is
    written once. Call it inside the transaction of the event. False when it already exists."""
    now = utcnow()
    row = _row(openid=openid, kind="account", payload={"text": fit_text(text)},
               client_msg_id=client_msg_id("account", *cause, openid), priority=PRIORITY_OWN,
               due_at=now, notice_id=None, now=now)
    return await enqueue_many(session, [row]) == 1


# --- Payment receipts ----------------------------------------------------------------------------


async def payment_receipt(session: AsyncSession, *, candidate_id: int, payer_openid: str, order_number: str,
                          text: str, data: dict[str, str]) -> int:
    """The receipt of a paid order (storage.payments), in the payment's transaction.

    To every bound, subscribed openid of the candidate and to the payer (who may have paid from
    an account not bound); one row per openid and order, whatever the number of notifications.
    No template kind is configured for it: it goes as a customer-service text (the payer has
    just used the account, so the 48-hour window is open).
    """
    body = payload(text, "payment_receipt", data)
    now = utcnow()
    openids = set(await _openids_of_candidates(session, [candidate_id], notices=False))
    if payer_openid:
        openids.add(payer_openid)
    rows = [
        _row(openid=o, kind="payment_receipt", payload=body, client_msg_id=client_msg_id("paid", order_number, o),
             priority=PRIORITY_OWN, due_at=now, notice_id=None, now=now)
        for o in sorted(openids)
    ]
    return await enqueue_many(session, rows)


# --- Score release -------------------------------------------------------------------------------


def score_release_texts(sitting_name: str, released_at: dt.datetime) -> tuple[str, dict[str, str]]:
    text = f"{sitting_name}自学考试成绩已发布。\n回复“{SCORES_KEYWORD}”查询您的成绩。"
    data = {"thing1": f"{sitting_name}自学考试", "time2": shanghai_time(released_at),
            "thing3": f"回复“{SCORES_KEYWORD}”查询"}
    return text, data


async def score_release(session: AsyncSession, sitting_code: str, candidate_ids: Iterable[int], *,
                        released_at: dt.datetime | None = None, due_at: dt.datetime | None = None) -> int:
    """Tell each candidate (bound, subscribed, not opted out) that a sitting's results are out.

    The scores themselves are never in the push. One row per sitting and openid, ever.
    """
    now = utcnow()
    sitting = await session.get(Sitting, sitting_code)
    name = sitting.name if sitting is not None else sitting_code
    released = released_at or (sitting.scores_released_at if sitting is not None else None) or now
    text, data = score_release_texts(name, released)
    body = payload(text, "score_release", data)
    openids = await _openids_of_candidates(session, candidate_ids, notices=True)
    rows = [
        _row(openid=o, kind="score_release", payload=body, client_msg_id=client_msg_id("scores", sitting_code, o),
             priority=PRIORITY_BULK, due_at=due_at or now, notice_id=None, now=now)
        for o in openids
    ]
    return await enqueue_many(session, rows)


async def release_imported_scores(session: AsyncSession, new_exam_scores: dict[str, set[int]],
                                  now: dt.datetime | None = None) -> dict[str, int]:
    """The import's hook: for each sitting that got new exam scores, tell the affected candidates.

    Sets Sitting.scores_released_at when it is empty. A release time in the future (set by the
    office in sittings.csv) holds the pushes until then; a sitting released more than
    SCORE_RELEASE_HISTORY ago is history and pushes nothing. Returns rows written per sitting.
    """
    now = now or utcnow()
    codes = sorted(c for c, ids in new_exam_scores.items() if c and ids)
    if not codes:
        return {}
    await session.execute(
        update(Sitting).where(Sitting.code.in_(codes), Sitting.scores_released_at.is_(None))
        .values(scores_released_at=now).execution_options(synchronize_session=False)
    )
    released = dict((await session.execute(
        select(Sitting.code, Sitting.scores_released_at).where(Sitting.code.in_(codes))
    )).all())
    out: dict[str, int] = {}
    history = []
    for code in codes:
        at = released.get(code) or now
        if at < now - SCORE_RELEASE_HISTORY:
            history.append(code)
            continue
        out[code] = await score_release(session, code, new_exam_scores[code], released_at=at, due_at=max(at, now))
    if history:
        log.info("no score-release push for sittings released over %d days ago: %s",
                 SCORE_RELEASE_HISTORY.days, ", ".join(history))
    return out


# --- Notices -------------------------------------------------------------------------------------


def notice_texts(notice: Notice) -> tuple[str, dict[str, str]]:
    hint = f"回复“{NOTICE_KEYWORD}”查看全部通知。"
    text = fit_text(f"【{notice.category}】{notice.title}\n{notice.body.strip()}", TEXT_MAX_BYTES - len(hint.encode()))
    data = {"thing1": notice.title, "time2": shanghai_time(notice.publish_at),
            "thing3": f"回复“{NOTICE_KEYWORD}”查看全文"}
    return f"{text}\n{hint}", data


def notice_audience(notice: Notice):
    """SELECT of the openids a notice goes to: reachable followers, narrowed by major or sitting."""
    q = select(WechatUser.openid).where(_reachable(notices=True))
    if notice.audience == "major":
        q = q.where(exists().where(CandidateMajor.candidate_id == WechatUser.candidate_id,
                                   CandidateMajor.major_code == notice.audience_value))
    elif notice.audience == "sitting":
        q = q.where(exists().where(ScoreRecord.candidate_id == WechatUser.candidate_id,
                                   ScoreRecord.sitting_code == notice.audience_value,
                                   ScoreRecord.kind == "exam"))
    elif notice.audience != "all":
        raise ValueError(f"unknown audience {notice.audience!r}")
    return q


async def fan_out_notice(session: AsyncSession, notice: Notice, now: dt.datetime | None = None) -> int:
    """Write one outbox row per recipient and mark the notice fanned out, in the session's transaction.

    Bulk: one INSERT ... SELECT over the audience (100,000 recipients take a few seconds).
    Returns the number of recipients. A notice already fanned out, or not to be pushed, gets nothing.
    """
    if notice.fanned_out_at is not None or not notice.push:
        return 0
    now = now or utcnow()
    text, data = notice_texts(notice)
    recipients = await enqueue_audience(session, notice_audience(notice), kind="notice",
                                        payload=payload(text, "exam_notice", data), cause=("notice", notice.id),
                                        due_at=now, notice_id=notice.id)
    notice.fanned_out_at = now
    notice.recipients = recipients
    await session.flush()
    log.info("notice %s fanned out to %d followers", notice.id, recipients)
    return recipients


async def fan_out_due_notices(db: Database, now: dt.datetime | None = None) -> dict[int, int]:
    """Fan out every notice whose publish time has come; each in its own transaction.

    Safe to run concurrently with itself or with `zikao-bot notice publish`: the notice row is
    locked and re-checked, and client_msg_ids are unique per notice and recipient.
    """
    now = now or utcnow()
    async with db.session() as s:
        due = list((await s.execute(
            select(Notice.id).where(Notice.push.is_(True), Notice.fanned_out_at.is_(None), Notice.publish_at <= now)
            .order_by(Notice.publish_at, Notice.id)
        )).scalars())
    done: dict[int, int] = {}
    for notice_id in due:
        async with db.session() as s, s.begin():
            notice = await s.get(Notice, notice_id, with_for_update=True, populate_existing=True)
            if notice is None or notice.fanned_out_at is not None:
                continue
            done[notice_id] = await fan_out_notice(s, notice, now)
    return done


async def notice_progress(db: Database, notice_id: int) -> dict[str, int]:
    """Outbox rows of a notice by status (every status present, zero when none)."""
    counts = dict.fromkeys(STATUSES, 0)
    async with db.session() as s:
        res = await s.execute(
            select(Outbox.status, func.count()).where(Outbox.notice_id == notice_id).group_by(Outbox.status)
        )
        for status, n in res:
            counts[status] = n
    return counts


# --- Business-window reminders -------------------------------------------------------------------


def draft_holders(kind: str, now: dt.datetime):
    """SELECT of the openids with an unsubmitted draft for a business (window kind) at `now`.

    A draft is either a live dialog state in the flow named after the window kind (a
    conversation left half-way), or an application of that kind still in status 'draft'
    (storage.applications); the latter reaches every openid bound to its candidate.
    """
    from storage.models_applications import Application

    in_dialog = select(DialogState.openid).where(
        DialogState.flow == kind,
        (DialogState.expires_at.is_(None)) | (DialogState.expires_at > now),
    )
    with_application = select(WechatUser.openid).join(
        Application, Application.candidate_id == WechatUser.candidate_id
    ).where(Application.kind == kind, Application.status == "draft")
    return union(in_dialog, with_application)


def application_name(kind: str) -> str:
    """'exemption' -> '免考申请', 'backfill' -> '成绩补登申请': how a candidate names their draft."""
    name = WINDOW_KINDS.get(kind, kind)
    return (name[2:] if name.startswith("申请") else name) + "申请"


def window_open_texts(window: BusinessWindow) -> tuple[str, dict[str, str]]:
    kw = KIND_KEYWORDS.get(window.kind, WINDOW_KINDS.get(window.kind, window.kind))
    closes = shanghai_time(window.closes_at)
    text = f"{window.title}现已开始办理，截止时间：{closes}。\n回复“{kw}”查看须知并办理。"
    data = {"thing1": window.title, "time2": closes, "thing3": f"已开始办理，回复“{kw}”办理"}
    return text, data


def window_closing_texts(window: BusinessWindow) -> tuple[str, dict[str, str]]:
    kw = KIND_KEYWORDS.get(window.kind, WINDOW_KINDS.get(window.kind, window.kind))
    closes = shanghai_time(window.closes_at)
    text = f"您的{application_name(window.kind)}还没有提交，办理将于{closes}截止。\n回复“{kw}”继续填写并提交。"
    data = {"thing1": window.title, "time2": closes, "thing3": f"申请未提交，回复“{kw}”继续"}
    return text, data


@dataclass
class ReminderRun:
    opened: dict[int, int]  # window id -> rows written
    closing: dict[int, int]


async def window_reminders(db: Database, now: dt.datetime | None = None) -> ReminderRun:
    """Announce windows that opened since the last check; remind draft holders a day before closing.

    Opening: every reachable follower, once per window (the last check time is kept in
    key_values; client_msg_ids make a repeat harmless). Closing: windows closing within 24 hours,
    to followers with an unsubmitted draft for that business, once per window and follower.
    """
    now = now or utcnow()
    run = ReminderRun({}, {})
    async with db.session() as s, s.begin():
        mark = await s.get(KeyValue, REMINDER_CHECK_KEY, with_for_update=True)
        since = now - OPENING_LOOKBACK
        if mark is not None and mark.value.get("at"):
            since = max(since, dt.datetime.fromisoformat(mark.value["at"]))
        opened = (await s.execute(
            select(BusinessWindow).where(BusinessWindow.opens_at > since, BusinessWindow.opens_at <= now,
                                         BusinessWindow.closes_at > now).order_by(BusinessWindow.opens_at)
        )).scalars().all()
        for w in opened:
            text, data = window_open_texts(w)
            run.opened[w.id] = await enqueue_audience(
                s, select(WechatUser.openid).where(_reachable(notices=True)), kind="reminder",
                payload=payload(text, "business_reminder", data), cause=("open", w.id), due_at=now)
        closing = (await s.execute(
            select(BusinessWindow).where(BusinessWindow.closes_at > now, BusinessWindow.closes_at <= now + CLOSING_AHEAD,
                                         BusinessWindow.opens_at <= now).order_by(BusinessWindow.closes_at)
        )).scalars().all()
        for w in closing:
            text, data = window_closing_texts(w)
            holders = select(WechatUser.openid).where(_reachable(notices=True),
                                                      WechatUser.openid.in_(draft_holders(w.kind, now)))
            run.closing[w.id] = await enqueue_audience(
                s, holders, kind="reminder", payload=payload(text, "business_reminder", data),
                cause=("closing", w.id), due_at=now)
        value = {"at": now.isoformat()}
        ins = db.insert(KeyValue.__table__).values(key=REMINDER_CHECK_KEY, value=value, updated_at=now)
        await s.execute(ins.on_conflict_do_update(index_elements=["key"], set_={"value": value, "updated_at": now}))
    if any(run.opened.values()) or any(run.closing.values()):
        log.info("window reminders: opened %s, closing %s", run.opened, run.closing)
    return run


# --- 外省转入: progress and the 现场确认 reminder --------------------------------------------------

TRANSFER_IN_BUSINESS = WINDOW_KINDS["transfer_in"]


def transfer_in_texts(status: str, label: str, changed_at: dt.datetime, *, confirm_at: dt.datetime | None = None,
                      place: str | None = None) -> tuple[str, dict[str, str]]:
    """(text, review_result template data) of a 外省转入 record reaching `status` (label: 待审核 ...)."""
    kw = KIND_KEYWORDS["transfer_in"]
    if status == "confirming" and confirm_at is not None:
        where = f"，地点：{place}" if place else ""
        text = (f"您的外省转入已审核，请按时到现场确认：{shanghai_time(confirm_at)}{where}。\n"
                f"回复“{kw}”查看需要携带的材料。")
        hint = f"回复“{kw}”查看现场确认"
    elif status == "completed":
        text = f"您的外省转入已办理完成，认定的课程已计入您的成绩。\n回复“{kw}”查看详情。"
        hint = f"回复“{kw}”查看详情"
    elif status == "rejected":
        text = f"您的外省转入审核结果：未通过。\n回复“{kw}”查看原因。"
        hint = f"回复“{kw}”查看原因"
    else:
        text = f"您的外省转入办理进度：{label}。\n回复“{kw}”查看详情。"
        hint = f"回复“{kw}”查看进度"
    data = {"thing1": TRANSFER_IN_BUSINESS, "phrase2": label, "time3": shanghai_time(changed_at), "thing4": hint}
    return fit_text(text), data


async def transfer_in_progress(session: AsyncSession, *, candidate_id: int, transfer_id: int, change_no: int,
                               status: str, label: str, changed_at: dt.datetime,
                               confirm_at: dt.datetime | None = None, place: str | None = None) -> int:
    """Tell the candidate that their 外省转入 record changed status (in the change's transaction).

    One row per change and openid (`change_no` numbers the record's changes); like a review
    outcome it is the candidate's own business and ignores the notices opt-out.
    """
    text, data = transfer_in_texts(status, label, changed_at, confirm_at=confirm_at, place=place)
    body = payload(text, "review_result", data)
    now = utcnow()
    openids = await _openids_of_candidates(session, [candidate_id], notices=False)
    return await enqueue_many(session, [
        _row(openid=o, kind="review_outcome", payload=body,
             client_msg_id=client_msg_id("transfer_in", transfer_id, change_no, o),
             priority=PRIORITY_OWN, due_at=now, notice_id=None, now=now)
        for o in openids
    ])


def confirmation_reminder_texts(confirm_at: dt.datetime, place: str | None) -> tuple[str, dict[str, str]]:
    kw = KIND_KEYWORDS["transfer_in"]
    where = f"\n地点：{place}" if place else ""
    text = (f"提醒：您的外省转入现场确认在{shanghai_time(confirm_at)}。{where}\n"
            f"请带齐材料按时前往，回复“{kw}”查看需要携带的材料。")
    data = {"thing1": "外省转入现场确认", "time2": shanghai_time(confirm_at), "thing3": f"明天现场确认，回复“{kw}”查看"}
    return fit_text(text), data


async def confirmation_reminder(session: AsyncSession, *, candidate_id: int, transfer_id: int,
                                confirm_at: dt.datetime, place: str | None, now: dt.datetime | None = None) -> int:
    """Remind the candidate of their 现场确认 the day before; once per record and slot (a moved
    slot is reminded again). Ignores the notices opt-out: it is their own appointment."""
    now = now or utcnow()
    text, data = confirmation_reminder_texts(confirm_at, place)
    body = payload(text, "business_reminder", data)
    slot = int(confirm_at.timestamp())
    openids = await _openids_of_candidates(session, [candidate_id], notices=False)
    return await enqueue_many(session, [
        _row(openid=o, kind="reminder", payload=body, client_msg_id=client_msg_id("confirm", transfer_id, slot, o),
             priority=PRIORITY_OWN, due_at=now, notice_id=None, now=now)
        for o in openids
    ])
