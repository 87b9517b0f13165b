"""申请毕业 as transcripts through the router: bad input at every step first (a wrong date, a 2001
diploma with a 备案表 code, a too-short 自我鉴定, a PDF or text where a photo is expected, a photo
where text is expected, a question typed mid-form), the review with 修改 N, submission; then
reject → 重新申请 → approve with the pushes and the 毕业审定费 order, paid through WeChat Pay (the
emulator's cashier and its signed notification) to 已缴费 with the receipt; a 专科 major skips the
prior education; the window closed; the contact update returning to the application."""
from __future__ import annotations

import datetime as dt
import re
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port
from sqlalchemy import select

from bot.pay import PAY, PayConfig, PayGateway, PayService, add_pay_routes, link_token
from emulator.pay import PayState
from emulator.pay import add_pay_routes as add_emulator_pay_routes
from storage import applications as apps
from storage import models as m
from storage import queries
from storage.db import Database
from storage.graduation import GraduationDetails
from storage.models_service import Order
from tests.dialog_fixtures import Inbox
from tests.evidence_fixtures import standard_media
from tests.graduation_fixtures import (
    ASSESSMENT,
    ASSOCIATE,
    BACHELOR,
    OPENID,
    OTHER_ADMISSION,
    graduation_router,
    world,
)
from dialogs.types import Message
from tests.transcript import Line, router_sender, run

REASON = "前置学历毕业证书照片不清楚，请重新上传。"


@pytest.fixture
def media():
    return standard_media()


@pytest.fixture
def inbox():
    return Inbox()


@pytest.fixture
def router(db, media, tmp_path, inbox):
    return graduation_router(db, media, tmp_path / "photos", inbox)


async def more_results(db: Database) -> None:
    """张伟 passed 00079 保险学原理 under his other 准考证号, and 00150 was exempted: both count."""
    async with db.session() as s, s.begin():
        cid = await s.scalar(select(m.AdmissionNumber.candidate_id).where(m.AdmissionNumber.number == OTHER_ADMISSION))
        s.add_all([
            m.ScoreRecord(candidate_id=cid, admission_number=OTHER_ADMISSION, course_code="00079", sitting_code="202510",
                          kind="exam", score=66, passed=True, passed_on=dt.date(2025, 10, 26)),
            m.ScoreRecord(candidate_id=cid, admission_number="012323200117", course_code="00150", sitting_code="",
                          kind="exemption", passed=True, passed_on=dt.date(2025, 11, 3), note="免考"),
        ])
        await queries.mark_changed(s, reference=False, results=True)


async def pushed(db: Database) -> list[str]:
    async with db.session() as s:
        rows = (await s.execute(select(m.Outbox).where(m.Outbox.openid == OPENID).order_by(m.Outbox.id))).scalars()
        return [r.payload["text"] for r in rows]


async def the_application(db: Database, major: str = BACHELOR) -> apps.ApplicationData:
    [app] = [a for a in await apps.list_applications(db, kind="graduation") if a.major_code == major]
    return app


