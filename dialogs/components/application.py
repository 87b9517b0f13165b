"""What the application flows (申请免考, 成绩补登, and the graduation flows after them) share: the
typed working data, the working copy of the application saved as it changes, the list of one's
applications, and how applications read on a phone.

The working copy (`AppState.app`) is what the candidate sees and edits. A draft, or a 未通过
application being reworked, is saved in the applications tables after every answer (`persist`),
so leaving, the dialog's expiry or a restart loses nothing. A 待审核 application is only ever
replaced by a complete, checked copy: its edits stay in the dialog until submitted again.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from dialogs import fields as F
from dialogs.components.review import Line, ReviewState, options
from dialogs.engine import Ctx, EndFlow, join
from dialogs.fields import Invalid
from storage import applications as apps
from storage.applications import ApplicationData, EvidenceTypeInfo
from storage.outbox import shanghai_time

log = logging.getLogger("zikao.application")

SUBMITTED = {"draft": "已提交", "rejected": "已重新提交", "submitted": "修改已提交"}


def tail(openid: str) -> str:
    """Enough of an openid to follow a log line, not enough to identify anyone."""
    return "…" + openid[-6:]


@dataclass
class AppState:
    """The working data every application flow has; a flow's own state extends it."""

    kind: str = ""
    keyword: str = ""  # what the candidate replies to come back: "免考"
    noun: str = "申请"  # what one is called in "原申请不变": 申请 / 登记
    app: Optional[ApplicationData] = None
    types: list[EvidenceTypeInfo] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # course code -> name
    closes_at: str = ""
    notice: str = ""
    existing: bool = False  # the candidate has applications of this kind
    changed: bool = False  # a 待审核 application was edited in this visit
    born: Optional[str] = None  # the candidate's birth month, 'YYYY-MM', when known
    lead: str = ""  # said once before the next question
    result: str = ""  # what the flow ends with

    @property
    def type_map(self) -> dict[str, EvidenceTypeInfo]:
        return {t.code: t for t in self.types}

    def type_name(self, code: str) -> str:
        t = self.type_map.get(code)
        return t.name if t else code

    def name(self, code: str) -> str:
        return self.names.get(code, code)

    def take_lead(self) -> str:
        lead, self.lead = self.lead, ""
        return lead


def work(ctx: Ctx) -> ApplicationData:
    """The working copy (there once the draft is opened or an application loaded)."""
    assert ctx.state.app is not None
    return ctx.state.app


async def mine(ctx: Ctx) -> list[ApplicationData]:
    """The candidate's applications of this flow's kind."""
    return await apps.list_applications(ctx.db, candidate_id=ctx.user.candidate_id, kind=ctx.state.kind)


async def finish(ctx: Ctx) -> str:
    return ctx.state.result


async def begin(ctx: Ctx, *, kind: str, keyword: str, noun: str, closed_lines) -> Optional[str]:
    """The window check every application starts with; the state filled for an open window.
    `closed_lines(ctx, mine)`: what a closed window shows of the candidate's applications."""
    st: AppState = ctx.state
    st.kind, st.keyword, st.noun = kind, keyword, noun
    check = await apps.business_window(ctx.db, kind, ctx.now)
    existing = await mine(ctx)
    if not check.is_open:
        return join(apps.window_closed_text(check), "\n".join(await closed_lines(ctx, existing)))
    assert check.open is not None
    st.closes_at = shanghai_time(check.open.closes_at)
    st.notice = check.open.notice or ""
    st.existing = bool(existing)
    st.types = await apps.evidence_types(ctx.db, include_inactive=True)
    st.born = await apps.birth_month(ctx.db, ctx.user.candidate_id)
    return None


def closes_text(st: AppState) -> str:
    return f"本次办理截止时间：{st.closes_at}。" if st.closes_at else ""


async def open_draft(ctx: Ctx) -> ApplicationData:
    st: AppState = ctx.state
    admission = ctx.user.admission_number or await apps.first_admission_number(ctx.db, ctx.user.candidate_id)
    if admission is None:
        raise EndFlow("没有查到您的准考证号，暂时不能办理。请拨打技术咨询电话 400-0960-990。")
    try:
        st.app = await apps.open_draft(ctx.db, kind=st.kind, candidate_id=ctx.user.candidate_id,
                                       openid=ctx.user.openid, admission_number=admission, now=ctx.now)
    except apps.ApplicationError as e:
        raise EndFlow(e.message) from None
    await remember_names(ctx)
    return st.app


