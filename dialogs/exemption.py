"""申请免考 as a guided flow: 考生须知, major, courses, then for each course one or more evidences
with photos, a summary to check, and submission for review (FLOWS 9-14).

The steps below are the whole conversation. Two loops run through them: the evidence steps
(`ev_type` … `ev_photos`) are asked once per evidence of each course, and the summary (`review`)
leads back into them to add an evidence, change one, replace its photos or delete it. Where to go
next is decided from the working copy of the application (`_position`), so a draft continued
days later picks up at the first thing it still lacks. Every answer is saved in the draft as it is given
(dialogs/evidence.py); the evidence steps write into the evidence `ctx.scratch["course"]` /
`["ev"]` point at.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

from dialogs import backfill
from dialogs import evidence as W
from dialogs import fields as F
from dialogs.engine import Ctx, EndFlow, Flow, Step, join
from dialogs.fields import Invalid
from dialogs.types import Reply
from storage import applications as apps
from storage import queries as q
from storage.applications import ApplicationData, EvidenceData, EvidenceTypeInfo, ItemData
from storage.outbox import KIND_KEYWORDS

log = logging.getLogger("zikao.exemption")

KIND = "exemption"
KEYWORD = KIND_KEYWORDS[KIND]  # "免考": what pushes and notes tell the candidate to reply
TITLE = "申请免考"
MAX_PHOTOS = apps.MAX_PHOTOS_PER_EVIDENCE

DEFAULT_NOTICE = (
    "一、申请免考的课程须为本人所报考专业考试计划中的课程，已通过、已免考或正在审核的课程不能再申请。\n"
    "二、每门课程至少提供一份凭证；使用毕业证书的，还须提供教育部学历证书电子注册备案表或中国高等教育学历认证报告。\n"
    "三、凭证照片须为JPG或PNG格式，清晰完整、文字朝上，每张不超过1MB（过大的照片会自动压缩）。\n"
    "四、请如实填写，提供虚假材料的，免考无效。"
)


@dataclass
class Acknowledge(F.Field):
    """The candidate has read the 考生须知: only "我已知晓" (or the same words shortened) goes on."""

    hint: str = "读完须知后请回复“我已知晓”。"
    WORDS = frozenset({"我已知晓", "已知晓", "知晓", "我已知晓,继续申请", "我已知晓，继续申请", "我已阅读并知晓"})

    def parse_text(self, text: str) -> str:
        if text.rstrip("。.!！") in self.WORDS:
            return "我已知晓"
        raise Invalid("请先阅读考生须知，读完回复“我已知晓”继续；不办理请回复“取消”。")

    def show(self, value: Any) -> str:
        return "已阅读" if value else "（未读）"


# --- where things are --------------------------------------------------------------------------


@dataclass
class Here:
    app: ApplicationData
    ci: int  # the course (item) being filled
    ei: int  # its evidence; == len(evidences) for one not started yet

    @property
    def item(self) -> ItemData:
        return self.app.items[self.ci]

    @property
    def evidence(self) -> Optional[EvidenceData]:
        evs = self.item.evidences
        return evs[self.ei] if self.ei < len(evs) else None


def _here(ctx: Ctx) -> Here:
    app = W.work(ctx)
    ci = min(ctx.scratch.get("course", 0), max(len(app.items) - 1, 0))
    return Here(app, ci, ctx.scratch.get("ev", 0))


def _point(ctx: Ctx, ci: int, ei: int) -> None:
    ctx.scratch["course"], ctx.scratch["ev"] = ci, ei


def _types(ctx: Ctx) -> dict[str, EvidenceTypeInfo]:
    return {t[0]: EvidenceTypeInfo(t[0], t[1], needs_companion=t[2], companion=t[3], for_exemption=t[4], active=t[5])
            for t in ctx.scratch.get("types", [])}


def _companion_problem(ctx: Ctx, item: ItemData) -> Optional[str]:
    return apps.companion_problem(item.evidences, _types(ctx))


def _name(ctx: Ctx, code: str) -> str:
    return ctx.scratch.get("names", {}).get(code, code)


async def _remember_names(ctx: Ctx, app: ApplicationData) -> None:
    names = ctx.scratch.setdefault("names", {})
    missing = [i.course_code for i in app.items if i.course_code not in names]
    names.update(await W.course_names(ctx, missing))


async def _save(ctx: Ctx, app: ApplicationData) -> ApplicationData:
    return await W.persist(ctx, app, keyword=KEYWORD)


def _position(ctx: Ctx) -> str:
    """The first thing the application still lacks, as the step that asks for it."""
    app = W.work(ctx)
    ctx.scratch["mode"] = "fill"
    if not app.major_code:
        return "major"
    if not app.items:
        return "courses"
    for ci, item in enumerate(app.items):
        if not item.evidences:
            _point(ctx, ci, 0)
            return "ev_type"
        for ei, e in enumerate(item.evidences):
            _point(ctx, ci, ei)
            if not e.number:
                return "ev_number"
            if not e.obtained_month:
                return "ev_month"
            if not e.province:
                return "ev_province"
            if not e.photo_ids:
                _enter_photos(ctx, replace=False)
                return "ev_photos"
        if _companion_problem(ctx, item):
            _point(ctx, ci, len(item.evidences) - 1)
            return "ev_next"
    return "review"


def _enter_photos(ctx: Ctx, *, replace: bool) -> None:
    """The photo step counts from the evidence's photos, or from none when they are replaced."""
    h = _here(ctx)
    have = [] if replace or h.evidence is None else h.evidence.photo_ids
    ctx.answers["ev_photos"] = [{"photo_id": p} for p in have]
    ctx.scratch["replacing"] = replace


