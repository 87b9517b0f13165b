"""The candidate's lookups as replies: scores, 考试计划, 教材, 毕业进度, 业务, 消息, 订单, 样例, 咨询.

Each function returns a `dialogs.types.Reply` laid out for a phone: short lines, a 【title】, one
course per two lines, identifiers masked. Long replies are fine: the edge pages them at 2048
bytes ("下一页"). Every figure comes from storage.queries; the media ids of the sample pictures
are kept through storage.keyvalues.
The router decides which function a message reaches; `Viewer` is who is asking.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Awaitable, Callable, Optional

from dialogs import progress as rules
from dialogs.fields import Invalid
from dialogs.types import Reply
from storage import identifiers as ids
from storage import keyvalues
from storage import queries as q
from storage.applications import list_applications
from storage.db import Database
from storage.models import utcnow
from storage.outbox import KIND_KEYWORDS, SHANGHAI, shanghai_time
from storage.vocab import SCORE_KINDS, WINDOW_KINDS

log = logging.getLogger("zikao.queries")

# --- Who asks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """The follower asking: bound to a candidate or not, with the 准考证号 chosen (切换准考证号)."""

    openid: str
    candidate_id: Optional[int] = None
    admission_number: Optional[str] = None

    @property
    def bound(self) -> bool:
        return self.candidate_id is not None


BIND_FIRST = "查询个人成绩和考试计划，需要先绑定考生身份。\n回复“绑定”，按提示输入证件号码和密码即可。"
NO_MAJOR = "没有查到您报考的专业。\n如有疑问，请拨打技术咨询电话 400-0960-990。"
NOT_ENROLLED = "您没有报考专业 {code}。\n回复“考试计划”查看您报考的专业。"

# --- Small formats ------------------------------------------------------------------------------

SEP = "｜"
INDENT = "\u3000"
SCORE_QUERY_HINT = "回复课程名称或代码加“成绩”可单独查询，如“00015成绩”“线代过了吗”。"
HELPLINE = "成绩如有疑问，请拨打客服电话 400-0960-990。"


def mask_admission(number: Optional[str]) -> str:
    """'012323200117' -> '0123****0117'."""
    n = number or ""
    return n[:4] + "*" * (len(n) - 8) + n[-4:] if len(n) > 8 else n


def score_text(score: Optional[Decimal], grade: Optional[str]) -> str:
    """63 -> '63分', 81.5 -> '81.5分', grades as they are."""
    if score is not None:
        return f"{score.normalize():f}分" if score == score.to_integral() else f"{score:.1f}分"
    return grade or ""


def _date(d: Optional[dt.date]) -> str:
    return d.isoformat() if d else ""


def _day(t: dt.datetime) -> str:
    return t.astimezone(SHANGHAI).strftime("%Y-%m-%d")


def _credits(c: Optional[int], kind: str = "") -> str:
    if kind == "论文":
        return "不计学分"
    return f"{c}学分" if c is not None else "学分-"


def result_text(row: q.ScoreRow) -> str:
    """What a score list says about one record: '63分 通过', '缺考', '免考', '转入 78分'."""
    value = score_text(row.score, row.grade)
    if row.kind == "exam":
        if row.score is not None:
            return f"{value} {'通过' if row.passed else '未通过'}"
        return value
    label = SCORE_KINDS[row.kind]
    return f"{label} {value}" if value else label


def _score_lines(row: q.ScoreRow) -> list[str]:
    """Two lines: the course, then 类型｜学分｜成绩 (and the date of an exemption, transfer or 补登)."""
    parts = [row.course_kind, _credits(row.credits, row.course_kind), result_text(row)]
    if row.kind != "exam" and row.passed_on:
        parts.append(_date(row.passed_on))
    return [f"{row.course_code} {row.course_name}", INDENT + SEP.join(parts)]


def summary_lines(s: q.PlanSummary) -> list[str]:
    return [
        s.major_name,
        f"已考课程 {s.exam_passed}/{s.courses}{SEP}免考 {s.exempted}{SEP}转入 {s.transferred}",
        f"已得学分 {s.credits}{SEP}毕业要求 {s.required_credits}",
    ]


def _summaries(sheet: q.ScoreSheet) -> list[str]:
    out: list[str] = []
    for s in sheet.summaries:
        out += [""] + summary_lines(s)
    return out


# --- 成绩 ---------------------------------------------------------------------------------------


async def latest_scores(db: Database, viewer: Viewer, *, now: Optional[dt.datetime] = None) -> Reply:
    """当次成绩: the latest sitting's results, then the summary of each major."""
    if not viewer.bound:
        return Reply(BIND_FIRST)
    return Reply(latest_text(await q.latest_scores(db, viewer.candidate_id, now=now)))


