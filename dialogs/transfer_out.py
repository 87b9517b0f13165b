"""本市转出 (FLOWS 23): 考生须知; 转入地, 转入准考证号, 转入层次, 转入专业, 转出原因, 联系电话; the
results to transfer, ticked from the candidate's passed results (those that cannot leave shown
apart with why: storage.transfers.transfer_out_choices, rules the office sets); the review with
修改 N; submission for review. 未通过 shows the reason and offers 重新申请 while the window is
open; 审核通过 shows the 转出编号, the results transferred and what to do at the destination.

The route is the table at the bottom: `_resume` sends a new or continued application to its first
empty field, each field goes on to the next empty one (or back to the review when it was changed
from there), and the review submits. Every answer is saved in the draft as it is given.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Optional

from dialogs import fields as F
from dialogs import fields_transfer as FT
from dialogs.applications import score_label
from dialogs.components import application as A
from dialogs.components.review import REVIEW, Line, Picked, ReviewState
from dialogs.engine import END, Call, Ctx, EndFlow, Flow, Step, join
from dialogs.fields import Invalid
from storage import applications as apps
from storage import transfers as tr
from storage.applications import ApplicationData, ItemData
from storage.identifiers import mask_mobile, valid_mobile
from storage.outbox import KIND_KEYWORDS
from storage.vocab import SCORE_KINDS

KIND = "transfer_out"
KEYWORD = KIND_KEYWORDS[KIND]  # "转出"
TITLE = "本市转出"
DEFAULT_NOTICE = (
    "一、本市转出是把您在上海取得的合格成绩转到其他省份继续参加自学考试。\n"
    "二、请先在转入省报名取得准考证号，并确认转入专业；找不到想转入的专业，请拨打 400-0960-990。\n"
    "三、免考、外省转入的成绩和毕业论文成绩不能转出；转出审核通过后，这些成绩不再用于本市毕业。\n"
    "四、请务必填写准确的信息，审核结果会通过微信通知您。"
)
AFTER = f"审核结果会通过微信通知您；审核前需要修改请回复“{KEYWORD}”。"
NEXT_STEPS = "请在转入省规定的时间内，凭转出编号和身份证到转入省自考办办理转入手续。"
FIELDS = ("province", "number", "level", "major", "reason", "phone")


@dataclass
class TransferOutState(A.AppState):
    editing: bool = False  # a field changed from the review: back to the review after it


def _details(ctx: Ctx) -> tr.TransferOutDetails:
    return tr.TransferOutDetails.from_dict(A.work(ctx).details)


async def _set(ctx: Ctx, **values: str) -> None:
    d = _details(ctx)
    for k, v in values.items():
        setattr(d, k, v)
    await A.save_details(ctx, d)


# --- how applications read ---------------------------------------------------------------------------


def _courses(a: ApplicationData, names: dict[str, str]) -> str:
    return "、".join(names.get(i.course_code, i.course_code) for i in a.items) or "未选成绩"


def approved_lines(a: ApplicationData, names: dict[str, str]) -> list[str]:
    """What the candidate needs at the destination: 转出编号, where to, the results, next steps."""
    d = tr.TransferOutDetails.from_dict(a.details)
    lines = [f"　转出编号：{d.reference or '（请联系考办）'}",
             f"　转入地：{d.province}｜转入准考证号 {d.admission_number}",
             f"　转入专业：{d.major}（{d.level}）",
             f"　转出成绩（共{len(a.items)}门）："]
    for i in a.items:
        result = score_label(i.score, i.grade) or i.note
        when = f"{apps.month_label(i.passed_month)}通过" if i.passed_month else ""
        lines.append("　　" + "｜".join(x for x in (f"{i.course_code} {names.get(i.course_code, i.course_code)}",
                                                  result, when) if x))
    return [*lines, f"　{NEXT_STEPS}"]


async def _application_lines(ctx: Ctx, mine: list[ApplicationData]) -> list[str]:
    names = await apps.course_names(ctx.db, {i.course_code for a in mine for i in a.items})
    lines = []
    for a in (a for a in mine if a.status != "draft"):
        lines.append(A.status_line(a))
        lines += approved_lines(a, names) if a.status == "approved" else [f"　转出成绩：{_courses(a, names)}"]
    return lines


async def _closed_lines(ctx: Ctx, mine: list[ApplicationData]) -> list[str]:
    return A.closed_list("您的本市转出申请：", await _application_lines(ctx, mine), mine)


def _has_work(a: Optional[ApplicationData]) -> bool:
    return a is not None and bool(a.items or a.details)


def _left_note(ctx_state: Any) -> Optional[str]:
    st = ctx_state
    if st is not None and st.app is not None and st.app.status == "draft" and _has_work(st.app):
        return f"已填写的内容都保存了，回复“{KEYWORD}”可以接着办理。{A.closes_text(st)}"
    return A.left_note(st)


# --- the first choice, 考生须知 -----------------------------------------------------------------------


async def _start_prompt(ctx: Ctx) -> str:
    mine = await A.mine(ctx)
    lines = [f"【{TITLE}】"]
    draft = next((a for a in mine if a.status == "draft"), None)
    if _has_work(draft):
        lines.append("您有一份还没提交的转出申请草稿。")
    others = await _application_lines(ctx, mine)
    lines += ["您的本市转出申请：", *others] if others else []
    return "\n".join(x for x in [*lines, A.closes_text(ctx.state), "请选择："] if x)


async def _start_options(ctx: Ctx) -> list[F.Option]:
    mine = await A.mine(ctx)
    draft = next((a for a in mine if a.status == "draft"), None)
    opts: list[F.Option] = ([("continue", "继续填写草稿"), ("restart", "放弃草稿，重新申请")] if _has_work(draft)
                            else [("new", "新的转出申请")])
    for a in mine:
        if a.status == "submitted":
            opts.append((f"edit:{a.id}", f"查看或修改第{a.id}号（待审核）"))
        elif a.status == "rejected":
            opts.append((f"redo:{a.id}", f"重新申请：修改第{a.id}号后再次提交（未通过）"))
    return opts


def _resume(ctx: Ctx, value: Any = None) -> str:
    """The first empty field of the application, or the results, or the review."""
    st: TransferOutState = ctx.state
    if st.editing:
        st.editing = False
        return "review"
    d, app = _details(ctx), A.work(ctx)
    if value == "continue":
        st.lead = "接着填写上次的草稿。"
    for name in FIELDS:
        if not getattr(d, "admission_number" if name == "number" else name):
            return name
    return "results" if not app.items else "review"


def _notice_prompt(ctx: Ctx) -> str:
    return join(f"【{TITLE}｜考生须知】\n{ctx.state.notice or DEFAULT_NOTICE}", A.closes_text(ctx.state),
                "请仔细阅读，回复“我已知晓”继续申请。")


async def _notice_check(ctx: Ctx, value: str) -> str:
    app = await A.open_draft(ctx)
    if not any(c.eligible for c in await _choices(ctx)):
        if not _has_work(app):
            await apps.discard_draft(ctx.db, app.id, candidate_id=ctx.user.candidate_id)
        raise EndFlow("您目前没有可以转出的合格成绩（免考、外省转入的成绩和论文成绩不能转出）。\n"
                      "回复“历史成绩”可以查看您的全部成绩。")
    return value


# --- the form's fields ----------------------------------------------------------------------------------


def _province_prompt(ctx: Ctx) -> str:
    return join(ctx.state.take_lead(), f"【{TITLE}｜转入地】请选择要转入的省份（回复序号或名称）：\n{FT.province_list()}")


def _ask(question: str):
    """The question, after what is to be said once first (接着填写上次的草稿)."""
    return lambda ctx: join(ctx.state.take_lead(), question)


def _field_check(name: str):
    async def check(ctx: Ctx, value: str) -> str:
        await _set(ctx, **{name: value})
        return value
    return check


async def _reason_options(ctx: Ctx) -> list[F.Option]:
    return [(r, r) for r in tr.TRANSFER_OUT_REASONS]


async def _reason_check(ctx: Ctx, value: str) -> str:
    if value != "其他":
        await _set(ctx, reason=value)
    return value


def _phone_prompt(ctx: Ctx) -> str:
    return join(ctx.state.take_lead(),
                "请输入联系电话（手机号码，或带区号的固定电话，如 021-12345678），审核中有问题时考办会联系您：")


# --- the results to transfer ------------------------------------------------------------------------------


async def _choices(ctx: Ctx) -> list[tr.TransferChoice]:
    return await tr.transfer_out_results(ctx.db, ctx.user.candidate_id, exclude_application_id=A.work(ctx).id,
                                         now=ctx.now)


def _result_label(c: tr.TransferChoice) -> str:
    r = c.result
    return f"{r.course_code} {r.course_name}｜{tr.result_text(r)}｜{tr.month_text(r.passed_on)}"


async def _result_options(ctx: Ctx) -> list[F.Option]:
    choices = await _choices(ctx)
    return ([(c.course_code, _result_label(c)) for c in choices if c.eligible]
            + [(FT.BLOCKED + c.course_code, _result_label(c)) for c in choices if not c.eligible])


async def _results_prompt(ctx: Ctx) -> str:
    choices = await _choices(ctx)
    ok = [c for c in choices if c.eligible]
    lines = [ctx.state.take_lead(), f"【{TITLE}｜转出成绩】请勾选要转出的成绩，可以选多门（如 1,2 或 1-3）："]
    lines += [f"{n}. {_result_label(c)}" for n, c in enumerate(ok, 1)]
    blocked = [c for c in choices if not c.eligible]
    if blocked:
        lines.append("以下成绩不能转出：")
        lines += [f"· {_result_label(c)}（{c.why_not}）" for c in blocked]
    app = A.work(ctx)
    if app.items:
        lines.append(f"现在选的是：{A.names_of((i.course_code for i in app.items), ctx.state)}。请重新选择全部要转出的成绩。")
    return "\n".join(x for x in lines if x)


async def _results_check(ctx: Ctx, codes: list[str]) -> list[str]:
    by_code = {c.course_code: c for c in await _choices(ctx)}
    refused = [by_code[c[1:]] for c in codes if c.startswith(FT.BLOCKED) and c[1:] in by_code]
    if refused:
        raise Invalid("\n".join(f"{c.result.course_name}不能转出：{c.why_not}。" for c in refused)
                      + "\n请只选择上面编了序号的成绩。")
    app = A.work(ctx)
    items = []
    for code in codes:
        r = by_code[code].result
        month = f"{r.passed_on:%Y-%m}" if r.passed_on else None
        items.append(ItemData(code, passed_month=month, score=r.score, grade=r.grade,
                              note=SCORE_KINDS.get(r.kind, "")))
    app.items = items
    await A.remember_names(ctx)
    await A.persist(ctx)
    return codes


# --- the review ---------------------------------------------------------------------------------------------

LABELS = {"province": "转入地", "number": "转入准考证号", "level": "转入层次", "major": "转入专业",
          "reason": "转出原因", "phone": "联系电话"}


def _shown(name: str, d: tr.TransferOutDetails) -> str:
    value = getattr(d, "admission_number" if name == "number" else name)
    if name == "phone" and value:
        return mask_mobile(value) if valid_mobile(value) else value
    return value or "（未填）"


async def _review_args(ctx: Ctx) -> ReviewState:
    st, app = ctx.state, A.work(ctx)
    await A.remember_names(ctx)
    d = _details(ctx)
    lines = [Line(f"{LABELS[n]}：{_shown(n, d)}", n) for n in FIELDS]
    subs = [Line(f"{i.course_code} {st.name(i.course_code)}"
                 + (f"｜{apps.month_label(i.passed_month)}通过" if i.passed_month else "")) for i in app.items]
    lines.append(Line(f"转出成绩：共{len(app.items)}门", "results", subs))
    return await A.review_state(ctx, st, TITLE, lines)


async def _reviewed(ctx: Ctx, picked: Picked) -> str:
    if picked.action == "submit":
        await A.submit(ctx, "转出申请", AFTER)
        return END
    if picked.action == "leave":
        raise EndFlow(_left_note(ctx.state) or "好的。")
    # 修改 N: that field (or the results), then back here.
    ctx.state.editing = True
    return picked.target


TRANSFER_OUT = Flow(
    name=KIND, title=TITLE, state=TransferOutState, confirm=False, left_note=_left_note, submit=A.finish,
    begin=partial(A.begin, kind=KIND, keyword=KEYWORD, noun="申请", closed_lines=_closed_lines),
    steps=[
        Step("start", "办理方式", F.Choice(), _start_prompt, options=_start_options,
             when=lambda ctx: ctx.state.existing, check=A.start_check,
             go={"continue": _resume, "new": "notice", "restart": "notice", "*": "review"}),
        Step("notice", "考生须知", F.Acknowledge(), _notice_prompt, retry=F.ACK_RETRY,
             check=_notice_check, go=_resume),
        Step("province", "转入地", FT.TransferProvince(), _province_prompt, retry="请回复序号或省份名称，如 9 或 江苏：",
             check=_field_check("province"), go=_resume),
        Step("number", "转入准考证号", FT.TransferAdmissionNo(), _ask("请输入您在转入省的准考证号："),
             check=_field_check("admission_number"), go=_resume),
        Step("level", "转入层次", F.Choice(options=[(x, x) for x in tr.TRANSFER_OUT_LEVELS]), _ask("请选择转入层次："),
             check=_field_check("level"), go=_resume),
        Step("major", "转入专业", F.Text(min_len=2, max_len=tr.MAJOR_MAX),
             _ask("请输入转入专业（转入省的专业名称，可带专业代码，如“行政管理 120402”）："), check=_field_check("major"),
             go=_resume),
        Step("reason", "转出原因", F.Choice(), _ask("请选择转出原因："), options=_reason_options, check=_reason_check,
             go={"其他": "reason_text", "*": _resume}),
        Step("reason_text", "转出原因", F.Text(min_len=2, max_len=tr.REASON_MAX), "请简要写明转出原因：",
             check=_field_check("reason"), go=_resume),
        Step("phone", "联系电话", FT.Phone(), _phone_prompt, check=_field_check("phone"), go=_resume),
        Step("results", "转出成绩", FT.ResultPicks(), _results_prompt, options=_result_options,
             retry=_results_prompt, check=_results_check, go=_resume),
        Call("review", REVIEW, args=_review_args, go=_reviewed),
    ],
)


def register(router: Any) -> None:
    router.add_flow(TRANSFER_OUT)


__all__ = ["TRANSFER_OUT", "approved_lines", "register"]