def _editing_one(ctx: Ctx) -> bool:
    """Changing one field from the summary: back to the summary afterwards."""
    return ctx.scratch.get("mode") == "field"


# --- begin and the first choice ------------------------------------------------------------------


async def _load_types(ctx: Ctx) -> None:
    types = await apps.evidence_types(ctx.db, include_inactive=True)
    ctx.scratch["types"] = [[t.code, t.name, t.needs_companion, t.companion, t.for_exemption, t.active] for t in types]


async def _mine(ctx: Ctx) -> list[ApplicationData]:
    return await apps.list_applications(ctx.db, candidate_id=ctx.user.candidate_id, kind=KIND)


async def _application_lines(ctx: Ctx, mine: list[ApplicationData]) -> list[str]:
    names = await W.course_names(ctx, {i.course_code for a in mine for i in a.items})
    lines = []
    for a in mine:
        if a.status == "draft":
            continue
        lines.append(W.status_line(a))
        lines.append("　课程：" + ("、".join(names.get(i.course_code, i.course_code) for i in a.items) or "无"))
    return lines


async def _begin(ctx: Ctx) -> Optional[str]:
    check = await apps.business_window(ctx.db, KIND, ctx.now)
    mine = await _mine(ctx)
    if not check.is_open:
        lines = await _application_lines(ctx, mine)
        if lines:
            lines.insert(0, "您的免考申请：")
            if any(a.status == "rejected" for a in mine):
                lines.append("未通过的申请可以在下次办理时间内修改后重新提交。")
        return join(apps.window_closed_text(check), "\n".join(lines))
    assert check.open is not None
    ctx.scratch["closes_at"] = W.window_closes(check)
    ctx.scratch["notice"] = check.open.notice or ""
    ctx.scratch["existing"] = bool(mine)
    await _load_types(ctx)
    return None


async def _start_prompt(ctx: Ctx) -> str:
    mine = await _mine(ctx)
    lines = [f"【{TITLE}】"]
    draft = next((a for a in mine if a.status == "draft"), None)
    if draft is not None:
        lines.append(f"您有一份还没提交的草稿：{len(draft.items)}门课程，照片{draft.photo_count()}张。")
    others = await _application_lines(ctx, mine)
    if others:
        lines += ["您的免考申请：", *others]
    lines.append(W.closes_text(ctx.scratch))
    lines.append("请选择：")
    return "\n".join(line for line in lines if line)


