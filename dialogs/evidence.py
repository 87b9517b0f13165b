"""What the application flows (申请免考, 成绩补登) share: the working copy of an application kept
in the dialog, evidence photos received by MediaId, and how applications read on a phone.

The working copy (`storage.applications.ApplicationData` as a dict in `ctx.scratch["app"]`) is
what the candidate sees and edits. A draft, or a 未通过 application being reworked, is saved in
the applications tables after every answer (`persist`), so leaving, the dialog's expiry or a
restart loses nothing. A 待审核 application is only ever replaced by a complete, checked copy:
its edits stay in the dialog until the candidate submits them again.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Optional

from sqlalchemy import select

from dialogs.engine import Ctx, EndFlow
from dialogs.fields import Invalid
from storage import applications as apps
from storage.applications import ApplicationData, EvidenceData
from storage.models import AdmissionNumber, Course
from storage.outbox import shanghai_time
from storage.photos import MAX_DOWNLOAD_BYTES, TOO_LARGE, PhotoRejected, process_photo_async, save_photo

log = logging.getLogger("zikao.evidence")

WORK = "app"  # ctx.scratch key of the working copy

MEDIA_EXPIRED = "这张照片已经失效（微信只保留3天），请重新发送。"
WECHAT_BUSY = "微信服务器暂时没有响应，照片没有收到。请稍后重新发送这张照片。"
NO_PHOTO_SERVICE = "暂时不能接收照片，请稍后再试，已填写的内容不会丢失。"
SAME_PHOTO = "这张照片刚才已经收到了，不用重复发送。请发送其他照片，发完回复“完成”。"
USED_ELSEWHERE = "这张照片在本申请的其他凭证里也用过，已同样记在这里。"
COMPRESSED = "照片较大，已压缩到1MB以内保存（{kb}KB），文字仍可辨认。"
ROTATED = "照片已按拍摄方向自动转正。"

# WeChat's errcodes for a media id it does not know (expired after 3 days, or never issued).
_MEDIA_GONE = frozenset({40007, 41006})
# bot.wechat_client.MediaTooLarge: the download passed the 10 MB limit and was stopped.
_MEDIA_TOO_LARGE = 40009


def tail(openid: str) -> str:
    """Enough of an openid to follow a log line, not enough to identify anyone."""
    return "…" + openid[-6:]


# --- The working copy ----------------------------------------------------------------------------


def work(ctx: Ctx) -> ApplicationData:
    return ApplicationData.from_dict(ctx.scratch[WORK])


def keep(ctx: Ctx, data: ApplicationData) -> None:
    ctx.scratch[WORK] = data.to_dict()


def status_of(scratch: dict[str, Any]) -> Optional[str]:
    return (scratch.get(WORK) or {}).get("status")


async def persist(ctx: Ctx, data: ApplicationData, *, keyword: str) -> ApplicationData:
    """Keep the working copy; a draft or a 未通过 application is saved in the database at once.

    A refusal that ends the visit (window closed, the application decided meanwhile) raises
    EndFlow saying what happened and what was kept.
    """
    if data.status in ("draft", "rejected"):
        try:
            data = await apps.save_draft(ctx.db, data, now=ctx.now)
        except apps.WindowClosed as e:
            raise EndFlow(f"{e.message}\n已填写的内容在这之前都已保存。") from None
        except (apps.StaleApplication, apps.TransitionRefused, apps.ApplicationNotFound) as e:
            raise EndFlow(f"{e.message}\n回复“{keyword}”重新查看。") from None
        except apps.ApplicationError as e:
            raise Invalid(e.message) from None
    else:
        ctx.scratch["changed"] = True
    keep(ctx, data)
    return data


async def submit(ctx: Ctx, data: ApplicationData, *, keyword: str) -> ApplicationData:
    """Submit the working copy (提交, 修改后提交, 重新提交); what is missing stays at the question."""
    try:
        done = await apps.submit(ctx.db, data, now=ctx.now)
    except apps.SubmissionRefused as e:
        raise Invalid("还不能提交：\n" + "\n".join(f"· {p}" for p in e.problems)) from None
    except apps.WindowClosed as e:
        raise EndFlow(e.message) from None
    except (apps.StaleApplication, apps.TransitionRefused, apps.ApplicationNotFound) as e:
        raise EndFlow(f"{e.message}\n回复“{keyword}”重新查看。") from None
    except apps.ApplicationError as e:
        raise Invalid(e.message) from None
    keep(ctx, done)
    return done


async def admission_number(ctx: Ctx) -> str:
    """The 准考证号 the application is filed under: the active one, else the candidate's first."""
    if ctx.user.admission_number:
        return ctx.user.admission_number
    async with ctx.db.session() as s:
        first = await s.scalar(select(AdmissionNumber.number).where(AdmissionNumber.candidate_id == ctx.user.candidate_id)
                               .order_by(AdmissionNumber.registered_on, AdmissionNumber.number).limit(1))
    if first is None:
        raise EndFlow("没有查到您的准考证号，暂时不能办理。请拨打技术咨询电话 400-0960-990。")
    return first


