"""Tables of applications with evidence (申请免考, 成绩补登 ...), their photos and decisions."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.models import Base, utcnow

# Application.kind: the businesses that go through review. Only exemption and backfill have
# flows today; the others are listed so their flows reuse the table without a migration.
APPLICATION_KINDS = ("exemption", "backfill", "thesis", "graduation", "degree", "transfer_out")

# Application.status -> what the platform shows. Stable ASCII codes; the labels are the platform's.
STATUS_LABELS: dict[str, str] = {
    "draft": "草稿",
    "submitted": "待审核",
    "approved": "审核通过",
    "rejected": "未通过",
}

# ApplicationItem.entry_kind of a 成绩补登 registration.
ENTRY_KINDS: dict[str, str] = {
    "theory": "理论与实践",
    "exemption": "免考",
    "transfer": "转入",
}

PHOTO_CONTENT_TYPES = ("image/jpeg", "image/png")

_OPEN_PER_MAJOR = "kind in ('thesis', 'graduation', 'degree') and status in ('draft', 'submitted', 'approved')"

# The 凭证类型 list as shipped: (code, name, position, for_exemption, needs_companion, companion).
# Migration 0005 seeds the same rows (a migration keeps its own frozen copy; a test compares them).
DEFAULT_EVIDENCE_TYPES: tuple[tuple[str, str, int, bool, bool, bool], ...] = (
    ("pets2_certificate", "PETS-2 合格证书", 10, True, False, False),
    ("pets2_report", "PETS-2 成绩通知单", 20, True, False, False),
    ("pets3_certificate", "PETS-3 合格证书", 30, True, False, False),
    ("pets3_report", "PETS-3 成绩通知单", 40, True, False, False),
    ("cet4", "大学英语四级（CET-4）成绩单", 50, True, False, False),
    ("cet6", "大学英语六级（CET-6）成绩单", 60, True, False, False),
    # A diploma alone does not prove itself: it needs the 备案表 or the 认证报告 next to it.
    ("diploma", "毕业证书", 70, True, True, False),
    ("chsi_record", "教育部学历证书电子注册备案表", 80, True, False, True),
    ("cdgdc_report", "中国高等教育学历认证报告", 90, True, False, True),
    # The photo of an old result in 成绩补登 (理论与实践); not offered in 申请免考.
    ("score_proof", "成绩证明材料", 100, False, False, False),
)


def _in(column: str, values: tuple[str, ...] | dict[str, str]) -> str:
    return f"{column} in ({', '.join(repr(v) for v in values)})"


# A year-month as the dialogs' YearMonth field gives it: 'YYYY-MM'.
def _year_month(column: str) -> str:
    return f"{column} is null or {column} like '____-__'"


class EvidenceType(Base):
    """A kind of 凭证 a candidate may hand in (the configurable 凭证类型 list; the office adds more).

    `needs_companion`: a course using this evidence also needs one of a `companion` type
    (毕业证书 needs 电子注册备案表 or 学历认证报告). `for_exemption`: offered in 申请免考.
    """

    __tablename__ = "evidence_types"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    position: Mapped[int] = mapped_column(default=100)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    for_exemption: Mapped[bool] = mapped_column(Boolean, default=True)
    needs_companion: Mapped[bool] = mapped_column(Boolean, default=False)
    companion: Mapped[bool] = mapped_column(Boolean, default=False)


class Application(Base):
    """One application of a candidate for a business, from draft to the office's decision.

    `version` is SQLAlchemy's version counter: every change of the row bumps it, and an UPDATE
    from a stale copy fails instead of overwriting someone else's edit or decision.
    """

    __tablename__ = "applications"
    __table_args__ = (
        CheckConstraint(_in("kind", APPLICATION_KINDS), name="kind"),
        CheckConstraint(_in("status", STATUS_LABELS), name="status"),
        Index("ix_applications_candidate_kind", "candidate_id", "kind"),
        Index("ix_applications_status_submitted", "status", "submitted_at"),
        # At most one draft per candidate and business: coming back resumes it.
        Index("uq_applications_one_draft", "candidate_id", "kind", unique=True,
              sqlite_where=text("status = 'draft'"), postgresql_where=text("status = 'draft'")),
        # 论文, 毕业, 学位: one open application per major (storage/graduation_rules.py); 未通过 ones
        # are applied for again (重新申请), not duplicated.
        Index("uq_applications_one_open_per_major", "candidate_id", "kind", "major_code", unique=True,
              sqlite_where=text(_OPEN_PER_MAJOR), postgresql_where=text(_OPEN_PER_MAJOR)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(12), default="draft")
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"))
    openid: Mapped[str] = mapped_column(String(64))  # who filed it
    admission_number: Mapped[str] = mapped_column(ForeignKey("admission_numbers.number"))
    major_code: Mapped[Optional[str]] = mapped_column(ForeignKey("majors.code"))  # 申请免考's major; 转入专业
    window_id: Mapped[Optional[int]] = mapped_column(ForeignKey("business_windows.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[Optional[dt.datetime]]
    decided_at: Mapped[Optional[dt.datetime]]
    decided_by: Mapped[Optional[str]] = mapped_column(String(64))
    reason: Mapped[Optional[str]] = mapped_column(Text)  # why 未通过, shown to the candidate
    decisions: Mapped[int] = mapped_column(default=0)  # numbers each decision's push
    version: Mapped[int] = mapped_column(default=1)
    # Form fields of a business beyond courses and evidences (本市转出: 转入地, 转入准考证号 ...;
    # storage.transfers.TransferOutDetails), and what a decision adds (转出编号).
    details: Mapped[Optional[dict[str, Any]]]

    __mapper_args__ = {"version_id_col": version}

    items: Mapped[list[ApplicationItem]] = relationship(
        back_populates="application", order_by="ApplicationItem.position", cascade="all, delete-orphan"
    )
    # The database's ON DELETE CASCADE removes the events of a discarded draft.
    events: Mapped[list[ApplicationEvent]] = relationship(
        back_populates="application", order_by="ApplicationEvent.id", cascade="all, delete-orphan",
        passive_deletes=True,
    )


class ApplicationItem(Base):
    """A course of an application: one course of 申请免考, or one course of a 成绩补登 registration.

    A registration's fields (通过时间 / 办理免考时间 / 办理转入时间 in `passed_month`, 成绩,
    来源省 ...) sit on each of its courses, so that each approved course becomes one score record.
    """

    __tablename__ = "application_items"
    __table_args__ = (
        UniqueConstraint("application_id", "course_code", name="uq_application_items_application_course"),
        CheckConstraint(f"entry_kind is null or {_in('entry_kind', ENTRY_KINDS)}", name="entry_kind"),
        CheckConstraint(_year_month("passed_month"), name="passed_month"),
        CheckConstraint("score is null or (score >= 0 and score <= 100)", name="score_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    course_code: Mapped[str] = mapped_column(ForeignKey("courses.code"))
    entry_kind: Mapped[Optional[str]] = mapped_column(String(10))  # 成绩补登 only
    passed_month: Mapped[Optional[str]] = mapped_column(String(7))  # 'YYYY-MM'
    score: Mapped[Optional[Decimal]] = mapped_column(Numeric(5, 1))
    grade: Mapped[Optional[str]] = mapped_column(String(8))  # 合格 / 通过 when not numeric
    note: Mapped[Optional[str]] = mapped_column(Text)  # 说明
    from_province: Mapped[Optional[str]] = mapped_column(String(16))  # 来源省 (转出省)
    from_admission_number: Mapped[Optional[str]] = mapped_column(String(32))  # 来源准考证号

    application: Mapped[Application] = relationship(back_populates="items")
    evidences: Mapped[list[Evidence]] = relationship(
        back_populates="item", order_by="Evidence.position", cascade="all, delete-orphan"
    )


class Evidence(Base):
    """A 凭证 for a course: type, number, when and where it was obtained, and its photos."""

    __tablename__ = "application_evidences"
    __table_args__ = (CheckConstraint(_year_month("obtained_month"), name="obtained_month"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("application_items.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    type_code: Mapped[str] = mapped_column(ForeignKey("evidence_types.code"))
    number: Mapped[Optional[str]] = mapped_column(String(64))  # 编号
    obtained_month: Mapped[Optional[str]] = mapped_column(String(7))  # 获取凭证时间 'YYYY-MM'
    province: Mapped[Optional[str]] = mapped_column(String(16))  # 获取凭证省份 / 取得凭证地点
    note: Mapped[Optional[str]] = mapped_column(Text)  # 备注

    item: Mapped[ApplicationItem] = relationship(back_populates="evidences")
    type: Mapped[EvidenceType] = relationship()
    photo_links: Mapped[list[EvidencePhoto]] = relationship(
        back_populates="evidence", order_by="EvidencePhoto.position", cascade="all, delete-orphan"
    )


class Photo(Base):
    """An uploaded photo, stored once by the sha256 of its stored bytes (see storage.photos)."""

    __tablename__ = "photos"
    __table_args__ = (
        CheckConstraint(_in("content_type", PHOTO_CONTENT_TYPES), name="content_type"),
        CheckConstraint("size > 0 and width > 0 and height > 0", name="positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int]
    width: Mapped[int]
    height: Mapped[int]
    content_type: Mapped[str] = mapped_column(String(16))
    storage_key: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class EvidencePhoto(Base):
    """A photo of an evidence, in the order sent. The same photo may serve several evidences."""

    __tablename__ = "evidence_photos"

    evidence_id: Mapped[int] = mapped_column(
        ForeignKey("application_evidences.id", ondelete="CASCADE"), primary_key=True
    )
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id"), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(default=0)

    evidence: Mapped[Evidence] = relationship(back_populates="photo_links")
    photo: Mapped[Photo] = relationship()


class ApplicationEvent(Base):
    """What happened to an application: each submission and decision, by whom and when."""

    __tablename__ = "application_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(12))  # create / save / submit / approve / reject
    from_status: Mapped[Optional[str]] = mapped_column(String(12))
    to_status: Mapped[str] = mapped_column(String(12))
    actor: Mapped[str] = mapped_column(String(64))  # 'candidate' or the staff member's name
    reason: Mapped[Optional[str]] = mapped_column(Text)

    application: Mapped[Application] = relationship(back_populates="events")