def latest_text(sheet: q.ScoreSheet) -> str:
    lines: list[str] = []
    if sheet.newer_sitting is not None:
        lines += [f"{sheet.newer_sitting.name}的成绩已发布，暂无您的成绩记录。"]
    if sheet.sitting is None:
        lines += ["【当次成绩】", "您还没有考试成绩。"]
    else:
        if sheet.newer_sitting is not None:
            lines += ["以下是您最近一次考试的成绩。", ""]
        lines.append(f"【当次成绩】{sheet.sitting.name}")
        numbers = {r.admission_number for r in sheet.rows}
        if len(numbers) == 1:
            lines.append(f"准考证号 {mask_admission(numbers.pop())}")
        for row in sheet.rows:
            lines += _score_lines(row)
        passed = sum(1 for r in sheet.rows if r.passed)
        lines.append(f"本次通过 {passed} 门，未通过 {len(sheet.rows) - passed} 门。")
    lines += _summaries(sheet)
    lines += ["", "回复“历史成绩”查看全部成绩。"]
    return "\n".join(lines)


async def all_scores(db: Database, viewer: Viewer, *, now: Optional[dt.datetime] = None) -> Reply:
    """历史成绩: every result, grouped by sitting (newest first), then 免考 / 转入 / 补登."""
    if not viewer.bound:
        return Reply(BIND_FIRST)
    sheet = await q.all_scores(db, viewer.candidate_id, now=now)
    if not sheet.rows:
        return Reply("\n".join(["【历史成绩】", "您还没有成绩记录。"] + _summaries(sheet)))
    lines = [f"【历史成绩】共 {len(sheet.rows)} 条"]
    group = None
    for row in sheet.rows:
        title = row.sitting_name if row.kind == "exam" else SCORE_KINDS[row.kind]
        if title != group:
            lines += ["", f"〔{title}〕"]
            group = title
        lines += _score_lines(row)
    lines += _summaries(sheet)
    lines += ["", SCORE_QUERY_HINT, HELPLINE]
    return Reply("\n".join(lines))


# Business keywords a course name could hide in ("论文" is also 毕业论文): never a score question.
_KEYWORDS = frozenset(KIND_KEYWORDS.values()) | {"成绩", "当次成绩", "历史成绩", "考试计划", "教材"}


async def course_score(db: Database, viewer: Viewer, text: str, *,
                       now: Optional[dt.datetime] = None) -> Optional[Reply]:
    """A free-text question about one course ("英语二考了多少分", "00015成绩", "线代过了吗").

    None when the text names no course, so the router can try something else.
    """
    t = (text or "").strip()
    if not t or q.normalize(t) in {q.normalize(k) for k in _KEYWORDS}:
        return None
    intent = q.has_intent(t)
    if not viewer.bound:
        found = await q.find_courses(db, t, loose=intent)
        return Reply(BIND_FIRST) if found and (intent or any(q.names_only(t, c) for c in found)) else None
    own = await q.candidate_course_codes(db, viewer.candidate_id)
    found = await q.find_courses(db, t, own, loose=intent)
    if not found:
        found = await q.find_courses(db, t, loose=intent)
    if not found:
        return None
    if not intent and not any(q.names_only(t, c) for c in found):
        return None  # a course named in passing ("英语二考试时间是什么时候"): for the FAQ
    if len(found) > 3:
        lines = ["找到多门课程，请回复课程代码加“成绩”，如“00015成绩”："]
        lines += [f"{c.code} {c.name}" for c in found[:10]]
        return Reply("\n".join(lines))
    blocks = []
    for c in found:
        blocks.append("\n".join(await _course_block(db, viewer, c, own, now)))
    return Reply("\n\n".join(blocks))


