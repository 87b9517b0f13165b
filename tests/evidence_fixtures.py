"""Shared pieces of the application dialog tests: the example candidate with open windows, a
fake WeChat media download serving real image bytes made with Pillow, and a router with the
申请免考 and 成绩补登 flows registered."""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from PIL import Image
from sqlalchemy import select

from bot.app import media_download
from dialogs import applications, backfill, exemption
from dialogs.router import Router
from storage import models as m
from storage.db import Database
from storage.importer import import_directory
from storage.photos import LocalPhotoStore
from tests.dialog_fixtures import make_router
from tests.test_outbox import EXAMPLES, ZHAO, candidate_id
from tests.test_photos import document, encode

OPENID = "o_zhao_dialog_0000000000001"
ZHAO_ADMISSION = "012424100318"  # docs/examples: major 120402
# 赵敏's plan 120402: 03708, 03709, 00052 passed, 00015 exempted, 07998 is the thesis;
# 00320 领导科学 and 00051 管理系统中计算机应用 can be exempted.
NOTICE = "一、申请免考的课程须为本人所报考专业考试计划中的课程。\n二、凭证照片须为 JPG 或 PNG 格式。"


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --- images --------------------------------------------------------------------------------------


def certificate(seed: int = 1, size: tuple[int, int] = (1600, 1200)) -> bytes:
    """A clear photo of a certificate (each seed a different one)."""
    return encode(document(*size, seed=seed), quality=88)


def rotated(seed: int = 7) -> bytes:
    """Taken with the phone turned: stored sideways, EXIF orientation 6."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(document(1200, 900, seed=seed), exif=exif.tobytes(), quality=90)


def oversized(seed: int = 3) -> bytes:
    """A grainy 12-megapixel photo of well over 1 MB: accepted, compressed."""
    return encode(document(4000, 3000, noise=0.35, seed=seed), quality=95)


def tiny() -> bytes:
    return encode(document(400, 300), quality=90)


def pdf() -> bytes:
    return b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def huge() -> bytes:
    """More than 10 MB: a JPEG with noise appended (what a 原图 of a modern camera can be)."""
    base = certificate(9)
    rnd = random.Random(5)
    return base + rnd.randbytes(10 * 1024 * 1024 + 1 - len(base) + 10)


def png_certificate(seed: int = 11) -> bytes:
    return encode(document(1000, 1400, seed=seed), "PNG")


# --- WeChat media ----------------------------------------------------------------------------------


class WeChatError(Exception):
    """Like bot.wechat_client.WeChatAPIError: what WeChat answered instead of the file."""

    def __init__(self, errcode: int, errmsg: str = "") -> None:
        super().__init__(f"errcode {errcode}: {errmsg}")
        self.errcode = errcode


@dataclass
class FakeMedia:
    """WeChat's media/get for the tests: the files users sent, by media id."""

    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)

    def add(self, media_id: str, data: bytes, content_type: str = "image/jpeg") -> str:
        self.files[media_id] = (data, content_type)
        return media_id

    async def download(self, media_id: str) -> tuple[bytes, str]:
        self.downloads.append(media_id)
        if media_id in self.errors:
            raise self.errors[media_id]
        if media_id not in self.files:
            raise WeChatError(40007, "invalid media_id")
        data, ctype = self.files[media_id]
        if len(data) > 10 * 1024 * 1024:
            raise WeChatError(40009, "media larger than 10485760 bytes")  # the client stops there
        return data, ctype


def standard_media() -> FakeMedia:
    media = FakeMedia()
    for n in range(1, 7):
        media.add(f"CERT{n}", certificate(n))
    media.add("ROTATED", rotated())
    media.add("OVERSIZED", oversized())
    media.add("TINY", tiny())
    media.add("PDF", pdf(), "application/pdf")
    media.add("HUGE", huge())
    media.add("PNG", png_certificate(), "image/png")
    media.errors["BUSY"] = WeChatError(-1, "system error")
    media.errors["TIMEOUT"] = TimeoutError()
    return media


# --- the world -------------------------------------------------------------------------------------


@dataclass
class World:
    candidate: int
    exemption_window: int
    backfill_window: int


async def world(db: Database, *, exemption_open: bool = True, backfill_open: bool = True) -> World:
    """docs/examples imported, 赵敏 bound to OPENID, windows of 申请免考 and 成绩补登 open now."""
    report = await import_directory(db, EXAMPLES)
    assert report.ok, report.format()
    cid = await candidate_id(db, ZHAO)
    t = now()
    async with db.session() as s, s.begin():
        s.add(m.WechatUser(openid=OPENID, candidate_id=cid, subscribed=True, bound_at=t,
                           active_admission_number=ZHAO_ADMISSION))
        ex = m.BusinessWindow(kind="exemption", title="2026年下半年申请免考", notice=NOTICE,
                              opens_at=t - dt.timedelta(days=1) if exemption_open else t + dt.timedelta(days=20),
                              closes_at=t + dt.timedelta(days=10) if exemption_open else t + dt.timedelta(days=30))
        bf = m.BusinessWindow(kind="backfill", title="2026年下半年成绩补登",
                              opens_at=t - dt.timedelta(days=1) if backfill_open else t + dt.timedelta(days=20),
                              closes_at=t + dt.timedelta(days=10) if backfill_open else t + dt.timedelta(days=30))
        s.add_all([ex, bf])
        await s.flush()
        return World(cid, ex.id, bf.id)


async def close_window(db: Database, kind: str) -> None:
    """The window of `kind` closed an hour ago; the next opens in 20 days."""
    t = now()
    async with db.session() as s, s.begin():
        for w in (await s.execute(select(m.BusinessWindow).where(m.BusinessWindow.kind == kind))).scalars():
            w.opens_at, w.closes_at = t - dt.timedelta(days=10), t - dt.timedelta(hours=1)
        s.add(m.BusinessWindow(kind=kind, title="下一次", opens_at=t + dt.timedelta(days=20),
                               closes_at=t + dt.timedelta(days=30)))


def application_router(db: Database, media: FakeMedia, photo_dir: Path, **kw) -> Router:
    router = make_router(db, **kw)
    router.services.download_media = media_download(media.download)  # as bot/app.py wires the client
    router.services.photo_store = LocalPhotoStore(photo_dir)
    exemption.register(router)
    backfill.register(router)
    applications.register(router)
    return router


def stored_files(photo_dir: Path) -> list[Path]:
    return sorted(p for p in photo_dir.rglob("*") if p.is_file())


def one(rows: list, what: Optional[str] = None):
    assert len(rows) == 1, f"expected one {what or 'row'}, got {len(rows)}"
    return rows[0]
