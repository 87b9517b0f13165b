"""Shared pieces of the 申请毕业 tests: the demo data set with 张伟 (本科 020301K under one 准考证号,
专科 690206 under another) bound, the 申请毕业 window open, photos served by a fake WeChat media."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select

from bot.app import media_download
from dialogs.router import Router
from storage import models as m
from storage.db import Database
from storage.demo import load_demo
from storage.photos import LocalPhotoStore
from tests.dialog_fixtures import Inbox, make_router
from tests.evidence_fixtures import FakeMedia

ZHANG = "310115199203154215"
OPENID = "o_zhang_graduation_00000001"
BACHELOR = "020301K"  # 金融学(专升本), under 012323200117
ASSOCIATE = "690206"  # 行政管理(专科), under 012220100531
OTHER_ADMISSION = "012220100531"
NOTICE = "一、申请毕业前请核对成绩。\n二、自我鉴定将打印在毕业生登记表上。"
# 201 characters: a 自我鉴定 long enough for the demo majors' minimum of 200.
ASSESSMENT = ("本人在自学考试期间，坚持工作与学习两不误，认真学习各门课程，" * 8)[:201]


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class World:
    candidate: int
    window: int


async def world(db: Database, *, open_: bool = True, fee_window: str = "later") -> World:
    """Demo data; 张伟 bound to OPENID; the 申请毕业 window open (or upcoming); the 毕业审定费
    payment period `fee_window`: "later" (in 30 days), "open" (now) or "none"."""
    await load_demo(db)
    t = now()
    async with db.session() as s, s.begin():
        await s.execute(delete(m.BusinessWindow).where(m.BusinessWindow.kind.in_(("graduation", "graduation_fee"))))
        cid = await s.scalar(select(m.Candidate.id).where(m.Candidate.with_id_number(ZHANG)))
        s.add(m.WechatUser(openid=OPENID, candidate_id=cid, subscribed=True, bound_at=t,
                           active_admission_number="012323200117"))
        w = m.BusinessWindow(kind="graduation", title="2026年下半年申请毕业", notice=NOTICE,
                             opens_at=t - dt.timedelta(days=1) if open_ else t + dt.timedelta(days=20),
                             closes_at=t + dt.timedelta(days=10) if open_ else t + dt.timedelta(days=30))
        s.add(w)
        if fee_window == "later":
            s.add(m.BusinessWindow(kind="graduation_fee", title="毕业审定费缴费", opens_at=t + dt.timedelta(days=30),
                                   closes_at=t + dt.timedelta(days=40)))
        elif fee_window == "open":
            s.add(m.BusinessWindow(kind="graduation_fee", title="毕业审定费缴费", opens_at=t - dt.timedelta(hours=1),
                                   closes_at=t + dt.timedelta(days=10)))
        await s.flush()
        return World(cid, w.id)


def graduation_router(db: Database, media: FakeMedia, photo_dir: Path, inbox: Inbox | None = None) -> Router:
    router = make_router(db, inbox)
    router.services.download_media = media_download(media.download)
    router.services.photo_store = LocalPhotoStore(photo_dir)
    return router
