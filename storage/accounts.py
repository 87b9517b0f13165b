"""Accounts: binding an openid to a candidate, the binding lockout, SMS codes, passwords, contacts."""
from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Optional

from sqlalchemy import delete, func, select, update

from storage.db import Database
from storage.identifiers import normalize_id_number
from storage.models import AdmissionNumber, BindFailure, Candidate, SmsCode, WechatUser, utcnow
from storage.passwords import hash_password, verify_password

LOCK_FAILURES = 5
LOCK_WINDOW = dt.timedelta(minutes=15)
SMS_TTL = dt.timedelta(minutes=5)
SMS_RESEND_AFTER = dt.timedelta(seconds=60)
SMS_MAX_ATTEMPTS = 5
SMS_HOURLY_LIMIT = 8

# Verifying against this when the ID is unknown makes "no such candidate" cost as much as
# "wrong password", so timing does not tell which IDs exist.
@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(8))


@dataclass(frozen=True)
class Binding:
    openid: str
    candidate_id: Optional[int]
    admission_number: Optional[str]


async def binding(db: Database, openid: str) -> Binding:
    async with db.session() as s:
        row = (await s.execute(
            select(WechatUser.candidate_id, WechatUser.active_admission_number).where(WechatUser.openid == openid)
        )).first()
    if row is None:
        return Binding(openid, None, None)
    return Binding(openid, row.candidate_id, row.active_admission_number)


# --- lockout -----------------------------------------------------------------------------------


def id_key(id_number: str) -> str:
    """A keyed hash of the ID: counts failures per ID without storing the ID."""
    return hmac.new(b"zikao-bind-failures", normalize_id_number(id_number).encode(), hashlib.sha256).hexdigest()


async def locked_for(db: Database, id_number: str, now: dt.datetime | None = None) -> Optional[dt.timedelta]:
    """How long binding for this ID stays locked (None when it is not): 5 failures within 15 minutes
    lock it until 15 minutes after the fifth."""
    now = now or utcnow()
    async with db.session() as s:
        times = (await s.scalars(
            select(BindFailure.failed_at)
            .where(BindFailure.id_key == id_key(id_number), BindFailure.failed_at > now - LOCK_WINDOW)
            .order_by(BindFailure.failed_at.desc())
            .limit(LOCK_FAILURES)
        )).all()
    if len(times) < LOCK_FAILURES:
        return None
    return times[0] + LOCK_WINDOW - now


async def record_failure(db: Database, id_number: str, openid: str, now: dt.datetime | None = None) -> int:
    """Record a wrong password; returns how many tries remain before the lock."""
    now = now or utcnow()
    key = id_key(id_number)
    async with db.session() as s, s.begin():
        s.add(BindFailure(id_key=key, openid=openid, failed_at=now))
        await s.flush()
        count = await s.scalar(
            select(func.count()).select_from(BindFailure)
            .where(BindFailure.id_key == key, BindFailure.failed_at > now - LOCK_WINDOW)
        )
        # Old rows have no further use.
        await s.execute(delete(BindFailure).where(BindFailure.failed_at < now - 2 * LOCK_WINDOW))
    return max(LOCK_FAILURES - int(count or 0), 0)


async def clear_failures(db: Database, id_number: str) -> None:
    async with db.session() as s, s.begin():
        await s.execute(delete(BindFailure).where(BindFailure.id_key == id_key(id_number)))


# --- candidates and passwords -------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateLogin:
    id: int
    name: str
    mobile: Optional[str]
    mobile_verified: bool
    bound_elsewhere: bool


async def check_login(db: Database, id_number: str, password: str, openid: str) -> Optional[CandidateLogin]:
    """The candidate if the password is right, else None. scrypt runs off the event loop."""
    async with db.session() as s:
        c = (await s.execute(
            select(Candidate.id, Candidate.name, Candidate.mobile, Candidate.mobile_verified_at, Candidate.password_hash)
            .where(Candidate.id_number == normalize_id_number(id_number))
        )).first()
        other = None
        if c is not None:
            other = await s.scalar(
                select(WechatUser.openid).where(WechatUser.candidate_id == c.id, WechatUser.openid != openid).limit(1)
            )
    stored = c.password_hash if c is not None else _dummy_hash()
    ok = await asyncio.to_thread(verify_password, password, stored)
    if c is None or not ok:
        return None
    return CandidateLogin(c.id, c.name, c.mobile, c.mobile_verified_at is not None, other is not None)


