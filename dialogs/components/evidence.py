"""The evidence dialog: 凭证类型, 编号 (checked per type), 获取凭证时间, 省份, 备注 and photos of one
evidence, returned as `EvidenceState.ev`; and `EVIDENCES`, the evidences of one item (a course)
with "新增凭证" until the candidate goes on, for a `Loop` over items."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from dialogs import fields as F
from dialogs.components.photos import PHOTOS, PhotosState
from dialogs.components.review import circled
from dialogs.engine import END, Call, Component, Ctx, Step, join
from dialogs.fields import Invalid
from storage import applications as apps
from storage.applications import EvidenceData, EvidenceTypeInfo

FIELDS = (("type", "凭证类型"), ("number", "编号"), ("month", "获取凭证时间"), ("province", "获取凭证省份"),
          ("note", "备注"), ("photos", "照片（全部换成新的）"))
_ATTR = {"type": "type_code", "number": "number", "month": "obtained_month", "province": "province", "note": "note"}


@dataclass
class EvidenceState:
    ev: EvidenceData = field(default_factory=lambda: EvidenceData(""))
    header: str = ""  # 【第1/2门 00320 领导科学｜第1份凭证】
    types: list[EvidenceTypeInfo] = field(default_factory=list)  # offered: active ones
    photos: bool = True
    with_note: bool = True
    edit: bool = False  # change one field, chosen first ("which"), then return
    only: str = ""  # the one step asked before returning
    listed: bool = True  # the type list with the question (else after a wrong answer)
    elsewhere: list[int] = field(default_factory=list)
    born: Optional[str] = None  # earliest plausible month
    not_after: Optional[str] = None  # e.g. 办理免考时间: the evidence came before it
    not_after_label: str = ""
    lead: str = ""  # said once, before the first question ("接着填写上次的草稿。"), not before each


def first_missing(ev: EvidenceData, photos: bool = True) -> Optional[str]:
    """The first required field of the evidence still empty (备注 is optional)."""
    for step, value in (("type", ev.type_code), ("number", ev.number), ("month", ev.obtained_month),
                        ("province", ev.province), ("photos", ev.photo_ids if photos else True)):
        if not value:
            return step
    return None


def _enter(ctx: Ctx, st: EvidenceState) -> tuple[EvidenceState, Optional[str]]:
    if st.edit:
        return st, "which"
    return st, st.only or first_missing(st.ev, st.photos) or END


def _go(ctx: Ctx, value: Any) -> Optional[str]:
    """On to the next field, or back to the caller after the one being changed."""
    return END if ctx.state.only else None


async def _which_options(ctx: Ctx) -> list[F.Option]:
    """The fields that can be changed: 凭证类型 only when there is another type to choose (the
    前置学历毕业证书 of a 论文 application is always a 毕业证书), 备注 and 照片 when asked."""
    st: EvidenceState = ctx.state
    skip = {"type"} if len(await _type_options(ctx)) < 2 else set()
    skip |= set() if st.with_note else {"note"}
    skip |= set() if st.photos else {"photos"}
    return [*((k, label) for k, label in FIELDS if k not in skip), ("keep", "不修改，返回")]


async def _which_check(ctx: Ctx, step: str) -> str:
    ctx.state.only = "" if step == "keep" else step
    return step


def _prompt(question: str, name: str):
    def prompt(ctx: Ctx) -> str:
        st: EvidenceState = ctx.state
        now = ""
        if st.only == name and name != "photos":
            value = getattr(st.ev, _ATTR[name])
            shown = {"type": lambda v: st_name(st, v), "month": apps.month_label}.get(name, lambda v: v)(value)
            now = f"现在填写的是：{shown or '（未填）'}"
        text = join(st.header, now, question) if now else f"{st.header}\n{question}".strip()
        lead, st.lead = st.lead, ""
        return join(lead, text)
    return prompt


def st_name(st: EvidenceState, code: str) -> str:
    return next((t.name for t in st.types if t.code == code), code)


async def _type_options(ctx: Ctx) -> list[F.Option]:
    return [(t.code, t.name) for t in ctx.state.types if t.active and t.for_exemption]


def _set(name: str):
    async def check(ctx: Ctx, value: Any) -> Any:
        setattr(ctx.state.ev, _ATTR[name], value if value is not None else "")
        return value
    return check


async def _number_check(ctx: Ctx, number: str) -> str:
    problem = apps.evidence_number_problem(ctx.state.ev.type_code, number, st_name(ctx.state, ctx.state.ev.type_code))
    if problem:
        raise Invalid(problem)
    ctx.state.ev.number = number
    return number


async def _month_check(ctx: Ctx, month: str) -> str:
    st: EvidenceState = ctx.state
    problem = apps.evidence_month_problem(month, born=st.born, not_after=st.not_after, not_after_label=st.not_after_label)
    if problem:
        raise Invalid(problem)
    st.ev.obtained_month = month
    return month


def _photo_args(ctx: Ctx) -> PhotosState:
    st: EvidenceState = ctx.state
    replacing = len(st.ev.photo_ids) if st.only == "photos" else 0
    lead, st.lead = st.lead, ""  # when the photos are the first thing asked
    return PhotosState(header=join(lead, st.header), have=[] if replacing else list(st.ev.photo_ids), replacing=replacing,
                       elsewhere=st.elsewhere)


async def _photos_progress(ctx: Ctx, photos: PhotosState) -> None:
    ctx.state.ev.photo_ids = list(photos.have)


EVIDENCE = Component("evidence", "凭证", state=EvidenceState, enter=_enter, steps=[
    Step("which", "修改项", F.Choice(), "要修改哪一项？", options=_which_options, check=_which_check,
         go=lambda ctx, v: END if v == "keep" else v),
    Step("type", "凭证类型", F.Choice(), _prompt("请选择凭证类型：", "type"), options=_type_options, check=_set("type"),
         listed=lambda ctx: ctx.state.listed, retry=_prompt("请选择凭证类型（回复序号）：", "type"), go=_go),
    Step("number", "编号", F.Field(hint="证书、成绩单或报告上的编号。"), _prompt("请输入凭证编号（证书或成绩单上的编号）：", "number"),
         check=_number_check, go=_go),
    Step("month", "获取凭证时间", F.YearMonth(), _prompt("请输入获取凭证的时间（年月，如 2018年6月）：", "month"),
         check=_month_check, go=_go),
    Step("province", "获取凭证省份", F.Province(), _prompt("请输入获取凭证的省份（如 上海、江苏）：", "province"),
         check=_set("province"), go=_go),
    Step("note", "备注", F.Text(optional=True, max_len=200), _prompt("备注（没有请回复“无”）：", "note"),
         check=_set("note"), when=lambda ctx: ctx.state.with_note, go=_go),
    Call("photos", PHOTOS, args=_photo_args, progress=_photos_progress, when=lambda ctx: ctx.state.photos, go=END),
])


# --- the evidences of one item: one, then "新增凭证" or on ------------------------------------------


@dataclass
class EvidencesState:
    title: str = ""  # 00320 领导科学
    position: str = ""  # 第1/2门
    evidences: list[EvidenceData] = field(default_factory=list)
    types: list[EvidenceTypeInfo] = field(default_factory=list)
    on_label: str = "填好了，查看汇总"  # or 下一门：00051 管理系统中计算机应用
    elsewhere: list[int] = field(default_factory=list)
    born: Optional[str] = None
    listed: bool = True
    ei: int = 0  # the evidence being filled
    lead: str = ""
    add: bool = False  # start with a new evidence even when all are complete

    def companion(self) -> Optional[str]:
        return apps.companion_problem(self.evidences, {t.code: t for t in self.types})


def _enter_list(ctx: Ctx, st: EvidencesState) -> tuple[EvidencesState, Optional[str]]:
    st.ei = next((i for i, e in enumerate(st.evidences) if first_missing(e) and not st.add), len(st.evidences))
    return st, "more" if st.evidences and st.ei == len(st.evidences) and not st.add else None


def _one_args(ctx: Ctx) -> EvidenceState:
    st: EvidencesState = ctx.state
    ev = st.evidences[st.ei] if st.ei < len(st.evidences) else EvidenceData("")
    header = f"【{st.position}{st.title}｜第{st.ei + 1}份凭证】"
    lead, st.lead = st.lead, ""
    return EvidenceState(ev=ev, header=header, lead=lead, types=st.types,
                         listed=st.listed and st.ei == 0, elsewhere=st.elsewhere, born=st.born)


async def _one_progress(ctx: Ctx, one: EvidenceState) -> None:
    st: EvidencesState = ctx.state
    if one.ev.type_code:
        st.evidences[st.ei:st.ei + 1] = [one.ev]


def _more_prompt(ctx: Ctx) -> str:
    st: EvidencesState = ctx.state
    names = {t.code: t.name for t in st.types}
    lines = [f"【{st.title}】已填写{len(st.evidences)}份凭证："]
    for i, e in enumerate(st.evidences):
        parts = [names.get(e.type_code, e.type_code), f"编号{e.number}", apps.month_label(e.obtained_month), e.province,
                 f"照片{len(e.photo_ids)}张"]
        lines.append(f"{circled(i)} " + "｜".join(p for p in parts if p))
    problem = st.companion()
    if problem:
        lines.append(f"注意：{problem}请选择“新增凭证”补充。")
    lines.append("接下来：")
    return "\n".join(lines)


async def _more_options(ctx: Ctx) -> list[F.Option]:
    return [("add", "新增凭证（本课程再加一份）"), ("on", ctx.state.on_label)]


async def _more_check(ctx: Ctx, choice: str) -> str:
    problem = ctx.state.companion()
    if choice == "on" and problem:
        raise Invalid(f"{problem}请回复1新增凭证。")
    if choice == "add":
        ctx.state.ei = len(ctx.state.evidences)
    return choice


EVIDENCES = Component("evidences", "凭证", state=EvidencesState, enter=_enter_list, steps=[
    Call("one", EVIDENCE, args=_one_args, progress=_one_progress, go="more"),
    Step("more", "下一步", F.Choice(), _more_prompt, options=_more_options, check=_more_check,
         go={"add": "one", "on": END}),
], submit=lambda ctx: _evidences(ctx))


async def _evidences(ctx: Ctx) -> list[EvidenceData]:
    return ctx.state.evidences
