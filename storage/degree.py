"""申请学位 (FLOWS 21): the materials each major's 主考学校 requires, the application's form, its rules.

The requirements are data the office imports per major (degree_requirements.csv, docs/import.md):
each row is one material with the fields it asks (成绩, 获取时间, 省份, 编号), whether a photo is
needed, an optional minimum score and a note. Rows of one major sharing a 材料类别 (group) are
alternatives — the candidate hands in one of them (学位外语: CET-4 成绩单 or PETS-3 合格证书); a row
without a group is required by itself. Each group (or single row) is a *slot* the dialog fills.

The form (`DegreeDetails`) lives in `Application.details`: 籍贯, 联系地址, 手机号码, 紧急联系手机
(required), 工作单位, 单位电话 (optional), and one `Material` per slot. The rules are plain
functions (`personal_problems`, `material_problems`, `degree_problems`), testable without a
database; `problems` runs them for a stored application (storage.applications' submission check).

A major with no requirements imported cannot be applied for yet: the school has not published
what it asks (the dialog says so; submitting without materials would only be refused later).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping, Optional, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Database
from storage.identifiers import normalize_mobile, valid_mobile
from storage.models import Candidate, CandidateMajor, Major
from storage.models_degree import DegreeRequirement

KIND = "degree"
# What a candidate reads after submitting, and with the approval's push.
NEXT_STEPS = ("主考学校将审核您的学位申请材料，审核结果会通过微信通知您。"
              "请保持手机畅通，学校如需核实会联系您。")
APPROVED_DETAIL = "学士学位证书的发放时间和领取方式以主考学校的通知为准，请留意站内消息。"

# Which fields a requirement may ask, as the import and the dialog name them.
FIELD_NAMES: dict[str, str] = {"score": "成绩", "month": "获取时间", "province": "省份", "number": "编号"}
FIELD_ALIASES: dict[str, str] = {
    "成绩": "score", "分数": "score", "score": "score",
    "获取时间": "month", "获得时间": "month", "取得时间": "month", "时间": "month", "month": "month",
    "省份": "province", "获取省份": "province", "省": "province", "province": "province",
    "编号": "number", "证书编号": "number", "准考证号": "number", "number": "number",
}
SCORE_MAX = Decimal(1000)  # CET scores go to 710; 学位外语考试 to 100
PASSING_WORDS = ("合格", "通过")
NATIVE_PLACE_MAX = 50
ADDRESS_MIN, ADDRESS_MAX = 5, 100
EMPLOYER_MAX = 100
MAX_PHOTOS = 9

# The form's personal fields in the order asked: (attribute, label, required).
PERSONAL: tuple[tuple[str, str, bool], ...] = (
    ("native_place", "籍贯", True),
    ("address", "联系地址", True),
    ("mobile", "手机号码", True),
    ("emergency_mobile", "紧急联系手机", True),
    ("employer", "工作单位", False),
    ("work_phone", "单位电话", False),
)
_LANDLINE = re.compile(r"^(0\d{2,3}-?)?\d{7,8}(-\d{1,6})?$")


# --- Requirements ------------------------------------------------------------------------------


@dataclass
class Requirement:
    code: str
    name: str
    group: str = ""
    asks_score: bool = False
    asks_month: bool = False
    asks_province: bool = False
    asks_number: bool = False
    photo: bool = True
    min_score: Optional[Decimal] = None
    note: str = ""
    position: int = 0

    def fields(self) -> list[str]:
        """The fields asked, in the order the dialog asks them."""
        return [f for f in ("score", "number", "month", "province") if getattr(self, f"asks_{f}")]

    @classmethod
    def of(cls, r: DegreeRequirement) -> Requirement:
        return cls(r.code, r.name, r.group_name or "", r.asks_score, r.asks_month, r.asks_province, r.asks_number,
                   r.photo_required, r.min_score, r.note or "", r.position)


@dataclass
class Slot:
    """One thing to hand in: a group of alternatives, or one material by itself."""

    key: str  # 'group:学位外语' or 'material:cet4'
    title: str  # the group's name, or the material's
    options: list[Requirement] = field(default_factory=list)

    def option(self, code: str) -> Optional[Requirement]:
        return next((r for r in self.options if r.code == code), None)


def slots_of(requirements: Iterable[Requirement]) -> list[Slot]:
    """The slots of a major's requirements, in the order of their first row."""
    slots: dict[str, Slot] = {}
    for r in sorted(requirements, key=lambda r: (r.position, r.code)):
        key = f"group:{r.group}" if r.group else f"material:{r.code}"
        slots.setdefault(key, Slot(key, r.group or r.name)).options.append(r)
    return list(slots.values())