async def _start_options(ctx: Ctx) -> list[F.Option]:
    mine = await _mine(ctx)
    opts: list[F.Option] = []
    if any(a.status == "draft" for a in mine):
        opts += [("continue", "继续填写草稿"), ("restart", "放弃草稿，重新开始")]
    else:
        opts.append(("new", "新的免考申请"))
    return opts + W.reopen_options(mine, edit_label="查看或修改第{id}号（待审核）")


async def _start_check(ctx: Ctx, choice: str) -> str:
    cid = ctx.user.candidate_id
    if choice == "continue":
        draft = await apps.find_draft(ctx.db, cid, KIND)
        if draft is None:
            raise Invalid("草稿已经不在了（可能已在别处提交或删除），请重新选择。")
        W.keep(ctx, draft)
        await _remember_names(ctx, draft)
    elif choice == "restart":
        draft = await apps.find_draft(ctx.db, cid, KIND)
        if draft is not None:
            await apps.discard_draft(ctx.db, draft.id, candidate_id=cid)
    elif choice.startswith(("edit:", "redo:")):
        app = await W.reopen(ctx, choice, noun="这份申请")
        await _remember_names(ctx, app)
    return choice


async def _start_after(ctx: Ctx, choice: str) -> str:
    if choice == "continue":
        app = W.work(ctx)
        evidences = sum(len(i.evidences) for i in app.items)
        ctx.scratch["lead"] = (f"接着填写上次的草稿（已选{len(app.items)}门课程，{evidences}份凭证，"
                               f"照片{app.photo_count()}张）。")
        return _position(ctx)
    if choice in ("new", "restart"):
        return "notice"
    return "review"


# --- 考生须知, major, courses ----------------------------------------------------------------------


async def _notice_prompt(ctx: Ctx) -> str:
    notice = ctx.scratch.get("notice") or DEFAULT_NOTICE
    return join(f"【{TITLE}｜考生须知】\n{notice}", W.closes_text(ctx.scratch),
                "请仔细阅读，回复“我已知晓”继续申请。")


async def _majors(ctx: Ctx, admission: str) -> list[q.Enrolment]:
    every = await q.candidate_majors(ctx.db, ctx.user.candidate_id, active=admission)
    own = [e for e in every if e.admission_number in (admission, None)]
    return own or every


async def _eligible(ctx: Ctx, app: ApplicationData, major: str) -> list[apps.CourseChoice]:
    return await apps.exemption_courses(ctx.db, ctx.user.candidate_id, major, exclude_application_id=app.id)


NO_COURSES = ("{major}中没有可以申请免考的课程（已通过、已免考、正在审核的课程和毕业论文不能申请）。"
              "\n回复“考试计划”可以查看各门课程的情况。")


async def _notice_check(ctx: Ctx, value: str) -> str:
    admission = await W.admission_number(ctx)
    try:
        app = await apps.open_draft(ctx.db, kind=KIND, candidate_id=ctx.user.candidate_id, openid=ctx.user.openid,
                                    admission_number=admission, now=ctx.now)
    except apps.WindowClosed as e:
        raise EndFlow(e.message) from None
    except apps.ApplicationError as e:
        raise EndFlow(e.message) from None
    W.keep(ctx, app)
    await _remember_names(ctx, app)
    majors = await _majors(ctx, app.admission_number)
    if not majors:
        await apps.discard_draft(ctx.db, app.id, candidate_id=ctx.user.candidate_id)
        raise EndFlow("没有查到您报考的专业，暂时不能申请免考。\n如有疑问，请拨打技术咨询电话 400-0960-990。")
    if len(majors) == 1 and not app.major_code:
        if not any(c.eligible for c in await _eligible(ctx, app, majors[0].major_code)):
            if not app.items:
                await apps.discard_draft(ctx.db, app.id, candidate_id=ctx.user.candidate_id)
            raise EndFlow(NO_COURSES.format(major=majors[0].major_name))
        app.major_code = majors[0].major_code
        await _save(ctx, app)
    return value


