"""Paying a graduation-fee order (毕业审定费) in WeChat: the rules, and the order's side in the database.

WeChat Pay itself (signatures, the API calls, the notify endpoint) lives in bot/pay.py; this
module only decides and records:
- whether an order may be paid now (`payment_refusal`): known, 待缴费, the payment period
  (business window `graduation_fee`) open;
- what a payment notification means for the order (`judge_notification`): paid now, already
  paid by the same transaction, or refused (unknown order, closed order, wrong amount ...);
- marking an order 已缴费 exactly once (`record_payment`): a conditional UPDATE (status still
  'pending') decides; the receipt push is written in the same transaction, so ten identical or
  concurrent notifications give one 已缴费 and one receipt;
- closing unpaid orders whose payment period has ended (`period_over`, `close_orders`).
"""
from __future__ import annotations

import datetime as dt
import enum
import logging
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Optional

from sqlalchemy import select, update

from storage import outbox
from storage.applications import WindowCheck, window_check
from storage.db import Database
from storage.models import BusinessWindow, Major, WechatUser, utcnow
from storage.models_service import Order

log = logging.getLogger("zikao.payments")

FEE_WINDOW = "graduation_fee"
# WeChat Pay's out_trade_no: 6-32 characters of [A-Za-z0-9_-|*]. The office's 订单号 is used as is.
_OUT_TRADE_NO = re.compile(r"[A-Za-z0-9_\-|*]{6,32}")
# A prepay_id is valid two hours; a new one is asked for a little before that.
PREPAY_LIFETIME = dt.timedelta(hours=2) - dt.timedelta(minutes=5)


# --- Plain data and rules ----------------------------------------------------------------------


@dataclass(frozen=True)
class OrderView:
    """What the payment rules need of an order."""

    order_number: str
    candidate_id: int
    item: str
    major_name: str
    amount: Decimal  # yuan
    status: str  # pending / paid / closed
    created_at: dt.datetime
    prepay_id: Optional[str] = None
    prepay_openid: Optional[str] = None
    prepay_expires_at: Optional[dt.datetime] = None
    transaction_id: Optional[str] = None

    @property
    def amount_fen(self) -> int:
        return amount_fen(self.amount)

    @property
    def description(self) -> str:
        """What the payer's WeChat bill shows (at most 127 bytes)."""
        return f"{self.item}-{self.major_name}"[:40]


def amount_fen(amount: Decimal) -> int:
    """Yuan (two decimals) to WeChat Pay's integer fen."""
    return int((Decimal(amount) * 100).quantize(Decimal(1)))


def valid_out_trade_no(order_number: str) -> bool:
    return bool(_OUT_TRADE_NO.fullmatch(order_number))


def payment_refusal(order: Optional[OrderView], window: WindowCheck, *, payer_candidate_id: Optional[int]) -> Optional[str]:
    """Why this follower cannot pay this order now (a sentence for the payment page), or None."""
    if order is None or payer_candidate_id != order.candidate_id:
        return "没有找到这个订单。请在公众号回复“我的订单”查看。"
    if order.status == "paid":
        return "这个订单已经缴费，无需重复支付。"
    if order.status == "closed":
        return "这个订单已关闭，不能再支付。如有疑问请联系主考学校。"
    if not valid_out_trade_no(order.order_number) or order.amount_fen <= 0:
        return "这个订单暂时不能在微信中支付，请联系主考学校咨询缴费办法。"
    if not window.is_open:
        if window.next is None:
            return "现在不在毕业审定费缴费时间内，缴费时间另行通知，请留意站内消息。"
        return (f"现在不在毕业审定费缴费时间内。缴费时间：{outbox.shanghai_time(window.next.opens_at)}"
                f" 至 {outbox.shanghai_time(window.next.closes_at)}。")
    return None


def reusable_prepay(order: OrderView, openid: str, now: dt.datetime) -> Optional[str]:
    """The prepay_id asked for earlier by the same payer, while it is still valid."""
    if order.prepay_id and order.prepay_openid == openid and order.prepay_expires_at and now < order.prepay_expires_at:
        return order.prepay_id
    return None