# --- The form ------------------------------------------------------------------------------------


@dataclass
class Material:
    slot: str  # Slot.key
    code: str = ""  # the Requirement chosen
    score: str = ""  # '468', '85.5', '合格'
    number: str = ""
    month: str = ""  # 'YYYY-MM'
    province: str = ""
    photo_ids: list[int] = field(default_factory=list)


@dataclass
class DegreeDetails:
    native_place: str = ""  # 籍贯
    address: str = ""  # 联系地址
    mobile: str = ""  # 手机号码 (the candidate's verified mobile; changed through 修改联系方式)
    emergency_mobile: str = ""  # 紧急联系手机
    employer: str = ""  # 工作单位
    work_phone: str = ""  # 单位电话
    optional_asked: bool = False  # 工作单位 / 单位电话 were asked (they may stay empty)
    personal_checked: bool = False  # the candidate confirmed 核对个人信息
    materials: list[Material] = field(default_factory=list)

    def material(self, slot: str) -> Optional[Material]:
        return next((m for m in self.materials if m.slot == slot), None)

    def put(self, m: Material) -> None:
        """Keep `m` as the material of its slot (in place when the slot had one)."""
        if self.material(m.slot) is None:
            self.materials.append(m)
        else:
            self.materials = [m if x.slot == m.slot else x for x in self.materials]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> DegreeDetails:
        d = dict(d or {})
        known = {f for f in cls.__dataclass_fields__}
        mats = [Material(**{k: v for k, v in m.items() if k in Material.__dataclass_fields__})
                for m in d.pop("materials", []) or []]
        return cls(**{k: v for k, v in d.items() if k in known}, materials=mats)


def photo_ids_of(details: Mapping[str, Any] | None) -> list[int]:
    """The photos an application's degree form holds (storage.applications links them)."""
    out: list[int] = []
    for m in (details or {}).get("materials", []) or []:
        out += [p for p in m.get("photo_ids", []) or [] if p not in out]
    return out


# --- Rules on plain data -----------------------------------------------------------------------


def parse_score(text: str) -> str:
    """A material's 成绩 as typed: a number up to 1000 with at most one decimal, or 合格/通过.
    ValueError (Chinese) otherwise."""
    s = re.sub(r"\s+", "", text or "").removesuffix("分")
    if s in PASSING_WORDS:
        return s
    if not re.fullmatch(r"\d{1,4}(\.\d)?", s):
        raise ValueError("成绩应为数字（最多一位小数），或“合格”“通过”。")
    v = Decimal(s)
    if v > SCORE_MAX:
        raise ValueError("成绩太大了，请照成绩单上的分数填写。")
    return f"{v.normalize():f}" if v == v.to_integral() else str(v)


def score_problem(score: str, req: Requirement) -> Optional[str]:
    """A score below the school's minimum (a passing word counts as reaching it)."""
    if req.min_score is None or score in PASSING_WORDS:
        return None
    try:
        v = Decimal(score)
    except InvalidOperation:
        return f"{req.name}的成绩格式不对。"
    if v < req.min_score:
        return (f"{req.name}的成绩须达到{req.min_score.normalize():f}分，您填写的是{score}分。"
                "未达到要求的不能用于申请学位，请核对或选择其他材料。")
    return None


def work_phone_problem(text: str) -> Optional[str]:
    t = re.sub(r"\s+", "", text or "")
    if not t or valid_mobile(t) or _LANDLINE.match(t):
        return None
    return "单位电话应为带区号的固定电话（如 021-12345678）或11位手机号码。"


def personal_problems(d: DegreeDetails) -> list[str]:
    out = []
    for attr, label, required in PERSONAL:
        if required and not (getattr(d, attr) or "").strip():
            out.append(f"请填写{label}。")
    for attr, label in (("mobile", "手机号码"), ("emergency_mobile", "紧急联系手机")):
        v = getattr(d, attr)
        if v and not valid_mobile(v):
            out.append(f"{label}应为11位手机号码。")
    if d.mobile and d.emergency_mobile and normalize_mobile(d.mobile) == normalize_mobile(d.emergency_mobile):
        out.append("紧急联系手机应为紧急联系人的号码，不能与本人手机号码相同。")
    p = work_phone_problem(d.work_phone)
    if p:
        out.append(p)
    return out


