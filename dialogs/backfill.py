"""成绩补登 as a guided flow: the candidate's registrations, then `登记成绩` of one of three kinds
(FLOWS 15-18), each checked against its date limit with where newer business goes instead.

- 理论与实践: course (typed first characters or code, then chosen from the matches), 通过时间
  (2002年12月 or earlier), 成绩, 说明, photos of the evidence.
- 免考: course, 办理免考时间 (before 2020), 凭证类型, 取得凭证时间, 凭证编号, 取得凭证地点, 说明.
- 转入: 办理转入时间 (before 2020), 来源省, 来源准考证号, 转入专业, one or more courses.

One registration is one application of kind ``backfill``; its fields sit on each of its courses
(storage.applications.ItemData). Once a course is chosen every answer is saved in the draft
(dialogs/evidence.py). A 转入 registration's first answers wait in the dialog until its courses
are chosen, because the application keeps them on the courses.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import select

from dialogs import evidence as W
from dialogs import fields as F
from dialogs.engine import Ctx, EndFlow, Flow, Step, join
from dialogs.fields import Invalid
from storage import applications as apps
from storage import queries as q
from storage.applications import ApplicationData, EvidenceData, ItemData
from storage.models import CandidateMajor, PlanCourse
from storage.models_applications import ENTRY_KINDS
from storage.outbox import KIND_KEYWORDS
from storage.vocab import score_passes

log = logging.getLogger("zikao.backfill")

KIND = "backfill"
KEYWORD = KIND_KEYWORDS[KIND]  # "成绩补登"
TITLE = "成绩补登"
PROOF_TYPE = "score_proof"  # the evidence type holding a 理论与实践 result's photos
MAX_PHOTOS = apps.MAX_PHOTOS_PER_EVIDENCE

KIND_OPTIONS: tuple[F.Option, ...] = (
    ("theory", "理论与实践（2002年12月及以前通过的考试）"),
    ("exemption", "免考记录（2020年以前已办好的免考）"),
    ("transfer", "转入记录（2020年以前办好的外省转入）"),
)

# The fields of each kind, in the order asked: (step, label in the summary and 修改 list).
FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "theory": (("course", "课程"), ("th_month", "考试通过时间"), ("th_score", "成绩"), ("th_note", "说明"),
               ("th_photos", "成绩证明照片")),
    "exemption": (("course", "课程"), ("ex_month", "办理免考时间"), ("ex_type", "凭证类型"),
                  ("ex_obtained", "取得凭证时间"), ("ex_number", "凭证编号"), ("ex_place", "取得凭证地点"),
                  ("ex_note", "说明")),
    "transfer": (("tr_month", "办理转入时间"), ("tr_province", "来源省"), ("tr_number", "来源准考证号"),
                 ("tr_major", "转入专业"), ("tr_courses", "课程")),
}


def _kind(ctx: Ctx) -> Optional[str]:
    app = ctx.scratch.get(W.WORK)
    items = (app or {}).get("items") or []
    if items and items[0].get("entry_kind"):
        return items[0]["entry_kind"]
    return ctx.scratch.get("kind")


def _editing_one(ctx: Ctx) -> bool:
    return ctx.scratch.get("mode") == "field"


async def _save(ctx: Ctx, app: ApplicationData) -> ApplicationData:
    return await W.persist(ctx, app, keyword=KEYWORD)


def _transfer(ctx: Ctx) -> dict[str, Any]:
    """The 转入 fields before the courses exist to carry them."""
    return ctx.scratch.setdefault("transfer", {})


def _position(ctx: Ctx) -> str:
    """The first thing the registration still lacks, as the step that asks for it."""
    ctx.scratch["mode"] = "fill"
    kind = _kind(ctx)
    app = W.work(ctx)
    if kind is None:
        return "kind"
    if kind == "transfer":
        t = _transfer(ctx)
        first = app.items[0] if app.items else None
        have = {
            "tr_month": first.passed_month if first else t.get("month"),
            "tr_province": first.from_province if first else t.get("province"),
            "tr_number": first.from_admission_number if first else t.get("number"),
            "tr_major": app.major_code,
        }
        missing = next((step for step, value in have.items() if not value), None)
        return missing or ("review" if app.items else "tr_courses")
    if not app.items:
        return "course"
    item = app.items[0]
    if kind == "theory":
        if not item.passed_month:
            return "th_month"
        if item.score is None and item.grade is None:
            return "th_score"
        if not any(e.photo_ids for e in item.evidences):
            _enter_photos(ctx, replace=False)
            return "th_photos"
        return "review"
    e = item.evidences[0] if item.evidences else None
    for step, value in (("ex_month", item.passed_month), ("ex_type", e and e.type_code),
                        ("ex_obtained", e and e.obtained_month), ("ex_number", e and e.number),
                        ("ex_place", e and e.province)):
        if not value:
            return step
    return "review"


def _then(next_step: str):
    async def after(ctx: Ctx, value: Any) -> str:
        if _editing_one(ctx):
            return "review"
        if next_step == "th_photos":
            _enter_photos(ctx, replace=False)
        return next_step
    return after


async def _to_review(ctx: Ctx, value: Any) -> str:
    return "review"


# --- registrations as a list -------------------------------------------------------------------------


async def _credits(ctx: Ctx, codes: set[str]) -> dict[str, int]:
    """Credits of courses in the candidate's plans (a course may sit in several: the largest)."""
    if not codes:
        return {}
    async with ctx.db.session() as s:
        rows = (await s.execute(
            select(PlanCourse.course_code, PlanCourse.credits)
            .join(CandidateMajor, CandidateMajor.major_code == PlanCourse.major_code)
            .where(CandidateMajor.candidate_id == ctx.user.candidate_id, PlanCourse.course_code.in_(codes))
        )).all()
    out: dict[str, int] = {}
    for code, credits in rows:
        out[code] = max(out.get(code, 0), credits or 0)
    return out


