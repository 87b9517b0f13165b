"""Staff accounts of the exam office: creation, roles, sign-in with lockout and TOTP, sessions, the audit log.

Plain rules (`password_problem`, `username_problem`, `can_decide`, `lockout_after`) are functions
over plain values; the rest reads and writes the tables of storage.models_staff. Passwords are kept
only as storage.passwords' scrypt hashes, session tokens only as their sha256. Messages are short
Chinese for the staff member (console or `zikao-bot staff`).
"""
from __future__ import annotations

import csv
import datetime as dt
import functools
import hashlib
import io
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import pyotp
from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Database
from storage.errors import Refused
from storage.models import utcnow
from storage.models_applications import APPLICATION_KINDS
from storage.models_staff import ROLES, AuditEntry, ReasonTemplate, StaffAccount, StaffSession
from storage.passwords import hash_password, needs_rehash, verify_password
from storage.vocab import WINDOW_KINDS

MAX_FAILURES = 5  # wrong passwords (or codes) in a row before the account locks
LOCK_FOR = dt.timedelta(minutes=15)
MIN_PASSWORD = 10
ROLE_LABELS = {"reviewer": "审核员", "admin": "管理员"}

# What the audit log records; the console shows these words.
AUDIT_ACTIONS: dict[str, str] = {
    "login": "登录", "login_failed": "登录失败", "logout": "退出", "locked": "账号锁定",
    "approve": "审核通过", "reject": "审核不通过", "reveal_id": "查看完整证件号码",
    "window_create": "新建办理时间", "window_edit": "修改办理时间",
    "notice_publish": "发布通知", "import": "导入数据", "import_dry_run": "导入检查",
    "faq_edit": "修改咨询问答", "feedback_reply": "回复反馈", "feedback_handled": "反馈标记已处理",
    "staff_add": "新建账号", "staff_edit": "修改账号", "staff_password": "重设密码", "staff_unlock": "解锁账号",
    "totp_on": "开启两步验证", "totp_off": "关闭两步验证",
    "reason_add": "新增原因模板", "reason_edit": "修改原因模板",
    "transfer_in_status": "外省转入状态", "transfer_in_course": "外省转入课程认定",
}


class StaffError(Refused):
    """A refused staff operation."""


@dataclass(frozen=True)
class StaffInfo:
    id: int
    username: str
    display_name: str
    role: str
    kinds: tuple[str, ...]
    active: bool
    totp: bool
    locked_until: Optional[dt.datetime]
    last_login_at: Optional[dt.datetime]
    generation: int

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)

    @property
    def label(self) -> str:
        """How decisions and the audit log name this person: '张老师(zhang)'."""
        return f"{self.display_name}({self.username})"

    def locked(self, now: dt.datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now

    @classmethod
    def of(cls, row: StaffAccount) -> StaffInfo:
        return cls(row.id, row.username, row.display_name, row.role, tuple(row.kinds or ()), row.active,
                   bool(row.totp_secret), row.locked_until, row.last_login_at, row.generation)


# --- Plain rules -----------------------------------------------------------------------------------

_USERNAME = re.compile(r"^[a-z][a-z0-9_.-]{1,31}$")


def username_problem(username: str) -> Optional[str]:
    if not _USERNAME.match(username or ""):
        return "用户名应为2到32位小写字母、数字、下划线、点或连字符，以字母开头。"
    return None


def password_problem(password: str, username: str = "") -> Optional[str]:
    if len(password or "") < MIN_PASSWORD:
        return f"密码至少{MIN_PASSWORD}位。"
    if username and username.lower() in password.lower():
        return "密码不能包含用户名。"
    if len(set(password)) < 4:
        return "密码太简单了。"
    return None


def known_kinds() -> tuple[str, ...]:
    """Every business that goes through review (a kind added to the schema appears here)."""
    return APPLICATION_KINDS


def kind_label(kind: str) -> str:
    return WINDOW_KINDS.get(kind, kind)


def check_kinds(kinds: Iterable[str]) -> list[str]:
    out = []
    for k in kinds:
        k = (k or "").strip()
        if not k:
            continue
        code = next((c for c in known_kinds() if k in (c, kind_label(c))), None)
        if code is None:
            raise StaffError(f"业务“{k}”不存在，可选：{'、'.join(kind_label(c) for c in known_kinds())}。")
        if code not in out:
            out.append(code)
    return out


def can_decide(staff: StaffInfo, kind: str) -> bool:
    """A reviewer (or admin) sees and decides only the businesses given to them."""
    return staff.active and kind in staff.kinds


def lockout_after(failures: int, now: dt.datetime) -> Optional[dt.datetime]:
    """When `failures` wrong attempts in a row lock the account, until when."""
    return now + LOCK_FOR if failures >= MAX_FAILURES else None


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="上海自考考办")


