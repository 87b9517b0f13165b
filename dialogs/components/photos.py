"""The photos prompt: photos sent one by one, each downloaded, checked (storage/photos.py) and
stored at once, "完成" to end. Returns the photo ids; the caller's `progress` sees each one."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from dialogs import fields as F
from dialogs.components.application import tail
from dialogs.engine import Component, Ctx, Step
from dialogs.fields import Invalid
from dialogs.services import MediaUnavailable
from storage.photos import MAX_DOWNLOAD_BYTES, TOO_LARGE, PhotoRejected, process_photo_async, save_photo

log = logging.getLogger("zikao.photos")

MAX = 9  # storage.applications.MAX_PHOTOS_PER_EVIDENCE: what WeChat lets one pick at once
UNAVAILABLE = {
    "expired": "这张照片已经失效（微信只保留3天），请重新发送。",
    "too_large": TOO_LARGE,
    "busy": "微信服务器暂时没有响应，照片没有收到。请稍后重新发送这张照片。",
    "other": "照片没有下载成功，请重新发送。",
}
NO_SERVICE = "暂时不能接收照片，请稍后再试，已填写的内容不会丢失。"
SAME_PHOTO = "这张照片刚才已经收到了，不用重复发送。请发送其他照片，发完回复“完成”。"
USED_ELSEWHERE = "这张照片在本申请的其他凭证里也用过，已同样记在这里。"
COMPRESSED = "照片较大，已压缩到1MB以内保存（{kb}KB），文字仍可辨认。"
ROTATED = "照片已按拍摄方向自动转正。"


@dataclass
class PhotosState:
    what: str = "凭证照片"  # 凭证照片 / 成绩证明的照片
    header: str = ""
    have: list[int] = field(default_factory=list)
    replacing: int = 0  # how many photos the new ones replace (0: adding)
    elsewhere: list[int] = field(default_factory=list)  # photos of the application's other evidences


def _enter(ctx: Ctx, st: PhotosState) -> PhotosState:
    ctx.answers["photos"] = list(st.have)  # the engine counts from the photos there already
    return st


def _prompt(ctx: Ctx) -> str:
    st: PhotosState = ctx.state
    head = f"{st.header}\n" if st.header else ""
    if st.replacing:
        return f"{head}请发送新的照片，发送后将替换原来的{st.replacing}张。\n可以发多张，发完回复“完成”。"
    already = f"已收到{len(st.have)}张，" if st.have else ""
    return (f"{head}{already}请发送{st.what}：JPG或PNG，清晰完整、文字朝上。\n"
            f"可以发多张（最多{MAX}张），发完回复“完成”。")


async def _download(ctx: Ctx, media_id: str) -> bytes:
    svc = ctx.services
    if svc is None or svc.download_media is None or svc.photo_store is None:
        raise Invalid(NO_SERVICE)
    try:
        data, _content_type = await svc.download_media(media_id)
    except MediaUnavailable as e:
        log.warning("photo download for %s failed: %s", tail(ctx.user.openid), e)
        raise Invalid(UNAVAILABLE[e.reason]) from None
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise Invalid(TOO_LARGE)
    return data


async def _receive(ctx: Ctx, value: dict) -> F.Noted:
    """Download, check and store one photo; what to say besides "已收到"."""
    st: PhotosState = ctx.state
    data = await _download(ctx, value["media_id"])
    try:
        processed = await process_photo_async(data)
    except PhotoRejected as e:
        log.info("photo from %s refused: %s", tail(ctx.user.openid), e.reason)
        raise Invalid(e.reason) from None
    saved = await save_photo(ctx.db, ctx.services.photo_store, processed)
    if saved.id in st.have:
        raise Invalid(SAME_PHOTO)
    notes = [ROTATED] if processed.rotated else []
    if processed.compressed:
        notes.append(COMPRESSED.format(kb=max(1, processed.size // 1024)))
    if saved.id in st.elsewhere:
        notes.append(USED_ELSEWHERE)
    st.have.append(saved.id)
    return F.Noted(saved.id, "\n".join(notes))


PHOTOS = Component("photos", "照片", state=PhotosState, enter=_enter, steps=[
    Step("photos", "照片", F.Photos(max_count=MAX, full="每份凭证最多{n}张照片，回复“完成”继续。"), _prompt,
         check=_receive),
], submit=lambda ctx: _done(ctx))


async def _done(ctx: Ctx) -> list[int]:
    return ctx.state.have