def score_label(score: Optional[Decimal], grade: Optional[str]) -> str:
    if score is not None:
        return f"{score.normalize():f}分" if score == score.to_integral() else f"{score:.1f}分"
    return grade or ""


async def registration_lines(ctx: Ctx, regs: list[ApplicationData]) -> list[str]:
    """登记时间, 类型, 审核结果; then per course 课程, 成绩, 学分, 通过时间."""
    codes = {i.course_code for a in regs for i in a.items}
    names = await W.course_names(ctx, codes)
    credits = await _credits(ctx, codes)
    lines = []
    for a in regs:
        kind = ENTRY_KINDS.get(a.items[0].entry_kind or "", "") if a.items else ""
        if a.status == "draft":
            lines.append(f"未提交的登记{('｜' + kind) if kind else ''}（草稿）")
        else:
            when = W.day(a.submitted_at or a.created_at)
            lines.append(f"第{a.id}号｜{when}登记｜{kind}｜{a.status_label}"
                         + ("（可修改）" if a.status == "submitted" else ""))
        if a.status == "rejected" and a.reason:
            lines.append(f"　未通过原因：{a.reason}")
        for i in a.items:
            parts = [f"{i.course_code} {names.get(i.course_code, i.course_code)}"]
            if i.entry_kind == "theory" and (i.score is not None or i.grade):
                parts.append(score_label(i.score, i.grade))
            if credits.get(i.course_code):
                parts.append(f"{credits[i.course_code]}学分")
            if i.passed_month:
                what = {"theory": "通过", "exemption": "免考", "transfer": "转入"}.get(i.entry_kind or "", "")
                parts.append(f"{what}时间{apps.month_label(i.passed_month)}")
            lines.append("　" + "｜".join(parts))
    return lines


async def _mine(ctx: Ctx) -> list[ApplicationData]:
    return await apps.list_applications(ctx.db, candidate_id=ctx.user.candidate_id, kind=KIND)


async def _load_types(ctx: Ctx) -> None:
    types = await apps.evidence_types(ctx.db, include_inactive=True)
    ctx.scratch["types"] = [[t.code, t.name, t.needs_companion, t.companion, t.for_exemption, t.active] for t in types]


async def _begin(ctx: Ctx) -> Optional[str]:
    check = await apps.business_window(ctx.db, KIND, ctx.now)
    if not check.is_open:
        regs = [a for a in await _mine(ctx) if a.status != "draft"]
        lines = ["您的成绩补登记录：", *await registration_lines(ctx, regs)] if regs else []
        return join(apps.window_closed_text(check), "\n".join(lines))
    ctx.scratch["closes_at"] = W.window_closes(check)
    await _load_types(ctx)
    return None


