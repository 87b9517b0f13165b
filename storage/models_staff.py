"""Tables of the exam office's console: staff accounts, their sessions, the audit log, reason templates."""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow

ROLES = ("reviewer", "admin")


class StaffAccount(Base):
    """A member of the exam office who signs in to the console.

    A reviewer decides the application kinds listed in `kinds` (codes of
    storage.models_applications.APPLICATION_KINDS; a kind added later is given like any other).
    An admin manages windows, notices, imports, FAQ, staff, and reads the audit log; an admin
    decides the kinds in `kinds` too. `password_hash` is storage.passwords' scrypt hash.
    """

    __tablename__ = "staff_accounts"
    __table_args__ = (CheckConstraint("role in ('reviewer', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(12), default="reviewer")
    kinds: Mapped[list[str]] = mapped_column(JSON, default=list)
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret: Mapped[Optional[str]] = mapped_column(String(64))  # base32; None: no second factor
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[Optional[dt.datetime]]
    # Bumped on a password change, deactivation or reset: every older session ends.
    generation: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[Optional[dt.datetime]]


class StaffSession(Base):
    """A signed-in browser. `id` is the sha256 of the cookie's token: the token itself is never stored."""

    __tablename__ = "staff_sessions"
    __table_args__ = (Index("ix_staff_sessions_expires_at", "expires_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_accounts.id", ondelete="CASCADE"), index=True)
    data: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]


class AuditEntry(Base):
    """One staff action: who, when, what, on which object, and the state before and after."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_action_at", "action", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    staff_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_accounts.id", ondelete="SET NULL"))
    username: Mapped[str] = mapped_column(String(32))  # as typed for a failed login
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(64), default="")  # e.g. application:12, notice:3
    summary: Mapped[str] = mapped_column(Text, default="")
    before: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    after: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    ip: Mapped[str] = mapped_column(String(64), default="")


class ReasonTemplate(Base):
    """A ready-made 未通过 reason the admin maintains; `kind` None: offered for every business."""

    __tablename__ = "reason_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[Optional[str]] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(default=100)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