def _month_problem(ym: str, today: dt.date, born: Optional[str]) -> Optional[str]:
    from storage.applications import evidence_month_problem, month_problem

    return month_problem(ym, today, "获取时间") or (evidence_month_problem(ym, born=born) if ym else None)


def material_problems(m: Material, slot: Slot, today: dt.date, *, born: Optional[str] = None) -> list[str]:
    """What one material lacks (empty: complete), each line naming it."""
    from storage.applications import evidence_number_problem

    req = slot.option(m.code)
    if req is None:
        names = "、".join(r.name for r in slot.options)
        return [f"{slot.title}：请选择材料类型（{names}）。"]
    out = []
    if req.asks_score:
        if not m.score:
            out.append(f"{req.name}：请填写成绩。")
        else:
            p = score_problem(m.score, req)
            if p:
                out.append(p)
    if req.asks_number:
        p = "请填写编号。" if not m.number else evidence_number_problem("", m.number, req.name)
        if p:
            out.append(f"{req.name}：{p}")
    if req.asks_month:
        p = _month_problem(m.month, today, born)
        if p:
            out.append(f"{req.name}：{p}")
    if req.asks_province and not m.province:
        out.append(f"{req.name}：请填写获取凭证的省份。")
    if req.photo and not m.photo_ids:
        out.append(f"{req.name}：请上传照片。")
    if len(m.photo_ids) > MAX_PHOTOS:
        out.append(f"{req.name}：照片最多{MAX_PHOTOS}张。")
    return out


def first_missing(m: Material, slot: Slot, today: dt.date, *, born: Optional[str] = None) -> Optional[str]:
    """The first step of the material dialog still to answer: type, a field, photos; None: done."""
    req = slot.option(m.code)
    if req is None:
        return "type"
    for f in req.fields():
        value = getattr(m, f)
        if not value:
            return f
    if req.photo and not m.photo_ids:
        return "photos"
    return "fix" if material_problems(m, slot, today, born=born) else None


def degree_problems(d: DegreeDetails, slots: Sequence[Slot], *, major_code: Optional[str],
                    majors: Mapping[str, str], today: dt.date, born: Optional[str] = None) -> list[str]:
    """Everything that stops a degree application from being submitted. `majors`: the candidate's
    本科 majors (code -> level) a degree can be applied for."""
    out: list[str] = []
    if not major_code:
        out.append("请选择申请学位的专业。")
    elif major_code not in majors:
        out.append("所选专业不是您报考的本科（专升本）专业，不能申请学位。")
    elif not slots:
        out.append("该专业的主考学校还没有公布学位申请材料要求，暂时不能提交。")
    out += personal_problems(d)
    for slot in slots:
        m = d.material(slot.key)
        out += material_problems(m, slot, today, born=born) if m else [f"请提供{slot.title}材料。"]
    keys = {s.key for s in slots}
    if any(m.slot not in keys for m in d.materials):
        out.append("有材料不是该专业要求的，请重新核对材料。")
    return list(dict.fromkeys(out))


def eligible_level(level: str) -> bool:
    """A 学士学位 is for 本科 and 专升本 majors only."""
    return level in ("本科", "专升本")


# --- The database ----------------------------------------------------------------------------------


@dataclass
class MajorInfo:
    code: str
    name: str
    level: str
    university: str = ""


async def _requirements(s: AsyncSession, major_code: str) -> list[Requirement]:
    rows = (await s.execute(
        select(DegreeRequirement).where(DegreeRequirement.major_code == major_code, DegreeRequirement.active.is_(True))
        .order_by(DegreeRequirement.position, DegreeRequirement.code)
    )).scalars()
    return [Requirement.of(r) for r in rows]


async def requirements(db: Database, major_code: str) -> list[Requirement]:
    """The active requirements of a major, in order."""
    async with db.session() as s:
        return await _requirements(s, major_code)


async def slots(db: Database, major_code: str) -> list[Slot]:
    return slots_of(await requirements(db, major_code))