def prepay_expiry(now: dt.datetime, window_closes_at: dt.datetime) -> dt.datetime:
    """Until when a new prepay_id may be used: its two hours, and never past the payment period."""
    return min(now + PREPAY_LIFETIME, window_closes_at)


class Outcome(str, enum.Enum):
    PAID = "paid"  # marked 已缴费 now
    ALREADY_PAID = "already_paid"  # a repeat of the notification that paid it
    NOT_SUCCESS = "not_success"  # trade_state other than SUCCESS: nothing to record
    UNKNOWN_ORDER = "unknown_order"
    CLOSED_ORDER = "closed_order"
    AMOUNT_MISMATCH = "amount_mismatch"
    OTHER_TRANSACTION = "other_transaction"  # paid already, by another transaction: money to refund

    @property
    def accepted(self) -> bool:
        """Answer WeChat Pay 2xx (no more repeats) or refuse (it repeats, staff see the log)."""
        return self in (Outcome.PAID, Outcome.ALREADY_PAID, Outcome.NOT_SUCCESS)


@dataclass(frozen=True)
class Payment:
    """The decrypted resource of a payment notification (or a query), the fields we check."""

    out_trade_no: str
    transaction_id: str
    trade_state: str
    amount_total: int  # fen
    currency: str
    payer_openid: str
    success_time: Optional[dt.datetime]

    @classmethod
    def from_resource(cls, r: dict[str, Any]) -> "Payment":
        amount = r.get("amount") or {}
        success = r.get("success_time")
        return cls(
            out_trade_no=str(r.get("out_trade_no") or ""),
            transaction_id=str(r.get("transaction_id") or ""),
            trade_state=str(r.get("trade_state") or ""),
            amount_total=int(amount.get("total") or 0),
            currency=str(amount.get("currency") or "CNY"),
            payer_openid=str((r.get("payer") or {}).get("openid") or ""),
            success_time=dt.datetime.fromisoformat(success) if success else None,
        )


def judge_notification(order: Optional[OrderView], p: Payment) -> Outcome:
    """What a (verified, decrypted) notification means for the order it names."""
    if order is None:
        return Outcome.UNKNOWN_ORDER
    if p.trade_state != "SUCCESS":
        return Outcome.NOT_SUCCESS
    if p.amount_total != order.amount_fen or p.currency != "CNY":
        return Outcome.AMOUNT_MISMATCH
    if order.status == "paid":
        return Outcome.ALREADY_PAID if order.transaction_id == p.transaction_id else Outcome.OTHER_TRANSACTION
    if order.status == "closed":
        return Outcome.CLOSED_ORDER
    return Outcome.PAID


def period_over(created_at: dt.datetime, windows: Iterable[Any], now: dt.datetime) -> bool:
    """An unpaid order closes when a payment period that it could be paid in has ended and no
    other is open: some `graduation_fee` window closed after the order was made, by `now`."""
    mine = [w for w in windows if w.kind == FEE_WINDOW]
    if any(w.opens_at <= now < w.closes_at for w in mine):
        return False
    return any(created_at < w.closes_at <= now for w in mine)


def masked_order(order_number: str) -> str:
    """An order number for a log line: the tail only."""
    return f"…{order_number[-4:]}" if len(order_number) > 4 else "…"


def masked_openid(openid: str) -> str:
    return f"{openid[:4]}…{openid[-2:]}" if len(openid) > 8 else "…"


# --- Database side -----------------------------------------------------------------------------


def _view(o: Order, major_name: str) -> OrderView:
    return OrderView(o.order_number, o.candidate_id, o.item, major_name, Decimal(str(o.amount)), o.status,
                     o.created_at, o.prepay_id, o.prepay_openid, o.prepay_expires_at, o.transaction_id)