async def _major_options(ctx: Ctx) -> list[F.Option]:
    app = W.work(ctx)
    return [(e.major_code, f"{e.major_code} {e.major_name}") for e in await _majors(ctx, app.admission_number)]


async def _major_check(ctx: Ctx, major: str) -> str:
    app = W.work(ctx)
    if not any(c.eligible for c in await _eligible(ctx, app, major)):
        name = dict(await _major_options(ctx)).get(major, major)
        raise Invalid(NO_COURSES.format(major=name) + "\n请选择其他专业，或回复“取消”。")
    if app.major_code != major:
        app.major_code, app.items = major, []  # another plan: courses chosen for the old one go
        await _save(ctx, app)
    return major


async def _course_options(ctx: Ctx) -> list[F.Option]:
    app = W.work(ctx)
    return [(c.code, f"{c.code} {c.name}") for c in await _eligible(ctx, app, app.major_code or "") if c.eligible]


async def _courses_prompt(ctx: Ctx) -> str:
    app = W.work(ctx)
    choices = await _eligible(ctx, app, app.major_code or "")
    blocked = [f"{c.name}（{c.why_not}）" for c in choices if not c.eligible]
    lines = ["请选择要申请免考的课程，可以选多门（如 1,2）："]
    lead = ctx.scratch.pop("lead", "")
    if blocked:
        lines.insert(0, "不能选择：" + "、".join(blocked))
    if app.items:
        lines.insert(0, "现在选的是：" + "、".join(_name(ctx, i.course_code) for i in app.items)
                     + "。\n请重新选择全部要申请的课程，去掉的课程连同凭证一起删除。")
    return "\n".join([lead, *lines] if lead else lines)


async def _courses_check(ctx: Ctx, codes: list[str]) -> list[str]:
    app = W.work(ctx)
    old = {i.course_code: i for i in app.items}
    app.items = [old.get(code) or ItemData(code) for code in codes]
    labels = dict(await _course_options(ctx))
    ctx.scratch.setdefault("names", {}).update({c: labels[c].split(" ", 1)[1] for c in codes if c in labels})
    await _save(ctx, app)
    return codes


async def _to_position(ctx: Ctx, value: Any) -> str:
    return _position(ctx)


# --- one evidence ----------------------------------------------------------------------------------


async def _header(ctx: Ctx) -> str:
    h = _here(ctx)
    n = len(h.app.items)
    which = f"第{h.ci + 1}/{n}门 " if n > 1 else ""
    lead = ctx.scratch.pop("lead", "")
    return (f"{lead}\n" if lead else "") + f"【{which}{h.item.course_code} {_name(ctx, h.item.course_code)}｜第{h.ei + 1}份凭证】"


def _ev_prompt(question: str, field_name: Optional[str] = None):
    async def prompt(ctx: Ctx) -> str:
        head = await _header(ctx)
        h = _here(ctx)
        now = ""
        if _editing_one(ctx) and h.evidence is not None and field_name:
            value = getattr(h.evidence, field_name)
            if field_name == "type_code":
                value = W.type_names(ctx.scratch).get(value, value)
            elif field_name == "obtained_month":
                value = apps.month_label(value)
            now = f"现在填写的是：{value or '（未填）'}"
        return join(head, now, question) if now else f"{head}\n{question}"
    return prompt


async def _type_options(ctx: Ctx) -> list[F.Option]:
    return [(t.code, t.name) for t in _types(ctx).values() if t.for_exemption and t.active]


def _set(field_name: str):
    """A check that writes the answer into the current evidence and saves the draft."""

    async def check(ctx: Ctx, value: Any) -> Any:
        h = _here(ctx)
        if h.evidence is None:
            if field_name != "type_code":  # pragma: no cover - the type is always asked first
                raise Invalid("请先选择凭证类型。")
            h.item.evidences.append(EvidenceData(type_code=value))
        else:
            setattr(h.evidence, field_name, value if value is not None else "")
        await _save(ctx, h.app)
        return value
    return check