async def course_names(ctx: Ctx, codes: Iterable[str]) -> dict[str, str]:
    codes = set(codes)
    if not codes:
        return {}
    async with ctx.db.session() as s:
        return dict((await s.execute(select(Course.code, Course.name).where(Course.code.in_(codes)))).all())


def closes_text(scratch: dict[str, Any]) -> str:
    closes = scratch.get("closes_at")
    return f"本次办理截止时间：{closes}。" if closes else ""


def window_closes(check: apps.WindowCheck) -> str:
    return shanghai_time(check.open.closes_at) if check.open is not None else ""


# --- Photos --------------------------------------------------------------------------------------


async def download(ctx: Ctx, media_id: str) -> bytes:
    """The photo the candidate sent, from WeChat; a clear Chinese reason when it cannot be had."""
    svc = ctx.services
    if svc is None or svc.download_media is None or svc.photo_store is None:
        raise Invalid(NO_PHOTO_SERVICE)
    try:
        data, _content_type = await svc.download_media(media_id)
    except Exception as e:  # the WeChat client's errors, timeouts, connection failures
        code = getattr(e, "errcode", None)
        log.warning("photo download for %s failed: %s %s", tail(ctx.user.openid), type(e).__name__, code)
        if code == _MEDIA_TOO_LARGE:
            raise Invalid(TOO_LARGE) from None
        if code in _MEDIA_GONE:
            raise Invalid(MEDIA_EXPIRED) from None
        if code is None or code in (-1, 45009, 45011):
            raise Invalid(WECHAT_BUSY) from None
        raise Invalid(f"照片没有下载成功（微信返回错误 {code}），请重新发送。") from None
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise Invalid(TOO_LARGE)
    return data


