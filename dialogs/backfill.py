"""成绩补登 (FLOWS 15-18): the candidate's registrations, then `登记成绩` of one kind, each date
checked against its limit with where newer business goes instead:
理论与实践 (course, 通过时间 ≤ 2002年12月, 成绩, 说明, photos), 免考 (course, 办理免考时间 < 2020,
the evidence, 说明), 转入 (办理转入时间 < 2020, 来源省, 来源准考证号, 专业, courses).
One registration is one application of kind ``backfill``; its fields sit on its courses. A 转入's
first answers wait in the state until its courses exist; everything else is saved as typed."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Optional

from dialogs import fields as F
from dialogs.applications import registration_lines, score_label
from dialogs.components import application as A
from dialogs.components.evidence import EVIDENCE, EvidenceState
from dialogs.components.photos import PHOTOS, PhotosState
from dialogs.components.review import REVIEW, Line, Picked, ReviewState, options
from dialogs.engine import END, Call, Ctx, Flow, Step, join
from dialogs.fields import Invalid
from storage import applications as apps
from storage import queries as q
from storage.applications import EvidenceData, ItemData
from storage.models_applications import ENTRY_KINDS
from storage.outbox import KIND_KEYWORDS
from storage.vocab import score_passes

KIND = "backfill"
KEYWORD = KIND_KEYWORDS[KIND]  # "成绩补登"
TITLE = "成绩补登"
PROOF_TYPE = "score_proof"  # the evidence type holding a 理论与实践 result's photos
DATE_HINT = "如 2001年10月、2001-10 或 200110。"
KIND_OPTIONS: tuple[F.Option, ...] = (
    ("theory", "理论与实践（2002年12月及以前通过的考试）"),
    ("exemption", "免考记录（2020年以前已办好的免考）"),
    ("transfer", "转入记录（2020年以前办好的外省转入）"),
)
# What the review shows and 修改 reaches, per kind: (target, label); "ev:x" is field x of the evidence.
FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "theory": (("course", "课程"), ("th_month", "考试通过时间"), ("th_score", "成绩"), ("note", "说明"),
               ("th_photos", "成绩证明照片")),
    "exemption": (("course", "课程"), ("ex_month", "办理免考时间"), ("ev:type", "凭证类型"),
                  ("ev:month", "取得凭证时间"), ("ev:number", "凭证编号"), ("ev:province", "取得凭证地点"),
                  ("note", "说明")),
    "transfer": (("tr_month", "办理转入时间"), ("tr_province", "来源省"), ("tr_number", "来源准考证号"),
                 ("tr_major", "转入专业"), ("tr_courses", "课程")),
}


@dataclass
class Transfer:
    """A 转入's fields before its courses exist to carry them."""

    month: Optional[str] = None
    province: str = ""
    number: str = ""


@dataclass
class BackfillState(A.AppState):
    entry: str = ""  # theory / exemption / transfer
    matches: list[list[str]] = field(default_factory=list)  # courses found by what was typed
    transfer: Transfer = field(default_factory=Transfer)
    editing: bool = False  # one field changed from the review: back to it afterwards
    ev_only: str = ""  # the evidence field being changed


def _item(ctx: Ctx) -> ItemData:
    return A.work(ctx).items[0]


def _on(step: str):
    """The next field, or the review when one field was being changed."""
    return lambda ctx, value: "review" if ctx.state.editing else step


# --- begin and the first choice ----------------------------------------------------------------------


async def _closed_lines(ctx: Ctx, mine: list[apps.ApplicationData]) -> list[str]:
    regs = [a for a in mine if a.status != "draft"]
    return ["您的成绩补登记录：", *await registration_lines(ctx, regs)] if regs else []


async def _start_prompt(ctx: Ctx) -> str:
    shown = [a for a in await A.mine(ctx) if a.status != "draft" or a.items]
    lines = [f"【{TITLE}】", "用于登记平台上没有的早年成绩：2002年12月及以前通过的考试，2020年以前办好的免考和转入。",
             *(["您的登记：", *await registration_lines(ctx, shown)] if shown else ["您还没有登记过成绩。"]),
             A.closes_text(ctx.state), "请选择："]
    return "\n".join(x for x in lines if x)


async def _start_options(ctx: Ctx) -> list[F.Option]:
    return A.start_options(await A.mine(ctx), draft_words=("继续填写未提交的登记", "放弃未提交的登记，重新登记"),
                           new="登记成绩", edit_label="修改第{id}号（待审核）")


