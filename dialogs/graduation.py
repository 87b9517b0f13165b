"""申请毕业 (FLOWS 20): 考生须知; personal information checked (the mobile current, updated through the
contact component, which returns here); the major; its qualifying results to confirm; the 加考选项;
a 情况说明 for each requirement still missing (the 毕业进度 rules, dialogs/progress.py); the 自我鉴定;
for 本科 majors the prior education (dialogs/components/prior_education.py; 专科 skips it); the
review with 修改 N; submission for review. 未通过 shows the reason and offers 重新申请 while the window
is open; 审核通过 brings the 毕业审定费 order (storage/graduation.py). "申请另一专业" is a new
application in a major without an open one (one per major: storage/graduation_rules.py).

The route is the table at the bottom: `_resume` sends an application to the first part it lacks,
every answer is saved in the draft as it is given, and a part changed from the review (修改 N)
returns to the review through `_resume` once nothing else is lacking.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from dialogs import fields as F
from dialogs.applications import score_label
from dialogs.components import application as A
from dialogs.components.contact import CONTACT_UPDATE
from dialogs.components.explanation import EXPLANATION, Explanation, Prose
from dialogs.components.prior_education import PRIOR_EDUCATION, PriorState
from dialogs.components.prior_education import first_missing as prior_missing
from dialogs.components.review import REVIEW, Line, Picked, ReviewState
from dialogs.engine import END, Call, Ctx, EndFlow, Flow, Loop, Step, join
from dialogs.fields import Invalid
from dialogs.queries import major_progress
from storage import accounts
from storage import applications as apps
from storage import graduation as G
from storage import graduation_rules as gr
from storage import queries as q
from storage.applications import ApplicationData
from storage.identifiers import mask_id_number, mask_mobile
from storage.vocab import SCORE_KINDS

KIND = G.KIND
KEYWORD = G.KEYWORD  # "申请毕业"
TITLE = "申请毕业"
DEFAULT_NOTICE = (
    "一、申请毕业须在本专业考试计划规定的课程全部合格、学分达到要求后办理；免考、转入、补登和您其他准考证号下的合格成绩一并计入。\n"
    "二、请核对个人信息，手机号码须为本人正在使用的号码。\n"
    "三、如有课程未合格但您认为符合毕业条件，请逐项写明情况说明。\n"
    "四、自我鉴定将打印在《毕业生登记表》上，请认真填写。\n"
    "五、本科（专升本）专业须提供前置学历毕业证书：2002年及以后毕业的另附教育部学历证书电子注册备案表，"
    "2002年以前毕业的另附中国高等教育学历认证报告。\n"
    "六、审核通过后须在规定时间内缴纳毕业审定费（回复“我的订单”）。"
)
AFTER = f"审核结果会通过微信通知您；回复“我的申请”可以查看，审核前需要修改请回复“{KEYWORD}”。"
WRONG_RESULTS = (f"成绩有误或缺少的，请先办理成绩补登（回复“成绩补登”）或拨打技术咨询电话 400-0960-990。\n"
                 f"已填写的内容都保存了，回复“{KEYWORD}”可以接着办理。")


@dataclass
class GraduationState(A.AppState):
    before: dict[str, str] = field(default_factory=dict)  # 情况说明 being written again: the old text


def _details(ctx: Ctx) -> G.GraduationDetails:
    return G.GraduationDetails.from_dict(A.work(ctx).details)


def _has_work(a: Optional[ApplicationData]) -> bool:
    return a is not None and bool(a.major_code or a.details)


def _left_note(st: Any) -> Optional[str]:
    if st is not None and st.app is not None and st.app.status == "draft" and _has_work(st.app):
        return f"已填写的内容都保存了，回复“{KEYWORD}”可以接着办理。{A.closes_text(st)}"
    return A.left_note(st)


# --- majors -------------------------------------------------------------------------------------------


async def _enrolments(ctx: Ctx) -> list[q.Enrolment]:
    return await q.candidate_majors(ctx.db, ctx.user.candidate_id, active=ctx.user.admission_number)


async def _available(ctx: Ctx, mine: Optional[list[ApplicationData]] = None) -> list[q.Enrolment]:
    """Majors this candidate may apply in now (a new application or the draft's own)."""
    mine = mine if mine is not None else await A.mine(ctx)
    working = ctx.state.app.id if ctx.state.app is not None else None
    draft = next((a for a in mine if a.status == "draft"), None)
    # The application being worked on (a draft, or one 待审核/未通过 reopened) keeps its own major.
    others = [a for a in mine if a.status != "draft" and a.id != working]
    out = []
    for e in await _enrolments(ctx):
        decision = gr.apply_decision(others, kind=KIND, major_code=e.major_code, window_open=True)
        if decision.action == "new" or (draft is not None and draft.major_code == e.major_code):
            out.append(e)
    return out


def _major_label(e: q.Enrolment) -> str:
    return f"{e.major_code} {e.major_name}" + ("" if e.level in e.major_name else f"（{e.level}）")


async def _major_name(ctx: Ctx, code: Optional[str]) -> str:
    info = await q.major(ctx.db, code) if code else None
    return f"{code} {info.name}" if info else (code or "")


# --- how applications read -------------------------------------------------------------------------


async def _application_lines(ctx: Ctx, mine: list[ApplicationData]) -> list[str]:
    lines = []
    for a in (a for a in mine if a.status != "draft"):
        lines += [A.status_line(a), f"　专业：{await _major_name(ctx, a.major_code)}"]
        order = G.GraduationDetails.from_dict(a.details).fee_order
        if a.status == "approved" and order:
            lines.append(f"　毕业审定费订单：{order}（回复“我的订单”查看和缴费）")
    return lines


async def _closed_lines(ctx: Ctx, mine: list[ApplicationData]) -> list[str]:
    return A.closed_list("您的毕业申请：", await _application_lines(ctx, mine), mine)


async def _begin(ctx: Ctx) -> Optional[str]:
    refused = await A.begin(ctx, kind=KIND, keyword=KEYWORD, noun="申请", closed_lines=_closed_lines)
    if refused is not None or not ctx.state.existing:
        return refused
    if not await _start_options(ctx):  # everything approved, no other major
        return "\n".join([f"【{TITLE}】", "您的毕业申请：", *await _application_lines(ctx, await A.mine(ctx))])
    return None


# --- the first choice, 考生须知 ---------------------------------------------------------------------------


async def _start_prompt(ctx: Ctx) -> str:
    mine = await A.mine(ctx)
    lines = [f"【{TITLE}】"]
    draft = next((a for a in mine if a.status == "draft"), None)
    if _has_work(draft):
        assert draft is not None
        lines.append("您有一份还没提交的毕业申请草稿" + (f"（{await _major_name(ctx, draft.major_code)}）。"
                                                  if draft.major_code else "。"))
    others = await _application_lines(ctx, mine)
    lines += ["您的毕业申请：", *others] if others else []
    return "\n".join(x for x in [*lines, A.closes_text(ctx.state), "请选择："] if x)


async def _start_options(ctx: Ctx) -> list[F.Option]:
    mine = await A.mine(ctx)
    draft = next((a for a in mine if a.status == "draft"), None)
    opts: list[F.Option] = []
    if _has_work(draft):
        opts += [("continue", "继续填写草稿"), ("restart", "放弃草稿，重新申请")]
    elif await _available(ctx, mine):
        opts.append(("new", "申请另一专业" if any(a.status != "draft" for a in mine) else "申请毕业"))
    for a in mine:
        if a.status == "submitted":
            opts.append((f"edit:{a.id}", f"查看或修改第{a.id}号（待审核）"))
        elif a.status == "rejected":
            opts.append((f"redo:{a.id}", f"重新申请：修改第{a.id}号后再次提交（未通过）"))
    return opts


def _notice_prompt(ctx: Ctx) -> str:
    return join(f"【{TITLE}｜考生须知】\n{ctx.state.notice or DEFAULT_NOTICE}", A.closes_text(ctx.state),
                "请仔细阅读，回复“我已知晓”继续申请。")


async def _notice_check(ctx: Ctx, value: str) -> str:
    app = await A.open_draft(ctx)
    available = await _available(ctx)
    if not available:
        if not _has_work(app):
            await apps.discard_draft(ctx.db, app.id, candidate_id=ctx.user.candidate_id)
        raise EndFlow("您报考的专业都已申请毕业（待审核或已通过），没有可以再申请的专业。\n回复“我的申请”查看。"
                      if await _enrolments(ctx) else
                      "没有查到您报考的专业，暂时不能申请毕业。\n如有疑问，请拨打技术咨询电话 400-0960-990。")
    if len(available) == 1 and not app.major_code:
        await _choose(ctx, available[0])
    return value


async def _resume(ctx: Ctx, value: Any = None) -> str:
    """The first part the application lacks, or the review."""
    app, d = A.work(ctx), _details(ctx)
    if value == "continue":
        ctx.state.lead = "接着填写上次的草稿。"
    if not d.profile_checked:
        return "profile"
    if not app.major_code:
        return "major"
    if not d.results_confirmed:
        return "results"
    info = await q.major(ctx.db, app.major_code)
    rules = info.graduation_rules if info else {}
    if rules.get("extra_exam_options") and d.extra_choice is None:
        return "extra"
    if await _unexplained(ctx):
        return "explain"
    if not d.self_assessment:
        return "assessment"
    if G.needs_prior(info.level if info else "", rules):
        diploma, companion = d.prior()
        if prior_missing(PriorState.of(diploma, companion)) is not None:
            return "prior"
    return "review"


# --- personal information ------------------------------------------------------------------------------


async def _profile_prompt(ctx: Ctx) -> str:
    info = await accounts.profile(ctx.db, ctx.user.candidate_id)
    mobile = info.get("mobile")
    lines = [ctx.state.take_lead(), f"【{TITLE}｜个人信息】",
             f"姓名：{info.get('name') or ''}",
             f"证件号码：{mask_id_number(info.get('id_number') or '')}",
             f"手机号码：{mask_mobile(mobile) if mobile else '（未填）'}",
             f"通讯地址：{info.get('mailing_address') or '（未填）'}",
             "审核结果和缴费通知会发到这个手机号码，请确认它是您正在使用的号码。"]
    return join(*lines)


async def _profile_check(ctx: Ctx, choice: str) -> str:
    if choice == "ok":
        info = await accounts.profile(ctx.db, ctx.user.candidate_id)
        if not info.get("mobile"):
            raise Invalid("还没有手机号码，请回复2填写。")
        d = _details(ctx)
        d.profile_checked = True
        await A.save_details(ctx, d)
    return choice


async def _contact_done(ctx: Ctx, done: Any) -> str:
    ctx.state.lead = str(done or "")
    return "profile"


# --- the major and its results --------------------------------------------------------------------------


async def _choose(ctx: Ctx, e: q.Enrolment) -> None:
    app, d = A.work(ctx), _details(ctx)
    if app.major_code != e.major_code:
        app.major_code = e.major_code
        d.level, d.results, d.results_confirmed = e.level, [], False
        d.extra_choice, d.missing, d.explanations = None, [], {}
    await A.save_details(ctx, d)


async def _major_options(ctx: Ctx) -> list[F.Option]:
    return [(e.major_code, _major_label(e)) for e in await _available(ctx)]


async def _major_check(ctx: Ctx, code: str) -> str:
    e = next((e for e in await _available(ctx) if e.major_code == code), None)
    if e is None:
        raise Invalid("这个专业已有毕业申请，请选择其他专业。")
    await _choose(ctx, e)
    ctx.state.lead = f"申请毕业的专业：{_major_label(e)}。"
    return code


async def _result_lines(ctx: Ctx) -> list[G.ResultLine]:
    """The passed courses of the major's plan, each with the record that passed it (under any of
    the candidate's 准考证号)."""
    mp = await major_progress(ctx.db, ctx.user.candidate_id, A.work(ctx).major_code or "", now=ctx.now)
    out = []
    for e in mp.entries:
        passed = [r for r in mp.results if r.course_code == e.course_code and r.passed]
        if not passed:
            continue
        r = min(passed, key=lambda r: (str(r.passed_on or ""), r.sitting_code))
        when = f"{r.passed_on:%Y-%m}" if r.passed_on else (f"{r.sitting_code[:4]}-{r.sitting_code[4:]}"
                                                           if len(r.sitting_code) == 6 else "")
        out.append(G.ResultLine(e.course_code, e.course_name, e.course_kind, score_label(r.score, r.grade),
                                e.credits, when, "" if r.kind == "exam" else SCORE_KINDS.get(r.kind, r.kind),
                                r.admission_number))
    return out


def _result_text(r: G.ResultLine, admission: str) -> str:
    parts = [f"{r.course_code} {r.course_name}", r.course_kind, r.result or "—", f"{r.credits}学分",
             f"{apps.month_label(r.passed)}通过" if r.passed else "", r.note]
    if r.admission_number and r.admission_number != admission:
        parts.append(f"准考证号{r.admission_number}")
    return "｜".join(p for p in parts if p)


async def _major_admission(ctx: Ctx) -> str:
    code = A.work(ctx).major_code
    e = next((e for e in await _enrolments(ctx) if e.major_code == code), None)
    return (e.admission_number if e else None) or A.work(ctx).admission_number


async def _results_prompt(ctx: Ctx) -> str:
    rows = await _result_lines(ctx)
    admission = await _major_admission(ctx)
    lines = [ctx.state.take_lead(), f"【{TITLE}｜合格成绩】{await _major_name(ctx, A.work(ctx).major_code)}",
             f"准考证号：{admission}"]
    lines += [f"{n}. {_result_text(r, admission)}" for n, r in enumerate(rows, 1)] or ["本专业还没有合格成绩。"]
    lines.append(f"共{len(rows)}门，{sum(r.credits for r in rows)}学分（含其他准考证号下的成绩）。请核对：")
    return join(*lines)


async def _results_check(ctx: Ctx, choice: str) -> str:
    if choice == "wrong":
        raise EndFlow(WRONG_RESULTS)
    d = _details(ctx)
    d.results, d.results_confirmed = await _result_lines(ctx), True
    await A.save_details(ctx, d)
    return choice


# --- 加考选项 and 情况说明 ---------------------------------------------------------------------------------


async def _extra_options(ctx: Ctx) -> list[F.Option]:
    mp = await major_progress(ctx.db, ctx.user.candidate_id, A.work(ctx).major_code or "", now=ctx.now)
    out = []
    for o in mp.progress.extra_options:
        courses = "、".join(f"{name}{'（已通过）' if ok else '（未通过）'}" for _, name, ok in o.courses)
        out.append((o.label, f"{o.label}" + (f"：{courses}" if courses else "")))
    return out


async def _extra_check(ctx: Ctx, label: str) -> str:
    d = _details(ctx)
    d.extra_choice = label
    await A.save_details(ctx, d)
    return label


async def _missing(ctx: Ctx) -> list[gr.MissingItem]:
    """What a 情况说明 is needed for, by the 毕业进度 rules; kept with the application (and
    explanations of anything no longer missing dropped)."""
    d = _details(ctx)
    mp = await major_progress(ctx.db, ctx.user.candidate_id, A.work(ctx).major_code or "", now=ctx.now)
    items = gr.missing_items(mp.progress, d.extra_choice)
    wanted = [{"key": i.key, "label": i.label} for i in items]
    kept = {k: v for k, v in d.explanations.items() if k in {i.key for i in items}}
    if wanted != d.missing or kept != d.explanations:
        d.missing, d.explanations = wanted, kept
        await A.save_details(ctx, d)
    return items


async def _unexplained(ctx: Ctx) -> list[str]:
    d = _details(ctx)
    return [i.key for i in await _missing(ctx)
            if gr.text_length(d.explanations.get(i.key, "")) < gr.EXPLANATION_MIN_CHARS]


def _explain_args(ctx: Ctx, key: str) -> Explanation:
    d = _details(ctx)
    keys = [m["key"] for m in d.missing]
    label = next((m["label"] for m in d.missing if m["key"] == key), key)
    before = ctx.state.before.pop(key, "")
    return Explanation(key=key, label=label, position=f"第{keys.index(key) + 1}/{len(keys)}项" if key in keys else "",
                       before=before, lead=ctx.state.take_lead())


async def _keep_explanation(ctx: Ctx, key: str, done: Explanation) -> None:
    d = _details(ctx)
    d.explanations[key] = done.text
    await A.save_details(ctx, d)


# --- 自我鉴定 ----------------------------------------------------------------------------------------------


async def _minimum(ctx: Ctx) -> int:
    info = await q.major(ctx.db, A.work(ctx).major_code or "")
    return G.self_assessment_min(info.graduation_rules if info else {})


async def _assessment_prompt(ctx: Ctx) -> str:
    d = _details(ctx)
    now = f"现在写的是（{gr.text_length(d.self_assessment)}字）：{d.self_assessment}" if d.self_assessment else ""
    return join(ctx.state.take_lead(), f"【{TITLE}｜自我鉴定】", now,
                f"请填写自我鉴定，不少于{await _minimum(ctx)}字（最多{gr.SELF_ASSESSMENT_MAX_CHARS}字）。"
                "自我鉴定将打印在《毕业生登记表》上，请认真填写：")


async def _assessment_check(ctx: Ctx, text: str) -> str:
    problem = gr.self_assessment_problem(text, await _minimum(ctx))
    if problem:
        raise Invalid(problem + "请修改后重新发送完整的自我鉴定。")
    d = _details(ctx)
    d.self_assessment = text.strip()
    await A.save_details(ctx, d)
    return text


# --- 前置学历 --------------------------------------------------------------------------------------------


def _prior_args(ctx: Ctx) -> PriorState:
    d = _details(ctx)
    diploma, companion = d.prior()
    st = PriorState.of(diploma, companion, born=ctx.state.born, lead=ctx.state.take_lead(),
                       header=f"【{TITLE}｜前置学历】")
    st.edit = prior_missing(st) is None
    return st


async def _prior_progress(ctx: Ctx, child: PriorState) -> None:
    d = _details(ctx)
    diploma, companion = child.diploma(), child.companion()
    d.diploma = {"number": diploma.number, "graduated": diploma.graduated, "province": diploma.province,
                 "photo_ids": list(diploma.photo_ids)}
    d.companion = ({"kind": companion.kind, "number": companion.number, "photo_ids": list(companion.photo_ids)}
                   if companion else None)
    if d.to_dict() != A.work(ctx).details:
        await A.save_details(ctx, d)


# --- the review --------------------------------------------------------------------------------------------


async def _review_args(ctx: Ctx) -> ReviewState:
    st, app, d = ctx.state, A.work(ctx), _details(ctx)
    info = await q.major(ctx.db, app.major_code or "")
    rules = info.graduation_rules if info else {}
    profile = await accounts.profile(ctx.db, ctx.user.candidate_id)
    mobile = profile.get("mobile")
    admission = await _major_admission(ctx)
    lines = [Line(f"个人信息：{profile.get('name') or ''}｜手机 {mask_mobile(mobile) if mobile else '（未填）'}", "profile"),
             Line(f"专业：{await _major_name(ctx, app.major_code)}｜准考证号 {admission}", "major"),
             Line(f"合格成绩：共{len(d.results)}门，{sum(r.credits for r in d.results)}学分", "results",
                  [Line(_result_text(r, admission), "results") for r in d.results[:8]]
                  + ([Line(f"……另{len(d.results) - 8}门", "results")] if len(d.results) > 8 else []))]
    if rules.get("extra_exam_options"):
        lines.append(Line(f"加考选项：{d.extra_choice or '（未选）'}", "extra"))
    if d.missing:
        lines.append(Line(f"情况说明：共{len(d.missing)}项", "explain",
                          [Line(f"{m['label']}：{d.explanations.get(m['key'], '（未填）')}", f"explain:{m['key']}")
                           for m in d.missing]))
    lines.append(Line(f"自我鉴定：{gr.text_length(d.self_assessment)}字（打印在毕业生登记表上）", "assessment"))
    if G.needs_prior(info.level if info else "", rules):
        diploma, companion = d.prior()
        subs = []
        if diploma:
            subs.append(Line(f"毕业证书：编号{diploma.number}｜{apps.month_label(diploma.graduated)}｜{diploma.province}"
                             f"｜照片{len(diploma.photo_ids)}张", "prior"))
        if companion:
            what = "在线验证码" if companion.kind == gr.REGISTRATION_FORM else "报告编号"
            subs.append(Line(f"{gr.COMPANION_NAMES[companion.kind]}：{what}{companion.number}"
                             f"｜照片{len(companion.photo_ids)}张", "prior"))
        lines.append(Line("前置学历" + ("" if subs else "：（未填）"), "prior", subs))
    return await A.review_state(ctx, st, TITLE, lines)


async def _reviewed(ctx: Ctx, picked: Picked) -> str:
    if picked.action == "submit":
        await A.submit(ctx, "毕业申请", AFTER)
        return END
    if picked.action == "leave":
        raise EndFlow(_left_note(ctx.state) or "好的。")
    target = picked.target
    d = _details(ctx)
    if target.startswith("explain"):
        keys = [target.partition(":")[2]] if ":" in target else list(d.explanations)
        for k in keys:  # written again: the old text is shown while writing
            ctx.state.before[k] = d.explanations.pop(k, "")
        await A.save_details(ctx, d)
        return "explain"
    if target == "results":
        d.results_confirmed = False
        await A.save_details(ctx, d)
    return target


GRADUATION = Flow(
    name=KIND, title=TITLE, state=GraduationState, confirm=False, left_note=_left_note, submit=A.finish,
    begin=_begin,
    steps=[
        Step("start", "办理方式", F.Choice(), _start_prompt, options=_start_options,
             when=lambda ctx: ctx.state.existing, check=A.start_check,
             go={"continue": _resume, "new": "notice", "restart": "notice", "*": "review"}),
        Step("notice", "考生须知", F.Acknowledge(), _notice_prompt, retry=F.ACK_RETRY,
             check=_notice_check, go=_resume),
        Step("profile", "个人信息", F.Choice(options=[("ok", "信息无误，手机号码在用"), ("contact", "修改手机号码等联系方式")]),
             _profile_prompt, check=_profile_check, go={"contact": "contact", "*": _resume}),
        Call("contact", CONTACT_UPDATE, go=_contact_done),
        Step("major", "专业", F.Choice(), lambda ctx: join(ctx.state.take_lead(), "请选择申请毕业的专业："),
             options=_major_options, check=_major_check, go=_resume),
        Step("results", "合格成绩", F.Choice(options=[("ok", "成绩无误，继续"), ("wrong", "成绩有误")]), _results_prompt,
             check=_results_check, go=_resume),
        Step("extra", "加考选项", F.Choice(), lambda ctx: join(ctx.state.take_lead(), f"【{TITLE}｜加考选项】请选择符合您情况的一项："),
             options=_extra_options, check=_extra_check, go=_resume),
        Loop("explain", over=_unexplained, body=EXPLANATION, args=_explain_args, each=_keep_explanation, go=_resume),
        Step("assessment", "自我鉴定", Prose(min_len=1, max_len=gr.SELF_ASSESSMENT_MAX_CHARS + 200), _assessment_prompt,
             check=_assessment_check, asides=False, go=_resume),
        Call("prior", PRIOR_EDUCATION, args=_prior_args, progress=_prior_progress, go=_resume),
        Call("review", REVIEW, args=_review_args, go=_reviewed),
    ],
)


def register(router: Any) -> None:
    router.add_flow(GRADUATION)


__all__ = ["GRADUATION", "register"]