async def remember_names(ctx: Ctx) -> None:
    st: AppState = ctx.state
    missing = {i.course_code for i in (st.app.items if st.app else []) if i.course_code not in st.names}
    st.names.update(await apps.course_names(ctx.db, missing))


async def persist(ctx: Ctx) -> None:
    """Keep the working copy; a draft or a 未通过 application is saved in the database at once.
    A refusal that ends the visit (window closed, decided meanwhile) ends the flow saying so."""
    st: AppState = ctx.state
    assert st.app is not None
    if st.app.status not in ("draft", "rejected"):
        st.changed = True
        return
    try:
        st.app = await apps.save_draft(ctx.db, st.app, now=ctx.now)
    except apps.WindowClosed as e:
        raise EndFlow(f"{e.message}\n已填写的内容在这之前都已保存。") from None
    except (apps.StaleApplication, apps.TransitionRefused, apps.ApplicationNotFound) as e:
        raise EndFlow(f"{e.message}\n回复“{st.keyword}”重新查看。") from None
    except apps.ApplicationError as e:
        raise Invalid(e.message) from None


async def save_details(ctx: Ctx, details: Any) -> None:
    """Put the flow's form (a dataclass with `to_dict`, e.g. `ThesisDetails`) on the working copy
    and keep it (`persist`)."""
    work(ctx).details = details.to_dict()
    await persist(ctx)


async def submit(ctx: Ctx, called: str, after: str) -> None:
    """Submit the working copy (提交, 修改后提交, 重新提交); what is missing stays at the review."""
    st: AppState = ctx.state
    app = st.app
    assert app is not None
    if app.status == "submitted" and not st.changed:
        raise EndFlow(f"没有修改，第{app.id}号{st.noun}仍在审核中。\n审核结果会通过微信通知您。")
    before = app.status
    try:
        st.app = await apps.submit(ctx.db, app, now=ctx.now)
    except apps.SubmissionRefused as e:
        raise Invalid("还不能提交：\n" + "\n".join(f"· {p}" for p in e.problems)) from None
    except apps.WindowClosed as e:
        raise EndFlow(e.message) from None
    except (apps.StaleApplication, apps.TransitionRefused, apps.ApplicationNotFound) as e:
        raise EndFlow(f"{e.message}\n回复“{st.keyword}”重新查看。") from None
    except apps.ApplicationError as e:
        raise Invalid(e.message) from None
    st.result = f"{SUBMITTED[before]}，第{st.app.id}号{called}现在是“待审核”。\n{after}"
    log.info("%s %s submitted by %s (%s courses, %s photos)", st.kind, st.app.id, tail(ctx.user.openid),
             len(st.app.items), st.app.photo_count())


def left_note(st: Optional[AppState]) -> Optional[str]:
    """What 取消, expiry and 先保存 say: a draft keeps everything, a pending edit keeps nothing."""
    status = st.app.status if st is not None and st.app is not None else None
    if status == "draft" and (st.app.items or st.app.major_code) or status == "rejected":  # type: ignore[union-attr]
        return f"已填写的内容都保存了，回复“{st.keyword}”可以接着办理。{closes_text(st)}"  # type: ignore[union-attr]
    if status == "submitted":
        return f"这次的修改没有提交，原{st.noun}不变，仍在审核中。"  # type: ignore[union-attr]
    return None


def leave(ctx: Ctx) -> None:
    raise EndFlow(left_note(ctx.state) or "好的。")


# --- the first choice: continue a draft, start anew, reopen one under review or rejected ----------


def start_options(mine: list[ApplicationData], *, draft_words: tuple[str, str], new: str,
                  edit_label: str) -> list[F.Option]:
    opts: list[F.Option] = []
    draft = next((a for a in mine if a.status == "draft"), None)
    if draft is not None and (draft.items or draft.major_code):
        opts += [("continue", draft_words[0]), ("restart", draft_words[1])]
    else:
        opts.append(("new", new))
    for a in mine:
        if a.status == "submitted":
            opts.append((f"edit:{a.id}", edit_label.format(id=a.id)))
        elif a.status == "rejected":
            opts.append((f"redo:{a.id}", f"修改后重新提交第{a.id}号（未通过）"))
    return opts


