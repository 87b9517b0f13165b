"""Business windows (办理时间) as the office edits them: list, create, change opens/closes and 考生须知.

Candidates' flows read the same rows (storage.applications.window_check); every change bumps the
reference version stamp so running services show it within a second (storage.queries).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Optional

from sqlalchemy import select

from storage import queries
from storage.db import Database
from storage.errors import Refused
from storage.identifiers import parse_sitting
from storage.models import BusinessWindow, Sitting, utcnow
from storage.vocab import WINDOW_KINDS

TITLE_MAX = 128
NOTICE_MAX = 20000


class WindowError(Refused):
    """A window that cannot be saved as typed."""


@dataclass(frozen=True)
class WindowForm:
    kind: str
    title: str
    opens_at: dt.datetime
    closes_at: dt.datetime
    sitting: str = ""
    notice: str = ""


def window_problems(f: WindowForm) -> list[str]:
    """Everything wrong with a window as typed (empty: it can be saved)."""
    out = []
    if f.kind not in WINDOW_KINDS:
        out.append("请选择业务。")
    if not f.title.strip():
        out.append("请填写标题。")
    elif len(f.title.strip()) > TITLE_MAX:
        out.append(f"标题最多{TITLE_MAX}字。")
    if f.closes_at <= f.opens_at:
        out.append("结束时间必须晚于开始时间。")
    if f.sitting and parse_sitting(f.sitting) is None:
        out.append("考次格式不对，应为年月，如 202610。")
    if len(f.notice) > NOTICE_MAX:
        out.append(f"考生须知最多{NOTICE_MAX}字。")
    return out


def as_dict(w: BusinessWindow) -> dict[str, Any]:
    return {"kind": w.kind, "title": w.title, "sitting": w.sitting_code or "", "opens_at": w.opens_at.isoformat(),
            "closes_at": w.closes_at.isoformat(), "notice": w.notice or ""}


async def list_windows(db: Database, kind: str | None = None) -> list[BusinessWindow]:
    stmt = select(BusinessWindow).order_by(BusinessWindow.opens_at.desc(), BusinessWindow.id.desc())
    if kind:
        stmt = stmt.where(BusinessWindow.kind == kind)
    async with db.session() as s:
        return list((await s.execute(stmt)).scalars())


async def get_window(db: Database, window_id: int) -> BusinessWindow:
    async with db.session() as s:
        w = await s.get(BusinessWindow, window_id)
    if w is None:
        raise WindowError(f"办理时间 #{window_id} 不存在。")
    return w


async def save_window(db: Database, f: WindowForm, window_id: int | None = None, *, audit: Any = None
                      ) -> tuple[Optional[dict[str, Any]], BusinessWindow]:
    """Create (window_id None) or change a window; returns (before, the row). `audit(session, before,
    after, window_id)` adds the audit entry in the same transaction."""
    problems = window_problems(f)
    if problems:
        raise WindowError("；".join(problems))
    sitting = parse_sitting(f.sitting) if f.sitting else None
    async with db.session() as s, s.begin():
        if sitting and await s.get(Sitting, sitting) is None:
            raise WindowError(f"考次 {sitting} 不存在（请先导入考次）。")
        if window_id is None:
            w = BusinessWindow(kind=f.kind)
            s.add(w)
            before = None
        else:
            w = await s.get(BusinessWindow, window_id, with_for_update=True)
            if w is None:
                raise WindowError(f"办理时间 #{window_id} 不存在。")
            before = as_dict(w)
            w.kind = f.kind
        w.title, w.sitting_code, w.notice = f.title.strip(), sitting, f.notice.strip()
        w.opens_at, w.closes_at = f.opens_at, f.closes_at
        await s.flush()
        await queries.mark_changed(s, reference=True, results=False)
        if audit is not None:
            audit(s, before, as_dict(w), w.id)
    return before, w


def window_state(w: BusinessWindow, now: dt.datetime | None = None) -> str:
    now = now or utcnow()
    if w.opens_at > now:
        return "未开始"
    return "办理中" if now < w.closes_at else "已结束"
