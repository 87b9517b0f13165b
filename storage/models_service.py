"""Tables of the query features: graduation-fee orders, feedback, read marks of 站内消息."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Optional

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow

# Order.status -> what 我的订单 shows. Stable ASCII codes, the platform's words as labels.
ORDER_STATUSES: dict[str, str] = {
    "pending": "待缴费",
    "paid": "已缴费",
    "closed": "已关闭",
}
# Today the platform takes one kind of payment only.
GRADUATION_FEE = "毕业审定费"


class Order(Base):
    """A payment the platform asks of a candidate (我的订单): today only the 毕业审定费."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("status in ('pending', 'paid', 'closed')", name="status"),
        CheckConstraint("amount >= 0", name="amount"),
        CheckConstraint("status != 'paid' or paid_at is not null", name="paid_time"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_number: Mapped[str] = mapped_column(String(32), unique=True)  # 订单号, as the office issues it
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"), index=True)
    admission_number: Mapped[str] = mapped_column(ForeignKey("admission_numbers.number"))
    major_code: Mapped[str] = mapped_column(ForeignKey("majors.code"))
    item: Mapped[str] = mapped_column(String(32), default=GRADUATION_FEE)
    amount: Mapped[Decimal] = mapped_column(Numeric(10, 2))  # yuan
    status: Mapped[str] = mapped_column(String(8), default="pending")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[Optional[dt.datetime]]
    closed_at: Mapped[Optional[dt.datetime]]
    # WeChat Pay (storage/payments.py): the JSAPI order made for it, who pays, and the
    # transaction that paid it. A transaction pays one order only.
    prepay_id: Mapped[Optional[str]] = mapped_column(String(64))
    prepay_openid: Mapped[Optional[str]] = mapped_column(String(64))
    prepay_expires_at: Mapped[Optional[dt.datetime]]
    transaction_id: Mapped[Optional[str]] = mapped_column(String(32), unique=True)


class Feedback(Base):
    """A 反馈建议 left in WeChat, for the office to read and answer."""

    __tablename__ = "feedback"
    __table_args__ = (
        CheckConstraint("length(title) > 0", name="title"),
        CheckConstraint("length(body) > 0", name="body"),
        # Staff read the unhandled ones, oldest first.
        Index("ix_feedback_handled_created_at", "handled", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    # Kept when the follower later unbinds; cleared if the candidate is deleted.
    candidate_id: Mapped[Optional[int]] = mapped_column(ForeignKey("candidates.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(64))  # 标题
    body: Mapped[str] = mapped_column(Text)  # 意见或建议
    contact_name: Mapped[Optional[str]] = mapped_column(String(32))  # 联系人
    contact_phone: Mapped[Optional[str]] = mapped_column(String(20))  # 联系电话
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    handled: Mapped[bool] = mapped_column(Boolean, default=False)
    handled_at: Mapped[Optional[dt.datetime]]
    handled_by: Mapped[Optional[str]] = mapped_column(String(64))
    # The office's answer (console), pushed to the follower as a customer-service message.
    reply: Mapped[Optional[str]] = mapped_column(Text)
    replied_at: Mapped[Optional[dt.datetime]]
    replied_by: Mapped[Optional[str]] = mapped_column(String(64))


class NoticeRead(Base):
    """That a follower opened one 站内消息 (read marks are per openid: unbound followers read too)."""

    __tablename__ = "notice_reads"

    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"), primary_key=True)
    read_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