# From 申请毕业 to the review of a 本科 application, wrong answers first at each step.
FILL = f"""
    > 申请毕业
    < 【申请毕业｜考生须知】
    < 一、申请毕业前请核对成绩
    < 回复“我已知晓”继续申请
    > 好的
    < 读完考生须知后，请回复“我已知晓”继续申请
    > 我已知晓
    < 【申请毕业｜个人信息】
    < 证件号码：3101**********4215
    < 手机号码：138****2371
    <! 13816452371
    [photo CERT1]
    < 这一步需要回复文字，不是图片
    > 00015成绩
    < 00015 英语(二)
    < 【申请毕业｜个人信息】
    > 1
    < 请选择申请毕业的专业
    < 1. 020301K 金融学(专升本)
    < 2. 690206 行政管理(专科)
    > 9
    < 请选择申请毕业的专业
    > 1
    < 申请毕业的专业：020301K 金融学(专升本)。
    < 【申请毕业｜合格成绩】020301K 金融学(专升本)
    < 准考证号：012323200117
    < 00015 英语(二)｜理论｜63分｜14学分｜2024年10月通过
    < 00150 金融理论与实务｜理论｜—｜6学分｜2025年11月通过｜免考
    < 00079 保险学原理｜理论｜66分｜4学分｜2025年10月通过｜准考证号{OTHER_ADMISSION}
    < 1. 成绩无误，继续
    > 1
    < 【情况说明 第1/1项】毕业论文（设计）未取得合格成绩
    > 没写
    < 情况说明至少10字，现在2字
    [photo CERT1]
    < 这一步需要回复文字，不是图片
    > 论文已在本次论文考核中提交，答辩安排在下月，请予以考虑。
    < 【申请毕业｜自我鉴定】
    < 不少于200字
    < 自我鉴定将打印在《毕业生登记表》上
    > 本人学习认真，工作努力。
    < 自我鉴定不少于200字，现在12字，还差188字。
    > {ASSESSMENT}
    < 【申请毕业｜前置学历】
    < 请输入前置学历毕业证书的编号
    > 二〇一二年
    < 毕业证书编号是证书上的一串数字
    > 103251201205001234
    < 请输入取得毕业证书的年月
    > 2012年13月
    < 月份应在1到12之间
    < 请输入取得毕业证书的年月
    > 2012.7.1
    < 时间格式不对
    > 2030年1月
    < 时间不能晚于本月
    > 2012年7月
    < 请输入取得毕业证书的省份
    > 江南
    < 没有找到这个省份
    > 江苏
    < 请发送毕业证书照片
    > 这就是照片
    < 这一步需要发送照片
    [photo PDF]
    <! 已收到
    [photo CERT1]
    < 已收到
    > 完成
    < 毕业时间为2012年（2002年及以后），须提供教育部学历证书电子注册备案表
    < 请输入备案表上的在线验证码（12位字母或数字）
    > ABC123
    < 在线验证码是备案表上的12位字母或数字，您输入的是6位
    > abcd12345678
    < 请发送教育部学历证书电子注册备案表照片
    [photo CERT2]
    > 完成
    < 【申请毕业｜请核对】
    < 1. 个人信息：张伟｜手机 138****2371
    < 2. 专业：020301K 金融学(专升本)｜准考证号 012323200117
    < 3. 合格成绩：共14门
    < 4. 情况说明：共1项
    < ① 毕业论文（设计）未取得合格成绩：论文已在本次论文考核中提交
    < 5. 自我鉴定：201字（打印在毕业生登记表上）
    < 6. 前置学历
    < ① 毕业证书：编号103251201205001234｜2012年7月｜江苏省｜照片1张
    < ② 教育部学历证书电子注册备案表：在线验证码ABCD12345678｜照片1张
    <! 还需补充
"""

# 修改 6: the diploma was from 2001: the 备案表 no longer fits, its code is refused, a report is asked.
CHANGE_TO_2001 = """
    > 修改 6
    < 要修改前置学历的哪一项
    > 2
    < 请输入取得毕业证书的年月
    > 2001年7月
    < 毕业时间改为2001年，须改为提供中国高等教育学历认证报告
    < 请输入认证报告编号
    > ABCD12345678
    < 这是电子注册备案表的在线验证码。2001年毕业（2002年以前）的学历没有电子注册备案表，须提供中国高等教育学历认证报告
    > 2010012345
    < 请发送中国高等教育学历认证报告照片
    [photo CERT3]
    > 完成
    < 【申请毕业｜请核对】
    < ① 毕业证书：编号103251201205001234｜2001年7月｜江苏省｜照片1张
    < ② 中国高等教育学历认证报告：报告编号2010012345｜照片1张
"""

SUBMIT = """
    > 确认提交
    < 已提交，第1号毕业申请现在是“待审核”
    < 审核前需要修改请回复“申请毕业”
"""


