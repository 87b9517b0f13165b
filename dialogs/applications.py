"""我的申请 and how registrations read: every application of the candidate (申请免考, 成绩补登,
本市转出 and any later kind)
with its status and 未通过 reasons, and the courses exempted by approved applications
(历史已通过免考审核的课程)."""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Optional

from dialogs.components import application as A
from dialogs.engine import Ctx
from dialogs.types import Reply
from storage import applications as apps
from storage import thesis
from storage.models_applications import ENTRY_KINDS
from storage.outbox import KIND_KEYWORDS


def score_label(score: Optional[Decimal], grade: Optional[str]) -> str:
    if score is not None:
        return f"{score.normalize():f}分" if score == score.to_integral() else f"{score:.1f}分"
    return grade or ""


async def registration_lines(ctx: Ctx, regs: list[apps.ApplicationData]) -> list[str]:
    """登记时间, 类型, 审核结果; then per course 课程, 成绩, 学分, 通过时间."""
    codes = {i.course_code for a in regs for i in a.items}
    names = await apps.course_names(ctx.db, codes)
    credits = await apps.plan_credits(ctx.db, ctx.user.candidate_id, codes)
    lines = []
    for a in regs:
        kind = ENTRY_KINDS.get(a.items[0].entry_kind or "", "") if a.items else ""
        if a.status == "draft":
            lines.append(f"未提交的登记{('｜' + kind) if kind else ''}（草稿）")
        else:
            lines.append(f"第{a.id}号｜{A.day(a.submitted_at or a.created_at)}登记｜{kind}｜{a.status_label}"
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




async def applications_reply(ctx: Ctx, arg: str = "") -> Reply:
    """"我的申请": every application of the candidate (申请免考 and 成绩补登) with its status, and
    the courses exempted by approved applications (历史已通过免考审核的课程)."""
    mine = await apps.list_applications(ctx.db, candidate_id=ctx.user.candidate_id)
    exemptions = [a for a in mine if a.kind == "exemption"]
    backfills = [a for a in mine if a.kind == "backfill"]
    others = [a for a in mine if a.kind not in ("exemption", "backfill")]  # 本市转出 and every later kind
    if not mine:
        return Reply(f"您还没有办理过申请免考或成绩补登。\n回复“{KIND_KEYWORDS['exemption']}”申请免考，回复“{KIND_KEYWORDS['backfill']}”登记以前的成绩。")
    lines = ["【我的申请】"]
    if exemptions:
        names = await apps.course_names(ctx.db, {i.course_code for a in exemptions for i in a.items})
        lines.append("申请免考：")
        for a in exemptions:
            courses = "、".join(names.get(i.course_code, i.course_code) for i in a.items) or "未选课程"
            if a.status == "draft":
                lines.append(f"草稿（未提交）｜{courses}｜照片{a.photo_count()}张")
            else:
                lines += [A.status_line(a), f"　课程：{courses}"]
        approved = [(i.course_code, a) for a in exemptions if a.status == "approved" for i in a.items]
        if approved:
            lines.append("已通过免考审核的课程：")
            lines += [f"　{code} {names.get(code, code)}（{A.day(a.decided_at)}通过）" for code, a in approved]
        lines.append(f"修改、继续或重新提交免考申请，请回复“{KIND_KEYWORDS['exemption']}”。")
    if backfills:
        lines += ["成绩补登：", *await registration_lines(ctx, backfills),
                  f"修改待审核的登记，请回复“{KIND_KEYWORDS['backfill']}”。"]
    for kind in dict.fromkeys(a.kind for a in others):
        lines.append(f"{apps.kind_name(kind)}：")
        for a in (a for a in others if a.kind == kind):
            lines.append(A.status_line(a) if a.status != "draft" else "草稿（未提交）")
            if a.kind == "thesis" and a.status == "approved":  # 预审通过: the 指导教师 to contact
                lines += [f"　{x}" for x in thesis.advisor_lines(thesis.ThesisDetails.from_dict(a.details))]
        if kind in KIND_KEYWORDS:
            lines.append(f"查看或继续办理，请回复“{KIND_KEYWORDS[kind]}”。")
    return Reply("\n".join(lines))



def register(router: Any) -> None:
    router.add_query("query:applications", applications_reply)
