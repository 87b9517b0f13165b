"""申请学位 (FLOWS 21): 考生须知; the major (when several); 核对个人信息 — 准考证号, 姓名, 证件号码
shown (the ID masked), 籍贯, 联系地址, 手机号码, 紧急联系手机 required, 工作单位, 单位电话 optional;
the materials the 主考学校 requires for the major (data the office imports: storage/degree.py),
each with the fields it asks and its photos; the review with 修改 N; submission for review.
未通过 shows the reason and offers 重新申请 while the window is open; 审核通过 shows what follows.

The 手机号码 is the candidate's own verified mobile: changing it runs 修改联系方式 for the mobile
(with its SMS code) and comes back here. Every answer is saved in the draft as it is given.
A major whose requirements are not imported cannot be applied for yet (the candidate is told).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from dialogs import fields as F
from dialogs.components import application as A
from dialogs.components.contact import MOBILE_UPDATE
from dialogs.components.photos import PHOTOS, PhotosState
from dialogs.components.review import REVIEW, Line, Picked, ReviewState
from dialogs.engine import END, Call, Component, Ctx, EndFlow, Flow, Loop, Step, join
from dialogs.fields import Invalid
from dialogs.queries import mask_admission
from storage import accounts
from storage import applications as apps
from storage import degree as dg
from storage.applications import ApplicationData
from storage.graduation_rules import open_majors
from storage.identifiers import mask_id_number, mask_mobile, valid_mobile
from storage.outbox import KIND_KEYWORDS

KIND = dg.KIND
KEYWORD = KIND_KEYWORDS[KIND]  # "学位"
TITLE = "申请学位"
DEFAULT_NOTICE = (
    "一、申请学士学位的考生须为本科（专升本）专业，并符合主考学校的学位授予条件。\n"
    "二、请核对个人信息，籍贯、联系地址、手机号码、紧急联系手机为必填项。\n"
    "三、请按主考学校要求提供材料（如学位外语成绩），照片须清晰完整。"
)
AFTER = f"{dg.NEXT_STEPS}\n审核前需要修改请回复“{KEYWORD}”，回复“我的申请”查看进度。"
NOT_PUBLISHED = ("的主考学校还没有公布学位申请需要提供的材料，暂时不能在微信中申请。"
                 "请留意站内消息，或拨打技术咨询电话 400-0960-990。")
NOT_BENKE = "申请学士学位只适用于本科（专升本）专业，您报考的专业中没有本科专业。"
LABELS = {attr: label for attr, label, _ in dg.PERSONAL}


@dataclass
class DegreeState(A.AppState):
    editing: str = ""  # a field changed from a review ("personal" / "review"): back there after it
    redo: str = ""  # the material (slot key) being changed from the review


def _details(ctx: Ctx) -> dg.DegreeDetails:
    return dg.DegreeDetails.from_dict(A.work(ctx).details)


async def _slots(ctx: Ctx) -> list[dg.Slot]:
    code = A.work(ctx).major_code
    return await dg.slots(ctx.db, code) if code else []


async def _major_names(ctx: Ctx) -> dict[str, str]:
    return {m.code: m.name for m in await dg.candidate_majors(ctx.db, ctx.user.candidate_id)}


# --- how applications read ---------------------------------------------------------------------------


def material_line(m: dg.Material, slot: Optional[dg.Slot]) -> str:
    req = slot.option(m.code) if slot else None
    parts = [] if req is not None and slot is not None and slot.title == req.name else [req.name if req else m.code]
    if m.score:
        parts.append(f"成绩{m.score}")
    if m.number:
        parts.append(f"编号{m.number}")
    if m.month:
        parts.append(apps.month_label(m.month))
    if m.province:
        parts.append(m.province)
    if req is None or req.photo:
        parts.append(f"照片{len(m.photo_ids)}张" if m.photo_ids else "未传照片")
    return "｜".join(parts) or "无需填写"


async def _application_lines(ctx: Ctx, mine: list[ApplicationData]) -> list[str]:
    names = await _major_names(ctx)
    lines = []
    for a in (a for a in mine if a.status != "draft"):
        lines += [A.status_line(a), f"　专业：{names.get(a.major_code or '', a.major_code or '')}"]
        if a.status == "approved":
            lines.append(f"　{dg.APPROVED_DETAIL}")
    return lines


async def _closed_lines(ctx: Ctx, mine: list[ApplicationData]) -> list[str]:
    return A.closed_list("您的学位申请：", await _application_lines(ctx, mine), mine)


# --- the first choice, 考生须知, the major ------------------------------------------------------------


async def _start_prompt(ctx: Ctx) -> str:
    mine = await A.mine(ctx)
    lines = [f"【{TITLE}】"]
    draft = next((a for a in mine if a.status == "draft"), None)
    if draft is not None and draft.major_code:
        lines.append("您有一份还没提交的学位申请草稿。")
    others = await _application_lines(ctx, mine)
    lines += ["您的学位申请：", *others] if others else []
    return "\n".join(x for x in [*lines, A.closes_text(ctx.state), "请选择："] if x)


async def _start_options(ctx: Ctx) -> list[F.Option]:
    mine = await A.mine(ctx)
    opts = A.start_options(mine, draft_words=("继续填写草稿", "放弃草稿，重新申请"),
                           new="申请另一专业的学位" if ctx.state.existing else "新的学位申请",
                           edit_label="查看或修改第{id}号（待审核）")
    if not await _majors_left(ctx, mine):
        opts = [o for o in opts if o[0] != "new"]
    return opts


async def _majors_left(ctx: Ctx, mine: list[ApplicationData]) -> list[dg.MajorInfo]:
    """本科 majors without a degree application other than a draft (the draft is reused)."""
    taken = {a.major_code for a in mine if a.status != "draft" and a.major_code}
    return [m for m in await dg.candidate_majors(ctx.db, ctx.user.candidate_id)
            if dg.eligible_level(m.level) and m.code not in taken]


async def _begin(ctx: Ctx) -> Optional[str]:
    """The window check; then, when every 本科 major has an application already decided 审核通过,
    the applications instead of a choice with nothing to choose."""
    refusal = await A.begin(ctx, kind=KIND, keyword=KEYWORD, noun="申请", closed_lines=_closed_lines)
    if refusal:
        return refusal
    mine = await A.mine(ctx)
    if not mine and not any(dg.eligible_level(m.level) for m in await dg.candidate_majors(ctx.db, ctx.user.candidate_id)):
        return NOT_BENKE  # said before the 考生须知, not after it
    if mine and all(a.status == "approved" for a in mine) and not await _majors_left(ctx, mine):
        return "\n".join([f"【{TITLE}】", "您的学位申请：", *await _application_lines(ctx, mine),
                          "您的本科专业都已申请过学位，无需再次申请。"])
    return None


def _resume(ctx: Ctx, value: Any = None) -> str:
    """Where the application stands: the major, the first empty personal field, the check of the
    personal information, the materials, the review."""
    st: DegreeState = ctx.state
    if st.editing:
        back, st.editing = st.editing, ""
        return back
    app, d = A.work(ctx), _details(ctx)
    if value == "continue":
        st.lead = "接着填写上次的草稿。"
    if not app.major_code:
        return "major"
    for attr, _label, required in dg.PERSONAL:
        if required and not getattr(d, attr):
            return attr
    if not d.optional_asked:
        return "work_phone" if d.employer else "employer"
    if not d.personal_checked:
        return "personal"
    return "materials"


def _notice_prompt(ctx: Ctx) -> str:
    return join(f"【{TITLE}｜考生须知】\n{ctx.state.notice or DEFAULT_NOTICE}", A.closes_text(ctx.state),
                "请仔细阅读，回复“我已知晓”继续申请。")


async def _free_majors(ctx: Ctx) -> list[dg.MajorInfo]:
    """The candidate's 本科 majors without another degree application (one per major)."""
    app = A.work(ctx)
    taken = {a.major_code for a in await A.mine(ctx) if a.id != app.id and a.major_code}
    taken |= open_majors([a for a in await A.mine(ctx) if a.id != app.id], KIND)
    return [m for m in await dg.candidate_majors(ctx.db, ctx.user.candidate_id)
            if dg.eligible_level(m.level) and m.code not in taken]