async def test_every_step_refuses_bad_input_and_the_application_is_submitted(db, router):
    await world(db)
    await more_results(db)
    send = router_sender(router, OPENID)
    await run(send, FILL + CHANGE_TO_2001 + SUBMIT)
    app = await the_application(db)
    assert app.status == "submitted" and app.items == []
    d = GraduationDetails.from_dict(app.details)
    assert d.profile_checked and d.results_confirmed and d.level == "专升本"
    by_code = {r.course_code: r for r in d.results}
    assert by_code["00079"].admission_number == OTHER_ADMISSION and by_code["00150"].note == "免考"
    assert [x["key"] for x in d.missing] == ["thesis"] and list(d.explanations) == ["thesis"]
    assert d.self_assessment == ASSESSMENT
    assert d.diploma["graduated"] == "2001-07" and d.diploma["province"] == "江苏省" and len(d.diploma["photo_ids"]) == 1
    assert d.companion == {"kind": "cdgdc_report", "number": "2010012345", "photo_ids": d.companion["photo_ids"]}
    assert len(d.companion["photo_ids"]) == 1 and d.companion["photo_ids"] != d.diploma["photo_ids"]


async def test_reject_then_reapply_then_approve_with_the_order_and_the_pushes(db, router):
    await world(db)
    await more_results(db)
    send = router_sender(router, OPENID)
    await run(send, FILL + SUBMIT)
    app = await the_application(db)
    await apps.reject(db, app.id, reason=REASON, by="张老师")
    assert await pushed(db) == ["您的毕业申请审核结果：未通过。\n回复“申请毕业”查看原因并重新提交。"]
    await run(send, f"""
        > 毕业进度
        > 1
        < 毕业申请：第1号 未通过
        < 未通过原因：{REASON}
        > 申请毕业
        < 第1号｜未通过
        < 未通过原因：{REASON}
        < 重新申请：修改第1号后再次提交（未通过）
        > 重新申请
        < 【申请毕业｜第1号 未通过】
        < 未通过原因：{REASON}
        < 确认重新提交
        > 修改 6.1
        < 要修改前置学历的哪一项
        > 毕业证书照片
        < 请发送新的照片，发送后将替换原来的1张
        [photo CERT4]
        > 完成
        < 【申请毕业｜第1号 未通过】
        > 确认重新提交
        < 已重新提交，第1号毕业申请现在是“待审核”
        > 我的申请
        < 申请毕业：
        < 第1号｜待审核
    """)
    done = await apps.approve(db, app.id, by="张老师")
    order_number = GraduationDetails.from_dict(done.application.details).fee_order
    assert re.fullmatch(r"GF\d{8}A000001", order_number)
    async with db.session() as s:
        order = (await s.execute(select(Order).where(Order.order_number == order_number))).scalar_one()
    assert (order.status, str(order.amount), order.major_code, order.admission_number) == \
        ("pending", "150.00", BACHELOR, "012323200117")
    texts = await pushed(db)
    assert len(texts) == 2 and texts[1].startswith("您的毕业申请审核结果：已通过。\n专业：金融学(专升本)\n"
                                                   f"毕业审定费150.00元的订单已生成（订单号{order_number}）。")
    assert "缴费时间：" in texts[1] and "回复“我的订单”查看和缴费" in texts[1]
    await run(send, f"""
        > 我的订单
        < 订单号：{order_number}
        < 金额：150.00 元
        < 状态：待缴费
        > 毕业进度
        > 1
        < 毕业申请：第1号 审核通过
        < 毕业审定费：150.00 元｜待缴费
        > 申请毕业
        < 第1号｜审核通过
        < 毕业审定费订单：{order_number}
        < 申请另一专业
        <! 重新申请
    """)


