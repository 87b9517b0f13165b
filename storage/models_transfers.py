"""Tables of 省际转考: the office's 外省转入 records with their courses and 现场确认 slot.

本市转出 applications live in `applications` (kind 'transfer_out'); their form fields are in
`applications.details` (see storage.transfers.TransferOutDetails).
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Optional

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.models import Base, utcnow

# TransferIn.status -> what the candidate reads. The life of a record (storage.transfers):
# pending -> reviewing -> confirming -> completed, or rejected (with a reason) on the way.
TRANSFER_IN_STATUSES: dict[str, str] = {
    "pending": "待审核",
    "reviewing": "审核中",
    "confirming": "待现场确认",
    "completed": "已完成",
    "rejected": "未通过",
}


def _in(column: str, values: dict[str, str]) -> str:
    return f"{column} in ({', '.join(repr(v) for v in values)})"


class TransferIn(Base):
    """A transfer of results from another province into Shanghai, as the office records it.

    `reference` is the office's own number of the record (the import's key). `status_changes`
    numbers each change of status, so each change is pushed exactly once.
    """

    __tablename__ = "transfers_in"
    __table_args__ = (
        CheckConstraint(_in("status", TRANSFER_IN_STATUSES), name="status"),
        CheckConstraint("confirm_ends_at is null or confirm_at is null or confirm_ends_at > confirm_at",
                        name="confirm_order"),
        Index("ix_transfers_in_status_confirm", "status", "confirm_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(32), unique=True)  # 转入编号
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"), index=True)
    admission_number: Mapped[str] = mapped_column(ForeignKey("admission_numbers.number"))  # the Shanghai 准考证号
    from_province: Mapped[str] = mapped_column(String(16))  # 来源省 (转出省)
    from_admission_number: Mapped[str] = mapped_column(String(32))  # 来源准考证号
    major_code: Mapped[str] = mapped_column(ForeignKey("majors.code"))  # 转入专业
    applied_on: Mapped[Optional[dt.date]]  # 申请日期
    status: Mapped[str] = mapped_column(String(12), default="pending")
    reason: Mapped[Optional[str]] = mapped_column(Text)  # why 未通过, shown to the candidate
    confirm_at: Mapped[Optional[dt.datetime]]  # 现场确认 starts
    confirm_ends_at: Mapped[Optional[dt.datetime]]
    confirm_place: Mapped[Optional[str]] = mapped_column(String(255))
    confirm_bring: Mapped[Optional[str]] = mapped_column(Text)  # what to bring
    status_changes: Mapped[int] = mapped_column(default=0)
    status_changed_at: Mapped[Optional[dt.datetime]]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    courses: Mapped[list[TransferInCourse]] = relationship(
        back_populates="transfer", order_by="TransferInCourse.position", cascade="all, delete-orphan",
        passive_deletes=True,
    )


class TransferInCourse(Base):
    """A result brought from the other province, the Shanghai course it stands for, and whether
    the office accepted it (None: not decided yet)."""

    __tablename__ = "transfer_in_courses"
    __table_args__ = (
        UniqueConstraint("transfer_id", "course_code", name="uq_transfer_in_courses_transfer_course"),
        CheckConstraint("score is null or (score >= 0 and score <= 100)", name="score_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    transfer_id: Mapped[int] = mapped_column(ForeignKey("transfers_in.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    course_code: Mapped[str] = mapped_column(ForeignKey("courses.code"))
    source_name: Mapped[Optional[str]] = mapped_column(String(128))  # the course's name in the other province
    score: Mapped[Optional[Decimal]] = mapped_column(Numeric(5, 1))
    grade: Mapped[Optional[str]] = mapped_column(String(8))  # 合格 / 通过
    passed_on: Mapped[Optional[dt.date]]  # 通过时间 in the other province
    accepted: Mapped[Optional[bool]] = mapped_column(Boolean)
    note: Mapped[Optional[str]] = mapped_column(String(255))  # why not accepted

    transfer: Mapped[TransferIn] = relationship(back_populates="courses")
