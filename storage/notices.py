"""Notices the exam office publishes (站内消息 / 新闻通知): checks, publishing, listing, progress.

What `zikao-bot notice publish|list|status` runs. Messages are for the staff member at the
terminal, in Chinese like the import report. A notice published with no time fans out to its
audience in the same transaction; a scheduled one is fanned out by the service's scheduler
when its time comes (storage.outbox.fan_out_due_notices).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import outbox
from storage.db import Database
from storage.identifiers import normalize_major_code, parse_sitting, sitting_label, valid_major_code
from storage.importer import SHANGHAI, Bad, _pad, _width, decode_csv_bytes, parse_datetime
from storage.models import Major, Notice, Outbox, Sitting, utcnow

CATEGORIES = ("站内消息", "新闻通知")
TITLE_MAX = 128
BODY_MAX = 20000


class NoticeError(ValueError):
    """Input that cannot be published; the message is one line saying why (Chinese)."""


@dataclass(frozen=True)
class Audience:
    kind: str  # all / major / sitting
    value: str | None = None

    def label(self, name: str | None = None) -> str:
        if self.kind == "major":
            return f"专业 {self.value}{' ' + name if name else ''}"
        if self.kind == "sitting":
            return f"考次 {sitting_label(self.value or '')} 的考生"
        return "全部考生"


def parse_audience(text: str) -> Audience:
    """'all', 'major:020301K' or 'sitting:202604' (also 'sitting:2026年04月')."""
    raw = (text or "").strip()
    kind, _, value = raw.partition(":")
    kind = kind.strip().lower()
    value = value.strip()
    if kind == "all" and not value:
        return Audience("all")
    if kind == "major" and value:
        code = normalize_major_code(value)
        if not valid_major_code(code):
            raise NoticeError(f"专业代码“{value}”格式不对，应为 6 位数字，可带 K 或 T，如 020301K")
        return Audience("major", code)
    if kind == "sitting" and value:
        code = parse_sitting(value)
        if code is None:
            raise NoticeError(f"考次“{value}”格式不对，应为年月，如 202604")
        return Audience("sitting", code)
    raise NoticeError(f"发送对象“{raw}”不对，应为 all、major:专业代码 或 sitting:考次，如 major:020301K")


def parse_publish_at(text: str | None, now: dt.datetime | None = None) -> dt.datetime:
    """A time in Shanghai (or with its own zone); None or empty: now."""
    if text is None or not text.strip():
        return now or utcnow()
    try:
        return parse_datetime(text).astimezone(dt.timezone.utc)
    except Bad as exc:
        raise NoticeError(f"{exc}（北京时间）") from None


def read_body_file(path: str) -> str:
    try:
        data = open(path, "rb").read()
    except OSError as exc:
        raise NoticeError(f"无法读取正文文件 {path}: {exc.strerror}") from None
    try:
        return decode_csv_bytes(data)[0]
    except UnicodeDecodeError:
        raise NoticeError(f"正文文件 {path} 的编码无法识别，请另存为 UTF-8") from None


def check_text(title: str, body: str, category: str) -> tuple[str, str]:
    title = (title or "").strip()
    body = (body or "").strip()
    if not title:
        raise NoticeError("标题不能为空")
    if "\n" in title or "\r" in title:
        raise NoticeError("标题不能换行")
    if len(title) > TITLE_MAX:
        raise NoticeError(f"标题过长（{len(title)} 字，最多 {TITLE_MAX} 字）")
    if not body:
        raise NoticeError("正文不能为空")
    if len(body) > BODY_MAX:
        raise NoticeError(f"正文过长（{len(body)} 字，最多 {BODY_MAX} 字）")
    if category not in CATEGORIES:
        raise NoticeError(f"类别应为 {' 或 '.join(CATEGORIES)}")
    return title, body


async def _audience_name(session: AsyncSession, audience: Audience) -> str | None:
    """The major's name, after checking the major or sitting exists."""
    if audience.kind == "major":
        major = await session.get(Major, audience.value)
        if major is None:
            raise NoticeError(f"专业代码 {audience.value} 不存在（请先导入专业）")
        return major.name
    if audience.kind == "sitting":
        if await session.get(Sitting, audience.value) is None:
            raise NoticeError(f"考次 {audience.value} 不存在（请先导入考次）")
    return None


@dataclass
class Published:
    notice: Notice
    audience_label: str
    recipients: int | None  # None: not fanned out yet (scheduled or not pushed)