async def _course_block(db: Database, viewer: Viewer, course: q.CourseInfo, own: set[str],
                        now: Optional[dt.datetime]) -> list[str]:
    rows = await q.course_results(db, viewer.candidate_id, course.code, now=now)
    credits = next((r.credits for r in rows if r.credits is not None), None)
    if credits is None:
        for e in await q.candidate_majors(db, viewer.candidate_id):
            found = await q.major_plan(db, e.major_code)
            entry = next((p for p in found[1] if p.course_code == course.code), None) if found else None
            if entry is not None:
                credits = entry.credits
                break
    head = f"{course.code} {course.name}{SEP}{course.kind}"
    if credits is not None or course.kind == "论文":
        head += SEP + _credits(credits, course.kind)
    lines = [head]
    if not rows:
        lines.append("您还没有这门课程的成绩记录。" if course.code in own else "这门课程不在您的考试计划中，也没有成绩记录。")
        return lines
    done = [r for r in rows if r.passed]
    if done:
        first = min(done, key=lambda r: (r.passed_on or dt.date.max, r.sitting_code))
        when = first.sitting_name or _date(first.passed_on)
        how = {"exemption": "已免考", "transfer": "已转入", "backfill": "已补登"}.get(first.kind, "已通过")
        value = score_text(first.score, first.grade)
        lines.append(f"{how}" + (f"：{value}" if value else "") + (f"（{when}）" if when else ""))
    else:
        lines.append("还未通过。")
    exams = [r for r in rows if r.kind == "exam"]
    if exams:
        lines.append("历次成绩：")
        lines += [f"{INDENT}{r.sitting_name}　{result_text(r)}" for r in exams]
    return lines


# --- 考试计划, 教材, 专业说明 ----------------------------------------------------------------------


async def majors(db: Database, viewer: Viewer) -> list[tuple[str, str]]:
    """(code, name) of the viewer's majors, the active 准考证号's first: the router offers a choice
    when there are several."""
    if not viewer.bound:
        return []
    return [(e.major_code, e.major_name)
            for e in await q.candidate_majors(db, viewer.candidate_id, active=viewer.admission_number)]


def _plan_row_lines(r: q.PlanRow) -> list[str]:
    parts = [_credits(r.credits, r.course_kind), r.status]
    value = score_text(r.score, r.grade)
    if value:
        parts.append(value)
    if r.passed_on:
        parts.append(_date(r.passed_on))
    return [f"{r.course_code} {r.course_name}", INDENT + SEP.join(parts)]


async def plan(db: Database, viewer: Viewer, major_code: str, *, now: Optional[dt.datetime] = None) -> Reply:
    """考试计划 of one of the viewer's majors: the summary, then each course with its status."""
    if not viewer.bound:
        return Reply(BIND_FIRST)
    view = await q.plan(db, viewer.candidate_id, major_code, now=now)
    if view is None:
        return Reply(NOT_ENROLLED.format(code=major_code))
    lines = [f"【考试计划】{view.major.name} {view.major.code}"]
    if view.admission_number:
        lines.append(f"准考证号 {mask_admission(view.admission_number)}")
    lines += summary_lines(view.summary)[1:]
    for category in ("必考", "选考", "加考"):
        rows = [r for r in view.rows if r.category == category]
        if not rows:
            continue
        lines += ["", f"〔{category}课程〕"]
        for r in rows:
            lines += _plan_row_lines(r)
    if not view.rows:
        lines += ["", "这个专业的考试计划还没有导入。"]
    lines += ["", "回复“教材 课程代码”查看教材考纲，如“教材 03708”。", "回复“专业说明”查看本专业说明。"]
    return Reply("\n".join(lines))


async def textbooks(db: Database, course: str) -> Reply:
    """教材考纲 of a course, by code ("教材 03708") or by name ("教材 英语二")."""
    text = (course or "").strip()
    found = await q.find_courses(db, text) if text else []
    if not found:
        return Reply(f"没有找到课程“{text}”。\n请回复“教材 课程代码”，如“教材 03708”。" if text
                     else "请回复“教材 课程代码”，如“教材 03708”。")
    if len(found) > 1:
        lines = ["找到多门课程，请回复“教材 课程代码”："] + [f"{c.code} {c.name}" for c in found[:10]]
        return Reply("\n".join(lines))
    c = found[0]
    books = await q.textbooks(db, c.code)
    lines = [f"【教材考纲】{c.code} {c.name}"]
    if not books:
        lines.append("这门课程暂无教材考纲信息。")
    for i, b in enumerate(books, 1):
        lines.append(f"{i}.《{b.title}》" if len(books) > 1 else f"《{b.title}》")
        for label, value in (("出版社", b.publisher), ("主编", b.editor), ("版次", b.edition),
                             ("考纲名称", b.syllabus_name), ("编写单位", b.syllabus_author),
                             ("考纲版本", b.syllabus_version)):
            if value:
                lines.append(f"{INDENT}{label}：{value}")
    return Reply("\n".join(lines))