def _then(next_step: str):
    async def after(ctx: Ctx, value: Any) -> str:
        if _editing_one(ctx):
            return "review"
        if next_step == "ev_photos":
            _enter_photos(ctx, replace=False)
        return next_step
    return after


async def _photos_prompt(ctx: Ctx) -> str:
    head = await _header(ctx)
    if ctx.scratch.get("replacing"):
        h = _here(ctx)
        old = len(h.evidence.photo_ids) if h.evidence else 0
        return (f"{head}\n请发送新的照片，发送后将替换原来的{old}张。\n"
                "可以发多张，发完回复“完成”。")
    have = len(ctx.answers.get("ev_photos") or [])
    already = f"已收到{have}张，" if have else ""
    return (f"{head}\n{already}请发送凭证照片：JPG或PNG，清晰完整、文字朝上。\n"
            f"可以发多张（最多{MAX_PHOTOS}张），发完回复“完成”。")


async def _photo_check(ctx: Ctx, value: dict[str, Any]) -> dict[str, Any]:
    h = _here(ctx)
    assert h.evidence is not None
    current = W.photos_of(ctx.answers.get("ev_photos"))
    if len(current) >= MAX_PHOTOS:
        raise Invalid(f"每份凭证最多{MAX_PHOTOS}张照片，回复“完成”继续。")
    elsewhere = {p for ci, item in enumerate(h.app.items) for ei, e in enumerate(item.evidences)
                 if (ci, ei) != (h.ci, h.ei) for p in e.photo_ids}
    photo_id, note = await W.receive_photo(ctx, value, current=current, elsewhere=elsewhere)
    h.evidence.photo_ids = current + [photo_id]
    await _save(ctx, h.app)
    ctx.scratch["photo_note"] = note
    return {"photo_id": photo_id}


async def _photos_after(ctx: Ctx, value: list[dict[str, Any]]) -> str:
    ctx.scratch["replacing"] = False
    if ctx.scratch.get("mode") in ("field", "photos"):
        return "review"
    return "ev_next"


# --- after an evidence: another one, the next course, or the summary --------------------------------


async def _next_prompt(ctx: Ctx) -> str:
    h = _here(ctx)
    names = W.type_names(ctx.scratch)
    lines = [f"【{h.item.course_code} {_name(ctx, h.item.course_code)}】已填写{len(h.item.evidences)}份凭证："]
    lines += [f"{_circled(i)} {W.evidence_line(e, names)}" for i, e in enumerate(h.item.evidences)]
    problem = _companion_problem(ctx, h.item)
    if problem:
        lines.append(f"注意：{problem}请选择“新增凭证”补充。")
    lines.append("接下来：")
    return "\n".join(lines)


async def _next_options(ctx: Ctx) -> list[F.Option]:
    app = W.work(ctx)
    opts: list[F.Option] = [("add", "新增凭证（本课程再加一份）")]
    later = next((i for i in app.items if not i.evidences), None)
    if later is not None:
        opts.append(("next", f"下一门：{later.course_code} {_name(ctx, later.course_code)}"))
    else:
        opts.append(("done", "填好了，查看汇总"))
    return opts


async def _next_check(ctx: Ctx, choice: str) -> str:
    if choice != "add":
        problem = _companion_problem(ctx, _here(ctx).item)
        if problem:
            raise Invalid(f"{problem}请回复1新增凭证。")
    return choice


async def _next_after(ctx: Ctx, choice: str) -> str:
    if choice == "add":
        h = _here(ctx)
        _point(ctx, h.ci, len(h.item.evidences))
        ctx.scratch["mode"] = "fill"
        return "ev_type"
    return _position(ctx)


# --- the summary and what can be changed from it ------------------------------------------------------


def _circled(i: int) -> str:
    return "①②③④⑤⑥⑦⑧⑨⑩"[i] if i < 10 else f"({i + 1})"