def totp_ok(secret: str, code: str, now: dt.datetime | None = None) -> bool:
    code = re.sub(r"\s+", "", code or "")
    if not re.fullmatch(r"\d{6}", code):
        return False
    return pyotp.TOTP(secret).verify(code, for_time=now or utcnow(), valid_window=1)


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # An unknown username costs as much as a wrong password: timing does not tell which exist.
    return hash_password(secrets.token_hex(8))


# --- Accounts --------------------------------------------------------------------------------------


async def add_staff(db: Database, *, username: str, display_name: str, password: str, role: str = "reviewer",
                    kinds: Sequence[str] = (), now: dt.datetime | None = None) -> StaffInfo:
    username = (username or "").strip().lower()
    display_name = (display_name or "").strip()
    p = username_problem(username) or password_problem(password, username)
    if p:
        raise StaffError(p)
    if not display_name or len(display_name) > 64:
        raise StaffError("请填写姓名（最多64字）。")
    if role not in ROLES:
        raise StaffError("角色应为 reviewer（审核员）或 admin（管理员）。")
    codes = check_kinds(kinds)
    async with db.session() as s, s.begin():
        if await s.scalar(select(StaffAccount.id).where(StaffAccount.username == username)) is not None:
            raise StaffError(f"用户名 {username} 已存在。")
        row = StaffAccount(username=username, display_name=display_name, role=role, kinds=codes,
                           password_hash=hash_password(password), active=True, failed_logins=0, generation=0,
                           created_at=now or utcnow())
        s.add(row)
        await s.flush()
        return StaffInfo.of(row)


async def list_staff(db: Database) -> list[StaffInfo]:
    async with db.session() as s:
        return [StaffInfo.of(r) for r in (await s.execute(select(StaffAccount).order_by(StaffAccount.username))).scalars()]


async def get_staff(db: Database, staff_id: int) -> StaffInfo:
    async with db.session() as s:
        row = await s.get(StaffAccount, staff_id)
    if row is None:
        raise StaffError(f"账号 #{staff_id} 不存在。")
    return StaffInfo.of(row)


async def find_staff(db: Database, username: str) -> StaffInfo:
    async with db.session() as s:
        row = await s.scalar(select(StaffAccount).where(StaffAccount.username == (username or "").strip().lower()))
    if row is None:
        raise StaffError(f"账号 {username} 不存在。")
    return StaffInfo.of(row)


def _public(row: StaffAccount) -> dict[str, Any]:
    """What the audit log keeps of an account (never the hash or the TOTP secret)."""
    return {"username": row.username, "display_name": row.display_name, "role": row.role,
            "kinds": list(row.kinds or []), "active": row.active, "totp": bool(row.totp_secret)}