async def _start_prompt(ctx: Ctx) -> str:
    regs = await _mine(ctx)
    lines = [f"【{TITLE}】", "用于登记平台上没有的早年成绩：2002年12月及以前通过的考试，2020年以前办好的免考和转入。"]
    shown = [a for a in regs if a.status != "draft" or a.items]
    if shown:
        lines += ["您的登记：", *await registration_lines(ctx, shown)]
    else:
        lines.append("您还没有登记过成绩。")
    lines.append(W.closes_text(ctx.scratch))
    lines.append("请选择：")
    return "\n".join(line for line in lines if line)


async def _start_options(ctx: Ctx) -> list[F.Option]:
    regs = await _mine(ctx)
    draft = next((a for a in regs if a.status == "draft"), None)
    opts: list[F.Option] = []
    if draft is not None and draft.items:
        opts += [("continue", "继续填写未提交的登记"), ("restart", "放弃未提交的登记，重新登记")]
    else:
        opts.append(("new", "登记成绩"))
    return opts + W.reopen_options(regs, edit_label="修改第{id}号（待审核）")


async def _start_check(ctx: Ctx, choice: str) -> str:
    cid = ctx.user.candidate_id
    draft = await apps.find_draft(ctx.db, cid, KIND)
    if choice == "continue":
        if draft is None:
            raise Invalid("未提交的登记已经不在了，请重新选择。")
        W.keep(ctx, draft)
    elif choice in ("restart", "new"):
        if draft is not None and draft.items:
            await apps.discard_draft(ctx.db, draft.id, candidate_id=cid)
        ctx.scratch.pop(W.WORK, None)
        ctx.scratch.pop("transfer", None)
        ctx.scratch.pop("kind", None)
    elif choice.startswith(("edit:", "redo:")):
        await W.reopen(ctx, choice, noun="这条登记")
    return choice


async def _start_after(ctx: Ctx, choice: str) -> str:
    if choice == "continue":
        return _position(ctx)
    if choice in ("new", "restart"):
        return "kind"
    return "review"


# --- the kind and the course ---------------------------------------------------------------------


async def _kind_check(ctx: Ctx, kind: str) -> str:
    if W.WORK not in ctx.scratch:
        admission = await W.admission_number(ctx)
        try:
            app = await apps.open_draft(ctx.db, kind=KIND, candidate_id=ctx.user.candidate_id,
                                        openid=ctx.user.openid, admission_number=admission, now=ctx.now)
        except apps.ApplicationError as e:
            raise EndFlow(e.message) from None
        W.keep(ctx, app)
    app = W.work(ctx)
    if app.items and app.items[0].entry_kind != kind:
        # Back to the kind and another one chosen: what was entered for the first no longer fits.
        app.items, app.major_code = [], None
        await _save(ctx, app)
    ctx.scratch["kind"] = kind
    ctx.scratch.pop("transfer", None)
    return kind


async def _kind_after(ctx: Ctx, kind: str) -> str:
    return "tr_month" if kind == "transfer" else "course"


async def _course_check(ctx: Ctx, typed: str) -> str:
    matches = await apps.find_courses(ctx.db, typed)
    if not matches:
        raise Invalid(f"没有找到以“{typed}”开头的课程。请换个写法，或输入5位课程代码。")
    ctx.scratch["matches"] = [[code, name] for code, name in matches]
    return typed


async def _course_after(ctx: Ctx, typed: str) -> str:
    return "course_pick"


async def _match_options(ctx: Ctx) -> list[F.Option]:
    return [(code, f"{code} {name}") for code, name in ctx.scratch.get("matches", [])]


async def _pick_check(ctx: Ctx, code: str) -> str:
    app = W.work(ctx)
    async with ctx.db.session() as s:
        states = await apps.course_states(s, ctx.user.candidate_id, exclude_application_id=app.id)
    if code in states:
        raise Invalid(f"这门课程{apps.COURSE_STATES[states[code]]}，不需要补登。请选择其他课程，或回复“返回”重新输入。")
    kind = _kind(ctx)
    if app.items:
        app.items[0].course_code = code
    else:
        app.items = [ItemData(code, entry_kind=kind)]
    await _save(ctx, app)
    return code


