"""Businesses not yet in WeChat (论文毕设, 申请学位): their window and where to go (申请毕业 is a flow:
tests/test_dialogs_graduation.py)."""
from __future__ import annotations

import datetime as dt

from dialogs.business import window_line
from storage import models as m
from storage.applications import WindowCheck, WindowInfo
from storage.db import Database
from tests.dialog_fixtures import make_router
from tests.transcript import router_sender, run

UTC = dt.timezone.utc
T = dt.datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


def test_window_line_says_until_when_it_is_open_or_when_it_opens() -> None:
    w = WindowInfo(1, "degree", "申请学位", T, T + dt.timedelta(days=7))
    assert window_line(WindowCheck("degree", w, None)) == "正在开放，截止到 2026年12月08日 09:00。"
    assert window_line(WindowCheck("degree", None, w)) == "暂未开放，2026年12月01日 09:00 开始办理。"
    assert "暂未安排" in window_line(WindowCheck("degree", None, None))


async def test_a_business_not_in_wechat_answers_with_its_open_window(db: Database) -> None:
    now = dt.datetime.now(UTC)
    async with db.session() as s, s.begin():
        s.add(m.BusinessWindow(kind="degree", title="申请学位", opens_at=now - dt.timedelta(days=1),
                               closes_at=now + dt.timedelta(days=3)))
    await run(router_sender(make_router(db), "o_business_000000000000001"), """
        > 申请学位
        < 【申请学位】
        < 正在开放，截止到
        < 考生服务平台（http://ste.shmeea.edu.cn）
        > 论文
        < 本次暂未安排办理时间
    """)
