"""Accounts: binding an openid to a candidate, password throttles, SMS codes, passwords, contacts, audit."""
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
from sqlalchemy.ext.asyncio import AsyncSession

from storage import followers, keys, outbox
from storage.db import Database
from storage.identifiers import mask_id_number, mask_mobile
from storage.models import AccountEvent, AdmissionNumber, BindFailure, Candidate, SmsCode, WechatUser, utcnow
from storage.passwords import hash_password, initial_password, needs_rehash, verify_password

LOCK_FAILURES = 5
LOCK_WINDOW = dt.timedelta(minutes=15)
SMS_TTL = dt.timedelta(minutes=5)
SMS_RESEND_AFTER = dt.timedelta(seconds=60)
SMS_MAX_ATTEMPTS = 5
SMS_HOURLY_LIMIT = 8  # codes one openid may ask for in an hour, whatever the numbers
SMS_PER_NUMBER_HOURLY = 5  # codes one number may get in an hour, whatever the openids

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


# --- throttles ---------------------------------------------------------------------------------
#
# Wrong passwords (and wrong identity details) are counted per (ID, openid) and per openid:
# - one openid gets LOCK_FAILURES tries per ID within LOCK_WINDOW, then that pair waits;
# - one openid gets OPENID_FAILURES wrong tries across all IDs within OPENID_WINDOW, then it waits
#   (60 IDs tried from one WeChat stop at the tenth);
# - failures from other openids never lock the owner: a stranger's tries slow the stranger down,
#   and the bound openid is told (at most once an hour).

LOCK_FAILURES = 5
LOCK_WINDOW = dt.timedelta(minutes=15)
OPENID_FAILURES = 10
OPENID_WINDOW = dt.timedelta(hours=1)
ALERT_EVERY = dt.timedelta(hours=1)


def id_key(id_number: str) -> str:
    """The blind index of the ID (HMAC under SECRET_KEY): counts failures without storing the ID."""
    return keys.id_index(id_number)


@dataclass(frozen=True)
class Lock:
    scope: str  # "pair": this ID from this openid; "openid": this openid for every ID
    left: dt.timedelta


async def locked_for(db: Database, id_number: str, openid: str, now: dt.datetime | None = None) -> Optional[Lock]:
    """Whether `openid` may try a password for `id_number` now (None) or must wait."""
    now = now or utcnow()
    key = id_key(id_number)
    async with db.session() as s:
        pair = (await s.scalars(
            select(BindFailure.failed_at)
            .where(BindFailure.id_key == key, BindFailure.openid == openid, BindFailure.failed_at > now - LOCK_WINDOW)
            .order_by(BindFailure.failed_at.desc()).limit(LOCK_FAILURES)
        )).all()
        mine = (await s.scalars(
            select(BindFailure.failed_at)
            .where(BindFailure.openid == openid, BindFailure.failed_at > now - OPENID_WINDOW)
            .order_by(BindFailure.failed_at.desc()).limit(OPENID_FAILURES)
        )).all()
    if len(mine) >= OPENID_FAILURES:
        return Lock("openid", mine[-1] + OPENID_WINDOW - now)
    if len(pair) >= LOCK_FAILURES:
        return Lock("pair", pair[0] + LOCK_WINDOW - now)
    return None