async def verify_candidate_password(db: Database, candidate_id: int, password: str) -> bool:
    async with db.session() as s:
        stored = await s.scalar(select(Candidate.password_hash).where(Candidate.id == candidate_id))
    return bool(stored) and await asyncio.to_thread(verify_password, password, stored)


async def id_number_of(db: Database, candidate_id: int) -> str:
    async with db.session() as s:
        return await s.scalar(select(Candidate.id_number).where(Candidate.id == candidate_id)) or ""


async def set_password_hash(db: Database, candidate_id: int, password_hash: str) -> None:
    async with db.session() as s, s.begin():
        await s.execute(update(Candidate).where(Candidate.id == candidate_id).values(password_hash=password_hash))


async def admission_numbers(db: Database, candidate_id: int) -> list[str]:
    async with db.session() as s:
        return list((await s.scalars(
            select(AdmissionNumber.number).where(AdmissionNumber.candidate_id == candidate_id)
            .order_by(AdmissionNumber.registered_on.desc().nulls_last(), AdmissionNumber.number.desc())
        )).all())


async def bind(db: Database, openid: str, candidate_id: int, *, verified_mobile: Optional[str] = None) -> Optional[str]:
    """Bind `openid` to the candidate (moving the binding from any other openid); returns the
    admission number made active (the newest)."""
    numbers = await admission_numbers(db, candidate_id)
    active = numbers[0] if numbers else None
    now = utcnow()
    values = {"candidate_id": candidate_id, "active_admission_number": active, "bound_at": now}
    async with db.session() as s, s.begin():
        await s.execute(
            update(WechatUser).where(WechatUser.candidate_id == candidate_id, WechatUser.openid != openid)
            .values(candidate_id=None, active_admission_number=None, bound_at=None)
        )
        await s.execute(
            db.insert(WechatUser).values(openid=openid, **values)
            .on_conflict_do_update(index_elements=["openid"], set_=values)
        )
        if verified_mobile:
            await s.execute(update(Candidate).where(Candidate.id == candidate_id)
                            .values(mobile=verified_mobile, mobile_verified_at=now))
    return active


async def unbind(db: Database, openid: str) -> None:
    async with db.session() as s, s.begin():
        await s.execute(update(WechatUser).where(WechatUser.openid == openid)
                        .values(candidate_id=None, active_admission_number=None, bound_at=None))


async def set_active_number(db: Database, openid: str, candidate_id: int, number: str) -> bool:
    async with db.session() as s, s.begin():
        owned = await s.scalar(select(AdmissionNumber.number).where(
            AdmissionNumber.number == number, AdmissionNumber.candidate_id == candidate_id))
        if owned is None:
            return False
        await s.execute(update(WechatUser).where(WechatUser.openid == openid, WechatUser.candidate_id == candidate_id)
                        .values(active_admission_number=number))
    return True


PROFILE_FIELDS: tuple[tuple[str, str], ...] = (
    ("name", "姓名"), ("id_number", "证件号码"), ("political_status", "政治面貌"),
    ("household_register", "户籍所在地"), ("landline", "固定电话"), ("occupation", "职业类型"),
    ("mobile", "手机号码"), ("employer", "工作单位"), ("emergency_contact", "紧急联系人"),
    ("emergency_mobile", "紧急联系人手机号"), ("email", "电子邮箱"), ("residence", "现居住地"),
    ("prior_education", "参加自考考前学历"), ("graduated_school", "毕业学校名称"),
    ("full_time_student", "目前是否全日制在读"), ("current_school", "在读学校名称"),
    ("study_mode", "学习方式"), ("mailing_address", "通讯地址"), ("postcode", "邮政编码"),
    ("disability", "视力/听力/行动等"),
)