async def test_a_zhuanke_major_skips_prior_education_and_is_another_application(db, router):
    await world(db)
    send = router_sender(router, OPENID)
    await run(send, """
        > 申请毕业
        > 我已知晓
        > 1
        > 2
        < 申请毕业的专业：690206 行政管理(专科)。
        < 【申请毕业｜合格成绩】690206 行政管理(专科)
        < 准考证号：012220100531
        < 00277 行政管理学｜理论｜61分｜6学分｜2023年10月通过
        > 1
        < 【情况说明 第1/7项】政治学概论(00312)未取得合格成绩
    """)
    # Every missing course of the plan has its 情况说明, then the 自我鉴定, then straight to the review.
    reply = ""
    for _ in range(7):
        reply = await router_sender(router, OPENID)(Line("text", "本课程已报名下次考试，预计可以通过，请考虑。"))
    assert "【申请毕业｜自我鉴定】" in reply
    await run(send, f"""
        > {ASSESSMENT}
        < 【申请毕业｜请核对】
        < 4. 情况说明：共7项
        < 5. 自我鉴定：201字
        <! 前置学历
        > 确认提交
        < 已提交，第1号毕业申请现在是“待审核”
        > 申请毕业
        < 1. 申请另一专业
        < 2. 查看或修改第1号（待审核）
        > 申请另一专业
        < 【申请毕业｜考生须知】
        > 我已知晓
        < 【申请毕业｜个人信息】
        > 1
        < 【申请毕业｜合格成绩】020301K 金融学(专升本)
        > 取消
        < 已填写的内容都保存了，回复“申请毕业”可以接着办理
        > 申请毕业
        < 您有一份还没提交的毕业申请草稿（020301K 金融学(专升本)）。
        < 1. 继续填写草稿
        > 1
        < 接着填写上次的草稿。
        < 【申请毕业｜合格成绩】
    """)
    app = await the_application(db, ASSOCIATE)
    d = GraduationDetails.from_dict(app.details)
    assert app.status == "submitted" and d.diploma is None and len(d.explanations) == 7


async def test_outside_the_window_it_says_when_it_opens(db, router):
    await world(db, open_=False)
    await run(router_sender(router, OPENID), """
        > 申请毕业
        < 申请毕业现在不在办理时间内
        <! 考生须知
    """)


async def test_the_contact_update_returns_to_the_application(db, router, inbox):
    await world(db)
    send = router_sender(router, OPENID)
    await run(send, """
        > 申请毕业
        > 我已知晓
        < 【申请毕业｜个人信息】
        > 2
        < 请选择要修改的项目
        > 1
        < 请输入新的手机号码
        > 13900001111
    """)
    await run(send, """
        > {code}
    """, values=lambda: {"code": inbox.last_code()})
    replies = await run(send, """
        > 确认
        < 【申请毕业｜个人信息】
        < 手机号码：139****1111
        > 1
        < 请选择申请毕业的专业
    """)
    assert replies


# --- paying the 毕业审定费 through WeChat Pay -----------------------------------------------------------


@pytest.fixture
async def pay(db, tmp_path):
    """The emulator's WeChat Pay and the service's payment routes (as tests/test_payments.py)."""
    wxpay = PayState(appid="wx0000000000000000", time_scale=0)
    emu = web.Application()
    add_emulator_pay_routes(emu, wxpay)
    emu_server = TestServer(emu, port=unused_port())
    await emu_server.start_server()
    files = wxpay.write_service_files(tmp_path / "wechatpay")
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    cfg = PayConfig(
        mchid=files["WECHATPAY_MCHID"], appid="wx0000000000000000", api_v3_key=files["WECHATPAY_API_V3_KEY"],
        private_key_pem=open(files["WECHATPAY_PRIVATE_KEY_PATH"]).read(),
        cert_serial_no=files["WECHATPAY_CERT_SERIAL_NO"],
        public_key_pem=open(files["WECHATPAY_PUBLIC_KEY_PATH"]).read(), public_key_id=files["WECHATPAY_PUBLIC_KEY_ID"],
        api_base=str(emu_server.make_url("")).rstrip("/"), notify_url=f"{base}/pay/notify", page_base=base)
    app = web.Application()
    app[PAY] = PayService(db, PayGateway(cfg))
    add_pay_routes(app)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    import aiohttp

    http = aiohttp.ClientSession()
    yield SimpleNamespace(wxpay=wxpay, emu=emu_server, cfg=cfg, http=http, base=base)
    await http.close()
    await server.close()
    await emu_server.close()


