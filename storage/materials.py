"""我的材料: the evidences (凭证) a candidate handed in with their applications, as plain values.

An application stores one evidence row per course it proves, so a certificate used for three
courses is three rows with the same type and number; `group_materials` folds them into one
material that lists its courses.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Optional

from sqlalchemy import func, select

from storage.db import Database
from storage.models import Course
from storage.models_applications import Application, ApplicationItem, Evidence, EvidencePhoto, EvidenceType


@dataclass(frozen=True)
class EvidenceRow:
    """One stored evidence with what the candidate needs to recognise it."""

    application_id: int
    kind: str  # Application.kind
    status: str  # Application.status
    filed_at: dt.datetime  # submitted, else created
    type_name: str
    number: str
    obtained_month: Optional[str]
    course: str  # course name (code when unknown)
    photo_ids: tuple[int, ...]


@dataclass(frozen=True)
class Material:
    application_id: int
    kind: str
    status: str
    filed_at: dt.datetime
    type_name: str
    number: str  # as stored: mask it before showing it
    obtained_month: Optional[str]
    courses: tuple[str, ...]
    photos: int  # distinct photos over the courses it serves


def group_materials(rows: Iterable[EvidenceRow]) -> list[Material]:
    """One material per (application, type, number, month), in the order of first appearance."""
    groups: dict[tuple, tuple[EvidenceRow, list[str], set[int]]] = {}
    for r in rows:
        key = (r.application_id, r.type_name, r.number, r.obtained_month)
        first, courses, photos = groups.setdefault(key, (r, [], set()))
        if r.course not in courses:
            courses.append(r.course)
        photos.update(r.photo_ids)
    return [
        Material(first.application_id, first.kind, first.status, first.filed_at, first.type_name, first.number,
                 first.obtained_month, tuple(courses), len(photos))
        for first, courses, photos in groups.values()
    ]


def _rows_query(candidate_id: int):
    filed = func.coalesce(Application.submitted_at, Application.created_at)
    return (
        select(Evidence.id, Application.id.label("application_id"), Application.kind, Application.status,
               filed.label("filed_at"), EvidenceType.name.label("type_name"), Evidence.number,
               Evidence.obtained_month, ApplicationItem.course_code, Course.name.label("course_name"))
        .join(ApplicationItem, Evidence.item_id == ApplicationItem.id)
        .join(Application, ApplicationItem.application_id == Application.id)
        .join(EvidenceType, Evidence.type_code == EvidenceType.code)
        .outerjoin(Course, Course.code == ApplicationItem.course_code)
        .where(Application.candidate_id == candidate_id)
        .order_by(filed.desc(), Application.id.desc(), ApplicationItem.position, Evidence.position, Evidence.id)
    )


async def materials(db: Database, candidate_id: int) -> list[Material]:
    """Every material of the candidate, newest application first."""
    async with db.session() as s:
        rows = (await s.execute(_rows_query(candidate_id))).all()
        photos: dict[int, list[int]] = {}
        if rows:
            links = await s.execute(
                select(EvidencePhoto.evidence_id, EvidencePhoto.photo_id)
                .where(EvidencePhoto.evidence_id.in_([r.id for r in rows]))
                .order_by(EvidencePhoto.evidence_id, EvidencePhoto.position))
            for evidence_id, photo_id in links:
                photos.setdefault(evidence_id, []).append(photo_id)
    return group_materials(
        EvidenceRow(r.application_id, r.kind, r.status, r.filed_at, r.type_name, r.number or "", r.obtained_month,
                    r.course_name or r.course_code, tuple(photos.get(r.id, ())))
        for r in rows
    )

