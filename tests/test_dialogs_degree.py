"""申请学位 as transcripts through the router."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from storage import applications as apps
from storage import models as m
from storage.db import Database
from tests.evidence_fixtures import OPENID, application_router, now, standard_media
from tests.test_import import EXAMPLES
from storage.importer import import_directory
from tests.test_outbox import ZHAO, candidate_id
from tests.transcript import router_sender, run

NOTICE = "一、申请学位须符合主考学校的学位授予条件。\n二、请如实填写。"


@pytest.fixture
def router(db, tmp_path):
    return application_router(db, standard_media(), tmp_path / "photos")


async def world(db: Database, *, open_: bool = True) -> int:
    report = await import_directory(db, EXAMPLES)
    assert report.ok, report.format()
    cid = await candidate_id(db, ZHAO)
    t = now()
    async with db.session() as s, s.begin():
        s.add(m.WechatUser(openid=OPENID, candidate_id=cid, subscribed=True, bound_at=t,
                           active_admission_number="012424100318"))
        s.add(m.BusinessWindow(kind="degree", title="2026年下半年申请学位", notice=NOTICE,
                               opens_at=t - dt.timedelta(days=1) if open_ else t + dt.timedelta(days=20),
                               closes_at=t + dt.timedelta(days=10) if open_ else t + dt.timedelta(days=30)))
    return cid


async def test_explore(db, router):
    await world(db)
    send = router_sender(router, OPENID)
    for line in ["学位", "我已知晓", "江苏南通", "13912345678", "无", "无", "修改 6", "021-5555", "021-55556666", "下一步", "1", "400", "480", "2019年6月", "上海", "[CERT1]", "完成", "[CERT2]", "完成", "修改 9", "2", "75", "A123", "2020年1月", "[PDF]", "[CERT3]", "完成", "确认提交", "我的申请"]:
        from tests.transcript import Line
        if line.startswith("["):
            r = await send(Line("photo", line[1:-1]))
        else:
            r = await send(Line("text", line))
        print(">", line)
        print(r)
        print("----")
    assert False
