"""前置学历 (the prior education of a 本科 application) as a component: the 毕业证书 (编号, 取得年月,
省份, photos), then by the 2002 rule (storage/graduation_rules.py) the 教育部学历证书电子注册备案表
(在线验证码, photos) for a diploma of 2002 or later, or the 中国高等教育学历认证报告 (报告编号,
photos) before 2002. A 2001 diploma answered with a 备案表's 在线验证码 is refused with the reason.

Each step goes on to the first field still empty, so a half-filled one resumes where it stopped
and, with `edit=True` (from a review: "which" first), only the field changed is asked — unless
the new 取得年月 crosses 2002, when the companion asked for changes and is asked anew. Returns
its state (`PriorState.diploma()` / `.companion()`); the caller's `progress` saves each answer.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from dialogs import fields as F
from dialogs.components.photos import PHOTOS, PhotosState
from dialogs.engine import END, Call, Component, Ctx, Step, join
from dialogs.fields import Invalid
from storage import applications as apps
from storage import graduation_rules as gr

FIELDS = (("number", "毕业证书编号"), ("graduated", "取得毕业证书年月"), ("province", "取得毕业证书省份"),
          ("diploma_photos", "毕业证书照片（全部换成新的）"), ("code", "在线验证码／认证报告编号"),
          ("companion_photos", "备案表／认证报告照片（全部换成新的）"))
_DIPLOMA_NUMBER = re.compile(r"[0-9A-Za-z\-]{6,32}")


@dataclass
class PriorState:
    number: str = ""  # 毕业证书编号
    graduated: str = ""  # 'YYYY-MM'
    province: str = ""
    diploma_photos: list[int] = field(default_factory=list)
    code: str = ""  # 在线验证码 or 报告编号, by the year
    companion_photos: list[int] = field(default_factory=list)
    header: str = "【前置学历】"
    edit: bool = False
    only: str = ""
    born: Optional[str] = None
    lead: str = ""

    @property
    def companion_kind(self) -> Optional[str]:
        return gr.companion_for(self.graduated) if self.graduated else None

    def companion_name(self) -> str:
        kind = self.companion_kind
        return gr.COMPANION_NAMES[kind] if kind else "备案表或认证报告"

    def diploma(self) -> gr.PriorDiploma:
        return gr.PriorDiploma(self.number, self.graduated, self.province, list(self.diploma_photos))

    def companion(self) -> Optional[gr.Companion]:
        kind = self.companion_kind
        if kind is None or not (self.code or self.companion_photos):
            return None
        return gr.Companion(kind, self.code, list(self.companion_photos))

    @classmethod
    def of(cls, diploma: Optional[gr.PriorDiploma], companion: Optional[gr.Companion], **kw: Any) -> PriorState:
        st = cls(**kw)
        if diploma is not None:
            st.number, st.graduated, st.province = diploma.number, diploma.graduated, diploma.province
            st.diploma_photos = list(diploma.photo_ids)
        if companion is not None and st.graduated and companion.kind == gr.companion_for(st.graduated):
            st.code, st.companion_photos = companion.number, list(companion.photo_ids)
        return st


def first_missing(st: PriorState) -> Optional[str]:
    for name in ("number", "graduated", "province", "diploma_photos", "code", "companion_photos"):
        if not getattr(st, name):
            return name
    return None


def _enter(ctx: Ctx, st: PriorState) -> tuple[PriorState, Optional[str]]:
    if st.edit and first_missing(st) is None:
        return st, "which"
    return st, first_missing(st) or END


def _next(ctx: Ctx, value: Any = None) -> str:
    return first_missing(ctx.state) or END


async def _which_check(ctx: Ctx, step: str) -> str:
    ctx.state.only = step
    return step


def _ask(question):
    def prompt(ctx: Ctx) -> str:
        st: PriorState = ctx.state
        text = question(st) if callable(question) else question
        lead, st.lead = st.lead, ""
        return join(lead, st.header, text)
    return prompt


async def _number_check(ctx: Ctx, number: str) -> str:
    t = number.strip().replace(" ", "")
    if not _DIPLOMA_NUMBER.fullmatch(t) or not any(c.isdigit() for c in t):
        raise Invalid("毕业证书编号是证书上的一串数字（一般18位），请对照证书填写。")
    ctx.state.number = t
    return t


async def _graduated_check(ctx: Ctx, month: str) -> str:
    st: PriorState = ctx.state
    problem = apps.evidence_month_problem(month, born=st.born)
    if problem:
        raise Invalid(problem)
    before = st.companion_kind
    st.graduated = month
    if before is not None and before != st.companion_kind and (st.code or st.companion_photos):
        # The other side of 2002: the companion already given no longer fits.
        st.code, st.companion_photos = "", []
        st.lead = f"毕业时间改为{month[:4]}年，须改为提供{st.companion_name()}。"
    return month


async def _province_check(ctx: Ctx, province: str) -> str:
    ctx.state.province = province
    return province


def _code_question(st: PriorState) -> str:
    year = st.graduated[:4]
    if st.companion_kind == gr.REGISTRATION_FORM:
        return (f"毕业时间为{year}年（2002年及以后），须提供教育部学历证书电子注册备案表。\n"
                "请输入备案表上的在线验证码（12位字母或数字）：")
    return (f"毕业时间为{year}年（2002年以前），须提供中国高等教育学历认证报告。\n"
            "请输入认证报告编号：")


async def _code_check(ctx: Ctx, code: str) -> str:
    st: PriorState = ctx.state
    t = code.strip().replace(" ", "").upper()
    problem = gr.companion_number_problem(st.graduated, t)
    if problem:
        raise Invalid(problem)
    st.code = t
    return t


def _photos_args(which: str):
    def args(ctx: Ctx) -> PhotosState:
        st: PriorState = ctx.state
        have = getattr(st, which)
        replacing = len(have) if st.only == which else 0
        what = "毕业证书照片" if which == "diploma_photos" else f"{st.companion_name()}照片"
        return PhotosState(what=what, header=st.header, have=[] if replacing else list(have), replacing=replacing)
    return args


def _photos_progress(which: str):
    async def progress(ctx: Ctx, photos: PhotosState) -> None:
        setattr(ctx.state, which, list(photos.have))
    return progress


def _go_after_photos(ctx: Ctx, value: Any) -> str:
    return first_missing(ctx.state) or END


PRIOR_EDUCATION = Component("prior_education", "前置学历", state=PriorState, enter=_enter, steps=[
    Step("which", "修改项", F.Choice(options=FIELDS), "要修改前置学历的哪一项？", check=_which_check, go=lambda ctx, v: v),
    Step("number", "毕业证书编号", F.Field(hint="毕业证书上的编号。"), _ask("请输入前置学历毕业证书的编号："),
         check=_number_check, go=_next),
    Step("graduated", "取得毕业证书年月", F.YearMonth(), _ask("请输入取得毕业证书的年月（如 2012年7月）："),
         check=_graduated_check, go=_next),
    Step("province", "取得毕业证书省份", F.Province(), _ask("请输入取得毕业证书的省份（如 上海、江苏）："),
         check=_province_check, go=_next),
    Call("diploma_photos", PHOTOS, args=_photos_args("diploma_photos"), progress=_photos_progress("diploma_photos"),
         go=_go_after_photos),
    Step("code", "在线验证码／认证报告编号", F.Field(hint="备案表或认证报告上的编号。"), _ask(_code_question),
         check=_code_check, go=_next),
    Call("companion_photos", PHOTOS, args=_photos_args("companion_photos"),
         progress=_photos_progress("companion_photos"), go=_go_after_photos),
])