async def start_check(ctx: Ctx, choice: str) -> str:
    """继续 loads the draft, 重新开始 discards it, edit:/redo: load that application."""
    st: AppState = ctx.state
    cid = ctx.user.candidate_id
    noun = apps.kind_name(st.kind)
    if choice in ("continue", "restart", "new"):
        draft = await apps.find_draft(ctx.db, cid, st.kind)
        if choice == "continue" and draft is None:
            raise Invalid("草稿已经不在了（可能已在别处提交或删除），请重新选择。")
        if choice != "continue" and draft is not None:
            await apps.discard_draft(ctx.db, draft.id, candidate_id=cid)
            draft = None
        st.app = draft
    else:
        want = "submitted" if choice.startswith("edit:") else "rejected"
        try:
            app = await apps.load_application(ctx.db, int(choice[5:]), candidate_id=cid)
        except apps.ApplicationNotFound:
            raise Invalid(f"没有找到这份{noun}，请重新选择。") from None
        if app.status != want:
            raise Invalid(f"这份{noun}现在是“{app.status_label}”，请重新选择。")
        st.app, st.changed = app, False
    await remember_names(ctx)
    return choice


# --- how applications read --------------------------------------------------------------------------


def day(t) -> str:
    return shanghai_time(t)[:11] if t else ""


def closed_list(heading: str, lines: list[str], mine: list[ApplicationData], *, again: str = "重新申请") -> list[str]:
    """What a flow shows outside its window: the candidate's applications under `heading`, and,
    when one is 未通过, that it can be reworked in the next window."""
    if not lines:
        return []
    if any(a.status == "rejected" for a in mine):
        lines = [*lines, f"未通过的申请可以在下次办理时间内修改后{again}。"]
    return [heading, *lines]


def status_line(a: ApplicationData) -> str:
    """'第12号｜待审核｜2026年11月20日提交' and, for 未通过, the reason."""
    when = f"{day(a.submitted_at)}提交" if a.submitted_at else f"{day(a.created_at)}创建"
    line = f"第{a.id}号｜{a.status_label}｜{when}"
    if a.status == "rejected" and a.reason:
        line += f"\n　未通过原因：{a.reason}"
    return line


def evidence_line(e: apps.EvidenceData, st: AppState) -> str:
    parts = [st.type_name(e.type_code)]
    if e.number:
        parts.append(f"编号{e.number}")
    if e.obtained_month:
        parts.append(apps.month_label(e.obtained_month))
    if e.province:
        parts.append(e.province)
    if st.type_map.get(e.type_code, EvidenceTypeInfo("", "")).for_exemption:
        parts.append(f"照片{len(e.photo_ids)}张" if e.photo_ids else "未传照片")
    line = "｜".join(parts)
    return line + (f"\n　　备注：{e.note}" if e.note else "")


def head(st: AppState, title: str) -> list[str]:
    """The review's first lines: 请核对 for a draft, number and status otherwise, 未通过原因."""
    app = st.app
    assert app is not None
    lines = [f"【{title}｜请核对】" if app.status == "draft" else f"【{title}｜第{app.id}号 {app.status_label}】"]
    if app.status == "rejected" and app.reason:
        lines.append(f"未通过原因：{app.reason}")
    return lines


async def review_state(ctx: Ctx, st: AppState, title: str, lines: list[Line]) -> ReviewState:
    """The application review of a flow: its lines, then what still stops submission (the same
    check `submit` makes) and, while 待审核, that an edit must be submitted again."""
    app = st.app
    assert app is not None
    tail = []
    problems = await apps.submission_problems(ctx.db, app, now=ctx.now)
    if problems:
        tail.append("还需补充：\n" + "\n".join(f"· {p}" for p in problems))
    if app.status == "submitted":
        tail.append("修改后需要再次提交；不提交的话，原申请不变，仍在审核中。")
    return ReviewState(head=[st.take_lead(), *head(st, title)], lines=lines, tail=tail, options=options(app.status))


def names_of(items: Iterable[str], st: AppState) -> str:
    return "、".join(st.name(c) for c in items)
