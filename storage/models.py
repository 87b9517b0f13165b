"""The service's schema: candidates and their studies, WeChat state, and the protocol tables."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
    Unicode,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from storage.keys import EncryptedString, id_index

# Stable constraint names so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, returns aware UTC: SQLite keeps no zone, so both backends store the same."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime, dict[str, Any]: JSON}


# --- Candidates and their studies -------------------------------------------------------------


def _id_index_default(context: Any) -> str:
    # Core inserts (the importer) and ORM inserts both get the blind index of the ID they write.
    return id_index(context.get_current_parameters()["id_number"])


class Candidate(Base):
    """A person (one 证件号码) with the personal-info fields of the platform's 个人信息 page."""

    __tablename__ = "candidates"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Encrypted at rest (AES-GCM under SECRET_KEY); rows are found by `id_index`, its blind index.
    id_number: Mapped[str] = mapped_column(EncryptedString(128))
    id_index: Mapped[str] = mapped_column(String(64), unique=True, default=_id_index_default)
    id_type: Mapped[str] = mapped_column(String(16), default="身份证")
    name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    mobile: Mapped[Optional[str]] = mapped_column(EncryptedString(128))
    mobile_verified_at: Mapped[Optional[dt.datetime]]
    political_status: Mapped[Optional[str]] = mapped_column(String(32))  # 政治面貌
    household_register: Mapped[Optional[str]] = mapped_column(String(128))  # 户籍所在地
    landline: Mapped[Optional[str]] = mapped_column(String(32))  # 固定电话
    occupation: Mapped[Optional[str]] = mapped_column(String(64))  # 职业类型
    employer: Mapped[Optional[str]] = mapped_column(String(128))  # 工作单位
    emergency_contact: Mapped[Optional[str]] = mapped_column(String(64))  # 紧急联系人
    emergency_mobile: Mapped[Optional[str]] = mapped_column(EncryptedString(128))  # 紧急联系人手机号
    email: Mapped[Optional[str]] = mapped_column(String(128))  # 电子邮箱
    residence: Mapped[Optional[str]] = mapped_column(String(255))  # 现居住地
    prior_education: Mapped[Optional[str]] = mapped_column(String(32))  # 参加自考考前学历
    graduated_school: Mapped[Optional[str]] = mapped_column(String(128))  # 毕业学校名称
    full_time_student: Mapped[Optional[bool]] = mapped_column(Boolean)  # 目前是否全日制在读
    current_school: Mapped[Optional[str]] = mapped_column(String(128))  # 在读学校名称
    study_mode: Mapped[Optional[str]] = mapped_column(String(32))  # 学习方式
    mailing_address: Mapped[Optional[str]] = mapped_column(String(255))  # 通讯地址
    postcode: Mapped[Optional[str]] = mapped_column(String(6))  # 邮政编码
    disability: Mapped[Optional[str]] = mapped_column(String(128))  # 视力/听力/行动等
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    admission_numbers: Mapped[list[AdmissionNumber]] = relationship(
        back_populates="candidate", order_by="AdmissionNumber.number"
    )
    majors: Mapped[list[CandidateMajor]] = relationship(back_populates="candidate")

    @validates("id_number")
    def _index_id(self, _key: str, value: str) -> str:
        self.id_index = id_index(value)
        return value

    @classmethod
    def with_id_number(cls, id_number: str):
        """The WHERE clause that finds a candidate by ID number (through the blind index)."""
        return cls.id_index == id_index(id_number)