async def receive_photo(ctx: Ctx, value: dict[str, Any], *, current: list[int],
                        elsewhere: set[int]) -> tuple[int, str]:
    """Download, check and store one photo of an evidence: its photo id, and what to tell the
    candidate besides "已收到" (for ctx.scratch["photo_note"] once the photo is kept).

    `current`: the photos this evidence has so far (sending one of them again is refused);
    `elsewhere`: photos of the application's other evidences (reusing one is fine, and said).
    """
    data = await download(ctx, value["media_id"])
    try:
        processed = await process_photo_async(data)
    except PhotoRejected as e:
        log.info("photo from %s refused: %s", tail(ctx.user.openid), e.reason)
        raise Invalid(e.reason) from None
    saved = await save_photo(ctx.db, ctx.services.photo_store, processed)
    if saved.id in current:
        raise Invalid(SAME_PHOTO)
    notes = []
    if processed.rotated:
        notes.append(ROTATED)
    if processed.compressed:
        notes.append(COMPRESSED.format(kb=max(1, processed.size // 1024)))
    if saved.id in elsewhere:
        notes.append(USED_ELSEWHERE)
    return saved.id, "\n".join(notes)


def photos_of(values: Optional[list[Any]]) -> list[int]:
    """Photo ids kept in a Photos answer ([{"photo_id": 3}, ...])."""
    return [v["photo_id"] for v in values or [] if isinstance(v, dict) and "photo_id" in v]


# --- How applications read -----------------------------------------------------------------------


def type_names(scratch: dict[str, Any]) -> dict[str, str]:
    return {t[0]: t[1] for t in scratch.get("types", [])}


def evidence_line(e: EvidenceData, names: dict[str, str]) -> str:
    parts = [names.get(e.type_code, e.type_code)]
    if e.number:
        parts.append(f"编号{e.number}")
    if e.obtained_month:
        parts.append(apps.month_label(e.obtained_month))
    if e.province:
        parts.append(e.province)
    parts.append(f"照片{len(e.photo_ids)}张" if e.photo_ids else "未传照片")
    line = "｜".join(parts)
    if e.note:
        line += f"\n　　备注：{e.note}"
    return line


def day(t: Any) -> str:
    return shanghai_time(t)[:11] if t else ""


def status_line(a: ApplicationData) -> str:
    """'第12号｜待审核｜2026年11月20日提交' and, for 未通过, the reason."""
    when = f"{day(a.submitted_at)}提交" if a.submitted_at else f"{day(a.created_at)}创建"
    line = f"第{a.id}号｜{a.status_label}｜{when}"
    if a.status == "rejected" and a.reason:
        line += f"\n　未通过原因：{a.reason}"
    return line


# --- reopening a pending or rejected application (both flows' first step) ------------------------


def reopen_options(mine: Iterable[ApplicationData], *, edit_label: str) -> list[tuple[str, str]]:
    """Options "edit:ID" (待审核) and "redo:ID" (未通过) for the applications listed."""
    opts = []
    for a in mine:
        if a.status == "submitted":
            opts.append((f"edit:{a.id}", edit_label.format(id=a.id)))
        elif a.status == "rejected":
            opts.append((f"redo:{a.id}", f"修改后重新提交第{a.id}号（未通过）"))
    return opts


async def reopen(ctx: Ctx, choice: str, *, noun: str) -> ApplicationData:
    """Load the application an "edit:ID" / "redo:ID" option names, still in the status the
    option was offered for, and make it the working copy."""
    want = "submitted" if choice.startswith("edit:") else "rejected"
    try:
        app = await apps.load_application(ctx.db, int(choice[5:]), candidate_id=ctx.user.candidate_id)
    except apps.ApplicationNotFound:
        raise Invalid(f"没有找到{noun}，请重新选择。") from None
    if app.status != want:
        raise Invalid(f"{noun}现在是“{app.status_label}”，请重新选择。")
    keep(ctx, app)
    ctx.scratch["changed"] = False
    return app


# --- the review step both flows end with -------------------------------------------------------


async def review_tail(ctx: Ctx, app: ApplicationData, *, noun: str) -> list[str]:
    """What is still missing, what editing a pending one means, and the question."""
    lines = []
    problems = await apps.submission_problems(ctx.db, app, now=ctx.now)
    if problems:
        lines.append("还需补充：\n" + "\n".join(f"· {p}" for p in problems))
    if app.status == "submitted":
        lines.append(f"修改后需要再次提交；不提交的话，原{noun}不变，仍在审核中。")
    lines.append("请选择：")
    return lines


def submit_and_leave(scratch: dict[str, Any]) -> tuple[tuple[str, str], tuple[str, str]]:
    """The review step's 提交 and 离开 options, worded for the working copy's status."""
    status = status_of(scratch)
    submit_label = {"draft": "确认提交", "rejected": "确认重新提交", "submitted": "确认提交修改"}[status or "draft"]
    leave_label = "不修改，退出" if status == "submitted" else "先保存，以后再办"
    return ("submit", submit_label), ("leave", leave_label)
