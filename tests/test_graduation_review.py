"""申请毕业 decided through the same path as 免考/补登/转出: `zikao-bot review show/approve/reject` and the
staff console's application page show what the candidate confirmed and wrote (results, 情况说明,
自我鉴定, the prior-education photos); decisions push to the candidate and approval creates the
毕业审定费 order, in the decision's transaction."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from bot.config import Settings
from storage import applications as apps
from storage import models as m
from storage import staff
from storage.db import Database
from storage.graduation import GraduationDetails
from storage.models_service import Order
from storage.photos import LocalPhotoStore
from tests.console_fixtures import PASSWORD, Staffer, console_app
from tests.evidence_fixtures import standard_media
from tests.graduation_fixtures import OPENID, graduation_router, world
from tests.test_dialogs_graduation import FILL, SUBMIT, more_results, pushed
from tests.test_review_cli import cli
from tests.transcript import router_sender, run

REVIEWER = "biye"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, media_dir=str(tmp_path / "media"))


async def submitted(db: Database, settings: Settings) -> apps.ApplicationData:
    """张伟's 本科 application walked in the chat and submitted, its photos where the service keeps them."""
    await world(db)
    await more_results(db)
    router = graduation_router(db, standard_media(), Path(settings.media_dir) / "photos")
    assert isinstance(router.services.photo_store, LocalPhotoStore)
    await run(router_sender(router, OPENID), FILL + SUBMIT)
    [app] = await apps.list_applications(db, kind="graduation")
    return app


async def test_review_show_prints_the_graduation_content_and_approve_creates_the_order(db, settings, capsys):
    app = await submitted(db, settings)
    code, out, _ = await cli(settings, capsys, "list", "--kind", "申请毕业")
    assert code == 0 and f"{app.id}" in out and "申请毕业" in out and "张伟" in out
    code, out, _ = await cli(settings, capsys, "show", str(app.id))
    assert code == 0
    assert "合格成绩（14 门" in out and "00079 保险学原理" in out and "准考证号 012220100531" in out
    assert "情况说明（毕业论文（设计）未取得合格成绩）：论文已在本次论文考核中提交" in out
    assert "自我鉴定（201 字）：本人在自学考试期间，坚持工作与学习两不误" in out
    assert "前置学历 毕业证书  编号 103251201205001234  取得时间 2012年7月  省份 江苏省" in out
    assert "前置学历 教育部学历证书电子注册备案表  在线验证码 ABCD12345678" in out
    assert out.count("照片 1：") == 2 and "文件缺失" not in out and "13816452371" not in out
    code, out, _ = await cli(settings, capsys, "approve", str(app.id), "--by", "张老师", "--version", str(app.version))
    assert code == 0 and "审核通过" in out and "毕业审定费订单 GF" in out and "已通知考生" in out
    number = GraduationDetails.from_dict((await apps.load_application(db, app.id)).details).fee_order
    async with db.session() as s:
        assert (await s.execute(select(Order.status).where(Order.order_number == number))).scalar_one() == "pending"
    assert "毕业审定费150.00元的订单已生成" in (await pushed(db))[-1]
    # Approval is final: a second decision is refused and no second order appears.
    code, _, err = await cli(settings, capsys, "approve", str(app.id), "--by", "张老师")
    assert code == 1 and "已审核通过" in err
    async with db.session() as s:
        assert len((await s.execute(select(Order))).scalars().all()) == 2  # the demo's 王磊 and this one


async def test_console_page_shows_the_content_and_photos_and_rejects_with_the_push(aiohttp_client, db, settings,
                                                                                  tmp_path):
    app = await submitted(db, settings)
    await staff.add_staff(db, username=REVIEWER, display_name="陈老师", password=PASSWORD, kinds=["graduation"])
    client = await aiohttp_client(console_app(db, settings, tmp_path))
    from aiohttp import ClientSession, CookieJar

    async with ClientSession(base_url=str(client.make_url("/")), cookie_jar=CookieJar(unsafe=True)) as session:
        reviewer = Staffer(session)
        await reviewer.login(REVIEWER)
        queue = await reviewer.get("/console/queue/graduation")
        assert f"/console/applications/{app.id}" in queue.body_text and "张伟" in queue.body_text
        page = await reviewer.get(f"/console/applications/{app.id}")
        text = page.body_text
        assert "合格成绩（14 门）" in text and "00150 金融理论与实务" in text and "012220100531" in text
        assert "论文已在本次论文考核中提交" in text and "打印在毕业生登记表上" in text
        assert "103251201205001234" in text and "在线验证码 ABCD12345678" in text
        d = GraduationDetails.from_dict(app.details)
        for pid in d.photo_ids():
            assert f"/console/photos/{pid}" in text
            photo = await session.get(f"/console/photos/{pid}")
            assert photo.status == 200 and photo.headers["Content-Type"] == "image/jpeg"
        assert (await session.get("/console/photos/999999")).status == 404
        r = await reviewer.post(f"/console/applications/{app.id}/decide",
                                {"action": "reject", "reason": "备案表照片不清楚，请重新上传。", "version": app.version})
        assert r.status == 302
    decided = await apps.load_application(db, app.id)
    assert (decided.status, decided.reason) == ("rejected", "备案表照片不清楚，请重新上传。")
    assert (await pushed(db))[-1] == "您的毕业申请审核结果：未通过。\n回复“申请毕业”查看原因并重新提交。"


async def test_a_reviewer_of_another_business_cannot_see_graduation_photos(aiohttp_client, db, settings, tmp_path):
    app = await submitted(db, settings)
    await staff.add_staff(db, username="mian", display_name="张老师", password=PASSWORD, kinds=["exemption"])
    client = await aiohttp_client(console_app(db, settings, tmp_path))
    from aiohttp import ClientSession, CookieJar

    async with ClientSession(base_url=str(client.make_url("/")), cookie_jar=CookieJar(unsafe=True)) as session:
        reviewer = Staffer(session)
        await reviewer.login("mian")
        pid = GraduationDetails.from_dict(app.details).photo_ids()[0]
        assert (await session.get(f"/console/photos/{pid}")).status == 404
    async with db.session() as s:
        assert await s.scalar(select(m.Outbox.id).where(m.Outbox.kind == "review_outcome")) is None