CONTACT_FIELDS = frozenset({"mobile", "email", "mailing_address", "postcode", "emergency_contact", "emergency_mobile"})


async def profile(db: Database, candidate_id: int) -> dict[str, Any]:
    async with db.session() as s:
        c = await s.get(Candidate, candidate_id)
        if c is None:
            return {}
        return {name: getattr(c, name) for name, _ in PROFILE_FIELDS}


async def update_contacts(db: Database, candidate_id: int, values: dict[str, Any]) -> None:
    bad = set(values) - CONTACT_FIELDS
    if bad:
        raise ValueError(f"not contact fields: {sorted(bad)}")
    if "mobile" in values:
        values = {**values, "mobile_verified_at": utcnow()}
    async with db.session() as s, s.begin():
        await s.execute(update(Candidate).where(Candidate.id == candidate_id).values(**values))


# --- SMS codes ---------------------------------------------------------------------------------


def _code_hash(code: str, salt: str) -> str:
    return salt + "$" + hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()


@dataclass(frozen=True)
class NewCode:
    code: str
    expires_at: dt.datetime


async def new_sms_code(db: Database, openid: str, mobile: str, purpose: str,
                       now: dt.datetime | None = None) -> Optional[NewCode]:
    """A fresh code for (openid, purpose, mobile), replacing earlier ones; None when the gateway
    must not be used yet: the same number got a code under a minute ago, or this user asked for
    SMS_HOURLY_LIMIT codes within the hour (nobody can use the service to flood a phone)."""
    now = now or utcnow()
    async with db.session() as s, s.begin():
        recent = (await s.execute(
            select(SmsCode.mobile, SmsCode.created_at)
            .where(SmsCode.openid == openid, SmsCode.created_at > now - dt.timedelta(hours=1))
        )).all()
        if len(recent) >= SMS_HOURLY_LIMIT:
            return None
        if any(r.mobile == mobile and now - r.created_at < SMS_RESEND_AFTER for r in recent):
            return None
        # Earlier codes of this purpose stop working; the rows stay an hour for the count above.
        await s.execute(
            update(SmsCode).where(SmsCode.openid == openid, SmsCode.purpose == purpose, SmsCode.used_at.is_(None))
            .values(used_at=now)
        )
        await s.execute(delete(SmsCode).where(SmsCode.created_at < now - dt.timedelta(days=1)))
        code = f"{secrets.randbelow(10**6):06d}"
        salt = secrets.token_hex(8)
        s.add(SmsCode(openid=openid, mobile=mobile, purpose=purpose, code_hash=_code_hash(code, salt),
                      created_at=now, expires_at=now + SMS_TTL))
    return NewCode(code, now + SMS_TTL)


async def forget_sms_code(db: Database, openid: str, purpose: str) -> None:
    """Drop the code just made (the gateway did not send it), so a retry is not rate-limited."""
    async with db.session() as s, s.begin():
        await s.execute(delete(SmsCode).where(SmsCode.openid == openid, SmsCode.purpose == purpose,
                                              SmsCode.used_at.is_(None)))


async def check_sms_code(db: Database, openid: str, purpose: str, mobile: str, code: str,
                         now: dt.datetime | None = None) -> str:
    """'ok' (and the code is used up), 'wrong', 'expired', 'missing' or 'exhausted'."""
    now = now or utcnow()
    async with db.session() as s, s.begin():
        row = (await s.scalars(
            select(SmsCode).where(SmsCode.openid == openid, SmsCode.purpose == purpose, SmsCode.mobile == mobile,
                                  SmsCode.used_at.is_(None))
            .order_by(SmsCode.created_at.desc()).limit(1)
        )).first()
        if row is None:
            return "missing"
        if row.expires_at <= now:
            return "expired"
        if row.attempts >= SMS_MAX_ATTEMPTS:
            return "exhausted"
        salt = row.code_hash.split("$", 1)[0]
        if not hmac.compare_digest(_code_hash(code, salt), row.code_hash):
            row.attempts += 1
            return "exhausted" if row.attempts >= SMS_MAX_ATTEMPTS else "wrong"
        row.used_at = now
        return "ok"
