"""本科论文与专科毕设 (FLOWS 19): inside its window — 考生须知; the major (numbered when several);
the score list of that major to confirm; the 加考选项 where the major defines them; the
前置学历毕业证书 (编号, year-month, 省份, 备注, photos: the evidence component) for 本科 and 专升本
majors; the review with 修改 N; submission → 待审核. 未通过 shows the reason and offers 重新申请
while the window is open; 审核通过 shows the 预审结果 and the assigned 指导教师.

The route is the table at the bottom: `_resume` sends a new or continued application to the first
thing it lacks, each step goes on to the next one lacking (or back to the review when changed
from there), and the review submits. Every answer is saved in the draft as it is given.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from dialogs import fields as F
from dialogs.applications import score_label
from dialogs.components import application as A
from dialogs.components.evidence import EVIDENCE, EvidenceState, first_missing
from dialogs.components.review import REVIEW, Line, Picked, ReviewState
from dialogs.engine import END, Call, Ctx, EndFlow, Flow, Step, join
from storage import applications as apps
from storage import queries as q
from storage import thesis as th
from storage.applications import ApplicationData, EvidenceData, ItemData
from storage.graduation_rules import needs_prior_education

KIND = th.KIND
KEYWORD = th.KEYWORD  # "论文"
TITLE = "本科论文与专科毕设"
DEFAULT_NOTICE = (
    "一、申请前请核对所报专业的成绩，成绩有误的请先联系考办更正。\n"
    "二、专业有加考要求的，请如实选择加考选项。\n"
    "三、本科（专升本）专业须上传前置学历毕业证书照片（JPG或PNG，清晰完整、文字朝上）。\n"
    "四、预审通过后，考办为您分配指导教师，结果会通过微信通知您。"
)
AFTER = f"预审结果和指导教师会通过微信通知您；审核前需要修改请回复“{KEYWORD}”。"
NOTHING_TO_APPLY = ("您报考的专业中没有需要申请的论文（毕设）：考试计划中没有论文课程、论文已合格，"
                    "或已有申请。\n回复“我的申请”查看已有的申请，回复“毕业进度”查看论文情况。")


@dataclass
class ThesisState(A.AppState):
    majors: list[list[str]] = field(default_factory=list)  # [code, name, level] the candidate may apply in
    editing: bool = False  # a step changed from the review: back to the review after it


def _details(ctx: Ctx) -> th.ThesisDetails:
    return th.ThesisDetails.from_dict(A.work(ctx).details)


async def _set(ctx: Ctx, **values: Any) -> None:
    d = _details(ctx)
    for k, v in values.items():
        setattr(d, k, v)
    await A.save_details(ctx, d)


def major_name(m: list[str]) -> str:
    """"金融学(专升本)（020301K）"; the level only when the name does not say it already."""
    level = "" if m[2] in m[1] else f"，{m[2]}"
    return f"{m[1]}（{m[0]}{level}）"


def _major(ctx: Ctx) -> Optional[list[str]]:
    code = A.work(ctx).major_code
    return next((m for m in ctx.state.majors if m[0] == code), None)


async def _facts(ctx: Ctx) -> Optional[th.MajorFacts]:
    code = A.work(ctx).major_code
    return (await th.majors_of(ctx.db, [code])).get(code) if code else None


def _needs_diploma(ctx: Ctx) -> bool:
    m = _major(ctx)
    return m is not None and needs_prior_education(m[2])


def _diploma(app: ApplicationData) -> Optional[EvidenceData]:
    return next((e for i in app.items for e in i.evidences if e.type_code == th.DIPLOMA), None)


# --- how applications read -----------------------------------------------------------------------


async def _application_lines(ctx: Ctx, mine: list[ApplicationData]) -> list[str]:
    facts = await th.majors_of(ctx.db, {a.major_code for a in mine if a.major_code})
    names = {c: f.name for c, f in facts.items()}
    lines = []
    for a in (a for a in mine if a.status != "draft"):
        lines.append(A.status_line(a))
        lines.append(f"　专业：{names.get(a.major_code or '', a.major_code or '')}")
        lines += [f"　{x}" for x in result_lines(a)]
    return lines


def result_lines(a: ApplicationData) -> list[str]:
    """预审结果 and the 指导教师, as 我的申请 and 论文 show them."""
    if a.status == "approved":
        return ["预审结果：通过", *th.advisor_lines(th.ThesisDetails.from_dict(a.details))]
    return []  # 待审核 / 未通过 (with its reason) are on the status line already


async def _closed_lines(ctx: Ctx, mine: list[ApplicationData]) -> list[str]:
    return A.closed_list(f"您的{TITLE}申请：", await _application_lines(ctx, mine), mine)


def _has_work(a: Optional[ApplicationData]) -> bool:
    return a is not None and bool(a.items or a.major_code or a.details)


def _left_note(st: Any) -> Optional[str]:
    if st is not None and st.app is not None and st.app.status == "draft" and _has_work(st.app):
        return f"已填写的内容都保存了，回复“{KEYWORD}”可以接着办理。{A.closes_text(st)}"
    return A.left_note(st)


# --- the first choice, 考生须知, major ---------------------------------------------------------------


async def _start_prompt(ctx: Ctx) -> str:
    mine = await A.mine(ctx)
    lines = [f"【{TITLE}】"]
    if _has_work(next((a for a in mine if a.status == "draft"), None)):
        lines.append("您有一份还没提交的申请草稿。")
    others = await _application_lines(ctx, mine)
    lines += [f"您的{TITLE}申请：", *others] if others else []
    return "\n".join(x for x in [*lines, A.closes_text(ctx.state), "请选择："] if x)


async def _start_options(ctx: Ctx) -> list[F.Option]:
    mine = await A.mine(ctx)
    draft = next((a for a in mine if a.status == "draft"), None)
    applied = {a.major_code for a in mine if a.status != "draft"}
    left = [m for m in await _eligible_majors(ctx) if m[0] not in applied]
    opts: list[F.Option] = ([("continue", "继续填写草稿"), ("restart", "放弃草稿，重新申请")] if _has_work(draft)
                            else [("new", "新的申请（其他专业）" if mine else "申请")] if left else [])
    for a in mine:
        if a.status == "submitted":
            opts.append((f"edit:{a.id}", f"查看或修改第{a.id}号（待审核）"))
        elif a.status == "rejected":
            opts.append((f"redo:{a.id}", f"重新申请：修改第{a.id}号后再次提交（未通过）"))
    return opts or [("new", "申请")]  # an empty draft and nothing left: the notice step says why


def _resume(ctx: Ctx, value: Any = None) -> str:
    """The first thing the application lacks, or the review."""
    st: ThesisState = ctx.state
    if st.editing:
        st.editing = False
        return "review"
    if value == "continue":
        st.lead = "接着填写上次的草稿。"
    app, d = A.work(ctx), _details(ctx)
    if not app.major_code:
        return "major"
    if not d.scores_confirmed:
        return "scores"
    if st.majors and _extra_labels_cached(ctx) and not d.extra_option:
        return "extra"
    if _needs_diploma(ctx) and first_missing(_diploma(app) or EvidenceData(th.DIPLOMA)):
        return "diploma"
    return "review"


def _extra_labels_cached(ctx: Ctx) -> list[str]:
    m = _major(ctx)
    return list(m[3:]) if m else []


async def _start_check(ctx: Ctx, choice: str) -> str:
    choice = await A.start_check(ctx, choice)
    ctx.state.majors = await _eligible_majors(ctx)
    return choice


def _notice_prompt(ctx: Ctx) -> str:
    return join(f"【{TITLE}｜考生须知】\n{ctx.state.notice or DEFAULT_NOTICE}", A.closes_text(ctx.state),
                "请仔细阅读，回复“我已知晓”继续申请。")


async def _eligible_majors(ctx: Ctx) -> list[list[str]]:
    """The candidate's majors with a thesis course, no open application of another copy, and the
    thesis not yet passed: [code, name, level, *extra option labels]."""
    enrolled = await q.candidate_majors(ctx.db, ctx.user.candidate_id, active=ctx.user.admission_number)
    facts = await th.majors_of(ctx.db, [e.major_code for e in enrolled])
    mine = await A.mine(ctx)
    current = ctx.state.app.id if ctx.state.app else None
    taken = {a.major_code for a in mine if a.id != current and a.status in ("draft", "submitted", "approved")}
    passed = {r.course_code for r in await q.candidate_results(ctx.db, ctx.user.candidate_id, now=ctx.now) if r.passed}
    out = []
    for e in enrolled:
        f = facts.get(e.major_code)
        if f is None or not f.thesis_courses or e.major_code in taken or passed & set(f.thesis_courses):
            continue
        out.append([f.code, f.name, f.level, *f.extra_labels])
    return out


async def _notice_check(ctx: Ctx, value: str) -> str:
    app = await A.open_draft(ctx)
    st: ThesisState = ctx.state
    st.majors = await _eligible_majors(ctx)
    if not st.majors:
        if not _has_work(app):
            await apps.discard_draft(ctx.db, app.id, candidate_id=ctx.user.candidate_id)
        raise EndFlow(NOTHING_TO_APPLY)
    if len(st.majors) == 1 and not app.major_code:
        await _choose_major(ctx, st.majors[0][0])
    return value


async def _choose_major(ctx: Ctx, code: str) -> None:
    app = A.work(ctx)
    if app.major_code == code and app.items:
        return
    facts = (await th.majors_of(ctx.db, [code]))[code]
    kept = app.items[0].evidences if app.items else []  # the diploma stays when the major changes
    app.major_code = code
    app.items = [ItemData(facts.thesis_courses[0], evidences=kept)]
    app.details = {}  # the scores and 加考 of another major are confirmed again
    await A.remember_names(ctx)
    await A.persist(ctx)


async def _major_options(ctx: Ctx) -> list[F.Option]:
    if not ctx.state.majors:
        ctx.state.majors = await _eligible_majors(ctx)
    return [(m[0], major_name(m)) for m in ctx.state.majors]


async def _major_check(ctx: Ctx, code: str) -> str:
    await _choose_major(ctx, code)
    return code


# --- the score list, 加考选项 ------------------------------------------------------------------------


def _row_line(n: int, r: q.PlanRow) -> str:
    result = score_label(r.score, r.grade) or r.status
    when = f"{r.passed_on:%Y年%m月}" if r.passed_on else "-"
    note = r.status if r.status not in ("已通过", result) else ""  # 免考 once, not as result and note
    return f"{n}. {r.course_code} {r.course_name}｜{r.course_kind}｜{result}｜{r.credits}学分｜{when}" + (
        f"｜{note}" if note else "")


async def _scores_prompt(ctx: Ctx) -> str:
    m = _major(ctx)
    view = await q.plan(ctx.db, ctx.user.candidate_id, A.work(ctx).major_code or "", now=ctx.now)
    lines = [ctx.state.take_lead(), f"【{TITLE}｜成绩列表】专业：{major_name(m) if m else A.work(ctx).major_code}"]
    if view is not None:
        passed = [r for r in view.rows if r.passed]
        lines += [_row_line(n, r) for n, r in enumerate(passed, 1)] or ["（还没有合格成绩）"]
        open_ = [r for r in view.rows if not r.passed and r.course_kind != th.THESIS_COURSE_KIND]
        if open_:
            lines.append("尚未通过：" + "、".join(f"{r.course_code} {r.course_name}" for r in open_))
    lines.append("请核对以上成绩（课程｜类型｜成绩｜学分｜通过时间）：")
    return "\n".join(x for x in lines if x)


async def _scores_check(ctx: Ctx, value: str) -> str:
    if value == "wrong":
        raise EndFlow("成绩有误的，请先回复“成绩补登”登记，或拨打技术咨询电话 400-0960-990 核对。\n"
                      f"已填写的内容都保存了，成绩更正后回复“{KEYWORD}”接着办理。{A.closes_text(ctx.state)}")
    await _set(ctx, scores_confirmed=True)
    return value


async def _extra_prompt(ctx: Ctx) -> str:
    return join(ctx.state.take_lead(), f"【{TITLE}｜加考选项】本专业对部分前置学历有加考要求，请选择符合您情况的一项：")


async def _extra_options(ctx: Ctx) -> list[F.Option]:
    """Each option once, with where its courses stand: "非政治类专科毕业…（行政法学 未通过、…）"."""
    facts = await _facts(ctx)
    if facts is None:
        return [(label, label) for label in _extra_labels_cached(ctx)]
    listed = facts.rules.get("extra_exam_options") or ()
    names = await apps.course_names(ctx.db, {str(c) for o in listed for c in o.get("courses") or ()})
    passed = {r.course_code for r in await q.candidate_results(ctx.db, ctx.user.candidate_id, now=ctx.now) if r.passed}
    out: list[F.Option] = []
    for o in listed:
        codes = [str(c) for c in o.get("courses") or ()]
        need = "、".join(f"{names.get(c, c)} {'已通过' if c in passed else '未通过'}" for c in codes)
        label = str(o.get("label", ""))
        out.append((label, f"{label}（{need or '无需加考'}）"))
    return out


async def _extra_check(ctx: Ctx, label: str) -> str:
    await _set(ctx, extra_option=label)
    return label


# --- the 前置学历毕业证书 ---------------------------------------------------------------------------


def _diploma_args(ctx: Ctx) -> EvidenceState:
    st: ThesisState = ctx.state
    ev = _diploma(A.work(ctx)) or EvidenceData(th.DIPLOMA)
    complete = first_missing(ev) is None
    lead = st.take_lead()
    types = [t for t in st.types if t.code == th.DIPLOMA]  # its type is fixed: not offered in 修改
    return EvidenceState(ev=ev, header=f"【{TITLE}｜前置学历毕业证书】", lead=lead, types=types,
                         born=st.born, edit=complete, listed=False)


async def _diploma_progress(ctx: Ctx, child: EvidenceState) -> None:
    app = A.work(ctx)
    if app.items:
        app.items[0].evidences = [child.ev]
        await A.persist(ctx)


# --- the review ------------------------------------------------------------------------------------


async def _review_args(ctx: Ctx) -> ReviewState:
    st: ThesisState = ctx.state
    st.editing = False  # back here (also by 返回 from a 修改 N): nothing is being changed
    if not st.majors:
        st.majors = await _eligible_majors(ctx)
    app, d, m = A.work(ctx), _details(ctx), _major(ctx)
    lines = [Line(f"专业：{major_name(m)}" if m else f"专业：{app.major_code or '（未选）'}",
                  "major" if len(st.majors) > 1 else ""),
             Line("成绩列表：" + ("已核对" if d.scores_confirmed else "未核对"), "scores")]
    if _extra_labels_cached(ctx):
        lines.append(Line(f"加考选项：{d.extra_option or '（未选）'}", "extra"))
    if _needs_diploma(ctx):
        ev = _diploma(app)
        lines.append(Line("前置学历毕业证书：" + (A.evidence_line(ev, st) if ev else "（未上传）"), "diploma"))
    return await A.review_state(ctx, st, TITLE, lines)


async def _reviewed(ctx: Ctx, picked: Picked) -> str:
    if picked.action == "submit":
        await A.submit(ctx, "论文申请", AFTER)
        return END
    if picked.action == "leave":
        raise EndFlow(_left_note(ctx.state) or "好的。")
    ctx.state.editing = picked.target != "major"  # a new major goes through its scores again
    return picked.target


def _major_go(ctx: Ctx, value: Any) -> str:
    ctx.state.editing = False
    return _resume(ctx)


async def _begin(ctx: Ctx) -> Optional[str]:
    """The window check; inside it, when every application is decided and no major is left to
    apply in, just the applications (预审结果, 指导教师) instead of a choice with nothing to do."""
    closed = await A.begin(ctx, kind=KIND, keyword=KEYWORD, noun="申请", closed_lines=_closed_lines)
    if closed is not None:
        return closed
    mine = await A.mine(ctx)
    if not mine and not await _eligible_majors(ctx):
        return NOTHING_TO_APPLY  # said before the 考生须知, not after it
    if mine and all(a.status == "approved" for a in mine) and not await _eligible_majors(ctx):
        return "\n".join([f"【{TITLE}】您的申请：", *await _application_lines(ctx, mine)])
    return None


THESIS = Flow(
    name=KIND, title=TITLE, state=ThesisState, confirm=False, left_note=_left_note, submit=A.finish,
    begin=_begin,
    steps=[
        Step("start", "办理方式", F.Choice(), _start_prompt, options=_start_options,
             when=lambda ctx: ctx.state.existing, check=_start_check,
             go={"continue": _resume, "new": "notice", "restart": "notice", "*": "review"}),
        Step("notice", "考生须知", F.Acknowledge(), _notice_prompt, retry=F.ACK_RETRY,
             check=_notice_check, go=_resume),
        Step("major", "专业", F.Choice(), lambda ctx: join(ctx.state.take_lead(), f"【{TITLE}｜专业】请选择申请论文的专业："),
             options=_major_options, check=_major_check, go=_major_go),
        Step("scores", "成绩列表", F.Choice(options=[("ok", "成绩无误，下一步"), ("wrong", "成绩有误")]), _scores_prompt,
             retry="请回复1（成绩无误，下一步）或2（成绩有误）。", check=_scores_check, go=_resume),
        Step("extra", "加考选项", F.Choice(), _extra_prompt, options=_extra_options, check=_extra_check, go=_resume),
        Call("diploma", EVIDENCE, args=_diploma_args, progress=_diploma_progress, go=_resume),
        Call("review", REVIEW, args=_review_args, go=_reviewed, back_here=True),
    ],
)


def register(router: Any) -> None:
    router.add_flow(THESIS)


__all__ = ["THESIS", "register", "result_lines"]