async def _review_prompt(ctx: Ctx) -> str:
    app = W.work(ctx)
    await _remember_names(ctx, app)
    names = W.type_names(ctx.scratch)
    if app.status == "draft":
        head = f"【{TITLE}｜请核对】"
    else:
        head = f"【{TITLE}｜第{app.id}号 {app.status_label}】"
    lines = [head]
    if app.status == "rejected" and app.reason:
        lines.append(f"未通过原因：{app.reason}")
    if app.major_code:
        majors = dict(await _major_options(ctx))
        lines.append(f"专业：{majors.get(app.major_code, app.major_code)}")
    for n, item in enumerate(app.items, 1):
        lines.append(f"{n}. {item.course_code} {_name(ctx, item.course_code)}")
        if not item.evidences:
            lines.append("　（还没有凭证）")
        lines += [f"　{_circled(i)} {W.evidence_line(e, names)}" for i, e in enumerate(item.evidences)]
    evidences = sum(len(i.evidences) for i in app.items)
    lines.append(f"共{len(app.items)}门课程，{evidences}份凭证，照片{app.photo_count()}张。")
    lines += await W.review_tail(ctx, app, noun="申请")
    return "\n".join(lines)


async def _review_options(ctx: Ctx) -> list[F.Option]:
    submit, leave = W.submit_and_leave(ctx.scratch)
    return [submit, ("add", "新增凭证"), ("edit", "修改凭证"), ("photos", "更换照片"),
            ("delete", "删除凭证"), ("courses", "修改课程"), leave]


async def _review_check(ctx: Ctx, choice: str) -> str:
    app = W.work(ctx)
    ctx.scratch["action"] = choice
    if choice == "leave":
        raise EndFlow(_left(ctx.scratch) or "好的。")
    if choice == "submit":
        if app.status == "submitted" and not ctx.scratch.get("changed"):
            raise EndFlow(f"没有修改，第{app.id}号申请仍在审核中。\n审核结果会通过微信通知您。")
        before = app.status
        done = await W.submit(ctx, app, keyword=KEYWORD)
        ctx.scratch["result"] = _submitted_text(done, before)
        log.info("exemption application %s submitted by %s (%s courses, %s photos)", done.id,
                 W.tail(ctx.user.openid), len(done.items), done.photo_count())
        return choice
    if choice in ("edit", "photos", "delete") and not any(i.evidences for i in app.items):
        raise Invalid("还没有凭证，请先选择“新增凭证”。")
    return choice


def _submitted_text(app: ApplicationData, before: str) -> str:
    what = {"draft": "已提交", "rejected": "已重新提交", "submitted": "修改已提交"}[before]
    return (f"{what}，第{app.id}号免考申请现在是“待审核”。\n审核结果会通过微信通知您；"
            f"回复“我的申请”可以查看，审核前需要修改请回复“{KEYWORD}”。")


async def _review_after(ctx: Ctx, choice: str) -> Optional[str]:
    app = W.work(ctx)
    if choice == "submit":
        return None  # the last step: the flow ends with `_finish`
    if choice == "courses":
        ctx.scratch["mode"] = "fill"
        return "courses"
    if choice == "add":
        ctx.scratch["mode"] = "add"
        if len(app.items) == 1:
            _point(ctx, 0, len(app.items[0].evidences))
            return "ev_type"
        return "pick_course"
    every = [(ci, ei) for ci, i in enumerate(app.items) for ei in range(len(i.evidences))]
    if len(every) == 1:
        _point(ctx, *every[0])
        return _act_on_evidence(ctx)
    return "pick_ev"


def _act_on_evidence(ctx: Ctx) -> str:
    action = ctx.scratch.get("action")
    if action == "photos":
        ctx.scratch["mode"] = "photos"
        _enter_photos(ctx, replace=True)
        return "ev_photos"
    if action == "delete":
        return "del_sure"
    return "pick_field"


async def _pick_course_options(ctx: Ctx) -> list[F.Option]:
    return [(str(ci), f"{i.course_code} {_name(ctx, i.course_code)}") for ci, i in enumerate(W.work(ctx).items)]