async def record_failure(db: Database, id_number: str, openid: str, *, alert_text: str | None = None,
                         now: dt.datetime | None = None) -> int:
    """Record a wrong password (or wrong identity details) from `openid` for `id_number`; returns
    how many tries remain before that openid waits. The openid the ID is bound to, when it is
    another one, gets `alert_text` (at most once per ALERT_EVERY); a lock is audited."""
    now = now or utcnow()
    key = id_key(id_number)
    async with db.session() as s, s.begin():
        s.add(BindFailure(id_key=key, openid=openid, failed_at=now))
        await s.flush()
        pair = await s.scalar(select(func.count()).select_from(BindFailure).where(
            BindFailure.id_key == key, BindFailure.openid == openid, BindFailure.failed_at > now - LOCK_WINDOW))
        mine = await s.scalar(select(func.count()).select_from(BindFailure).where(
            BindFailure.openid == openid, BindFailure.failed_at > now - OPENID_WINDOW))
        # Old rows have no further use.
        await s.execute(delete(BindFailure).where(BindFailure.failed_at < now - 2 * OPENID_WINDOW))
        remaining = max(min(LOCK_FAILURES - int(pair or 0), OPENID_FAILURES - int(mine or 0)), 0)
        cand = await s.scalar(select(Candidate.id).where(Candidate.id_index == key))
        if remaining == 0:
            await _audit(s, "lockout", candidate_id=cand, id_number=id_number, openid=openid,
                         detail={"scope": "openid" if OPENID_FAILURES - int(mine or 0) <= 0 else "pair"}, now=now)
        if cand is not None and alert_text:
            owner = await s.scalar(select(WechatUser.openid).where(WechatUser.candidate_id == cand).limit(1))
            if owner is not None and owner != openid:
                bucket = int(now.timestamp() // ALERT_EVERY.total_seconds())
                await outbox.account_alert(s, openid=owner, text=alert_text, cause=("failed-login", cand, bucket))
    return remaining


async def clear_failures(db: Database, id_number: str, openid: str) -> None:
    """A right password from `openid` forgets its failures for this ID (not its other IDs')."""
    async with db.session() as s, s.begin():
        await s.execute(delete(BindFailure).where(BindFailure.id_key == id_key(id_number), BindFailure.openid == openid))


# --- audit -------------------------------------------------------------------------------------

AUDIT_EVENTS = ("bind", "unbind", "bind_moved", "password_change", "contact_change", "lockout")


async def _audit(s: AsyncSession, event: str, *, candidate_id: Optional[int], openid: str,
                 id_number: str | None = None, detail: dict[str, Any] | None = None,
                 now: dt.datetime | None = None) -> None:
    if event not in AUDIT_EVENTS:
        raise ValueError(f"unknown audit event {event!r}")
    if id_number is None and candidate_id is not None:
        id_number = await s.scalar(select(Candidate.id_number).where(Candidate.id == candidate_id))
    s.add(AccountEvent(at=now or utcnow(), event=event, candidate_id=candidate_id,
                       subject=mask_id_number(id_number) if id_number else "",
                       openid_tag=keys.openid_tag(openid) if openid else "", detail=detail))


@dataclass(frozen=True)
class AuditEntry:
    at: dt.datetime
    event: str
    subject: str
    openid_tag: str
    detail: dict[str, Any]


async def audit_events(db: Database, *, limit: int = 50, event: str | None = None,
                       id_number: str | None = None) -> list[AuditEntry]:
    """The newest account events first; `id_number` narrows to one candidate (found by its index)."""
    q = select(AccountEvent).order_by(AccountEvent.at.desc(), AccountEvent.id.desc()).limit(limit)
    if event:
        q = q.where(AccountEvent.event == event)
    if id_number:
        q = q.join(Candidate, Candidate.id == AccountEvent.candidate_id).where(Candidate.id_index == id_key(id_number))
    async with db.session() as s:
        rows = (await s.scalars(q)).all()
    return [AuditEntry(r.at, r.event, r.subject, r.openid_tag, dict(r.detail or {})) for r in rows]


# --- candidates and passwords -------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateLogin:
    id: int
    name: str
    mobile: Optional[str]
    mobile_verified: bool
    bound_openid: Optional[str]  # the openid the record is bound to now, if any
    initial_password: bool  # still the platform's initial password (the ID's last six)

    @property
    def bound_elsewhere(self) -> bool:
        return self.bound_openid is not None


async def check_login(db: Database, id_number: str, password: str, openid: str) -> Optional[CandidateLogin]:
    """The candidate if the password is right, else None. scrypt runs off the event loop; a hash
    of an older cost is replaced by one of today's cost."""
    async with db.session() as s:
        c = (await s.execute(
            select(Candidate.id, Candidate.name, Candidate.mobile, Candidate.mobile_verified_at, Candidate.password_hash)
            .where(Candidate.id_index == id_key(id_number))
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
    if needs_rehash(stored):
        await _rehash(db, c.id, stored, password)
    initial = password == initial_password(id_number)
    return CandidateLogin(c.id, c.name, c.mobile, c.mobile_verified_at is not None, other, initial)


async def _rehash(db: Database, candidate_id: int, old_hash: str, password: str) -> None:
    new_hash = await asyncio.to_thread(hash_password, password)
    async with db.session() as s, s.begin():
        # Only if nobody changed the password meanwhile.
        await s.execute(update(Candidate).where(Candidate.id == candidate_id, Candidate.password_hash == old_hash)
                        .values(password_hash=new_hash))


async def check_identity(db: Database, candidate_id: int, name: str, admission_number: str) -> bool:
    """True if `name` is the candidate's 姓名 and `admission_number` one of their 准考证号: what a
    candidate without a verified mobile proves on top of the ID number and password."""
    async with db.session() as s:
        row = (await s.execute(
            select(Candidate.name, AdmissionNumber.number)
            .join(AdmissionNumber, AdmissionNumber.candidate_id == Candidate.id)
            .where(Candidate.id == candidate_id, AdmissionNumber.number == admission_number)
        )).first()
    return row is not None and hmac.compare_digest(
        "".join(row.name.split()).encode(), "".join(name.split()).encode())


async def verify_candidate_password(db: Database, candidate_id: int, password: str) -> bool:
    async with db.session() as s:
        stored = await s.scalar(select(Candidate.password_hash).where(Candidate.id == candidate_id))
    ok = bool(stored) and await asyncio.to_thread(verify_password, password, stored)
    if ok and needs_rehash(stored):
        await _rehash(db, candidate_id, stored, password)
    return ok


async def id_number_of(db: Database, candidate_id: int) -> str:
    async with db.session() as s:
        return await s.scalar(select(Candidate.id_number).where(Candidate.id == candidate_id)) or ""


async def set_password_hash(db: Database, candidate_id: int, password_hash: str, *, openid: str = "") -> None:
    async with db.session() as s, s.begin():
        await s.execute(update(Candidate).where(Candidate.id == candidate_id).values(password_hash=password_hash))
        await _audit(s, "password_change", candidate_id=candidate_id, openid=openid)


async def admission_numbers(db: Database, candidate_id: int) -> list[str]:
    async with db.session() as s:
        return list((await s.scalars(
            select(AdmissionNumber.number).where(AdmissionNumber.candidate_id == candidate_id)
            .order_by(AdmissionNumber.registered_on.desc().nulls_last(), AdmissionNumber.number.desc())
        )).all())


@dataclass(frozen=True)
class Bound:
    active: Optional[str]  # the admission number made active (the newest)
    previous_openid: Optional[str]  # the openid the binding moved away from


async def bind(db: Database, openid: str, candidate_id: int, *, verified_mobile: Optional[str] = None,
               new_password_hash: Optional[str] = None, moved_text: Optional[str] = None,
               bound_text: Optional[str] = None) -> Bound:
    """Bind `openid` to the candidate, moving the binding from any other openid (which is told
    `moved_text` through the outbox); store a mobile proven by SMS and a password that replaces
    the initial one, all in one transaction with their audit entries. `bound_text` goes to the
    chat of `openid` (the binding happened on a page; the chat learns it too)."""
    numbers = await admission_numbers(db, candidate_id)
    active = numbers[0] if numbers else None
    now = utcnow()
    values = {"candidate_id": candidate_id, "active_admission_number": active, "bound_at": now}
    async with db.session() as s, s.begin():
        previous = (await s.scalars(select(WechatUser.openid).where(
            WechatUser.candidate_id == candidate_id, WechatUser.openid != openid))).all()
        await s.execute(
            update(WechatUser).where(WechatUser.candidate_id == candidate_id, WechatUser.openid != openid)
            .values(candidate_id=None, active_admission_number=None, bound_at=None)
        )
        await s.execute(
            db.insert(WechatUser).values(openid=openid, **values)
            .on_conflict_do_update(index_elements=["openid"], set_=values)
        )
        changes: dict[str, Any] = {}
        if verified_mobile:
            changes.update(mobile=verified_mobile, mobile_verified_at=now)
        if new_password_hash:
            changes.update(password_hash=new_password_hash)
        if changes:
            await s.execute(update(Candidate).where(Candidate.id == candidate_id).values(**changes))
        await _audit(s, "bind", candidate_id=candidate_id, openid=openid, now=now,
                     detail={"mobile_verified": bool(verified_mobile), "initial_password_replaced": bool(new_password_hash)})
        if new_password_hash:
            await _audit(s, "password_change", candidate_id=candidate_id, openid=openid, now=now)
        if verified_mobile:
            await _audit(s, "contact_change", candidate_id=candidate_id, openid=openid, now=now,
                         detail={"fields": ["mobile"], "mobile": mask_mobile(verified_mobile)})
        for old in previous:
            await _audit(s, "bind_moved", candidate_id=candidate_id, openid=openid, now=now,
                         detail={"from": keys.openid_tag(old)})
            if moved_text:
                await outbox.account_alert(s, openid=old, text=moved_text,
                                           cause=("moved", candidate_id, int(now.timestamp())))
        if bound_text:
            await outbox.account_alert(s, openid=openid, text=bound_text,
                                       cause=("bound", candidate_id, int(now.timestamp())))
    await followers.changed(db, [openid, *previous])
    return Bound(active, previous[0] if previous else None)


async def unbind(db: Database, openid: str) -> None:
    async with db.session() as s, s.begin():
        cand = await s.scalar(select(WechatUser.candidate_id).where(WechatUser.openid == openid))
        await s.execute(update(WechatUser).where(WechatUser.openid == openid)
                        .values(candidate_id=None, active_admission_number=None, bound_at=None))
        if cand is not None:
            await _audit(s, "unbind", candidate_id=cand, openid=openid)
    await followers.changed(db, [openid])


async def set_active_number(db: Database, openid: str, candidate_id: int, number: str) -> bool:
    async with db.session() as s, s.begin():
        owned = await s.scalar(select(AdmissionNumber.number).where(
            AdmissionNumber.number == number, AdmissionNumber.candidate_id == candidate_id))
        if owned is None:
            return False
        await s.execute(update(WechatUser).where(WechatUser.openid == openid, WechatUser.candidate_id == candidate_id)
                        .values(active_admission_number=number))
    await followers.changed(db, [openid])
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


async def update_contacts(db: Database, candidate_id: int, values: dict[str, Any], *, openid: str = "") -> None:
    bad = set(values) - CONTACT_FIELDS
    if bad:
        raise ValueError(f"not contact fields: {sorted(bad)}")
    detail: dict[str, Any] = {"fields": sorted(values)}
    if "mobile" in values:
        detail["mobile"] = mask_mobile(values["mobile"])
        values = {**values, "mobile_verified_at": utcnow()}
    async with db.session() as s, s.begin():
        await s.execute(update(Candidate).where(Candidate.id == candidate_id).values(**values))
        await _audit(s, "contact_change", candidate_id=candidate_id, openid=openid, detail=detail)


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
    must not be used yet: the number got a code under a minute ago or SMS_PER_NUMBER_HOURLY
    within the hour (from any openid: five WeChat users cannot flood one phone), or this user
    asked for SMS_HOURLY_LIMIT codes within the hour."""
    now = now or utcnow()
    key = keys.mobile_index(mobile)
    hour_ago = now - dt.timedelta(hours=1)
    async with db.session() as s, s.begin():
        mine = await s.scalar(select(func.count()).select_from(SmsCode).where(
            SmsCode.openid == openid, SmsCode.created_at > hour_ago))
        if int(mine or 0) >= SMS_HOURLY_LIMIT:
            return None
        to_number = (await s.scalars(select(SmsCode.created_at).where(
            SmsCode.mobile_key == key, SmsCode.created_at > hour_ago))).all()
        if len(to_number) >= SMS_PER_NUMBER_HOURLY or any(now - t < SMS_RESEND_AFTER for t in to_number):
            return None
        # Earlier codes of this purpose stop working; the rows stay an hour for the counts above.
        await s.execute(
            update(SmsCode).where(SmsCode.openid == openid, SmsCode.purpose == purpose, SmsCode.used_at.is_(None))
            .values(used_at=now)
        )
        await s.execute(delete(SmsCode).where(SmsCode.created_at < now - dt.timedelta(days=1)))
        code = f"{secrets.randbelow(10**6):06d}"
        salt = secrets.token_hex(8)
        s.add(SmsCode(openid=openid, mobile_key=key, purpose=purpose, code_hash=_code_hash(code, salt),
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
            select(SmsCode).where(SmsCode.openid == openid, SmsCode.purpose == purpose,
                                  SmsCode.mobile_key == keys.mobile_index(mobile), SmsCode.used_at.is_(None))
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