def _resume(ctx: Ctx, value: Any = None) -> str:
    """The first thing the registration still lacks, as the step that asks for it."""
    st, app = ctx.state, ctx.state.app
    st.entry = (app.items[0].entry_kind if app and app.items else "") or st.entry
    if app is None or not st.entry:
        return "kind"
    if st.entry == "transfer":
        t = st.transfer
        missing = [s for s, v in (("tr_month", t.month), ("tr_province", t.province), ("tr_number", t.number),
                                  ("tr_major", app.major_code)) if not v and not app.items]
        return missing[0] if missing else "review" if app.items else "tr_courses"
    if not app.items:
        return "course"
    item = app.items[0]
    ev = item.evidences[0] if item.evidences else None
    wants = ((("th_month", item.passed_month), ("th_score", item.score is not None or item.grade),
              ("th_photos", ev and ev.photo_ids)) if st.entry == "theory" else
             (("ex_month", item.passed_month), ("ex_evidence", ev and ev.province)))
    return next((s for s, v in wants if not v), "review")


# --- the kind, the course ------------------------------------------------------------------------------


async def _kind_check(ctx: Ctx, kind: str) -> str:
    st = ctx.state
    app = st.app or await A.open_draft(ctx)
    if app.items and app.items[0].entry_kind != kind:
        app.items, app.major_code = [], None  # another kind: what was entered for the first no longer fits
        await A.persist(ctx)
    st.entry, st.transfer = kind, Transfer()
    return kind


async def _course_check(ctx: Ctx, typed: str) -> str:
    matches = await apps.find_courses(ctx.db, typed)
    if not matches:
        raise Invalid(f"没有找到以“{typed}”开头的课程。请换个写法，或输入5位课程代码。")
    ctx.state.matches = [[code, name] for code, name in matches]
    return typed


async def _match_options(ctx: Ctx) -> list[F.Option]:
    return [(code, f"{code} {name}") for code, name in ctx.state.matches]


async def _pick_check(ctx: Ctx, code: str) -> str:
    app = A.work(ctx)
    why = await apps.course_state_of(ctx.db, ctx.user.candidate_id, code, exclude_application_id=app.id)
    if why:
        raise Invalid(f"这门课程{why}，不需要补登。请选择其他课程，或回复“返回”重新输入。")
    if app.items:
        app.items[0].course_code = code
    else:
        app.items = [ItemData(code, entry_kind=ctx.state.entry)]
    await A.remember_names(ctx)
    await A.persist(ctx)
    return code


# --- the fields of the (single) course of 理论与实践 and 免考, and of 转入 --------------------------------


def _set(attr: Optional[str], check=None):
    """Keep an answer on the course (every course of a 转入; in the state until they exist)."""

    async def keep(ctx: Ctx, value: Any) -> Any:
        if check is not None:
            problem = check(ctx, value)
            if problem:
                raise Invalid(problem)
        app = A.work(ctx)
        if attr is not None and ctx.state.entry == "transfer":
            setattr(ctx.state.transfer, {"passed_month": "month", "from_province": "province",
                                         "from_admission_number": "number"}[attr], value)
        for i in app.items if attr is not None else ():
            setattr(i, attr, value if value is not None else "")
        if app.items:
            await A.persist(ctx)
        return value
    return keep


def _dated(ctx: Ctx, month: str) -> Optional[str]:
    return (apps.backfill_date_problem(ctx.state.entry, month, apps.today_in_shanghai(ctx.now))
            or (apps.evidence_month_problem(month, born=ctx.state.born) if ctx.state.entry == "theory" else None))


def _score(ctx: Ctx, text: str) -> Optional[str]:
    try:
        score, grade = apps.parse_score(text)
    except ValueError as e:
        return str(e)
    if not score_passes(score, grade):
        return "只能补登合格的成绩（60分及以上，或“合格”“通过”）。"
    _item(ctx).score, _item(ctx).grade = score, grade
    return None


def _not_shanghai(ctx: Ctx, province: str) -> Optional[str]:
    return "来源省是您转出的外省（转入上海之前报考的省份），不能是上海。" if province == "上海市" else None


def _photo_args(ctx: Ctx) -> PhotosState:
    have = [p for e in _item(ctx).evidences for p in e.photo_ids]
    replacing = len(have) if ctx.state.editing else 0
    return PhotosState(what="成绩证明的照片", have=[] if replacing else have, replacing=replacing)


async def _photos_progress(ctx: Ctx, photos: PhotosState) -> None:
    _item(ctx).evidences = [EvidenceData(PROOF_TYPE, photo_ids=list(photos.have))]
    await A.persist(ctx)