async def test_the_approved_fee_is_paid_in_wechat_to_paid_with_a_receipt(db, router, pay):
    await world(db, fee_window="open")
    await more_results(db)
    send = router_sender(router, OPENID)
    await run(send, FILL + SUBMIT)
    done = await apps.approve(db, (await the_application(db)).id, by="张老师")
    number = GraduationDetails.from_dict(done.application.details).fee_order
    assert "现在可以缴费，截止到" in (await pushed(db))[-1]
    # The payment page, the JSAPI order, the cashier's 确认支付 and its signed notification.
    link = f"{pay.base}/pay/{number}?" + urlencode({"openid": OPENID, "t": link_token(pay.cfg, number, OPENID)})
    async with pay.http.post(f"{pay.base}/pay/{number}/prepay",
                             json={"openid": OPENID, "t": link_token(pay.cfg, number, OPENID)}) as r:
        params = (await r.json())["params"]
    async with pay.http.get(str(pay.emu.make_url("/_emu/pay/cashier")), params={**params, "return_url": link}) as r:
        page = await r.text()
    assert "¥150.00" in page
    prepay_id = re.search(r'name="prepay_id" value="([^"]+)"', page).group(1)
    async with pay.http.post(str(pay.emu.make_url("/_emu/pay/confirm")),
                             data={"prepay_id": prepay_id, "return_url": link}) as r:
        assert "已缴费" in await r.text()
    await pay.wxpay.drain()
    async with db.session() as s:
        order = (await s.execute(select(Order).where(Order.order_number == number))).scalar_one()
    assert order.status == "paid" and order.transaction_id
    assert any(t.startswith("缴费成功：毕业审定费 150.00 元") and number in t for t in await pushed(db))
    await run(send, """
        > 我的订单
        < 状态：已缴费
        > 毕业进度
        > 1
        < 毕业审定费：150.00 元｜已缴费
    """)


async def test_a_question_while_the_message_is_sent_from_a_menu_mid_form_loses_nothing(db, router):
    await world(db)
    send = router_sender(router, OPENID)
    await run(send, """
        > 申请毕业
        > 我已知晓
        > 1
        > 1
        > 1
        < 【情况说明 第1/3项】
        > 我的订单
        < 【我的订单】
        < 您的「申请毕业」还没办完，回复“继续”接着办理
        > 继续
        < 【情况说明 第1/3项】
    """)
    app = await the_application(db)
    assert app.status == "draft" and GraduationDetails.from_dict(app.details).results_confirmed


async def test_a_pdf_a_file_or_a_video_where_a_photo_is_expected_is_refused_and_nothing_is_lost(db, router):
    await world(db)
    await more_results(db)
    replies = await run(router_sender(router, OPENID), FILL.split("[photo PDF]")[0] + "[photo PDF]")
    assert "已收到" not in replies[-1] and "毕业证书照片" in replies[-1]
    for kind in ("unknown", "video", "link"):  # a file arrives as "unknown" (bot/wire.py)
        reply = (await router.handle(Message(openid=OPENID, kind=kind, media_id="M1"))).text
        assert "这一步需要发送照片（JPG或PNG），不能是视频、语音、链接或文件" in reply and "毕业证书照片" in reply
    app = await the_application(db)
    d = GraduationDetails.from_dict(app.details)
    assert d.diploma["number"] == "103251201205001234" and d.diploma["graduated"] == "2012-07"
    assert d.self_assessment == ASSESSMENT and d.explanations and d.diploma["photo_ids"] == []