async def update_staff(db: Database, staff_id: int, *, display_name: str | None = None, role: str | None = None,
                       kinds: Sequence[str] | None = None, active: bool | None = None
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Change an account; returns (before, after) for the audit log. Deactivating ends its sessions."""
    async with db.session() as s, s.begin():
        row = await s.get(StaffAccount, staff_id, with_for_update=True)
        if row is None:
            raise StaffError(f"账号 #{staff_id} 不存在。")
        before = _public(row)
        if display_name is not None:
            if not display_name.strip() or len(display_name.strip()) > 64:
                raise StaffError("请填写姓名（最多64字）。")
            row.display_name = display_name.strip()
        if role is not None:
            if role not in ROLES:
                raise StaffError("角色应为审核员或管理员。")
            row.role = role
        if kinds is not None:
            row.kinds = check_kinds(kinds)
        if active is not None and active != row.active:
            row.active = active
            if not active:
                row.generation += 1
                await s.execute(delete(StaffSession).where(StaffSession.staff_id == row.id))
        return before, _public(row)


async def set_password(db: Database, staff_id: int, password: str) -> None:
    """A new password (by the person or an admin): unlocks, and ends every session of the account."""
    async with db.session() as s, s.begin():
        row = await s.get(StaffAccount, staff_id, with_for_update=True)
        if row is None:
            raise StaffError(f"账号 #{staff_id} 不存在。")
        p = password_problem(password, row.username)
        if p:
            raise StaffError(p)
        row.password_hash = hash_password(password)
        row.failed_logins = 0
        row.locked_until = None
        row.generation += 1
        await s.execute(delete(StaffSession).where(StaffSession.staff_id == row.id))


async def password_matches(db: Database, staff_id: int, password: str) -> bool:
    """For a signed-in person confirming their own password (changing it)."""
    async with db.session() as s:
        stored = await s.scalar(select(StaffAccount.password_hash).where(StaffAccount.id == staff_id))
    return verify_password(password or "", stored or _dummy_hash())


async def unlock(db: Database, staff_id: int) -> None:
    async with db.session() as s, s.begin():
        row = await s.get(StaffAccount, staff_id, with_for_update=True)
        if row is None:
            raise StaffError(f"账号 #{staff_id} 不存在。")
        row.failed_logins = 0
        row.locked_until = None


async def set_totp(db: Database, staff_id: int, secret: str | None, code: str = "",
                   now: dt.datetime | None = None) -> None:
    """Turn the second factor on (the code proves the phone has `secret`) or off (secret None)."""
    if secret is not None and not totp_ok(secret, code, now):
        raise StaffError("验证码不对，请用验证器App扫码后输入当前的6位数字。")
    async with db.session() as s, s.begin():
        row = await s.get(StaffAccount, staff_id, with_for_update=True)
        if row is None:
            raise StaffError(f"账号 #{staff_id} 不存在。")
        row.totp_secret = secret


# --- Sign-in ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginResult:
    staff: Optional[StaffInfo]  # set when the password (and code) were right
    message: str = ""  # why not, for the login page
    locked_now: bool = False  # this attempt locked the account
    need_code: bool = False  # the password was right; the account wants its TOTP code


GENERIC_FAILURE = "用户名或密码不对。"


async def authenticate(db: Database, username: str, password: str, code: str | None = None, *,
                       now: dt.datetime | None = None) -> LoginResult:
    """Check a sign-in. Wrong passwords and codes count towards the lockout; a locked or inactive
    account is refused before its password is looked at."""
    now = now or utcnow()
    username = (username or "").strip().lower()
    async with db.session() as s, s.begin():
        row = await s.scalar(select(StaffAccount).where(StaffAccount.username == username).with_for_update()) \
            if username else None
        if row is None or not row.active:
            verify_password(password or "", _dummy_hash())
            return LoginResult(None, GENERIC_FAILURE)
        if row.locked_until is not None and row.locked_until > now:
            return LoginResult(None, _locked_text(row.locked_until, now))
        if not verify_password(password or "", row.password_hash):
            return _failed(row, now, GENERIC_FAILURE)
        if row.totp_secret:
            if not code:
                return LoginResult(None, "请输入验证器App上的6位验证码。", need_code=True)
            if not totp_ok(row.totp_secret, code, now):
                return _failed(row, now, "验证码不对或已过期。", need_code=True)
        row.failed_logins = 0
        row.locked_until = None
        row.last_login_at = now
        if needs_rehash(row.password_hash):
            row.password_hash = hash_password(password)
        return LoginResult(StaffInfo.of(row))


def _failed(row: StaffAccount, now: dt.datetime, message: str, *, need_code: bool = False) -> LoginResult:
    row.failed_logins += 1
    until = lockout_after(row.failed_logins, now)
    if until is not None:
        row.locked_until = until
        row.failed_logins = 0
        return LoginResult(None, _locked_text(until, now), locked_now=True)
    return LoginResult(None, message, need_code=need_code)


def _locked_text(until: dt.datetime, now: dt.datetime) -> str:
    minutes = max(1, int((until - now).total_seconds() + 59) // 60)
    return f"连续输错{MAX_FAILURES}次，账号已锁定，请{minutes}分钟后再试，或请管理员解锁。"


# --- Sessions (the console's aiohttp-session storage keeps its rows here) ------------------------------


def token_id(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


async def load_session_data(db: Database, token: str, now: dt.datetime | None = None) -> Optional[dict[str, Any]]:
    async with db.session() as s:
        row = await s.get(StaffSession, token_id(token))
    if row is None or row.expires_at <= (now or utcnow()):
        return None
    return row.data


async def save_session_data(db: Database, token: str, data: dict[str, Any], ttl: dt.timedelta,
                            now: dt.datetime | None = None) -> None:
    now = now or utcnow()
    staff_id = (data.get("session") or {}).get("staff_id")
    key = token_id(token)
    async with db.session() as s, s.begin():
        row = await s.get(StaffSession, key, with_for_update=True)
        if row is None:
            s.add(StaffSession(id=key, staff_id=staff_id, data=data, created_at=now, expires_at=now + ttl))
        else:
            row.data, row.staff_id, row.expires_at = data, staff_id, now + ttl
        # Expired rows go as new ones come: no extra job needed.
        await s.execute(delete(StaffSession).where(StaffSession.expires_at <= now))


async def drop_session(db: Database, token: str) -> None:
    async with db.session() as s, s.begin():
        await s.execute(delete(StaffSession).where(StaffSession.id == token_id(token)))


# --- Audit log -------------------------------------------------------------------------------------


def audit_row(*, staff: Optional[StaffInfo], action: str, target: str = "", summary: str = "",
              before: Optional[dict[str, Any]] = None, after: Optional[dict[str, Any]] = None, ip: str = "",
              username: str = "", now: dt.datetime | None = None) -> AuditEntry:
    """An audit entry to add in the caller's transaction (so the action and its record go together)."""
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    return AuditEntry(at=now or utcnow(), staff_id=staff.id if staff else None,
                      username=(staff.username if staff else username)[:32], action=action, target=target[:64],
                      summary=summary, before=before, after=after, ip=(ip or "")[:64])


async def audit(db: Database, **kw: Any) -> None:
    async with db.session() as s, s.begin():
        s.add(audit_row(**kw))


def add_audit(session: AsyncSession, **kw: Any) -> None:
    session.add(audit_row(**kw))


@dataclass(frozen=True)
class AuditQuery:
    text: str = ""  # in who, target or summary
    action: str = ""
    since: Optional[dt.datetime] = None
    until: Optional[dt.datetime] = None


def _audit_filter(q: AuditQuery):
    conds = []
    if q.text.strip():
        like = f"%{q.text.strip()}%"
        conds.append(or_(AuditEntry.username.like(like), AuditEntry.target.like(like), AuditEntry.summary.like(like)))
    if q.action:
        conds.append(AuditEntry.action == q.action)
    if q.since:
        conds.append(AuditEntry.at >= q.since)
    if q.until:
        conds.append(AuditEntry.at < q.until)
    return conds


async def search_audit(db: Database, q: AuditQuery, *, offset: int = 0, limit: int | None = 50
                       ) -> tuple[list[AuditEntry], int]:
    conds = _audit_filter(q)
    stmt = select(AuditEntry).where(*conds).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).offset(offset)
    if limit:
        stmt = stmt.limit(limit)
    async with db.session() as s:
        total = await s.scalar(select(func.count()).select_from(AuditEntry).where(*conds))
        return list((await s.execute(stmt)).scalars()), total or 0