async def major_notes(db: Database, major_code: str) -> Reply:
    """专业说明: level, 主考院校, credits to graduate and the office's notes."""
    major = await q.major(db, major_code)
    if major is None:
        return Reply(f"没有找到专业 {major_code}。")
    lines = [f"【专业说明】{major.name} {major.code}", f"层次：{major.level}"]
    if major.university:
        lines.append(f"主考院校：{major.university}")
    lines.append(f"毕业最低学分：{major.required_credits}")
    if major.notes:
        lines += ["", major.notes.strip()]
    return Reply("\n".join(lines))


# --- 毕业进度 -------------------------------------------------------------------------------------


async def progress(db: Database, viewer: Viewer, major_code: str, *, now: Optional[dt.datetime] = None) -> Reply:
    """毕业进度: what is still missing to graduate in one of the viewer's majors."""
    if not viewer.bound:
        return Reply(BIND_FIRST)
    view = await q.plan(db, viewer.candidate_id, major_code, now=now)
    if view is None:
        return Reply(NOT_ENROLLED.format(code=major_code))
    p = (await major_progress(db, viewer.candidate_id, major_code, now=now)).progress
    lines = progress_lines(view.major, p)
    if p.thesis_required and not p.thesis_done:
        lines += await thesis_application_lines(db, viewer.candidate_id, major_code)
    applied = await graduation_lines(db, viewer.candidate_id, major_code)
    return Reply("\n".join([*lines, *([""] + applied if applied else [])]))


@dataclass(frozen=True)
class MajorProgress:
    major: q.MajorInfo
    entries: tuple[q.PlanEntry, ...]
    results: list[q.Result]
    progress: rules.Progress


async def major_progress(db: Database, candidate_id: int, major_code: str, *,
                         now: Optional[dt.datetime] = None) -> MajorProgress:
    """The 毕业进度 rules applied to one major (what 毕业进度 shows and 申请毕业 asks 情况说明 for).
    Results under every 准考证号 of the candidate count."""
    found = await q.major_plan(db, major_code)
    major = found[0] if found else q.MajorInfo(major_code, major_code, "", 0, None, None, {})
    entries = found[1] if found else ()
    results = await q.candidate_results(db, candidate_id, now=now)
    names = {e.course_code: e.course_name for e in entries}
    for opt in major.graduation_rules.get("extra_exam_options") or ():
        for code in map(str, opt.get("courses") or ()):
            c = None if code in names else await q.course(db, code)
            if c is not None:
                names[code] = c.name
    p = rules.progress(entries, results, required_credits=major.required_credits,
                       rules=major.graduation_rules, course_names=names)
    return MajorProgress(major, tuple(entries), list(results), p)


async def thesis_application_lines(db: Database, candidate_id: int, major_code: str) -> list[str]:
    """The 论文 application of this major, when there is one: its state and 指导教师."""
    from storage import applications as apps
    from storage import thesis

    found = [a for a in await apps.list_applications(db, candidate_id=candidate_id, kind="thesis")
             if a.major_code == major_code]
    if not found:
        return []
    a = found[0]  # newest first
    lines = [f"论文申请：第{a.id}号｜{a.status_label}" if a.id and a.status != "draft" else "论文申请：草稿（未提交）"]
    if a.status == "approved":
        lines += [f"{INDENT}{x}" for x in thesis.advisor_lines(thesis.ThesisDetails.from_dict(a.details))]
    elif a.status == "rejected" and a.reason:
        lines.append(f"{INDENT}未通过原因：{a.reason}")
    return lines + [f"{INDENT}回复“{KIND_KEYWORDS['thesis']}”查看或办理。"]


async def graduation_lines(db: Database, candidate_id: int, major_code: str) -> list[str]:
    """毕业进度's word on 申请毕业 in this major: each application's status (and 未通过's reason),
    and the 毕业审定费 order once approved."""
    mine = [a for a in await list_applications(db, candidate_id=candidate_id, kind="graduation")
            if a.major_code == major_code and a.status != "draft"]
    out = []
    for a in mine:
        out.append(f"毕业申请：第{a.id}号 {a.status_label}")
        if a.status == "rejected" and a.reason:
            out.append(f"{INDENT}未通过原因：{a.reason}")
    if any(a.status == "approved" for a in mine):
        for o in await q.orders(db, candidate_id):
            if o.major_code == major_code:
                out.append(f"毕业审定费：{o.amount:.2f} 元｜{o.status_label}（回复“我的订单”查看）")
    return out