LI = "310104199508123322"  # 李娜, 120402 行政管理(专升本): its rules offer two 加考选项
LI_OPENID = "o_li_graduation_000000000001"


async def bind_li(db: Database) -> None:
    async with db.session() as s, s.begin():
        cid = await s.scalar(select(m.Candidate.id).where(m.Candidate.with_id_number(LI)))
        s.add(m.WechatUser(openid=LI_OPENID, candidate_id=cid, subscribed=True, bound_at=m.utcnow(),
                           active_admission_number="012323100842"))


async def test_the_extra_exam_option_chosen_decides_which_explanations_are_asked(db, router):
    await world(db)
    await bind_li(db)
    send = router_sender(router, LI_OPENID)
    await run(send, """
        > 申请毕业
        > 我已知晓
        > 1
        < 【申请毕业｜合格成绩】120402 行政管理(专升本)
        < 00015 英语(二)｜理论｜—｜14学分｜2023年9月通过｜免考
        > 1
        < 【申请毕业｜加考选项】请选择符合您情况的一项
        < 1. 政治类专科毕业，已通过行政法学、行政管理学
        < 2. 非政治类专科毕业，须加考行政法学、行政管理学：行政法学（未通过）、行政管理学（未通过）
        > 3
        < 请回复1到2之间的数字
        > 2
        < 【情况说明 第1/3项】选考课程学分还差
    """)
    app = await the_application(db, "120402")
    d = GraduationDetails.from_dict(app.details)
    assert d.extra_choice == "非政治类专科毕业，须加考行政法学、行政管理学"
    assert [x["key"] for x in d.missing] == ["credits", "thesis", "extra:非政治类专科毕业，须加考行政法学、行政管理学"]
    # Everything filled; then at the review the other option: its 情况说明 goes, the others stay.
    await run(send, f"""
        > 选考课程中国文化概论已报名下次考试。
        > 论文已在本次论文考核中提交，请予以考虑。
        < 【情况说明 第3/3项】非政治类专科毕业，须加考行政法学、行政管理学
        > 加考课程已报名本次考试，成绩公布后补交。
        < 【申请毕业｜自我鉴定】
        > {ASSESSMENT}
        > 103251201205001234
        > 2015年7月
        > 上海
        [photo CERT1]
        > 完成
        > ABCD12345678
        [photo CERT2]
        > 完成
        < 4. 加考选项：非政治类专科毕业，须加考行政法学、行政管理学
        < 5. 情况说明：共3项
        > 修改 4
        < 【申请毕业｜加考选项】
        > 1
        < 4. 加考选项：政治类专科毕业，已通过行政法学、行政管理学
        < 5. 情况说明：共2项
        <! 还需补充
    """)
    d = GraduationDetails.from_dict((await the_application(db, "120402")).details)
    assert [x["key"] for x in d.missing] == ["credits", "thesis"]


async def test_a_pending_application_is_edited_and_resubmitted_or_left_unchanged(db, router):
    await world(db)
    await more_results(db)
    send = router_sender(router, OPENID)
    await run(send, FILL + SUBMIT)
    await run(send, f"""
        > 申请毕业
        < 第1号｜待审核
        > 查看或修改第1号（待审核）
        < 【申请毕业｜第1号 待审核】
        < 确认提交修改
        > 修改 5
        < 现在写的是（201字）
        > {ASSESSMENT}又及：本人将继续努力学习。
        < 5. 自我鉴定：214字
        > 不修改，退出
        < 这次的修改没有提交，原申请不变，仍在审核中
    """)
    d = GraduationDetails.from_dict((await the_application(db)).details)
    assert d.self_assessment == ASSESSMENT
    await run(send, f"""
        > 申请毕业
        > 2
        > 修改 2
        < 1. 020301K 金融学(专升本)
        < 2. 690206 行政管理(专科)
        > 1
        < 2. 专业：020301K 金融学(专升本)
        < 4. 情况说明：共1项
        > 修改 4.1
        < 原来写的是：论文已在本次论文考核中提交
        > 论文答辩已安排在十二月五日，届时可取得成绩。
        < ① 毕业论文（设计）未取得合格成绩：论文答辩已安排在十二月五日
        > 确认提交修改
        < 修改已提交，第1号毕业申请现在是“待审核”
    """)
    d = GraduationDetails.from_dict((await the_application(db)).details)
    assert d.explanations == {"thesis": "论文答辩已安排在十二月五日，届时可取得成绩。"}