async def _refuse(ctx: Ctx, text: str) -> None:
    app = A.work(ctx)
    if app.status == "draft" and not app.major_code:
        await apps.discard_draft(ctx.db, app.id, candidate_id=ctx.user.candidate_id)
    raise EndFlow(text)


def _school(m: dg.MajorInfo) -> str:
    return f"{m.name}（{m.university}）" if m.university else m.name


async def _notice_check(ctx: Ctx, value: str) -> str:
    app = await A.open_draft(ctx)
    if app.major_code:
        return value
    majors = await dg.candidate_majors(ctx.db, ctx.user.candidate_id)
    if not any(dg.eligible_level(m.level) for m in majors):
        await _refuse(ctx, NOT_BENKE)
    free = await _free_majors(ctx)
    if not free:
        await _refuse(ctx, "您的本科专业都已申请过学位。回复“我的申请”查看审核状态。")
    ready = await dg.majors_with_requirements(ctx.db, [m.code for m in free])
    if not any(m.code in ready for m in free):
        await _refuse(ctx, "、".join(_school(m) for m in free) + NOT_PUBLISHED)
    if len(free) == 1:
        await _set_major(ctx, free[0].code)
    return value


async def _set_major(ctx: Ctx, code: str) -> None:
    """The major of the application; the personal information starts from the profile, and
    materials another major asked for are dropped."""
    app = A.work(ctx)
    d = _details(ctx)
    if not (d.address or d.mobile):
        p = await accounts.profile(ctx.db, ctx.user.candidate_id)
        d.address = p.get("mailing_address") or ""
        d.mobile = p.get("mobile") or ""
        d.emergency_mobile = p.get("emergency_mobile") or ""
        d.employer = p.get("employer") or ""
    if app.major_code != code:
        app.major_code = code
        keys = {s.key for s in await _slots(ctx)}
        d.materials = [m for m in d.materials if m.slot in keys]
    await A.save_details(ctx, d)