def progress_lines(major: q.MajorInfo, p: rules.Progress) -> list[str]:
    lines = [f"【毕业进度】{major.name} {major.code}"]
    credit_line = f"已得学分 {p.credits}{SEP}毕业要求 {p.required_credits}"
    lines.append(credit_line + (f"{SEP}还差 {p.credits_needed}" if p.credits_needed else ""))
    if p.complete:
        lines.append("您已满足本专业的课程、学分" + ("和论文" if p.thesis_required else "") + "要求。")
        if p.extra_options:
            lines += ["", "请再核对加考要求："] + _extra_lines(p)
        lines += ["", "申请毕业开放时，回复“申请毕业”办理。"]
        return lines
    if p.missing_required:
        lines += ["", f"还需通过的必考课程（{len(p.missing_required)} 门）："]
        for c in p.missing_required:
            lines.append(f"· {c.course_code} {c.course_name} {c.credits}学分" + ("（未通过）" if c.attempted else ""))
    if p.elective_credits_needed:
        lines += ["", f"选考课程还需至少 {p.elective_credits_needed} 学分，可选："]
        lines += [f"· {c.course_code} {c.course_name} {c.credits}学分" + ("（未通过）" if c.attempted else "")
                  for c in p.electives_open]
        if not p.electives_open:
            lines.append("· 考试计划中没有其他选考课程，请咨询主考院校。")
    if p.thesis_required:
        lines += ["", f"毕业论文：{p.thesis_status}"]
    if p.extra_options:
        lines += ["", "加考（视您的前置专科专业而定）："] + _extra_lines(p)
    return lines


def _extra_lines(p: rules.Progress) -> list[str]:
    out = []
    for opt in p.extra_options:
        if not opt.courses:
            out.append(f"· {opt.label}：无需加考")
            continue
        out.append(f"· {opt.label}：")
        out += [f"{INDENT}{code} {name} {'已通过' if ok else '未通过'}" for code, name, ok in opt.courses]
    return out


# --- 业务办理时间 ----------------------------------------------------------------------------------


def keyword_for(kind: str) -> str:
    """The word that starts a business's flow (回复“免考”办理)."""
    return KIND_KEYWORDS.get(kind, WINDOW_KINDS.get(kind, kind))


async def windows(db: Database, now: Optional[dt.datetime] = None) -> Reply:
    """近期可办理的业务 (open now, with closing times) and 未开放办理的业务 (when they open next)."""
    now = now or utcnow()
    state = await q.business_windows(db, now)
    lines = ["【近期可办理的业务】"]
    if not state.open:
        lines.append("目前没有正在办理的业务。")
    for w in state.open:
        lines += [f"· {w.title}", f"{INDENT}截止 {shanghai_time(w.closes_at)}", f"{INDENT}回复“{keyword_for(w.kind)}”办理"]
    if state.not_open:
        lines += ["", "【未开放办理的业务】"]
    for s in state.not_open:
        if s.upcoming is not None:
            w = s.upcoming
            lines += [f"· {w.title}", f"{INDENT}{shanghai_time(w.opens_at)} 开始",
                      f"{INDENT}{shanghai_time(w.closes_at)} 截止"]
        else:
            w = s.last_closed
            lines += [f"· {w.title}", f"{INDENT}已于 {shanghai_time(w.closes_at)} 截止",
                      f"{INDENT}错过的请在下一次办理时间内申请"]
    return Reply("\n".join(lines))


# --- 站内消息 and 新闻通知 --------------------------------------------------------------------------

_NUMBERED = re.compile(r"^\s*(?:查看)?\s*(消息|站内消息|新闻|新闻通知|样例|凭证样例)\s*第?\s*([0-9０-９]{1,3})\s*条?\s*$")


def numbered(text: str) -> Optional[tuple[str, int]]:
    """'消息 2' -> ('消息', 2), '新闻3' -> ('新闻', 3), '样例 1' -> ('样例', 1); None otherwise."""
    mt = _NUMBERED.match(text or "")
    if not mt:
        return None
    word = {"站内消息": "消息", "新闻通知": "新闻", "凭证样例": "样例"}.get(mt.group(1), mt.group(1))
    return word, int(mt.group(2).translate(str.maketrans("０１２３４５６７８９", "0123456789")))


_TEXTBOOK = re.compile(r"^\s*(?:教材考纲|教材|考纲)\s*[:：]?\s*(.+?)\s*$")


def textbook_query(text: str) -> Optional[str]:
    """'教材 03708' -> '03708', '教材英语二' -> '英语二'; None when the text does not ask for a textbook."""
    mt = _TEXTBOOK.match(text or "")
    return mt.group(1) if mt else None