async def test_outside_the_window_a_rejected_application_shows_its_reason_and_when_to_reapply(db, router):
    await world(db)
    await more_results(db)
    send = router_sender(router, OPENID)
    await run(send, FILL + SUBMIT)
    await apps.reject(db, (await the_application(db)).id, reason=REASON, by="张老师")
    async with db.session() as s, s.begin():
        for w in (await s.execute(select(m.BusinessWindow).where(m.BusinessWindow.kind == "graduation"))).scalars():
            w.opens_at, w.closes_at = m.utcnow() - dt.timedelta(days=10), m.utcnow() - dt.timedelta(hours=1)
    await run(send, f"""
        > 申请毕业
        < 申请毕业现在不在办理时间内
        < 第1号｜未通过
        < 未通过原因：{REASON}
        < 未通过的申请可以在下次办理时间内修改后重新申请
        <! 请选择
    """)


async def test_a_restart_in_the_middle_of_the_prior_education_goes_on_where_it_was(db, router, media, tmp_path):
    await world(db)
    await more_results(db)
    head = FILL.split("    [photo PDF]")[0]
    await run(router_sender(router, OPENID), head)
    again = graduation_router(db, media, tmp_path / "photos")  # another process, the same database
    await run(router_sender(again, OPENID), """
        [photo CERT1]
        < 已收到
        > 完成
        < 毕业时间为2012年（2002年及以后）
    """)
    d = GraduationDetails.from_dict((await the_application(db)).details)
    assert len(d.diploma["photo_ids"]) == 1 and d.diploma["province"] == "江苏省"


async def test_with_every_major_approved_it_shows_the_applications_and_asks_nothing(db, router, tmp_path):
    from storage.photos import LocalPhotoStore, process_photo, save_photo
    from tests.evidence_fixtures import certificate

    await world(db)
    await bind_li(db)
    async with db.session() as s:
        cid = await s.scalar(select(m.Candidate.id).where(m.Candidate.with_id_number(LI)))
    store = LocalPhotoStore(tmp_path / "store")
    photos = [(await save_photo(db, store, process_photo(certificate(n)))).id for n in (1, 2)]
    draft = await apps.open_draft(db, kind="graduation", candidate_id=cid, openid=LI_OPENID,
                                  admission_number="012323100842")
    draft.major_code = "120402"
    draft.details = GraduationDetails(
        profile_checked=True, results_confirmed=True, level="专升本", extra_choice="政治类专科毕业，已通过行政法学、行政管理学",
        self_assessment=ASSESSMENT, missing=[{"key": "thesis", "label": "毕业论文（设计）未取得合格成绩"}],
        explanations={"thesis": "论文已提交，答辩安排在下个月。"},
        diploma={"number": "103251201505001234", "graduated": "2015-07", "province": "上海市", "photo_ids": [photos[0]]},
        companion={"kind": "chsi_record", "number": "ABCD12345678", "photo_ids": [photos[1]]}).to_dict()
    app = await apps.submit(db, draft)
    await apps.approve(db, app.id, by="张老师")
    await run(router_sender(router, LI_OPENID), """
        > 申请毕业
        < 【申请毕业】
        < 第1号｜审核通过
        < 专业：120402 行政管理(专升本)
        < 毕业审定费订单：GF
        <! 请选择
        <! 考生须知
    """)
