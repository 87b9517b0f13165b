"""我的材料: the evidences a candidate uploaded with their applications, numbers masked (linked
from 个人信息)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from dialogs.engine import Ctx
from dialogs.types import Reply
from storage import materials as mat
from storage.applications import STATUS_LABELS, kind_name, month_label
from storage.identifiers import mask_document_number
from storage.outbox import shanghai_time

if TYPE_CHECKING:  # pragma: no cover
    from dialogs.router import Router

NONE_YET = ("您还没有上传过证明材料。\n"
            "申请免考、成绩补登时按提示拍照上传即可；回复“凭证样例”可以查看证书和材料的样例。")
FOOTER = "要补充或更换材料，请在对应的申请里修改：回复“申请免考”或“成绩补登”；回复“我的申请”查看审核进度。"
# Enough for a phone screen and more than any one candidate is likely to have; the rest is counted.
SHOWN = 10


def status_text(m: mat.Material) -> str:
    return "草稿，未提交" if m.status == "draft" else STATUS_LABELS.get(m.status, m.status)


def material_lines(n: int, m: mat.Material) -> list[str]:
    head = f"{n}. {m.type_name}"
    if m.number:
        head += f"｜编号 {mask_document_number(m.number)}"
    if m.obtained_month:
        head += f"｜{month_label(m.obtained_month)}"
    return [
        head,
        f"　照片{m.photos}张｜{kind_name(m.kind)}第{m.application_id}号（{status_text(m)}，{shanghai_time(m.filed_at)[:11]}）",
        f"　用于：{'、'.join(m.courses)}",
    ]


def materials_text(items: list[mat.Material]) -> str:
    if not items:
        return NONE_YET
    lines = [f"【我的材料】共{len(items)}份"]
    for n, m in enumerate(items[:SHOWN], 1):
        lines += material_lines(n, m)
    if len(items) > SHOWN:
        lines.append(f"……另有{len(items) - SHOWN}份较早的材料未列出。")
    lines.append(FOOTER)
    return "\n".join(lines)


def profile_line_text(count: int) -> str:
    if not count:
        return "我的材料：暂无上传的证明材料。"
    return f"我的材料：已上传{count}份，回复“我的材料”查看。"


async def profile_line(ctx: Ctx) -> str:
    """The line 个人信息 shows about the materials, with its link to 我的材料."""
    return profile_line_text(len(await mat.materials(ctx.db, ctx.user.candidate_id)))


async def materials_reply(ctx: Ctx, arg: str = "") -> Reply:
    return Reply(materials_text(await mat.materials(ctx.db, ctx.user.candidate_id)))


def register(router: "Router") -> None:
    router.add_query("query:materials", materials_reply)