def _notice_list(title: str, items: list[q.NoticeItem], word: str, empty: str, *, marks: bool) -> Reply:
    if not items:
        return Reply(f"【{title}】\n{empty}")
    head = f"【{title}】共 {len(items)} 条"
    unread = sum(1 for n in items if not n.read)
    if marks:
        head += f"，未读 {unread} 条"
    lines = [head]
    for i, n in enumerate(items, 1):
        mark = "［未读］" if marks and not n.read else ""
        lines += [f"{i}. {mark}{n.title}", f"{INDENT}{_day(n.publish_at)}"]
    lines += ["", f"回复“{word} 序号”查看全文，如“{word} 1”。"]
    return Reply("\n".join(lines))


async def messages(db: Database, viewer: Viewer, *, now: Optional[dt.datetime] = None) -> Reply:
    """站内消息, newest first, unread ones marked."""
    items = await q.notices(db, openid=viewer.openid, candidate_id=viewer.candidate_id, now=now)
    return _notice_list("站内消息", items, "消息", "暂无站内消息。", marks=True)


def notice_detail(n: q.NoticeItem) -> Reply:
    """One notice in full, as the candidate reads it (also the console's preview)."""
    return Reply(f"【{n.category}】{n.title}\n{shanghai_time(n.publish_at)}\n\n{n.body.strip()}")


async def message_detail(db: Database, viewer: Viewer, n: int, *, now: Optional[dt.datetime] = None) -> Reply:
    """The n-th 站内消息 of the list (1 = newest), marked read."""
    now = now or utcnow()
    items = await q.notices(db, openid=viewer.openid, candidate_id=viewer.candidate_id, now=now)
    if not 1 <= n <= len(items):
        return Reply(f"没有第 {n} 条消息（共 {len(items)} 条）。\n回复“站内消息”查看列表。")
    item = items[n - 1]
    await q.mark_notice_read(db, viewer.openid, item.id, now)
    return notice_detail(item)


NEWS_SHOWN = 10


async def news(db: Database, n: Optional[int] = None, *, viewer: Optional[Viewer] = None,
               now: Optional[dt.datetime] = None) -> Reply:
    """新闻通知: the latest items, or the n-th in full."""
    items = await q.notices(db, openid=viewer.openid if viewer else "", candidate_id=viewer.candidate_id if viewer else None,
                            category="新闻通知", now=now, limit=NEWS_SHOWN)
    if n is None:
        return _notice_list("新闻通知", items, "新闻", "暂无新闻通知。", marks=False)
    if not 1 <= n <= len(items):
        return Reply(f"没有第 {n} 条新闻（共 {len(items)} 条）。\n回复“新闻通知”查看列表。")
    return notice_detail(items[n - 1])


# --- 我的订单 -----------------------------------------------------------------------------------


async def orders(db: Database, viewer: Viewer, *, now: Optional[dt.datetime] = None,
                 pay_link: Optional[Callable[[str, str], str]] = None) -> Reply:
    """我的订单: graduation-fee orders and their state, with the payment period when one is due;
    inside it, with `pay_link` (WeChat Pay configured), the link of each unpaid order's payment page."""
    if not viewer.bound:
        return Reply(BIND_FIRST)
    now = now or utcnow()
    items = await q.orders(db, viewer.candidate_id)
    if not items:
        return Reply("【我的订单】\n您目前没有订单。\n毕业审核通过后，毕业审定费订单会显示在这里。")
    lines = ["【我的订单】"]
    for i, o in enumerate(items):
        lines += ([""] if i else []) + [f"订单号：{o.order_number}", f"项目：{o.item}", f"专业：{o.major_name}",
                  f"准考证号：{mask_admission(o.admission_number)}", f"金额：{o.amount:.2f} 元",
                  f"状态：{o.status_label}", f"下单时间：{shanghai_time(o.created_at)}"]
        if o.paid_at is not None:
            lines.append(f"缴费时间：{shanghai_time(o.paid_at)}")
        if o.closed_at is not None and o.status == "closed":
            lines.append(f"关闭时间：{shanghai_time(o.closed_at)}")
    pending = [o for o in items if o.status == "pending"]
    if pending:
        links = [(o.order_number, pay_link(o.order_number, viewer.openid)) for o in pending] if pay_link else []
        lines += [""] + _payment_lines(await q.business_windows(db, now), links)
    return Reply("\n".join(lines))