async def _major_options(ctx: Ctx) -> list[F.Option]:
    free = await _free_majors(ctx)
    ready = await dg.majors_with_requirements(ctx.db, [m.code for m in free])
    return [(m.code, _school(m) + ("" if m.code in ready else "（材料要求未公布）")) for m in free]


async def _major_check(ctx: Ctx, code: str) -> str:
    if code not in await dg.majors_with_requirements(ctx.db, [code]):
        name = next((m for m in await _free_majors(ctx) if m.code == code), None)
        raise Invalid((_school(name) if name else "该专业") + NOT_PUBLISHED + "\n请选择其他专业，或回复“取消”。")
    await _set_major(ctx, code)
    return code


def _ask(question: str):
    return lambda ctx: join(ctx.state.take_lead(), question)


# --- 核对个人信息 ------------------------------------------------------------------------------------


def _field_check(attr: str):
    async def check(ctx: Ctx, value: Optional[str]) -> Optional[str]:
        d = _details(ctx)
        setattr(d, attr, value or "")
        if attr == "work_phone":
            d.optional_asked = True
        await A.save_details(ctx, d)
        return value
    return check


async def _emergency_check(ctx: Ctx, value: str) -> str:
    d = _details(ctx)
    if d.mobile and value == d.mobile:
        raise Invalid("紧急联系手机应为紧急联系人（家人等）的号码，不能与本人手机号码相同。")
    return await _field_check("emergency_mobile")(ctx, value)


async def _work_phone_check(ctx: Ctx, value: Optional[str]) -> Optional[str]:
    problem = dg.work_phone_problem(value or "")
    if problem:
        raise Invalid(problem)
    return await _field_check("work_phone")(ctx, value)


def _work_phone_prompt(ctx: Ctx) -> str:
    """The 单位电话, with the 工作单位 it belongs to (taken from the profile, not asked before it)."""
    employer = _details(ctx).employer
    return join(ctx.state.take_lead(), "\n".join(x for x in (
        f"工作单位：{employer}" if employer else "", "请输入单位电话（选填，如 021-12345678；没有请回复“无”）：") if x))


def _after_employer(ctx: Ctx, value: Any) -> str:
    return _resume(ctx) if ctx.state.editing else "work_phone"


def _shown(attr: str, d: dg.DegreeDetails) -> str:
    v = getattr(d, attr)
    if attr in ("mobile", "emergency_mobile") and v:
        return mask_mobile(v) if valid_mobile(v) else v
    return v or "（未填）"


async def _who(ctx: Ctx) -> list[Line]:
    p = await accounts.profile(ctx.db, ctx.user.candidate_id)
    return [Line(f"准考证号：{mask_admission(A.work(ctx).admission_number)}"), Line(f"姓名：{p.get('name') or ''}"),
            Line(f"证件号码：{mask_id_number(p.get('id_number') or '')}")]


def _personal_lines(d: dg.DegreeDetails) -> list[Line]:
    return [Line(f"{label}：{_shown(attr, d)}", "mobile_change" if attr == "mobile" else attr)
            for attr, label, _ in dg.PERSONAL]