async def _pick_after(ctx: Ctx, code: str) -> str:
    if _editing_one(ctx):
        return "review"
    return "th_month" if _kind(ctx) == "theory" else "ex_month"


# --- fields on the (single) course of 理论与实践 and 免考 ------------------------------------------------


def _dated(entry_kind: str):
    """A check of 通过时间 / 办理免考时间 / 办理转入时间 against its limit (FLOWS 16-18)."""

    async def check(ctx: Ctx, month: str) -> str:
        problem = apps.backfill_date_problem(entry_kind, month, apps.today_in_shanghai(ctx.now))
        if problem:
            raise Invalid(problem)
        if entry_kind == "transfer":
            return await _set_transfer("month", "passed_month")(ctx, month)
        app = W.work(ctx)
        app.items[0].passed_month = month
        await _save(ctx, app)
        return month
    return check


async def _score_check(ctx: Ctx, text: str) -> str:
    try:
        score, grade = apps.parse_score(text)
    except ValueError as e:
        raise Invalid(str(e)) from None
    if not score_passes(score, grade):
        raise Invalid("只能补登合格的成绩（60分及以上，或“合格”“通过”）。")
    app = W.work(ctx)
    app.items[0].score, app.items[0].grade = score, grade
    await _save(ctx, app)
    return text


def _set_item(attr: str):
    async def check(ctx: Ctx, value: Any) -> Any:
        app = W.work(ctx)
        setattr(app.items[0], attr, value or "")
        await _save(ctx, app)
        return value
    return check


def _set_evidence(attr: str):
    """免考: the one evidence of the course (created with its type)."""

    async def check(ctx: Ctx, value: Any) -> Any:
        app = W.work(ctx)
        item = app.items[0]
        if not item.evidences:
            item.evidences.append(EvidenceData(type_code=value if attr == "type_code" else ""))
        setattr(item.evidences[0], attr, value or "")
        await _save(ctx, app)
        return value
    return check


async def _type_options(ctx: Ctx) -> list[F.Option]:
    return [(t[0], t[1]) for t in ctx.scratch.get("types", []) if t[4] and t[5]]


def _enter_photos(ctx: Ctx, *, replace: bool) -> None:
    app = W.work(ctx)
    item = app.items[0]
    have = [] if replace else [p for e in item.evidences for p in e.photo_ids]
    ctx.answers["th_photos"] = [{"photo_id": p} for p in have]
    ctx.scratch["replacing"] = replace


async def _photos_prompt(ctx: Ctx) -> str:
    if ctx.scratch.get("replacing"):
        return "请发送新的成绩证明照片，发送后将替换原来的照片。发完回复“完成”。"
    have = len(ctx.answers.get("th_photos") or [])
    already = f"已收到{have}张，" if have else ""
    return (f"{already}请发送成绩证明的照片（如成绩通知单、成绩证明），JPG或PNG，清晰完整、文字朝上。\n"
            f"可以发多张（最多{MAX_PHOTOS}张），发完回复“完成”。")


async def _photo_check(ctx: Ctx, value: dict[str, Any]) -> dict[str, Any]:
    app = W.work(ctx)
    item = app.items[0]
    current = W.photos_of(ctx.answers.get("th_photos"))
    if len(current) >= MAX_PHOTOS:
        raise Invalid(f"最多{MAX_PHOTOS}张照片，回复“完成”继续。")
    photo_id, note = await W.receive_photo(ctx, value, current=current, elsewhere=set())
    proof = next((e for e in item.evidences if e.type_code == PROOF_TYPE), None)
    if proof is None:
        proof = EvidenceData(type_code=PROOF_TYPE)
        item.evidences.append(proof)
    proof.photo_ids = current + [photo_id]
    await _save(ctx, app)
    ctx.scratch["photo_note"] = note
    return {"photo_id": photo_id}


async def _photos_after(ctx: Ctx, value: Any) -> str:
    ctx.scratch["replacing"] = False
    return "review"


# --- 转入 --------------------------------------------------------------------------------------------