async def _majors(s: AsyncSession, candidate_id: int) -> list[MajorInfo]:
    rows = (await s.execute(
        select(Major.code, Major.name, Major.level, Major.university)
        .join(CandidateMajor, CandidateMajor.major_code == Major.code)
        .where(CandidateMajor.candidate_id == candidate_id).order_by(Major.code)
    )).all()
    return [MajorInfo(c, n, lv, u or "") for c, n, lv, u in rows]


async def candidate_majors(db: Database, candidate_id: int) -> list[MajorInfo]:
    """Every major the candidate is enrolled in (the dialog tells 专科 ones apart)."""
    async with db.session() as s:
        return await _majors(s, candidate_id)


async def majors_with_requirements(db: Database, codes: Iterable[str]) -> set[str]:
    codes = set(codes)
    if not codes:
        return set()
    async with db.session() as s:
        return set((await s.execute(
            select(DegreeRequirement.major_code).where(DegreeRequirement.major_code.in_(codes),
                                                       DegreeRequirement.active.is_(True)).distinct()
        )).scalars())


async def problems(s: AsyncSession, data: Any, today: dt.date) -> list[str]:
    """The submission check of a stored degree application (`data`: ApplicationData)."""
    from storage.identifiers import id_birth_date

    majors = {m.code: m.level for m in await _majors(s, data.candidate_id) if eligible_level(m.level)}
    found = slots_of(await _requirements(s, data.major_code)) if data.major_code in majors else []
    id_number = await s.scalar(select(Candidate.id_number).where(Candidate.id == data.candidate_id))
    birth = id_birth_date(id_number or "")
    born = f"{birth.year:04d}-{birth.month:02d}" if birth else None
    return degree_problems(DegreeDetails.from_dict(data.details), found, major_code=data.major_code, majors=majors,
                           today=today, born=born)


# --- What a reviewer reads (zikao-bot review show, the console's application page) -------------------


@dataclass
class MaterialView:
    title: str  # the slot: 学位外语
    name: str  # the material handed in: 大学英语四级（CET-4）成绩单
    fields: list[tuple[str, str]]  # (成绩, 480), (获取时间, 2019年6月) ...
    photo_ids: list[int]
    min_score: str = ""  # the school's minimum, for the reviewer's eye


@dataclass
class DegreeView:
    personal: list[tuple[str, str]]  # (籍贯, 江苏南通) ...; mobiles masked
    materials: list[MaterialView]


async def review_view(db: Database, data: Any) -> DegreeView:
    """A degree application's form as a reviewer reads it (requirements named as imported; a
    material whose requirement has since been withdrawn still shows, by its code)."""
    from storage.applications import month_label
    from storage.identifiers import mask_mobile

    d = DegreeDetails.from_dict(data.details)
    reqs: dict[str, Requirement] = {}
    if data.major_code:
        async with db.session() as s:
            rows = (await s.execute(select(DegreeRequirement).where(DegreeRequirement.major_code == data.major_code)))
            reqs = {r.code: Requirement.of(r) for r in rows.scalars()}
    personal = []
    for attr, label, _ in PERSONAL:
        v = getattr(d, attr) or ""
        personal.append((label, (mask_mobile(v) if attr in ("mobile", "emergency_mobile") and v else v) or "-"))
    materials = []
    for m in d.materials:
        r = reqs.get(m.code)
        fields = [(FIELD_NAMES[f], month_label(getattr(m, f)) if f == "month" else getattr(m, f))
                  for f in ("score", "number", "month", "province") if getattr(m, f)]
        title = r.group if r and r.group else (r.name if r else m.slot.partition(":")[2])
        materials.append(MaterialView(title, r.name if r else m.code, fields, list(m.photo_ids),
                                      f"{r.min_score.normalize():f}" if r and r.min_score is not None else ""))
    return DegreeView(personal, materials)


__all__ = [
    "APPROVED_DETAIL", "DegreeDetails", "FIELD_ALIASES", "FIELD_NAMES", "KIND", "Material", "MajorInfo", "NEXT_STEPS",
    "PERSONAL", "Requirement", "Slot", "candidate_majors", "degree_problems", "eligible_level", "first_missing",
    "majors_with_requirements", "material_problems", "parse_score", "personal_problems", "photo_ids_of",
    "problems", "requirements", "review_view", "score_problem", "slots", "slots_of", "work_phone_problem",
]