def _evidence_args(ctx: Ctx) -> EvidenceState:
    st, item = ctx.state, _item(ctx)
    return EvidenceState(ev=item.evidences[0] if item.evidences else EvidenceData(""), header="【免考所用的凭证】",
                         types=st.types, photos=False, with_note=False, only=st.ev_only, born=st.born,
                         not_after=item.passed_month, not_after_label="办理免考时间")


async def _evidence_progress(ctx: Ctx, child: EvidenceState) -> None:
    if child.ev.type_code:
        _item(ctx).evidences = [child.ev]
        await A.persist(ctx)


async def _major_options(ctx: Ctx) -> list[F.Option]:
    majors = await q.candidate_majors(ctx.db, ctx.user.candidate_id, active=ctx.user.admission_number)
    return [(e.major_code, f"{e.major_code} {e.major_name}") for e in majors]


async def _major_check(ctx: Ctx, major: str) -> str:
    app = A.work(ctx)
    if app.major_code != major:
        app.major_code, app.items = major, []  # another plan: its courses are chosen again
        await A.persist(ctx)
    return major


async def _after_number(ctx: Ctx, value: str) -> str:
    majors = await _major_options(ctx)
    if len(majors) == 1 and not A.work(ctx).major_code:
        A.work(ctx).major_code = majors[0][0]  # saved with the courses, when the draft can hold it
    return "review" if ctx.state.editing else "tr_courses" if len(majors) == 1 else "tr_major"


async def _course_options(ctx: Ctx) -> list[F.Option]:
    choices = await apps.exemption_courses(ctx.db, ctx.user.candidate_id, A.work(ctx).major_code or "",
                                           exclude_application_id=A.work(ctx).id)
    return [(c.code, f"{c.code} {c.name}") for c in choices if c.eligible or c.why_not == "论文不能申请免考"]


async def _courses_prompt(ctx: Ctx) -> str:
    if not await _course_options(ctx):
        return "这个专业没有可以登记转入的课程（都已通过、免考或转入）。请回复“返回”选择其他专业，或回复“取消”。"
    return "请选择转入的课程，可以选多门（如 1,2）："


async def _courses_check(ctx: Ctx, codes: list[str]) -> list[str]:
    t = ctx.state.transfer
    A.work(ctx).items = [ItemData(code, entry_kind="transfer", passed_month=t.month, from_province=t.province,
                                from_admission_number=t.number) for code in codes]
    await A.remember_names(ctx)
    await A.persist(ctx)
    return codes


# --- the review ---------------------------------------------------------------------------------------


async def _review_args(ctx: Ctx) -> ReviewState:
    st, app = ctx.state, A.work(ctx)
    st.editing, st.ev_only = False, ""
    st.entry = (app.items[0].entry_kind if app.items else "") or st.entry
    item = app.items[0] if app.items else ItemData("")
    e = item.evidences[0] if item.evidences else EvidenceData("")
    courses = "、".join(f"{i.course_code} {st.name(i.course_code)}" for i in app.items)
    t = st.transfer
    values = {
        "course": courses, "th_month": apps.month_label(item.passed_month), "ex_month": apps.month_label(item.passed_month),
        "th_score": score_label(item.score, item.grade) or "（未填）", "note": item.note or "无",
        "th_photos": f"{sum(len(x.photo_ids) for x in item.evidences)}张", "ev:type": st.type_name(e.type_code),
        "ev:month": apps.month_label(e.obtained_month), "ev:number": e.number or "（未填）",
        "ev:province": e.province or "（未填）",
        "tr_month": apps.month_label(item.passed_month or t.month), "tr_province": item.from_province or t.province,
        "tr_number": item.from_admission_number or t.number, "tr_courses": courses or "（未选）",
        "tr_major": dict(await _major_options(ctx)).get(app.major_code or "", app.major_code or "（未选）"),
    }
    problems = await apps.submission_problems(ctx.db, app, now=ctx.now)
    tail = ["还需补充：\n" + "\n".join(f"· {p}" for p in problems)] if problems else []
    if app.status == "submitted":
        tail.append("修改后需要再次提交；不提交的话，原登记不变，仍在审核中。")
    return ReviewState(head=[*A.head(st, TITLE), f"类型：{ENTRY_KINDS.get(st.entry, '')}"],
                       lines=[Line(f"{label}：{values[target]}", target) for target, label in FIELDS.get(st.entry, ())],
                       tail=tail, options=options(app.status, ("fields", "修改内容")))


async def _field_options(ctx: Ctx) -> list[F.Option]:
    # "修改成绩", not "成绩": a bare keyword would run its query instead of answering the step.
    return [(target, f"修改{label}") for target, label in FIELDS.get(ctx.state.entry, ())]


