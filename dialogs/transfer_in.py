"""外省转入 (FLOWS 22): “转入” shows the candidate's transfer-in records, their progress, every
course with whether it was accepted (查看浏览详情), and the 现场确认 the office has set.

The records are the office's (imported, or moved with `zikao-bot transfer-in status`); the
candidate only follows them, so this is a query, not a form.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

from dialogs.engine import Ctx
from dialogs.queries import PHONE, mask_admission
from dialogs.types import Reply
from storage import applications as apps
from storage import transfers as tr
from storage.outbox import KIND_KEYWORDS, shanghai_time

if TYPE_CHECKING:  # pragma: no cover
    from dialogs.router import Router

TITLE = "【外省转入】"
SEP = "｜"
HOW_TO = ("新办外省转入，请先在原报考省份办理转出手续；转出省将材料转到上海后，"
          "考办受理的记录和审核进度会显示在这里。")
STEPS = ("pending", "reviewing", "confirming", "completed")


def progress_line(status: str) -> str:
    """'待审核 ✓ → 审核中（当前）→ 待现场确认 → 已完成', or the 未通过 line."""
    if status == "rejected":
        return "进度：未通过"
    at = STEPS.index(status)
    parts = []
    for i, s in enumerate(STEPS):
        label = tr.status_label(s)
        parts.append(f"{label} ✓" if i < at or status == "completed" else f"{label}（当前）" if i == at else label)
    return "进度：" + " → ".join(parts)


def _slot(t: tr.TransferInView) -> str:
    start = shanghai_time(t.confirm_at)  # type: ignore[arg-type]
    if t.confirm_ends_at is None:
        return start
    end = shanghai_time(t.confirm_ends_at)
    return f"{start} 至 {end[-5:] if end[:11] == start[:11] else end}"


def _course_lines(c: tr.TransferInCourseView) -> list[str]:
    verdict = {True: "认定", False: "不认定", None: "待审核"}[c.accepted]
    score = f"{c.score.normalize():f}分" if c.score is not None else (c.grade or "")
    details = [x for x in (f"原课程 {c.source_name}" if c.source_name and c.source_name != c.course_name else "",
                           score, tr.month_text(c.passed_on) if c.passed_on else "", verdict) if x]
    lines = [f"{c.course_code} {c.course_name}", "　" + SEP.join(details)]
    if c.accepted is False and c.note:
        lines.append(f"　原因：{c.note}")
    return lines


def record_text(t: tr.TransferInView) -> str:
    lines = [f"转入编号 {t.reference}",
             f"来源省 {t.from_province}{SEP}来源准考证号 {mask_admission(t.from_admission_number)}",
             f"转入专业 {t.major_name}（{t.major_code}）"]
    if t.applied_on:
        lines.append(f"申请日期 {t.applied_on.isoformat()}")
    lines.append(progress_line(t.status))
    if t.status == "rejected":
        lines.append(f"原因：{t.reason or '请联系考办了解'}")
        lines.append(f"如有疑问请致电 {PHONE}。")
    if t.status == "confirming" and t.confirm_at is not None:
        lines += ["", "【现场确认】", f"时间：{_slot(t)}"]
        if t.confirm_place:
            lines.append(f"地点：{t.confirm_place}")
        if t.confirm_bring:
            lines.append(f"请携带：{t.confirm_bring}")
        lines.append("请按时到场，如不能按时前往请及早联系考办。")
    elif t.status in ("pending", "reviewing"):
        lines.append("请耐心等待审核，审核结果和现场确认安排会通过微信通知您。")
    if t.courses:
        accepted = sum(1 for c in t.courses if c.accepted)
        refused = sum(1 for c in t.courses if c.accepted is False)
        undecided = len(t.courses) - accepted - refused
        counts = f"认定 {accepted} 门" + (f"，不认定 {refused} 门" if refused else "") + (
            f"，待审核 {undecided} 门" if undecided else "")
        lines += ["", f"【转入课程】共 {len(t.courses)} 门：{counts}"]
        for c in t.courses:
            lines += _course_lines(c)
    if t.status == "completed":
        lines += ["", "认定的课程已计入您的成绩，回复“考试计划”或“毕业进度”查看。"]
    return "\n".join(lines)


def transfer_in_text(records: Sequence[tr.TransferInView], window: Optional[apps.WindowCheck]) -> str:
    """The whole answer to “转入”: every record (newest first), or how to start and when."""
    if not records:
        lines = [TITLE, "您还没有外省转入记录。", HOW_TO]
        if window is not None and window.open is not None:
            lines.append(f"外省转入正在受理，截止到 {shanghai_time(window.open.closes_at)}。")
        elif window is not None:
            lines.append(apps.window_closed_text(window))
        return "\n".join(lines)
    parts = [TITLE + (f"您有 {len(records)} 条转入记录" if len(records) > 1 else "")]
    for n, t in enumerate(records, 1):
        if len(records) > 1:
            parts.append(f"―― 第{n}条 ――")
        parts.append(record_text(t))
    return "\n".join(parts)


async def answer(ctx: Ctx, arg: str) -> Reply:
    assert ctx.user.candidate_id is not None  # registered with needs_binding
    records = await tr.transfers_in_of(ctx.db, ctx.user.candidate_id)
    window = None if records else await apps.business_window(ctx.db, "transfer_in", ctx.now)
    return Reply(transfer_in_text(records, window))


def register(router: "Router") -> None:
    """“转入”, “外省转入” and the menu's 外省转入（查看进度） answer with the records."""
    assert KIND_KEYWORDS["transfer_in"] == "转入"
    router.add_query("flow:transfer_in", answer, needs_binding=True)