async def _pick_course_after(ctx: Ctx, value: str) -> str:
    app = W.work(ctx)
    ci = int(value)
    _point(ctx, ci, len(app.items[ci].evidences))
    return "ev_type"


async def _pick_ev_options(ctx: Ctx) -> list[F.Option]:
    app = W.work(ctx)
    names = W.type_names(ctx.scratch)
    return [(f"{ci}:{ei}", f"{_name(ctx, i.course_code)}｜{names.get(e.type_code, e.type_code)}"
                           + (f" {e.number}" if e.number else "") + f"（照片{len(e.photo_ids)}张）")
            for ci, i in enumerate(app.items) for ei, e in enumerate(i.evidences)]


async def _pick_ev_after(ctx: Ctx, value: str) -> str:
    ci, ei = (int(x) for x in value.split(":"))
    _point(ctx, ci, ei)
    return _act_on_evidence(ctx)


FIELD_STEPS = (("ev_type", "凭证类型"), ("ev_number", "编号"), ("ev_month", "获取凭证时间"),
               ("ev_province", "获取凭证省份"), ("ev_note", "备注"), ("ev_photos", "照片（全部换成新的）"))


async def _pick_field_after(ctx: Ctx, step: str) -> str:
    ctx.scratch["mode"] = "field"
    if step == "ev_photos":
        _enter_photos(ctx, replace=True)
    return step


async def _pick_field_prompt(ctx: Ctx) -> str:
    h = _here(ctx)
    e = h.evidence
    line = W.evidence_line(e, W.type_names(ctx.scratch)) if e else ""
    return f"【{_name(ctx, h.item.course_code)}】{line}\n要修改哪一项？"


async def _del_prompt(ctx: Ctx) -> str:
    h = _here(ctx)
    e = h.evidence
    name = W.type_names(ctx.scratch).get(e.type_code, e.type_code) if e else ""
    return f"确定删除「{_name(ctx, h.item.course_code)}」的凭证「{name}」吗？照片也一起删除。\n请回复“是”或“否”。"


async def _del_check(ctx: Ctx, yes: bool) -> bool:
    if yes:
        h = _here(ctx)
        if h.evidence is not None:
            del h.item.evidences[h.ei]
            await _save(ctx, h.app)
    return yes


async def _to_review(ctx: Ctx, value: Any) -> str:
    return "review"


# --- the end -----------------------------------------------------------------------------------


async def _finish(ctx: Ctx) -> str:
    return ctx.scratch.get("result") or "已提交。"


def _left(scratch: dict[str, Any]) -> Optional[str]:
    """What 取消, expiry and "先保存" say: a draft keeps everything, a pending edit keeps nothing."""
    status = W.status_of(scratch)
    if status in ("draft", "rejected"):
        return f"已填写的内容都保存了，回复“{KEYWORD}”可以接着办理。{W.closes_text(scratch)}"
    if status == "submitted":
        return "这次的修改没有提交，原申请不变，仍在审核中。"
    return None


def _never(ctx: Ctx) -> bool:
    return False