async def _personal_args(ctx: Ctx) -> ReviewState:
    st, d = ctx.state, _details(ctx)
    st.editing = ""  # back here (also by 返回 from a 修改 N): nothing is being changed
    return ReviewState(head=[st.take_lead(), f"【{TITLE}｜核对个人信息】"],
                       lines=[*await _who(ctx), *_personal_lines(d)],
                       tail=["手机号码用于学位审核有问题时联系您；修改手机号码需要短信验证。"],
                       options=[["next", "信息无误，下一步"],
                                ["leave", "不修改，退出" if A.work(ctx).status == "submitted" else "先保存，以后再办"]])


async def _personal_done(ctx: Ctx, picked: Picked) -> str:
    if picked.action == "leave":
        A.leave(ctx)
    if picked.action == "next":
        problems = dg.personal_problems(_details(ctx))
        if problems:
            raise Invalid("\n".join(problems))
        d = _details(ctx)
        d.personal_checked = True
        await A.save_details(ctx, d)
        return _resume(ctx)
    ctx.state.editing = "personal"
    return picked.target


async def _mobile_changed(ctx: Ctx, done: str) -> str:
    p = await accounts.profile(ctx.db, ctx.user.candidate_id)
    d = _details(ctx)
    d.mobile = p.get("mobile") or d.mobile
    await A.save_details(ctx, d)
    ctx.state.lead = "手机号码已更新。"
    return _resume(ctx)


# --- the materials -------------------------------------------------------------------------------------


@dataclass
class MaterialScore(F.Field):
    """成绩 of a material: a number (CET up to 710, one decimal at most) or 合格/通过."""

    hint: str = "照成绩单上的分数填写。"  # the question gives an example fitting the material

    def parse_text(self, text: str) -> str:
        try:
            return dg.parse_score(text)
        except ValueError as e:
            raise Invalid(str(e)) from None


@dataclass
class MaterialState:
    slot: dg.Slot = field(default_factory=lambda: dg.Slot("", ""))
    m: dg.Material = field(default_factory=lambda: dg.Material(""))
    header: str = ""
    born: Optional[str] = None
    redo: bool = False  # asked again from the review: every field, the photos replaced
    replacing: int = 0
    lead: str = ""  # said once, before the first question, not before each

    @property
    def req(self) -> Optional[dg.Requirement]:
        return self.slot.option(self.m.code)


def _asks(f: str):
    return lambda ctx: ctx.state.req is not None and getattr(ctx.state.req, f"asks_{f}")


def _material_enter(ctx: Ctx, st: MaterialState) -> tuple[MaterialState, Optional[str]]:
    if len(st.slot.options) == 1:
        st.m.code = st.slot.options[0].code
    first = dg.first_missing(st.m, st.slot, apps.today_in_shanghai(ctx.now), born=st.born)
    if st.redo or first == "fix":
        st.redo, st.replacing = True, len(st.m.photo_ids)
        first = "type" if len(st.slot.options) > 1 else (st.req.fields() or ["photos"])[0]  # type: ignore[union-attr]
    return st, first or END


def _m_prompt(question, attr: str):
    """The question after the material's header; when asked again from the review, what it is now."""
    def prompt(ctx: Ctx) -> str:
        st: MaterialState = ctx.state
        req = st.req
        q = question(req) if callable(question) else question
        value = getattr(st.m, attr, "") if st.redo else ""
        if attr == "code":
            value = req.name if (st.redo and req is not None) else ""
        elif attr == "month" and value:
            value = apps.month_label(value)
        lead, st.lead = st.lead, ""
        return join(lead, "\n".join(x for x in (st.header, f"现在填写的是：{value}" if value else "", q) if x))
    return prompt


async def _type_options(ctx: Ctx) -> list[F.Option]:
    return [(r.code, r.name + (f"（{r.note}）" if r.note else "")) for r in ctx.state.slot.options]


async def _type_check(ctx: Ctx, code: str) -> str:
    st: MaterialState = ctx.state
    if code != st.m.code:
        st.m = dg.Material(st.m.slot, code, photo_ids=st.m.photo_ids)
    return code


async def _score_check(ctx: Ctx, score: str) -> str:
    st: MaterialState = ctx.state
    problem = dg.score_problem(score, st.req)  # type: ignore[arg-type]
    if problem:
        others = len(st.slot.options) > 1
        raise Invalid(problem + ("\n回复“返回”可以选择其他材料。" if others else ""))
    st.m.score = score
    return score