def _payment_lines(state: q.Windows, links: list[tuple[str, str]]) -> list[str]:
    fee = next((w for w in state.open if w.kind == "graduation_fee"), None)
    if fee is not None and links:
        return [f"缴费时间：即日起至 {shanghai_time(fee.closes_at)}", "点击链接在微信中缴费："] + [
            f"订单{number}：{url}" for number, url in links]
    if fee is not None:
        return [f"缴费时间：即日起至 {shanghai_time(fee.closes_at)}",
                "请登录考籍管理服务平台，在“我的订单”中按支付提示完成缴费。",
                "如不显示支付提示，请联系主考学校咨询缴费办法。"]
    upcoming = next((s.upcoming for s in state.not_open if s.kind == "graduation_fee" and s.upcoming), None)
    if upcoming is not None:
        how = ("届时回复“我的订单”即可在微信中缴费。" if links else
               "届时请登录考籍管理服务平台，在“我的订单”中按支付提示完成缴费。")
        return [f"缴费时间：{shanghai_time(upcoming.opens_at)} 至 {shanghai_time(upcoming.closes_at)}", how]
    return ["缴费时间另行通知，请留意站内消息。"]


# --- 技术咨询 -----------------------------------------------------------------------------------

# From the two platform manuals (shared/seeds): the same phone, each platform its own QQ numbers.
PHONE = "400-0960-990"
QQ_NUMBERS = (
    ("考籍管理服务平台", ("2082017394", "670625194")),
    ("考生服务平台", ("1638601693", "669845594")),
)


def contacts() -> Reply:
    lines = ["【技术咨询】", f"电话：{PHONE}"]
    for platform, numbers in QQ_NUMBERS:
        lines.append(f"QQ（{platform}）：{'、'.join(numbers)}")
    lines += ["", "成绩、考籍等业务问题也可以直接在这里留言，回复“反馈建议”。"]
    return Reply("\n".join(lines))


# --- 反馈建议 -----------------------------------------------------------------------------------

TITLE_MAX = 64
BODY_MAX = 1000
CONTACT_NAME_MAX = 32
_LANDLINE = re.compile(r"^(?:0\d{2,3}-?)?\d{7,8}(?:-\d{1,6})?$")


def contact_phone(text: str) -> str:
    """联系电话: a mobile (13812345678) or a landline (021-12345678); raises Invalid otherwise."""
    raw = re.sub(r"[\s\u3000]+", "", (text or "").translate(str.maketrans("０１２３４５６７８９－＋", "0123456789-+")))
    mobile = ids.normalize_mobile(raw)
    if ids.valid_mobile(mobile):
        return mobile
    if _LANDLINE.match(raw):
        return raw
    raise Invalid("联系电话应为11位手机号码，或带区号的固定电话，如 021-12345678。")


def check_feedback(title: str, body: str, contact_name: Optional[str] = None) -> tuple[str, str, Optional[str]]:
    """Trimmed 标题, 意见或建议, 联系人; raises Invalid with what to fix."""
    title, body = (title or "").strip(), (body or "").strip()
    name = (contact_name or "").strip() or None
    if not title:
        raise Invalid("标题不能为空。")
    if len(title) > TITLE_MAX:
        raise Invalid(f"标题请控制在 {TITLE_MAX} 字以内（现在 {len(title)} 字）。")
    if not body:
        raise Invalid("意见或建议不能为空。")
    if len(body) > BODY_MAX:
        raise Invalid(f"意见或建议请控制在 {BODY_MAX} 字以内（现在 {len(body)} 字），可分几次提交。")
    if name is not None and len(name) > CONTACT_NAME_MAX:
        raise Invalid(f"联系人请控制在 {CONTACT_NAME_MAX} 字以内。")
    return title, body, name


async def save_feedback(db: Database, viewer: Viewer, *, title: str, body: str, contact_name: Optional[str] = None,
                        contact_phone_number: Optional[str] = None, now: Optional[dt.datetime] = None) -> Reply:
    """Store a 反馈建议 for the office and confirm it (raises Invalid on a bad field)."""
    title, body, name = check_feedback(title, body, contact_name)
    phone = contact_phone(contact_phone_number) if contact_phone_number and contact_phone_number.strip() else None
    number = await q.add_feedback(db, openid=viewer.openid, candidate_id=viewer.candidate_id, title=title, body=body,
                                  contact_name=name, contact_phone=phone, now=now)
    lines = ["已收到您的反馈，谢谢！", f"编号：{number}", f"标题：{title}"]
    if phone:
        lines.append(f"我们会尽快通过 {ids.mask_mobile(phone) if ids.valid_mobile(phone) else phone} 与您联系。")
    else:
        lines.append("我们会关注您的问题并尽快处理。")
    return Reply("\n".join(lines))


# --- 凭证样例 -----------------------------------------------------------------------------------