EXEMPTION = Flow(
    name=KIND,
    title=TITLE,
    confirm=False,  # `review` is the summary: it shows every course and evidence and submits
    begin=_begin,
    left_note=_left,
    steps=[
        Step("start", "办理方式", F.Choice(), _start_prompt, options=_start_options,
             when=lambda ctx: bool(ctx.scratch.get("existing")), check=_start_check, after=_start_after),
        Step("notice", "考生须知", Acknowledge(), _notice_prompt, check=_notice_check, after=_to_position),
        Step("major", "专业", F.Choice(), "请选择申请免考的专业：", options=_major_options, when=_never,
             check=_major_check, after=_to_position),
        Step("courses", "课程", F.MultiChoice(), _courses_prompt, options=_course_options, when=_never,
             check=_courses_check, after=_to_position),
        Step("ev_type", "凭证类型", F.Choice(), _ev_prompt("请选择凭证类型：", "type_code"), options=_type_options,
             when=_never, check=_set("type_code"), after=_then("ev_number")),
        Step("ev_number", "编号", F.Text(max_len=64, hint="证书或成绩单上的编号，最多64个字符。"),
             _ev_prompt("请输入凭证编号（证书或成绩单上的编号）：", "number"), when=_never,
             check=_set("number"), after=_then("ev_month")),
        Step("ev_month", "获取凭证时间", F.YearMonth(),
             _ev_prompt("请输入获取凭证的时间（年月，如 2018年6月）：", "obtained_month"), when=_never,
             check=_set("obtained_month"), after=_then("ev_province")),
        Step("ev_province", "获取凭证省份", F.Province(),
             _ev_prompt("请输入获取凭证的省份（如 上海、江苏）：", "province"), when=_never,
             check=_set("province"), after=_then("ev_note")),
        Step("ev_note", "备注", F.Text(optional=True, max_len=200),
             _ev_prompt("备注（没有请回复“无”）：", "note"), when=_never,
             check=_set("note"), after=_then("ev_photos")),
        Step("ev_photos", "照片", F.Photos(max_count=MAX_PHOTOS), _photos_prompt, when=_never,
             check=_photo_check, after=_photos_after),
        Step("ev_next", "下一步", F.Choice(), _next_prompt, options=_next_options, when=_never,
             check=_next_check, after=_next_after),
        Step("pick_course", "课程", F.Choice(), "给哪门课程新增凭证？", options=_pick_course_options, when=_never,
             after=_pick_course_after),
        Step("pick_ev", "凭证", F.Choice(), "请选择凭证：", options=_pick_ev_options, when=_never,
             after=_pick_ev_after),
        Step("pick_field", "修改项", F.Choice(options=tuple(FIELD_STEPS)), _pick_field_prompt, when=_never,
             after=_pick_field_after),
        Step("del_sure", "确认删除", F.YesNo(), _del_prompt, when=_never, check=_del_check, after=_to_review),
        Step("review", "核对", F.Choice(), _review_prompt, options=_review_options, when=_never,
             check=_review_check, after=_review_after),
    ],
    submit=_finish,
)


# --- 我的申请 ------------------------------------------------------------------------------------


async def applications_reply(ctx: Ctx, arg: str = "") -> Reply:
    """"我的申请": every application of the candidate (申请免考 and 成绩补登) with its status, and
    the courses exempted by approved applications (历史已通过免考审核的课程)."""
    mine = await apps.list_applications(ctx.db, candidate_id=ctx.user.candidate_id)
    exemptions = [a for a in mine if a.kind == KIND]
    backfills = [a for a in mine if a.kind == backfill.KIND]
    if not mine:
        return Reply(f"您还没有办理过申请免考或成绩补登。\n回复“{KEYWORD}”申请免考，回复“{backfill.KEYWORD}”登记以前的成绩。")
    lines = ["【我的申请】"]
    if exemptions:
        names = await W.course_names(ctx, {i.course_code for a in exemptions for i in a.items})
        lines.append("申请免考：")
        for a in exemptions:
            courses = "、".join(names.get(i.course_code, i.course_code) for i in a.items) or "未选课程"
            if a.status == "draft":
                lines.append(f"草稿（未提交）｜{courses}｜照片{a.photo_count()}张")
            else:
                lines += [W.status_line(a), f"　课程：{courses}"]
        approved = [(i.course_code, a) for a in exemptions if a.status == "approved" for i in a.items]
        if approved:
            lines.append("已通过免考审核的课程：")
            lines += [f"　{code} {names.get(code, code)}（{W.day(a.decided_at)}通过）" for code, a in approved]
        lines.append(f"修改、继续或重新提交免考申请，请回复“{KEYWORD}”。")
    if backfills:
        lines.append("成绩补登：")
        lines += await backfill.registration_lines(ctx, backfills)
        lines.append(f"修改待审核的登记，请回复“{backfill.KEYWORD}”。")
    return Reply("\n".join(lines))


def register(router: Any) -> None:
    router.add_flow(EXEMPTION)
    router.add_query("query:applications", applications_reply)