async def _number_check(ctx: Ctx, number: str) -> str:
    st: MaterialState = ctx.state
    problem = apps.evidence_number_problem("", number, st.req.name if st.req else "")
    if problem:
        raise Invalid(problem)
    st.m.number = number.replace(" ", "")
    return number


async def _month_check(ctx: Ctx, month: str) -> str:
    st: MaterialState = ctx.state
    problem = apps.evidence_month_problem(month, born=st.born)
    if problem:
        raise Invalid(problem)
    st.m.month = month
    return month


async def _province_check(ctx: Ctx, province: str) -> str:
    ctx.state.m.province = province
    return province


def _score_question(req: dg.Requirement) -> str:
    need = f"（须达到{req.min_score.normalize():f}分）" if req.min_score is not None else ""
    return f"请输入{req.name}上的成绩{need}，如 {_example_score(req)}："


def _example_score(req: dg.Requirement) -> str:
    """An example on the material's own scale: a CET-4 score (710 points) is not a 百分制 one."""
    return "468" if req.min_score is None or req.min_score > 100 else "75"


def _photo_args(ctx: Ctx) -> PhotosState:
    st: MaterialState = ctx.state
    name = st.req.name if st.req else st.slot.title
    lead, st.lead = st.lead, ""  # when the photos are the first thing asked
    header = join(lead, st.header)
    if st.replacing:
        return PhotosState(what=f"{name}的照片", header=header, have=[], replacing=st.replacing)
    return PhotosState(what=f"{name}的照片", header=header, have=list(st.m.photo_ids))


async def _photos_progress(ctx: Ctx, photos: PhotosState) -> None:
    ctx.state.m.photo_ids = list(photos.have)


MATERIAL = Component("degree_material", "学位材料", state=MaterialState, enter=_material_enter, steps=[
    Step("type", "材料类型", F.Choice(), _m_prompt("请选择您提供的材料：", "code"), options=_type_options, check=_type_check,
         when=lambda ctx: len(ctx.state.slot.options) > 1, retry="请回复序号选择材料类型："),
    Step("score", "成绩", MaterialScore(), _m_prompt(_score_question, "score"), check=_score_check, when=_asks("score")),
    Step("number", "编号", F.Field(hint="证书或成绩单上印的编号。"), _m_prompt(lambda r: f"请输入{r.name}的编号：", "number"),
         check=_number_check, when=_asks("number")),
    Step("month", "获取时间", F.YearMonth(), _m_prompt(lambda r: f"请输入{r.name}的获取时间（年月，如 2019年6月）：", "month"),
         check=_month_check, when=_asks("month")),
    Step("province", "省份", F.Province(), _m_prompt(lambda r: f"请输入获取{r.name}的省份（如 上海、江苏）：", "province"),
         check=_province_check, when=_asks("province")),
    Call("photos", PHOTOS, args=_photo_args, progress=_photos_progress,
         when=lambda ctx: ctx.state.req is not None and ctx.state.req.photo, go=END),
])


async def _slots_left(ctx: Ctx) -> list[str]:
    d, today = _details(ctx), apps.today_in_shanghai(ctx.now)
    return [s.key for s in await _slots(ctx)
            if d.material(s.key) is None or dg.first_missing(d.material(s.key), s, today, born=ctx.state.born)]


async def _material_args(ctx: Ctx, key: str, redo: bool = False) -> MaterialState:
    slots = await _slots(ctx)
    slot = next(s for s in slots if s.key == key)
    n = [s.key for s in slots].index(key) + 1
    m = _details(ctx).material(key) or dg.Material(key)
    header = f"【{TITLE}｜材料 {n}/{len(slots)}：{slot.title}】"
    notes = [f"说明：{r.note}" for r in slot.options if r.note and len(slot.options) == 1]
    return MaterialState(slot=slot, m=m, header="\n".join([header, *notes]), born=ctx.state.born, redo=redo,
                         lead=ctx.state.take_lead())


async def _keep_material(ctx: Ctx, key: str, st: MaterialState) -> None:
    d = _details(ctx)
    d.put(st.m)
    await A.save_details(ctx, d)


async def _material_progress(ctx: Ctx, st: MaterialState) -> None:
    if st.m.code:
        await _keep_material(ctx, st.slot.key, st)


async def _redo_args(ctx: Ctx) -> MaterialState:
    return await _material_args(ctx, ctx.state.redo, redo=True)


async def _redone(ctx: Ctx, st: MaterialState) -> str:
    await _keep_material(ctx, st.slot.key, st)
    ctx.state.redo = ""
    return "review"


