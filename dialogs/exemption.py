"""申请免考 (FLOWS 9-14): 考生须知, major, courses, the evidences of each course with photos, the
review, submission for review. The route is the table below: `_resume` sends a new or continued
application to the first thing it lacks; the `evidences` loop runs the evidence components for
each course still lacking evidence; the review calls back into one evidence to add, change,
replace photos or delete, and returns. Every answer is saved in the draft as it is given."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Optional

from dialogs import fields as F
from dialogs.components import application as A
from dialogs.components.contact import CONTACT_UPDATE
from dialogs.components.evidence import EVIDENCE, EVIDENCES, EvidencesState, EvidenceState, first_missing
from dialogs.components.review import REVIEW, Line, Picked, ReviewState, options
from dialogs.engine import END, Call, Ctx, EndFlow, Flow, Loop, Step, join
from dialogs.fields import Invalid
from storage import applications as apps
from storage import queries as q
from storage.applications import EvidenceData, ItemData
from storage.outbox import KIND_KEYWORDS

KIND = "exemption"
KEYWORD = KIND_KEYWORDS[KIND]  # "免考": what pushes and notes tell the candidate to reply
TITLE = "申请免考"
DEFAULT_NOTICE = (
    "一、申请免考的课程须为本人所报考专业考试计划中的课程，已通过、已免考或正在审核的课程不能再申请。\n"
    "二、每门课程至少提供一份凭证；使用毕业证书的，还须提供教育部学历证书电子注册备案表或中国高等教育学历认证报告。\n"
    "三、凭证照片须为JPG或PNG格式，清晰完整、文字朝上，每张不超过1MB（过大的照片会自动压缩）。\n"
    "四、请如实填写，提供虚假材料的，免考无效。"
)
NO_COURSES = ("{major}中没有可以申请免考的课程（已通过、已免考、正在审核的课程和毕业论文不能申请）。"
              "\n回复“考试计划”可以查看各门课程的情况。")
AFTER = f"审核结果会通过微信通知您；回复“我的申请”可以查看，审核前需要修改请回复“{KEYWORD}”。"


@dataclass
class ExemptionState(A.AppState):
    ci: int = 0  # the course an evidence is added to or changed from the review
    ei: int = 0  # that evidence (== len(evidences): a new one)
    action: str = ""  # what the review asked: add / edit / photos / delete
    within: Optional[int] = None  # 修改 N: the evidences to pick from are course N's


# --- begin, the first choice, 考生须知, major, courses -----------------------------------------------


async def _closed_lines(ctx: Ctx, mine: list[apps.ApplicationData]) -> list[str]:
    return A.closed_list("您的免考申请：", await _application_lines(ctx, mine), mine, again="重新提交")


async def _application_lines(ctx: Ctx, mine: list[apps.ApplicationData]) -> list[str]:
    names = await apps.course_names(ctx.db, {i.course_code for a in mine for i in a.items})
    lines = []
    for a in (a for a in mine if a.status != "draft"):
        lines += [A.status_line(a), "　课程：" + ("、".join(names.get(i.course_code, i.course_code) for i in a.items) or "无")]
    return lines


async def _start_prompt(ctx: Ctx) -> str:
    mine = await A.mine(ctx)
    lines = [f"【{TITLE}】"]
    draft = next((a for a in mine if a.status == "draft"), None)
    if draft is not None:
        lines.append(f"您有一份还没提交的草稿：{len(draft.items)}门课程，照片{draft.photo_count()}张。")
    others = await _application_lines(ctx, mine)
    lines += ["您的免考申请：", *others] if others else []
    return "\n".join(x for x in [*lines, A.closes_text(ctx.state), "请选择："] if x)


async def _start_options(ctx: Ctx) -> list[F.Option]:
    return A.start_options(await A.mine(ctx), draft_words=("继续填写草稿", "放弃草稿，重新开始"), new="新的免考申请",
                           edit_label="查看或修改第{id}号（待审核）")


def _resume(ctx: Ctx, value: Any = None) -> str:
    """Where an application stands: the first thing it lacks, or the review."""
    app = A.work(ctx)
    if value == "continue":
        evidences = sum(len(i.evidences) for i in app.items)
        ctx.state.lead = f"接着填写上次的草稿（已选{len(app.items)}门课程，{evidences}份凭证，照片{app.photo_count()}张）。"
    return "major" if not app.major_code else "courses" if not app.items else "evidences"


def _notice_prompt(ctx: Ctx) -> str:
    return join(f"【{TITLE}｜考生须知】\n{ctx.state.notice or DEFAULT_NOTICE}", A.closes_text(ctx.state),
                "请仔细阅读，回复“我已知晓”继续申请。")


async def _majors(ctx: Ctx) -> list[q.Enrolment]:
    admission = A.work(ctx).admission_number
    every = await q.candidate_majors(ctx.db, ctx.user.candidate_id, active=admission)
    return [e for e in every if e.admission_number in (admission, None)] or every


async def _eligible(ctx: Ctx, major: str) -> list[apps.CourseChoice]:
    return await apps.exemption_courses(ctx.db, ctx.user.candidate_id, major, exclude_application_id=A.work(ctx).id)


async def _notice_check(ctx: Ctx, value: str) -> str:
    app = await A.open_draft(ctx)
    majors = await _majors(ctx)
    if not majors or (len(majors) == 1 and not app.major_code
                      and not any(c.eligible for c in await _eligible(ctx, majors[0].major_code))):
        if not app.items:
            await apps.discard_draft(ctx.db, app.id, candidate_id=ctx.user.candidate_id)
        raise EndFlow(NO_COURSES.format(major=majors[0].major_name) if majors else
                      "没有查到您报考的专业，暂时不能申请免考。\n如有疑问，请拨打技术咨询电话 400-0960-990。")
    if len(majors) == 1 and not app.major_code:
        app.major_code = majors[0].major_code
        await A.persist(ctx)
    return value


async def _major_options(ctx: Ctx) -> list[F.Option]:
    return [(e.major_code, f"{e.major_code} {e.major_name}") for e in await _majors(ctx)]


async def _major_check(ctx: Ctx, major: str) -> str:
    if not any(c.eligible for c in await _eligible(ctx, major)):
        name = dict(await _major_options(ctx)).get(major, major)
        raise Invalid(NO_COURSES.format(major=name) + "\n请选择其他专业，或回复“取消”。")
    app = A.work(ctx)
    if app.major_code != major:
        app.major_code, app.items = major, []  # another plan: courses chosen for the old one go
        await A.persist(ctx)
    return major


async def _course_options(ctx: Ctx) -> list[F.Option]:
    return [(c.code, f"{c.code} {c.name}") for c in await _eligible(ctx, A.work(ctx).major_code or "") if c.eligible]


async def _courses_prompt(ctx: Ctx) -> str:
    app = A.work(ctx)
    blocked = [c for c in await _eligible(ctx, app.major_code or "") if not c.eligible]
    lines = [ctx.state.take_lead()]
    if app.items:
        lines.append(f"现在选的是：{A.names_of((i.course_code for i in app.items), ctx.state)}。\n"
                     "请重新选择全部要申请的课程，去掉的课程连同凭证一起删除。")
    if len(blocked) > 6:  # a short line on a phone: how many and why, the plan has the rest
        why = {c.why_not for c in blocked}
        lines.append(f"另有{len(blocked)}门课程不能选择（{'、'.join(sorted(why))}），回复“考试计划”可以查看。")
    elif blocked:
        lines.append("不能选择：" + "、".join(f"{c.name}（{c.why_not}）" for c in blocked))
    lines.append("请选择要申请免考的课程，可以选多门（如 1,2）：")
    return "\n".join(x for x in lines if x)


async def _courses_check(ctx: Ctx, codes: list[str]) -> list[str]:
    app = A.work(ctx)
    old = {i.course_code: i for i in app.items}
    app.items = [old.get(code) or ItemData(code) for code in codes]
    await A.remember_names(ctx)
    await A.persist(ctx)
    return codes


# --- the evidences of each course (a loop over the courses still lacking them) -----------------------


def _lacking(ctx: Ctx, item: ItemData) -> bool:
    return (not item.evidences or any(first_missing(e) for e in item.evidences)
            or apps.companion_problem(item.evidences, ctx.state.type_map) is not None)


async def _courses_to_fill(ctx: Ctx) -> list[int]:
    return [ci for ci, item in enumerate(A.work(ctx).items) if _lacking(ctx, item)]


def _elsewhere(ctx: Ctx, ci: int, ei: int) -> list[int]:
    return [p for c, item in enumerate(A.work(ctx).items) for e, ev in enumerate(item.evidences)
            if (c, e) != (ci, ei) for p in ev.photo_ids]


def _evidences_args(ctx: Ctx, ci: int, add: bool = False) -> EvidencesState:
    st, app = ctx.state, A.work(ctx)
    st.ci = ci
    item, n = app.items[ci], len(app.items)
    later = next((i for c, i in enumerate(app.items) if c != ci and _lacking(ctx, i)), None)
    return EvidencesState(
        title=f"{item.course_code} {st.name(item.course_code)}", position=f"第{ci + 1}/{n}门 " if n > 1 else "",
        evidences=list(item.evidences), types=st.types, elsewhere=_elsewhere(ctx, ci, -1), born=st.born,
        on_label=f"下一门：{later.course_code} {st.name(later.course_code)}" if later else "填好了，查看汇总",
        listed=not any(i.evidences for i in app.items), lead=st.take_lead(), add=add)


async def _course_progress(ctx: Ctx, child: EvidencesState) -> None:
    A.work(ctx).items[ctx.state.ci].evidences = list(child.evidences)
    await A.persist(ctx)


async def _keep_course(ctx: Ctx, ci: int, evidences: list[EvidenceData]) -> None:
    A.work(ctx).items[ci].evidences = list(evidences)


# --- one evidence from the review: add, change, photos, delete ----------------------------------------


def _evidence_args(ctx: Ctx) -> EvidenceState:
    st, app = ctx.state, A.work(ctx)
    item = app.items[st.ci]
    ev = item.evidences[st.ei] if st.ei < len(item.evidences) else EvidenceData("")
    n = len(app.items)
    return EvidenceState(ev=ev, header=f"【{f'第{st.ci + 1}/{n}门 ' if n > 1 else ''}{item.course_code} "
                         f"{st.name(item.course_code)}｜第{st.ei + 1}份凭证】", types=st.types, born=st.born,
                         edit=st.action == "edit", only="photos" if st.action == "photos" else "",
                         listed=False, elsewhere=_elsewhere(ctx, st.ci, st.ei))


async def _evidence_progress(ctx: Ctx, child: EvidenceState) -> None:
    st = ctx.state
    if child.ev.type_code:
        A.work(ctx).items[st.ci].evidences[st.ei:st.ei + 1] = [child.ev]
        await A.persist(ctx)


def _evidence_label(ctx: Ctx, ci: int, ei: int) -> str:
    item = A.work(ctx).items[ci]
    e = item.evidences[ei]
    return (f"{ctx.state.name(item.course_code)}｜{ctx.state.type_name(e.type_code)}"
            + (f" {e.number}" if e.number else "") + f"（照片{len(e.photo_ids)}张）")


async def _pick_options(ctx: Ctx) -> list[F.Option]:
    app = A.work(ctx)
    if ctx.state.action == "add":
        return [(f"{ci}:{len(i.evidences)}", f"{i.course_code} {ctx.state.name(i.course_code)}")
                for ci, i in enumerate(app.items)]
    return [(f"{ci}:{ei}", _evidence_label(ctx, ci, ei)) for ci, i in enumerate(app.items)
            for ei in range(len(i.evidences)) if ctx.state.within in (None, ci)]


def _pick_prompt(ctx: Ctx) -> str:
    return "给哪门课程新增凭证？" if ctx.state.action == "add" else "请选择凭证："


def _point(ctx: Ctx, value: str) -> str:
    ctx.state.ci, ctx.state.ei = (int(x) for x in value.split(":"))
    return {"delete": "delete", "add": "add"}.get(ctx.state.action, "evidence")


def _delete_prompt(ctx: Ctx) -> str:
    item = A.work(ctx).items[ctx.state.ci]
    name = ctx.state.type_name(item.evidences[ctx.state.ei].type_code)
    return f"确定删除「{ctx.state.name(item.course_code)}」的凭证「{name}」吗？照片也一起删除。\n请回复“是”或“否”。"


async def _delete_check(ctx: Ctx, yes: bool) -> bool:
    if yes:
        del A.work(ctx).items[ctx.state.ci].evidences[ctx.state.ei]
        await A.persist(ctx)
    return yes


# --- the review -------------------------------------------------------------------------------------


async def _review_args(ctx: Ctx) -> ReviewState:
    st, app = ctx.state, A.work(ctx)
    await A.remember_names(ctx)
    lines = []
    if app.major_code:
        lines.append(Line(f"专业：{dict(await _major_options(ctx)).get(app.major_code, app.major_code)}"))
    for ci, item in enumerate(app.items):
        subs = [Line(A.evidence_line(e, st), f"{ci}:{ei}") for ei, e in enumerate(item.evidences)]
        lines.append(Line(f"{item.course_code} {st.name(item.course_code)}", f"{ci}:*", subs))
        if not item.evidences:
            lines.append(Line("　（还没有凭证）"))
    evidences = sum(len(i.evidences) for i in app.items)
    tail = [f"共{len(app.items)}门课程，{evidences}份凭证，照片{app.photo_count()}张。"]
    problems = await apps.submission_problems(ctx.db, app, now=ctx.now)
    if problems:
        tail.append("还需补充：\n" + "\n".join(f"· {p}" for p in problems))
    if app.status == "submitted":
        tail.append("修改后需要再次提交；不提交的话，原申请不变，仍在审核中。")
    return ReviewState(head=[st.take_lead(), *A.head(st, TITLE)], lines=lines, tail=tail, options=options(
        app.status, ("add", "新增凭证"), ("edit", "修改凭证"), ("photos", "更换照片"), ("delete", "删除凭证"),
        ("courses", "修改课程"), ("contact", "更新手机号等联系方式")))


async def _reviewed(ctx: Ctx, picked: Picked) -> str:
    st, app = ctx.state, A.work(ctx)
    if picked.action == "submit":
        await A.submit(ctx, "免考申请", AFTER)
        return END
    if picked.action == "leave":
        A.leave(ctx)
    if picked.action in ("courses", "contact"):
        return picked.action
    st.action, st.within = picked.action, None
    if picked.action == "change":  # 修改 N (a course: one of its evidences) or 修改 N.M (that evidence)
        ci, _, ei = picked.target.partition(":")
        evidences = app.items[int(ci)].evidences
        st.action, st.within = ("edit" if evidences else "add"), int(ci)
        if ei != "*" or len(evidences) <= 1:
            return _point(ctx, picked.target if ei != "*" else f"{ci}:0")
        return "pick"
    every = [f"{ci}:{ei}" for ci, i in enumerate(app.items) for ei in range(len(i.evidences))]
    if picked.action == "add":
        return _point(ctx, f"0:{len(app.items[0].evidences)}") if len(app.items) == 1 else "pick"
    if not every:
        raise Invalid("还没有凭证，请先选择“新增凭证”。")
    return _point(ctx, every[0]) if len(every) == 1 else "pick"


EXEMPTION = Flow(
    name=KIND, title=TITLE, state=ExemptionState, confirm=False, left_note=A.left_note, submit=A.finish,
    begin=partial(A.begin, kind=KIND, keyword=KEYWORD, noun="申请", closed_lines=_closed_lines),
    steps=[
        Step("start", "办理方式", F.Choice(), _start_prompt, options=_start_options, when=lambda ctx: ctx.state.existing,
             check=A.start_check, go={"continue": _resume, "new": "notice", "restart": "notice", "*": "review"}),
        Step("notice", "考生须知", F.Acknowledge(), _notice_prompt, retry=F.ACK_RETRY,
             check=_notice_check, go=_resume),
        Step("major", "专业", F.Choice(), "请选择申请免考的专业：", options=_major_options, check=_major_check, go=_resume),
        Step("courses", "课程", F.MultiChoice(), _courses_prompt, options=_course_options, check=_courses_check,
             go=_resume),
        Loop("evidences", over=_courses_to_fill, body=EVIDENCES, args=_evidences_args, each=_keep_course,
             progress=_course_progress, go="review"),
        Call("review", REVIEW, args=_review_args, go=_reviewed),
        Step("pick", "凭证", F.Choice(), _pick_prompt, options=_pick_options, go=_point),
        Call("evidence", EVIDENCE, args=_evidence_args, progress=_evidence_progress, go="review"),
        Call("add", EVIDENCES, args=lambda ctx: _evidences_args(ctx, ctx.state.ci, add=True), progress=_course_progress,
             go="review"),
        Step("delete", "确认删除", F.YesNo(), _delete_prompt, check=_delete_check, go="review"),
        Call("contact", CONTACT_UPDATE, go=lambda ctx, done: setattr(ctx.state, "lead", done) or "review"),
    ],
)


def register(router: Any) -> None:
    router.add_flow(EXEMPTION)