def _set_transfer(key: str, attr: str):
    """A 转入 field: on every course once they exist, in the dialog until then."""

    async def check(ctx: Ctx, value: Any) -> Any:
        _transfer(ctx)[key] = value
        app = W.work(ctx)
        if app.items:
            for i in app.items:
                setattr(i, attr, value)
            await _save(ctx, app)
        return value
    return check


async def _source_province_check(ctx: Ctx, province: str) -> str:
    if province == "上海市":
        raise Invalid("来源省是您转出的外省（转入上海之前报考的省份），不能是上海。")
    return await _set_transfer("province", "from_province")(ctx, province)


@dataclass
class SourceNumber(F.Field):
    """Another province's 准考证号: its own length, letters and digits."""

    hint: str = "转出省发的准考证号，6到20位数字或字母。"

    def parse_text(self, text: str) -> str:
        s = text.replace(" ", "").upper()
        if not (6 <= len(s) <= 20) or not s.isalnum() or not s.isascii():
            raise Invalid("准考证号应为6到20位数字或字母。")
        return s


async def _majors(ctx: Ctx) -> list[q.Enrolment]:
    return await q.candidate_majors(ctx.db, ctx.user.candidate_id, active=ctx.user.admission_number)


async def _major_options(ctx: Ctx) -> list[F.Option]:
    return [(e.major_code, f"{e.major_code} {e.major_name}") for e in await _majors(ctx)]


async def _number_after(ctx: Ctx, value: str) -> str:
    if _editing_one(ctx):
        return "review"
    majors = await _majors(ctx)
    if len(majors) == 1:
        app = W.work(ctx)
        if app.major_code != majors[0].major_code:
            app.major_code = majors[0].major_code
            W.keep(ctx, app)  # saved with the courses, the first moment the draft can hold it
        return "tr_courses"
    return "tr_major"


async def _major_check(ctx: Ctx, major: str) -> str:
    app = W.work(ctx)
    if app.major_code != major:
        app.major_code = major
        app.items = []  # another plan: its courses are chosen again
        await _save(ctx, app)
    return major


async def _major_after(ctx: Ctx, major: str) -> str:
    # A changed major needs its courses, even when only the major was being changed.
    return "review" if _editing_one(ctx) and W.work(ctx).items else "tr_courses"


async def _transfer_courses(ctx: Ctx) -> list[apps.CourseChoice]:
    app = W.work(ctx)
    return await apps.exemption_courses(ctx.db, ctx.user.candidate_id, app.major_code or "",
                                        exclude_application_id=app.id)


async def _course_options(ctx: Ctx) -> list[F.Option]:
    return [(c.code, f"{c.code} {c.name}") for c in await _transfer_courses(ctx)
            if c.eligible or c.why_not == "论文不能申请免考"]


async def _courses_prompt(ctx: Ctx) -> str:
    if not await _course_options(ctx):
        return "这个专业没有可以登记转入的课程（都已通过、免考或转入）。请回复“返回”选择其他专业，或回复“取消”。"
    return "请选择转入的课程，可以选多门（如 1,2）："


async def _courses_check(ctx: Ctx, codes: list[str]) -> list[str]:
    app = W.work(ctx)
    t = _transfer(ctx)
    first = app.items[0] if app.items else None
    month = first.passed_month if first else t.get("month")
    province = first.from_province if first else t.get("province")
    number = first.from_admission_number if first else t.get("number")
    app.items = [ItemData(code, entry_kind="transfer", passed_month=month, from_province=province or "",
                          from_admission_number=number or "") for code in codes]
    await _save(ctx, app)
    return codes


# --- the summary --------------------------------------------------------------------------------