async def publish(db: Database, *, title: str, body: str, publish_at: dt.datetime | None = None,
                  audience: Audience = Audience("all"), category: str = "站内消息", push: bool = True,
                  created_by: str = "", now: dt.datetime | None = None) -> Published:
    """Check and store a notice; when its time has come, fan it out in the same transaction."""
    now = now or utcnow()
    title, body = check_text(title, body, category)
    when = publish_at or now
    async with db.session() as s, s.begin():
        name = await _audience_name(s, audience)
        notice = Notice(category=category, title=title, body=body, publish_at=when, audience=audience.kind,
                        audience_value=audience.value, push=push, created_by=created_by[:64], created_at=now,
                        recipients=0)
        s.add(notice)
        await s.flush()
        recipients = None
        if push and when <= now:
            recipients = await outbox.fan_out_notice(s, notice, now)
    return Published(notice, audience.label(name), recipients)


async def list_notices(db: Database, limit: int = 50) -> list[Notice]:
    async with db.session() as s:
        return list((await s.execute(
            select(Notice).order_by(Notice.publish_at.desc(), Notice.id.desc()).limit(limit)
        )).scalars())


async def progress_of(db: Database, notice_ids: list[int]) -> dict[int, dict[str, int]]:
    """Outbox rows by status for several notices at once."""
    out = {i: dict.fromkeys(outbox.STATUSES, 0) for i in notice_ids}
    if not notice_ids:
        return out
    async with db.session() as s:
        res = await s.execute(
            select(Outbox.notice_id, Outbox.status, func.count())
            .where(Outbox.notice_id.in_(notice_ids)).group_by(Outbox.notice_id, Outbox.status)
        )
        for notice_id, status, n in res:
            out[notice_id][status] = n
    return out


async def get_notice(db: Database, notice_id: int) -> Notice:
    async with db.session() as s:
        notice = await s.get(Notice, notice_id)
    if notice is None:
        raise NoticeError(f"通知 #{notice_id} 不存在")
    return notice


# --- What the staff member reads --------------------------------------------------------------------

STATUS_LABELS = {"pending": "待发送", "claimed": "发送中", "sent": "已发送", "failed": "失败", "waiting": "待考生发消息后发送"}


def local(t: dt.datetime) -> str:
    return t.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def audience_label(notice: Notice) -> str:
    return Audience(notice.audience, notice.audience_value).label()


def percent_done(notice: Notice, counts: dict[str, int]) -> float | None:
    if not notice.recipients:
        return None
    return 100.0 * (counts.get("sent", 0) + counts.get("failed", 0)) / notice.recipients


def state(notice: Notice, counts: dict[str, int], now: dt.datetime | None = None) -> str:
    now = now or utcnow()
    if not notice.push:
        return "不推送"
    if notice.fanned_out_at is None:
        return "待发布" if notice.publish_at > now else "待分发"
    if counts.get("sent", 0) + counts.get("failed", 0) >= notice.recipients:
        return "已完成"
    return "发送中"


def format_published(p: Published, now: dt.datetime | None = None) -> str:
    n = p.notice
    lines = [f"已发布通知 #{n.id}「{n.title}」（{n.category}，{p.audience_label}）"]
    if not n.push:
        lines.append("推送：不推送，只在站内消息中显示。")
    elif p.recipients is None:
        lines.append(f"推送：将于 {local(n.publish_at)}（北京时间）发送给届时符合条件的考生（需服务在运行）。")
    else:
        lines.append(f"推送：已排入发送队列，共 {p.recipients} 人。用 zikao-bot notice status {n.id} 查看进度。")
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    widths = [max(_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(_pad(c, w, right=i in right) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]


def format_list(notices: list[Notice], progress: dict[int, dict[str, int]], now: dt.datetime | None = None) -> str:
    if not notices:
        return "还没有通知。用 zikao-bot notice publish 发布。"
    rows = [("编号", "发布时间", "类别", "对象", "状态", "人数", "完成", "标题")]
    for n in notices:
        counts = progress.get(n.id, {})
        pct = percent_done(n, counts)
        rows.append((
            str(n.id), local(n.publish_at), n.category, audience_label(n), state(n, counts, now),
            str(n.recipients) if n.fanned_out_at else "-", f"{pct:.1f}%" if pct is not None else "-",
            outbox.template_value(n.title, 30),
        ))
    return "\n".join(_table(rows, right={0, 5, 6}))


def format_status(notice: Notice, counts: dict[str, int], now: dt.datetime | None = None) -> str:
    lines = [
        f"通知 #{notice.id}「{notice.title}」",
        f"类别 {notice.category}  对象 {audience_label(notice)}  发布时间 {local(notice.publish_at)}（北京时间）",
        f"状态 {state(notice, counts, now)}",
    ]
    if notice.fanned_out_at is not None:
        lines.append(f"推送人数 {notice.recipients}（{local(notice.fanned_out_at)} 排入发送队列）")
        lines.append("  ".join(f"{STATUS_LABELS[k]} {counts.get(k, 0)}" for k in outbox.STATUSES))
        pct = percent_done(notice, counts)
        lines.append(f"完成 {pct:.1f}%" if pct is not None else "完成 -（没有符合条件的考生）")
    return "\n".join(lines)
