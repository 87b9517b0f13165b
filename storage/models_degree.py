"""Tables of 申请学位: the materials each major's 主考学校 requires (imported by the office), and the
photos an application holds outside course evidences (the degree materials)."""
from __future__ import annotations

from decimal import Decimal
from typing import Optional

from sqlalchemy import Boolean, ForeignKey, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base


class DegreeRequirement(Base):
    """One material a major's 主考学校 asks of a degree applicant (degree_requirements.csv).

    Rows of one major with the same `group_name` are alternatives: one of them is handed in
    (学位外语: CET-4 成绩单 or PETS-3 合格证书); a row without a group is required by itself.
    `asks_*` say which fields the candidate fills; `min_score` refuses a lower 成绩.
    An inactive row (启用 = 否) is no longer asked for (the import never deletes).
    """

    __tablename__ = "degree_requirements"
    __table_args__ = (UniqueConstraint("major_code", "code", name="uq_degree_requirements_major_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    major_code: Mapped[str] = mapped_column(ForeignKey("majors.code"), index=True)
    code: Mapped[str] = mapped_column(String(32))  # 材料代码: cet4
    name: Mapped[str] = mapped_column(String(64))  # 材料名称: 大学英语四级（CET-4）成绩单
    group_name: Mapped[Optional[str]] = mapped_column(String(32))  # 材料类别: 学位外语
    asks_score: Mapped[bool] = mapped_column(Boolean, default=False)
    asks_month: Mapped[bool] = mapped_column(Boolean, default=False)
    asks_province: Mapped[bool] = mapped_column(Boolean, default=False)
    asks_number: Mapped[bool] = mapped_column(Boolean, default=False)
    photo_required: Mapped[bool] = mapped_column(Boolean, default=True)
    min_score: Mapped[Optional[Decimal]] = mapped_column(Numeric(6, 1))
    note: Mapped[Optional[str]] = mapped_column(Text)  # 说明, shown to the candidate
    position: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class ApplicationPhoto(Base):
    """A photo an application holds in its form details rather than on a course's evidence (the
    materials of 申请学位): kept in step with the details on every save, so a reviewer's page may
    show it (storage.review_queue.photo_for_kinds) and a photo is never orphaned."""

    __tablename__ = "application_photos"

    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"), primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id"), primary_key=True, index=True)