async def _summary_lines(ctx: Ctx, app: ApplicationData) -> list[tuple[str, str]]:
    """(label, value) per field of the registration, in the order asked."""
    kind = _kind(ctx) or ""
    names = await W.course_names(ctx, [i.course_code for i in app.items])
    types = W.type_names(ctx.scratch)
    item = app.items[0] if app.items else None
    e = item.evidences[0] if item and item.evidences else None
    values: dict[str, str] = {}
    if kind == "transfer":
        t = _transfer(ctx)
        majors = dict(await _major_options(ctx))
        values = {
            "tr_month": apps.month_label(item.passed_month if item else t.get("month")),
            "tr_province": (item.from_province if item else t.get("province")) or "（未填）",
            "tr_number": (item.from_admission_number if item else t.get("number")) or "（未填）",
            "tr_major": majors.get(app.major_code or "", app.major_code or "（未选）"),
            "tr_courses": "、".join(f"{i.course_code} {names.get(i.course_code, '')}" for i in app.items) or "（未选）",
        }
    elif item is not None:
        values = {
            "course": f"{item.course_code} {names.get(item.course_code, '')}",
            "th_month": apps.month_label(item.passed_month), "ex_month": apps.month_label(item.passed_month),
            "th_score": score_label(item.score, item.grade) or "（未填）",
            "th_note": item.note or "无", "ex_note": item.note or "无",
            "th_photos": f"{sum(len(x.photo_ids) for x in item.evidences)}张",
            "ex_type": types.get(e.type_code, e.type_code) if e else "（未选）",
            "ex_obtained": apps.month_label(e.obtained_month if e else None),
            "ex_number": (e.number if e else "") or "（未填）",
            "ex_place": (e.province if e else "") or "（未填）",
        }
    return [(label, values.get(step, "")) for step, label in FIELDS.get(kind, ())]


async def _review_prompt(ctx: Ctx) -> str:
    app = W.work(ctx)
    kind = _kind(ctx) or ""
    head = f"【{TITLE}｜请核对】" if app.status == "draft" else f"【{TITLE}｜第{app.id}号 {app.status_label}】"
    lines = [head]
    if app.status == "rejected" and app.reason:
        lines.append(f"未通过原因：{app.reason}")
    lines.append(f"类型：{ENTRY_KINDS.get(kind, '')}")
    lines += [f"{label}：{value}" for label, value in await _summary_lines(ctx, app)]
    lines += await W.review_tail(ctx, app, noun="登记")
    return "\n".join(lines)


async def _review_options(ctx: Ctx) -> list[F.Option]:
    submit, leave = W.submit_and_leave(ctx.scratch)
    return [submit, ("edit", "修改内容"), leave]


async def _review_check(ctx: Ctx, choice: str) -> str:
    app = W.work(ctx)
    if choice == "leave":
        raise EndFlow(_left(ctx.scratch) or "好的。")
    if choice == "submit":
        if app.status == "submitted" and not ctx.scratch.get("changed"):
            raise EndFlow(f"没有修改，第{app.id}号登记仍在审核中。")
        before = app.status
        done = await W.submit(ctx, app, keyword=KEYWORD)
        what = {"draft": "已提交", "rejected": "已重新提交", "submitted": "修改已提交"}[before]
        ctx.scratch["result"] = (f"{what}，第{done.id}号成绩补登现在是“待审核”。\n审核通过后会计入您的成绩，"
                                 f"结果会通过微信通知您。审核前需要修改请回复“{KEYWORD}”。")
        log.info("backfill %s submitted by %s (%s)", done.id, W.tail(ctx.user.openid), _kind(ctx))
    return choice


async def _review_after(ctx: Ctx, choice: str) -> Optional[str]:
    return None if choice == "submit" else "pick_field"


async def _field_options(ctx: Ctx) -> list[F.Option]:
    # "修改成绩", not "成绩": a bare keyword would run its query instead of answering the step.
    return [(step, f"修改{label}") for step, label in FIELDS.get(_kind(ctx) or "", ())]


async def _field_after(ctx: Ctx, step: str) -> str:
    ctx.scratch["mode"] = "field"
    if step == "th_photos":
        _enter_photos(ctx, replace=True)
    return step


async def _finish(ctx: Ctx) -> str:
    return ctx.scratch.get("result") or "已提交。"


def _left(scratch: dict[str, Any]) -> Optional[str]:
    status = W.status_of(scratch)
    if status in ("draft", "rejected") and ((scratch.get(W.WORK) or {}).get("items") or status == "rejected"):
        return f"已填写的内容都保存了，回复“{KEYWORD}”可以接着办理。{W.closes_text(scratch)}"
    if status == "submitted":
        return "这次的修改没有提交，原登记不变，仍在审核中。"
    return None


def _never(ctx: Ctx) -> bool:
    return False


DATE_HINT = "如 2001年10月、2001-10 或 200110。"