async def _load(session, order_number: str) -> Optional[OrderView]:
    row = (await session.execute(
        select(Order, Major.name).join(Major, Major.code == Order.major_code).where(Order.order_number == order_number)
    )).first()
    return _view(row[0], row[1]) if row else None


async def load_order(db: Database, order_number: str) -> Optional[OrderView]:
    async with db.session() as s:
        return await _load(s, order_number)


async def candidate_of(db: Database, openid: str) -> Optional[int]:
    """The candidate a follower is bound to (None: not bound)."""
    async with db.session() as s:
        return (await s.execute(select(WechatUser.candidate_id).where(WechatUser.openid == openid))).scalar()


async def fee_window(db: Database, now: Optional[dt.datetime] = None) -> WindowCheck:
    async with db.session() as s:
        return await window_check(s, FEE_WINDOW, now)


async def save_prepay(db: Database, order_number: str, *, prepay_id: str, openid: str, expires_at: dt.datetime) -> bool:
    """Keep the prepay_id for reuse; only while the order is unpaid."""
    async with db.session() as s, s.begin():
        res = await s.execute(
            update(Order).where(Order.order_number == order_number, Order.status == "pending")
            .values(prepay_id=prepay_id, prepay_openid=openid, prepay_expires_at=expires_at))
        return res.rowcount == 1


def receipt_texts(order: OrderView, paid_at: dt.datetime) -> tuple[str, dict[str, str]]:
    text = (f"缴费成功：{order.item} {order.amount:.2f} 元\n专业：{order.major_name}\n订单号：{order.order_number}\n"
            f"缴费时间：{outbox.shanghai_time(paid_at)}\n回复“我的订单”可以查看。")
    data = {"thing1": order.item, "amount2": f"{order.amount:.2f}元", "character_string3": order.order_number,
            "time4": outbox.shanghai_time(paid_at)}
    return text, data


async def record_payment(db: Database, p: Payment, now: Optional[dt.datetime] = None) -> Outcome:
    """Apply a verified payment to its order: 已缴费 and the receipt push, exactly once.

    The UPDATE only matches a row still 'pending', so of any number of identical or concurrent
    notifications one changes the order; that one writes the receipt in the same transaction.
    The others see the paid order and are ALREADY_PAID.
    """
    now = now or utcnow()
    async with db.session() as s, s.begin():
        order = await _load(s, p.out_trade_no)
        outcome = judge_notification(order, p)
        if outcome is not Outcome.PAID:
            return outcome
        paid_at = p.success_time or now
        res = await s.execute(
            update(Order).where(Order.order_number == p.out_trade_no, Order.status == "pending")
            .values(status="paid", paid_at=paid_at, transaction_id=p.transaction_id))
        if res.rowcount == 1:
            text, data = receipt_texts(order, paid_at)
            await outbox.payment_receipt(s, candidate_id=order.candidate_id, payer_openid=p.payer_openid,
                                         order_number=order.order_number, text=text, data=data)
            return Outcome.PAID
    # Another notification (or the close job) got there first: judge what it left.
    async with db.session() as s:
        return judge_notification(await _load(s, p.out_trade_no), p)


async def due_for_closing(db: Database, now: Optional[dt.datetime] = None) -> list[OrderView]:
    """Unpaid orders whose payment period has ended."""
    now = now or utcnow()
    async with db.session() as s:
        windows = (await s.execute(select(BusinessWindow).where(BusinessWindow.kind == FEE_WINDOW))).scalars().all()
        rows = (await s.execute(
            select(Order, Major.name).join(Major, Major.code == Order.major_code).where(Order.status == "pending")
        )).all()
    return [_view(o, name) for o, name in rows if period_over(o.created_at, windows, now)]


async def close_order(db: Database, order_number: str, now: Optional[dt.datetime] = None) -> bool:
    """已关闭, if still unpaid (a payment recorded meanwhile wins)."""
    async with db.session() as s, s.begin():
        res = await s.execute(
            update(Order).where(Order.order_number == order_number, Order.status == "pending")
            .values(status="closed", closed_at=now or utcnow()))
        return res.rowcount == 1