def _edit(ctx: Ctx, target: str) -> str:
    ctx.state.editing = True
    target, _, ctx.state.ev_only = target.partition(":")
    return {"ev": "ex_evidence", "note": f"{ctx.state.entry[:2]}_note"}.get(target, target)


async def _reviewed(ctx: Ctx, picked: Picked) -> str:
    if picked.action == "submit":
        await A.submit(ctx, TITLE, f"审核通过后会计入您的成绩，结果会通过微信通知您。审核前需要修改请回复“{KEYWORD}”。")
        return END
    if picked.action == "leave":
        A.leave(ctx)
    return "pick_field" if picked.action == "fields" else _edit(ctx, picked.target)


BACKFILL = Flow(
    name=KIND, title=TITLE, state=BackfillState, confirm=False, left_note=A.left_note, submit=A.finish,
    begin=partial(A.begin, kind=KIND, keyword=KEYWORD, noun="登记", closed_lines=_closed_lines),
    steps=[
        Step("start", "办理方式", F.Choice(), _start_prompt, options=_start_options, check=A.start_check,
             go={"continue": _resume, "new": "kind", "restart": "kind", "*": "review"}),
        Step("kind", "补登类型", F.Choice(options=KIND_OPTIONS), "请选择要登记的成绩类型（回复序号）：", check=_kind_check,
             go={"transfer": "tr_month", "*": "course"}),
        # 理论与实践 and 免考: one course, found by what the candidate types.
        Step("course", "课程", F.Text(max_len=30, hint="课程名称的前几个字，或5位课程代码。"),
             "请输入课程名称的前几个字或课程代码（如“英语”或 00015）：", check=_course_check),
        Step("course_pick", "课程", F.Choice(), "找到这些课程，请回复序号（都不是请回复“返回”重新输入）：",
             options=_match_options, check=_pick_check, go=lambda ctx, v: "review" if ctx.state.editing else _resume(ctx)),
        Step("th_month", "考试通过时间", F.YearMonth(hint=DATE_HINT),
             "请输入这门课程的考试通过时间（年月，如 2001年10月）：\n只能补登2002年12月及以前通过的成绩。",
             check=_set("passed_month", _dated), go=_on("th_score")),
        Step("th_score", "成绩", F.Score(), "请输入成绩（分数，或“合格”“通过”）：", check=_set(None, _score),
             go=_on("th_note")),
        Step("th_note", "说明", F.Text(optional=True, max_len=200), "说明（如当时的准考证号、考试地点，没有请回复“无”）：",
             check=_set("note"), go=_on("th_photos")),
        Call("th_photos", PHOTOS, args=_photo_args, progress=_photos_progress, go="review"),
        Step("ex_month", "办理免考时间", F.YearMonth(hint=DATE_HINT),
             "请输入办理免考的时间（年月）：\n只能补登2020年以前已办好的免考。", check=_set("passed_month", _dated),
             go=_on("ex_evidence")),
        Call("ex_evidence", EVIDENCE, args=_evidence_args, progress=_evidence_progress, go=_on("ex_note")),
        Step("ex_note", "说明", F.Text(optional=True, max_len=200), "说明（没有请回复“无”）：", check=_set("note"),
             go="review"),
        # 转入
        Step("tr_month", "办理转入时间", F.YearMonth(hint=DATE_HINT),
             "请输入办理转入的时间（年月）：\n只能补登2020年以前办好的转入。", check=_set("passed_month", _dated),
             go=_on("tr_province")),
        Step("tr_province", "来源省", F.Province(), "来源省（从哪个省转入，如 江苏）：",
             check=_set("from_province", _not_shanghai), go=_on("tr_number")),
        Step("tr_number", "来源准考证号", F.OtherAdmissionNo(), "在来源省的准考证号：", check=_set("from_admission_number"),
             go=_after_number),
        Step("tr_major", "转入专业", F.Choice(), "转入的专业：", options=_major_options, check=_major_check,
             go=lambda ctx, v: "review" if ctx.state.editing and A.work(ctx).items else "tr_courses"),
        Step("tr_courses", "课程", F.MultiChoice(), _courses_prompt, options=_course_options, check=_courses_check,
             go="review"),
        Call("review", REVIEW, args=_review_args, go=_reviewed),
        Step("pick_field", "修改项", F.Choice(), "要修改哪一项？", options=_field_options, go=_edit),
    ],
)


def register(router: Any) -> None:
    router.add_flow(BACKFILL)