BACKFILL = Flow(
    name=KIND,
    title=TITLE,
    confirm=False,  # `review` is the summary
    begin=_begin,
    left_note=_left,
    steps=[
        Step("start", "办理方式", F.Choice(), _start_prompt, options=_start_options, check=_start_check,
             after=_start_after),
        Step("kind", "补登类型", F.Choice(options=KIND_OPTIONS), "请选择要登记的成绩类型（回复序号）：",
             when=_never, check=_kind_check, after=_kind_after),
        # 理论与实践 and 免考: one course, found by what the candidate types.
        Step("course", "课程", F.Text(max_len=30, hint="课程名称的前几个字，或5位课程代码。"),
             "请输入课程名称的前几个字或课程代码（如“英语”或 00015）：", when=_never,
             check=_course_check, after=_course_after),
        Step("course_pick", "课程", F.Choice(), "找到这些课程，请回复序号（都不是请回复“返回”重新输入）：",
             options=_match_options, when=_never, check=_pick_check, after=_pick_after),
        Step("th_month", "考试通过时间", F.YearMonth(hint=DATE_HINT),
             "请输入这门课程的考试通过时间（年月，如 2001年10月）：\n只能补登2002年12月及以前通过的成绩。",
             when=_never, check=_dated("theory"), after=_then("th_score")),
        Step("th_score", "成绩", F.Score(), "请输入成绩（分数，或“合格”“通过”）：", when=_never,
             check=_score_check, after=_then("th_note")),
        Step("th_note", "说明", F.Text(optional=True, max_len=200),
             "说明（如当时的准考证号、考试地点，没有请回复“无”）：", when=_never,
             check=_set_item("note"), after=_then("th_photos")),
        Step("th_photos", "成绩证明照片", F.Photos(max_count=MAX_PHOTOS), _photos_prompt, when=_never,
             check=_photo_check, after=_photos_after),
        Step("ex_month", "办理免考时间", F.YearMonth(hint=DATE_HINT),
             "请输入办理免考的时间（年月）：\n只能补登2020年以前已办好的免考。", when=_never,
             check=_dated("exemption"), after=_then("ex_type")),
        Step("ex_type", "凭证类型", F.Choice(), "免考所用的凭证类型：", options=_type_options, when=_never,
             check=_set_evidence("type_code"), after=_then("ex_obtained")),
        Step("ex_obtained", "取得凭证时间", F.YearMonth(hint=DATE_HINT), "取得凭证的时间（年月）：", when=_never,
             check=_set_evidence("obtained_month"), after=_then("ex_number")),
        Step("ex_number", "凭证编号", F.Text(max_len=64), "凭证编号：", when=_never,
             check=_set_evidence("number"), after=_then("ex_place")),
        Step("ex_place", "取得凭证地点", F.Province(), "取得凭证的地点（省份，如 上海、江苏）：", when=_never,
             check=_set_evidence("province"), after=_then("ex_note")),
        Step("ex_note", "说明", F.Text(optional=True, max_len=200), "说明（没有请回复“无”）：", when=_never,
             check=_set_item("note"), after=_to_review),
        # 转入
        Step("tr_month", "办理转入时间", F.YearMonth(hint=DATE_HINT),
             "请输入办理转入的时间（年月）：\n只能补登2020年以前办好的转入。", when=_never,
             check=_dated("transfer"), after=_then("tr_province")),
        Step("tr_province", "来源省", F.Province(), "来源省（从哪个省转入，如 江苏）：", when=_never,
             check=_source_province_check, after=_then("tr_number")),
        Step("tr_number", "来源准考证号", SourceNumber(), "在来源省的准考证号：", when=_never,
             check=_set_transfer("number", "from_admission_number"), after=_number_after),
        Step("tr_major", "转入专业", F.Choice(), "转入的专业：", options=_major_options, when=_never,
             check=_major_check, after=_major_after),
        Step("tr_courses", "课程", F.MultiChoice(), _courses_prompt, options=_course_options, when=_never,
             check=_courses_check, after=_to_review),
        Step("pick_field", "修改项", F.Choice(), "要修改哪一项？", options=_field_options, when=_never,
             after=_field_after),
        Step("review", "核对", F.Choice(), _review_prompt, options=_review_options, when=_never,
             check=_review_check, after=_review_after),
    ],
    submit=_finish,
)


def register(router: Any) -> None:
    router.add_flow(BACKFILL)