class AdmissionNumber(Base):
    """A 12-digit 准考证号; one candidate may hold several."""

    __tablename__ = "admission_numbers"
    __table_args__ = (CheckConstraint("length(number) = 12", name="twelve_digits"),)

    number: Mapped[str] = mapped_column(String(12), primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"), index=True)
    registered_on: Mapped[Optional[dt.date]]

    candidate: Mapped[Candidate] = relationship(back_populates="admission_numbers")


class Major(Base):
    """A 专业 with its graduation requirements."""

    __tablename__ = "majors"
    __table_args__ = (CheckConstraint("level in ('专科', '专升本', '本科')", name="level"),)

    code: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    level: Mapped[str] = mapped_column(String(8))
    required_credits: Mapped[int]
    university: Mapped[Optional[str]] = mapped_column(String(128))  # 主考院校
    notes: Mapped[Optional[str]] = mapped_column(Text)  # 专业说明
    graduation_rules: Mapped[Optional[dict[str, Any]]]  # e.g. {"required_courses": [...], "thesis": true}

    plan: Mapped[list[PlanCourse]] = relationship(back_populates="major", order_by="PlanCourse.position")


class CandidateMajor(Base):
    """A major a candidate is enrolled in, under one of their admission numbers."""

    __tablename__ = "candidate_majors"
    __table_args__ = (UniqueConstraint("candidate_id", "major_code", name="uq_candidate_majors_candidate_major"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"), index=True)
    major_code: Mapped[str] = mapped_column(ForeignKey("majors.code"))
    admission_number: Mapped[Optional[str]] = mapped_column(ForeignKey("admission_numbers.number"))

    candidate: Mapped[Candidate] = relationship(back_populates="majors")
    major: Mapped[Major] = relationship()


class Course(Base):
    __tablename__ = "courses"
    __table_args__ = (CheckConstraint("kind in ('理论', '实践', '论文')", name="kind"),)

    code: Mapped[str] = mapped_column(String(5), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(4), default="理论")


class PlanCourse(Base):
    """A course in a major's 考试计划 with its credits."""

    __tablename__ = "plan_courses"
    __table_args__ = (UniqueConstraint("major_code", "course_code", name="uq_plan_courses_major_course"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    major_code: Mapped[str] = mapped_column(ForeignKey("majors.code", ondelete="CASCADE"))
    course_code: Mapped[str] = mapped_column(ForeignKey("courses.code"))
    credits: Mapped[int]
    category: Mapped[str] = mapped_column(String(16), default="必考")  # 必考 / 选考 / 加考
    position: Mapped[int] = mapped_column(default=0)

    major: Mapped[Major] = relationship(back_populates="plan")
    course: Mapped[Course] = relationship()


class Textbook(Base):
    """教材考纲 of a course: a course may have several."""

    __tablename__ = "textbooks"
    __table_args__ = (UniqueConstraint("course_code", "title", "edition", name="uq_textbooks_course_title_edition"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_code: Mapped[str] = mapped_column(ForeignKey("courses.code"), index=True)
    title: Mapped[str] = mapped_column(String(255))
    publisher: Mapped[Optional[str]] = mapped_column(String(128))  # 出版社
    editor: Mapped[Optional[str]] = mapped_column(String(128))  # 主编
    edition: Mapped[str] = mapped_column(String(32), default="")  # 版次
    syllabus_name: Mapped[Optional[str]] = mapped_column(String(255))  # 考纲名称
    syllabus_author: Mapped[Optional[str]] = mapped_column(String(128))  # 编写单位
    syllabus_version: Mapped[Optional[str]] = mapped_column(String(32))  # 考纲版本


class Sitting(Base):
    """A 考次, keyed by year and month: '202404' is 2024年04月."""

    __tablename__ = "sittings"

    code: Mapped[str] = mapped_column(String(6), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    exam_date: Mapped[Optional[dt.date]]
    scores_released_at: Mapped[Optional[dt.datetime]]


class ScoreRecord(Base):
    """One result: an exam score, an exemption, a transfer-in or a backfilled old result."""

    __tablename__ = "score_records"
    __table_args__ = (
        CheckConstraint("kind in ('exam', 'exemption', 'transfer', 'backfill')", name="kind"),
        CheckConstraint("score is null or (score >= 0 and score <= 100)", name="score_range"),
        UniqueConstraint(
            "admission_number", "course_code", "sitting_code", "kind",
            name="uq_score_records_admission_course_sitting_kind",
        ),
        Index("ix_score_records_candidate_course", "candidate_id", "course_code"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"))
    admission_number: Mapped[str] = mapped_column(ForeignKey("admission_numbers.number"))
    course_code: Mapped[str] = mapped_column(ForeignKey("courses.code"))
    # Exemptions, transfers and backfills have no sitting; '' keeps the unique key usable on both backends.
    sitting_code: Mapped[str] = mapped_column(String(6), default="")
    kind: Mapped[str] = mapped_column(String(10), default="exam")
    score: Mapped[Optional[Decimal]] = mapped_column(Numeric(5, 1))
    grade: Mapped[Optional[str]] = mapped_column(String(8))  # 合格 / 通过 / 不合格 when not numeric
    passed: Mapped[bool] = mapped_column(Boolean, default=False)
    passed_on: Mapped[Optional[dt.date]]
    note: Mapped[Optional[str]] = mapped_column(String(255))


class BusinessWindow(Base):
    """When the office accepts a kind of business (免考, 成绩补登, 毕业 ...)."""

    __tablename__ = "business_windows"
    __table_args__ = (
        CheckConstraint("closes_at > opens_at", name="order"),
        Index("ix_business_windows_kind_opens", "kind", "opens_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(128))
    sitting_code: Mapped[Optional[str]] = mapped_column(String(6))
    opens_at: Mapped[dt.datetime]
    closes_at: Mapped[dt.datetime]
    notice: Mapped[str] = mapped_column(Text, default="")  # 考生须知


# --- WeChat side -------------------------------------------------------------------------------


class WechatUser(Base):
    """A follower of the account (one openid), bound to a candidate or not."""

    __tablename__ = "wechat_users"

    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    candidate_id: Mapped[Optional[int]] = mapped_column(ForeignKey("candidates.id", ondelete="SET NULL"), index=True)
    active_admission_number: Mapped[Optional[str]] = mapped_column(String(12))
    bound_at: Mapped[Optional[dt.datetime]]
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True)
    subscribed_at: Mapped[Optional[dt.datetime]]
    unsubscribed_at: Mapped[Optional[dt.datetime]]
    # Opens WeChat's 48-hour customer-service window.
    last_interaction_at: Mapped[Optional[dt.datetime]]
    notices_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)

    candidate: Mapped[Optional[Candidate]] = relationship()


class DialogState(Base):
    """Where a user is in a conversation; lives here so any process can continue it."""

    __tablename__ = "dialog_states"

    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    flow: Mapped[Optional[str]] = mapped_column(String(64))
    step: Mapped[Optional[str]] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The rest of a long reply, sent page by page on "下一页".
    pages: Mapped[Optional[list[str]]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[Optional[dt.datetime]]
    # Held while one message of this user runs a flow step, so that two never run at once,
    # whichever processes they reach.
    locked_by: Mapped[Optional[str]] = mapped_column(String(64))
    locked_until: Mapped[Optional[dt.datetime]]
    # The last message whose step changed this row (its dedupe key) and the reply it got, written
    # in the same statement as the change: a retry after a crash answers from it, never applies
    # the step twice (docs/delivery.md, "Exactly once on the message path").
    applied_key: Mapped[Optional[str]] = mapped_column(String(200))
    applied_reply: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)


class SmsCode(Base):
    """A 6-digit verification code sent by SMS: stored hashed, single-use, short-lived."""

    __tablename__ = "sms_codes"
    __table_args__ = (Index("ix_sms_codes_openid_purpose", "openid", "purpose"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    openid: Mapped[str] = mapped_column(String(64))
    # The number only as its blind index: codes are matched and counted per number without it.
    mobile_key: Mapped[str] = mapped_column(String(64), index=True)
    purpose: Mapped[str] = mapped_column(String(16))  # bind / mobile
    code_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[Optional[dt.datetime]]
    attempts: Mapped[int] = mapped_column(default=0)


class BindFailure(Base):
    """A wrong password (or wrong identity details) given for an ID number; recent ones slow down
    that (ID, openid) pair and that openid across IDs (storage/accounts.py).

    The ID is kept only as its blind index: enough to count failures, useless to read back."""

    __tablename__ = "bind_failures"
    __table_args__ = (
        Index("ix_bind_failures_id_key_failed_at", "id_key", "failed_at"),
        Index("ix_bind_failures_openid_failed_at", "openid", "failed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    id_key: Mapped[str] = mapped_column(String(64))
    openid: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AccountEvent(Base):
    """The audit trail of account events: binding, unbinding, a binding moved, password and
    contact changes, lockouts. Who is masked (`3101**********1234`), the openid is a keyed tag."""

    __tablename__ = "account_events"
    __table_args__ = (Index("ix_account_events_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    candidate_id: Mapped[Optional[int]] = mapped_column(ForeignKey("candidates.id", ondelete="SET NULL"), index=True)
    subject: Mapped[str] = mapped_column(String(32), default="")  # the masked ID number
    openid_tag: Mapped[str] = mapped_column(String(16), default="")
    detail: Mapped[Optional[dict[str, Any]]]


class InboundMessage(Base):
    """Dedupe record of one inbound message or event, with the reply it got."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        CheckConstraint("status in ('processing', 'done')", name="status"),
        Index("ix_inbound_messages_received_at", "received_at"),
    )

    # FromUserName + ':' + MsgId, or FromUserName + ':' + CreateTime + ':' + Event.
    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    openid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default="processing")
    reply: Mapped[Optional[str]] = mapped_column(Text)  # the reply XML (before encryption), '' = success
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[Optional[dt.datetime]]
    # While `processing`: until when the claiming attempt holds the message. A WeChat retry
    # arriving after this takes the message over (its first holder died); bot/dedupe.py.
    lease_until: Mapped[Optional[dt.datetime]]


class InboundNonce(Base):
    """A (timestamp, nonce) pair of an accepted POST, kept for the freshness window: a replayed
    request query is refused (bot/freshness.py; Redis keeps them instead when configured)."""

    __tablename__ = "inbound_nonces"
    __table_args__ = (Index("ix_inbound_nonces_seen_at", "seen_at"),)

    key: Mapped[str] = mapped_column(String(96), primary_key=True)  # timestamp ':' nonce
    seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Notice(Base):
    """An item of 站内消息 or 新闻通知 published by the office; pushed to its audience when due."""

    __tablename__ = "notices"
    __table_args__ = (
        CheckConstraint("category in ('站内消息', '新闻通知')", name="category"),
        CheckConstraint("audience in ('all', 'major', 'sitting')", name="audience"),
        Index("ix_notices_publish_at", "publish_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    category: Mapped[str] = mapped_column(String(8), default="站内消息")
    title: Mapped[str] = mapped_column(String(128))
    body: Mapped[str] = mapped_column(Text)
    publish_at: Mapped[dt.datetime]
    audience: Mapped[str] = mapped_column(String(8), default="all")
    audience_value: Mapped[Optional[str]] = mapped_column(String(16))  # a major code or a sitting code
    push: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Set in the transaction that writes the notice's outbox rows.
    fanned_out_at: Mapped[Optional[dt.datetime]]
    recipients: Mapped[int] = mapped_column(default=0)


class Outbox(Base):
    """A message to push to a candidate, written in the same transaction as its cause."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint("status in ('pending', 'claimed', 'sent', 'failed', 'waiting')", name="status"),
        Index("ix_outbox_status_priority_due", "status", "priority", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # review_outcome / notice / score_release / reminder / reply
    payload: Mapped[dict[str, Any]]  # {"text": ...} or {"template": ..., "data": {...}}
    client_msg_id: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    due_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[Optional[dt.datetime]]
    claimed_by: Mapped[Optional[str]] = mapped_column(String(64))
    last_error: Mapped[Optional[str]] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[Optional[dt.datetime]]
    wechat_msgid: Mapped[Optional[str]] = mapped_column(String(32), index=True)
    # 0 goes first: a candidate's own review outcome is not queued behind a 100,000-user notice.
    priority: Mapped[int] = mapped_column(default=5, server_default="5")
    notice_id: Mapped[Optional[int]] = mapped_column(ForeignKey("notices.id", ondelete="SET NULL"), index=True)
    channel: Mapped[Optional[str]] = mapped_column(String(10))  # template / custom, as sent
    delivery_status: Mapped[Optional[str]] = mapped_column(String(64))  # TEMPLATESENDJOBFINISH's Status


class Lease(Base):
    """A named lease held by one process at a time (e.g. the scheduler's leadership)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime]


# APScheduler's persistent job store, declared here so that Alembic owns it like every table.
# Same columns as apscheduler.jobstores.sqlalchemy.SQLAlchemyJobStore creates.
apscheduler_jobs = Table(
    "apscheduler_jobs",
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


class AccessToken(Base):
    """The shared WeChat access_token, and a lease so one process at a time refreshes it."""

    __tablename__ = "access_tokens"

    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token: Mapped[Optional[str]] = mapped_column(String(512))
    expires_at: Mapped[Optional[dt.datetime]]
    refresh_owner: Mapped[Optional[str]] = mapped_column(String(64))
    refresh_until: Mapped[Optional[dt.datetime]]


class KeyValue(Base):
    """Small service-wide settings and caches (e.g. uploaded media ids)."""

    __tablename__ = "key_values"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[dict[str, Any]]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# Later features keep their tables in their own modules; importing them here registers them
# on Base.metadata, so Alembic and the test fixtures see one schema.
from storage import models_service, models_applications, models_staff, models_transfers  # noqa: E402,F401
from storage import models_degree  # noqa: E402,F401