# --- the review ---------------------------------------------------------------------------------------


async def _review_args(ctx: Ctx) -> ReviewState:
    st, app, d = ctx.state, A.work(ctx), _details(ctx)
    st.editing, st.redo = "", ""  # back here (also by 返回 from a 修改 N): nothing is being changed
    names = await _major_names(ctx)
    slots = await _slots(ctx)
    # The major is changed only where there is another to choose (and only in a draft).
    choice = app.status == "draft" and len(await _free_majors(ctx)) > 1
    lines = [*await _who(ctx), Line(f"专业：{names.get(app.major_code or '', app.major_code or '')}",
                                    "major" if choice else ""), *_personal_lines(d)]
    for s in slots:
        m = d.material(s.key)
        lines.append(Line(f"{s.title}：{material_line(m, s) if m else '（未提供）'}", f"mat:{s.key}"))
    return await A.review_state(ctx, st, TITLE, lines)


async def _reviewed(ctx: Ctx, picked: Picked) -> str:
    if picked.action == "submit":
        await A.submit(ctx, "学位申请", AFTER)
        return END
    if picked.action == "leave":
        A.leave(ctx)
    if picked.target.startswith("mat:"):
        ctx.state.redo = picked.target[4:]
        return "material_edit"
    if picked.target == "major" and A.work(ctx).status != "draft":
        raise Invalid("已提交过的申请不能更换专业。要申请另一专业的学位，请在办理首页选择“申请另一专业的学位”。")
    if picked.target != "major":
        ctx.state.editing = "review"
    return "mobile_change" if picked.target == "mobile_change" else picked.target


def _left_note(st: Any) -> Optional[str]:
    return A.left_note(st)


DEGREE = Flow(
    name=KIND, title=TITLE, state=DegreeState, confirm=False, left_note=_left_note, submit=A.finish,
    begin=_begin,
    steps=[
        Step("start", "办理方式", F.Choice(), _start_prompt, options=_start_options,
             when=lambda ctx: ctx.state.existing, check=A.start_check,
             go={"continue": _resume, "new": "notice", "restart": "notice", "*": "review"}),
        Step("notice", "考生须知", F.Acknowledge(), _notice_prompt, retry=F.ACK_RETRY,
             check=_notice_check, go=_resume),
        Step("major", "专业", F.Choice(), _ask(f"【{TITLE}｜选择专业】请选择申请学位的专业："), options=_major_options,
             check=_major_check, go=_resume),
        Step("native_place", "籍贯", F.Text(min_len=2, max_len=dg.NATIVE_PLACE_MAX, hint="如 江苏南通。"),
             _ask(f"【{TITLE}｜核对个人信息】请输入您的籍贯（如 江苏南通）："), check=_field_check("native_place"),
             go=_resume),
        Step("address", "联系地址", F.Text(min_len=dg.ADDRESS_MIN, max_len=dg.ADDRESS_MAX, hint="写到门牌号，5-100个字。"),
             _ask("请输入联系地址（写到门牌号）："), check=_field_check("address"), go=_resume),
        Step("mobile", "手机号码", F.Mobile(), _ask("请输入本人手机号码，以便学位审核有问题时联系您："),
             check=_field_check("mobile"), go=_resume),
        Step("emergency_mobile", "紧急联系手机", F.Mobile(),
             _ask("请输入紧急联系人的手机号码，以便学位审核有问题时能联系到您："), check=_emergency_check, go=_resume),
        Step("employer", "工作单位", F.Text(optional=True, max_len=dg.EMPLOYER_MAX),
             _ask("请输入工作单位（选填，没有请回复“无”）："), check=_field_check("employer"), go=_after_employer),
        Step("work_phone", "单位电话", F.Text(optional=True, max_len=20), _work_phone_prompt,
             check=_work_phone_check, go=_resume),
        Call("personal", REVIEW, args=_personal_args, go=_personal_done, back_here=True),
        Call("mobile_change", MOBILE_UPDATE, go=_mobile_changed),
        Loop("materials", over=_slots_left, body=MATERIAL, args=_material_args, each=_keep_material,
             progress=_material_progress, go="review"),
        Call("material_edit", MATERIAL, args=_redo_args, progress=_material_progress, go=_redone),
        Call("review", REVIEW, args=_review_args, go=_reviewed, back_here=True),
    ],
)


def register(router: Any) -> None:
    router.add_flow(DEGREE)


__all__ = ["DEGREE", "MATERIAL", "material_line", "register"]