def audit_csv(rows: Iterable[AuditEntry], local: Any) -> str:
    """The audit log as CSV (UTF-8 with BOM, so Excel opens the Chinese right)."""
    import json

    def cell(value: Any) -> str:
        # A typed username like "=HYPERLINK(...)" must stay text when the file is opened in Excel.
        text = "" if value is None else str(value)
        return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text

    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["编号", "时间（北京）", "账号", "操作", "对象", "说明", "之前", "之后", "IP"])
    for r in rows:
        w.writerow([cell(v) for v in (
            r.id, local(r.at), r.username, AUDIT_ACTIONS.get(r.action, r.action), r.target, r.summary,
            json.dumps(r.before, ensure_ascii=False) if r.before is not None else "",
            json.dumps(r.after, ensure_ascii=False) if r.after is not None else "", r.ip)])
    return "\ufeff" + out.getvalue()


# --- Reason templates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReasonInfo:
    id: int
    kind: Optional[str]
    text: str
    position: int
    active: bool


async def reason_templates(db: Database, kind: str | None = None, *, include_inactive: bool = False) -> list[ReasonInfo]:
    """The reasons offered when rejecting an application of `kind` (those for every kind too)."""
    stmt = select(ReasonTemplate).order_by(ReasonTemplate.position, ReasonTemplate.id)
    if kind is not None:
        stmt = stmt.where(or_(ReasonTemplate.kind.is_(None), ReasonTemplate.kind == kind))
    if not include_inactive:
        stmt = stmt.where(ReasonTemplate.active.is_(True))
    async with db.session() as s:
        return [ReasonInfo(r.id, r.kind, r.text, r.position, r.active) for r in (await s.execute(stmt)).scalars()]


def _reason_text(text: str) -> str:
    from storage.applications import MAX_REASON

    text = (text or "").strip()
    if not text or len(text) > MAX_REASON:
        raise StaffError(f"原因不能为空，最多{MAX_REASON}字。")
    return text


async def save_reason_template(db: Database, *, text: str, kind: str | None, reason_id: int | None = None,
                               active: bool = True, position: int = 100) -> tuple[Optional[dict], dict]:
    text = _reason_text(text)
    kind = check_kinds([kind])[0] if kind else None
    async with db.session() as s, s.begin():
        if reason_id is None:
            row = ReasonTemplate(kind=kind, text=text, active=active, position=position)
            s.add(row)
            before = None
        else:
            row = await s.get(ReasonTemplate, reason_id)
            if row is None:
                raise StaffError(f"原因模板 #{reason_id} 不存在。")
            before = {"kind": row.kind, "text": row.text, "active": row.active, "position": row.position}
            row.kind, row.text, row.active, row.position = kind, text, active, position
        await s.flush()
        return before, {"id": row.id, "kind": row.kind, "text": row.text, "active": row.active, "position": row.position}