SAMPLES_DIR = Path(__file__).resolve().parent / "assets" / "samples"
# WeChat keeps temporary media 3 days; upload again a little before that.
MEDIA_LIFETIME = dt.timedelta(days=3)
MEDIA_MARGIN = dt.timedelta(hours=6)

PHOTO_RULES = ("· 拍摄清晰、四角完整，不反光、不遮挡", "· 文字方向朝上，不要倒置或侧放",
               "· JPG 或 PNG 格式，每张不超过 1MB")


@dataclass(frozen=True)
class Sample:
    slug: str  # file name without extension, and the media cache key
    name: str
    check: str  # what to look for on one's own document


SAMPLES: tuple[Sample, ...] = (
    Sample("pets3_certificate", "PETS3 合格证书", "核对证书上的姓名、证件号码和证书编号，编号与填写的一致。"),
    Sample("pets3_score_report", "PETS3 成绩通知单", "笔试和口试成绩都要拍进去，核对准考证号与姓名。"),
    Sample("cet4_certificate", "CET4 合格证书", "核对证书编号、成绩和考试时间，与填写的一致。"),
    Sample("pets2_certificate", "PETS2 证书", "核对证书上的姓名、证件号码和证书编号，编号与填写的一致。"),
    Sample("degree_registration_form", "教育部学历证书电子注册备案表",
           "在线验证码为 12 位数字，须在有效期内，填写时不要漏位。"),
    Sample("degree_verification_report", "中国高等教育学历认证报告", "报告编号完整可见，与填写的报告编号一致。"),
)


def sample_path(s: Sample) -> Path:
    return SAMPLES_DIR / f"{s.slug}.png"


def samples_menu() -> Reply:
    lines = ["【凭证样例】回复“样例 序号”查看图片："]
    lines += [f"{i}. {s.name}" for i, s in enumerate(SAMPLES, 1)]
    lines += ["", "上传自己的凭证照片前请检查："] + list(PHOTO_RULES)
    return Reply("\n".join(lines))


Uploader = Callable[[bytes, str], Awaitable[str]]


class SampleMedia:
    """Media ids of the sample pictures: uploaded once, reused while WeChat keeps them.

    Ids are kept in key_values (shared by every process) with their expiry and the picture's
    hash (a changed picture is uploaded again), and in memory.
    """

    def __init__(self, db: Database, uploader: Uploader) -> None:
        self.db = db
        self.uploader = uploader
        self._known: dict[str, tuple[str, dt.datetime, str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @staticmethod
    def key(s: Sample) -> str:
        return f"samples.media.{s.slug}"

    def _usable(self, value: Optional[dict], digest: str, now: dt.datetime) -> Optional[tuple[str, dt.datetime, str]]:
        if not value or value.get("sha256") != digest or not value.get("media_id"):
            return None
        expires = dt.datetime.fromisoformat(value["expires_at"])
        if expires - MEDIA_MARGIN <= now:
            return None
        return value["media_id"], expires, digest

    async def media_id(self, s: Sample, now: Optional[dt.datetime] = None) -> str:
        now = now or utcnow()
        data = sample_path(s).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        known = self._known.get(s.slug)
        if known and known[2] == digest and known[1] - MEDIA_MARGIN > now:
            return known[0]
        async with self._locks.setdefault(s.slug, asyncio.Lock()):
            stored = self._usable(await keyvalues.get_value(self.db, self.key(s)), digest, now)
            if stored is None:
                media_id = await self.uploader(data, sample_path(s).name)
                stored = (media_id, now + MEDIA_LIFETIME, digest)
                value = {"media_id": media_id, "uploaded_at": now.isoformat(), "expires_at": stored[1].isoformat(),
                         "sha256": digest}
                await keyvalues.put_value(self.db, self.key(s), value, now=now)
            self._known[s.slug] = stored
            return stored[0]


async def sample(n: int, media: SampleMedia, *, now: Optional[dt.datetime] = None) -> Reply:
    """The n-th sample picture (1-based) and what to check before sending one's own photo."""
    if not 1 <= n <= len(SAMPLES):
        return Reply(f"没有第 {n} 个样例，请回复 1-{len(SAMPLES)} 之间的序号。\n回复“凭证样例”查看列表。")
    s = SAMPLES[n - 1]
    text = "\n".join([f"【样例】{s.name}", s.check, "拍照时请注意："] + list(PHOTO_RULES))
    try:
        media_id = await media.media_id(s, now)
    except Exception:
        log.exception("could not upload the sample picture %s", s.slug)
        return Reply(text + "\n\n样例图片暂时发送失败，请稍后再试。")
    return Reply(text, image_media_id=media_id)
