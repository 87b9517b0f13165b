"""本市转出 as transcripts through the router: every field with bad input first, the results ticked
(those that cannot leave refused with the reason), the review with 修改 N, submission; then
reject → 重新申请 → approve with the pushes, and the window closed."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from storage import applications as apps
from storage import models as m
from storage.db import Database
from storage.importer import import_directory
from tests.dialog_fixtures import make_router
from tests.test_import import EXAMPLES
from tests.transcript import router_sender, run

ZHAO = "310105199307074567"
ZHAO_ADMISSION = "012424100318"  # docs/examples: 03708, 03709, 00052 passed; 00015 exempted
OPENID = "o_zhao_transfer_out"
NOTICE = "一、转出前请先在转入省报名。\n二、请如实填写。"


@pytest.fixture
def router(db):
    return make_router(db)


async def world(db: Database, *, open_: bool = True) -> int:
    assert (await import_directory(db, EXAMPLES)).ok
    t = m.utcnow()
    async with db.session() as s, s.begin():
        cid = await s.scalar(select(m.Candidate.id).where(m.Candidate.with_id_number(ZHAO)))
        s.add(m.WechatUser(openid=OPENID, candidate_id=cid, subscribed=True, bound_at=t,
                           active_admission_number=ZHAO_ADMISSION))
        s.add(m.BusinessWindow(kind="transfer_out", title="2026年下半年本市转出", notice=NOTICE,
                               opens_at=t - dt.timedelta(days=1) if open_ else t + dt.timedelta(days=20),
                               closes_at=t + dt.timedelta(days=10) if open_ else t + dt.timedelta(days=30)))
    return cid


async def pushed(db: Database) -> list[str]:
    async with db.session() as s:
        rows = (await s.execute(select(m.Outbox).where(m.Outbox.openid == OPENID).order_by(m.Outbox.id))).scalars()
        return [r.payload["text"] for r in rows]


FILL = """
    > 转出
    < 【本市转出｜考生须知】
    < 一、转出前请先在转入省报名
    < 回复“我已知晓”继续申请
    > 好的
    < 读完考生须知后，请回复“我已知晓”继续申请；不办理请回复“取消”
    > 我已知晓
    < 【本市转出｜转入地】
    < 9.江苏 10.浙江
    <! 上海
    > 江南
    < 没有“江南”这个省份
    > 上海
    < 转入地不能是上海
    [photo P1]
    < 这一步需要回复文字，不是图片
    > 浙江
    < 请输入您在转入省的准考证号
    > 33011820034A
    < 准考证号应全部是数字
    > 3301182
    < 一般是10到15位数字，您输入的是7位
    > 330118200345
    < 请选择转入层次
    < 1. 专科
    < 2. 本科
    > 硕士
    < 没有这一项
    > 本科
    < 请输入转入专业
    > 行政管理
    < 请选择转出原因
    < 1. 工作调动
    < 6. 其他
    > 6
    < 请简要写明转出原因
    > 随配偶到杭州工作
    < 请输入联系电话
    > 12345
    < 联系电话应为11位手机号码，或带区号的固定电话
    > 0571-87654321
    < 【本市转出｜转出成绩】
    < 03709 马克思主义基本原理概论｜65分｜2024年10月
    < 00052 管理系统中计算机应用(实践)｜合格｜2024年10月
    < 03708 中国近现代史纲要｜76分｜2024年04月
    < 以下成绩不能转出：
    < · 00015 英语(二)｜免考｜2024年09月（免考课程不能转出）
    > 00015
    < 英语(二)不能转出：免考课程不能转出。
    < 请只选择上面编了序号的成绩
    > 9
    < 没有第9项，可以转出的成绩序号在1到3之间
    > 1,3
    < 【本市转出｜请核对】
    < 1. 转入地：浙江省
    < 2. 转入准考证号：330118200345
    < 3. 转入层次：本科
    < 4. 转入专业：行政管理
    < 5. 转出原因：随配偶到杭州工作
    < 6. 联系电话：0571-87654321
    < 7. 转出成绩：共2门
    < ① 03709 马克思主义基本原理概论｜2024年10月通过
    < ② 03708 中国近现代史纲要｜2024年4月通过
    <! 还需补充
    > 修改 2
    < 请输入您在转入省的准考证号
    > 330118200399
    < 2. 转入准考证号：330118200399
    > 修改 7
    < 请勾选要转出的成绩
    < 现在选的是：马克思主义基本原理概论、中国近现代史纲要
    > 1-3
    < 7. 转出成绩：共3门
    > 确认
    < 已提交，第1号转出申请现在是“待审核”
"""


async def test_every_field_refuses_bad_input_and_the_application_is_submitted(db, router):
    await world(db)
    await run(router_sender(router, OPENID), FILL)
    [app] = await apps.list_applications(db, kind="transfer_out")
    assert app.status == "submitted"
    assert [i.course_code for i in app.items] == ["03709", "00052", "03708"]
    assert app.details == {"province": "浙江省", "admission_number": "330118200399", "level": "本科",
                           "major": "行政管理", "reason": "随配偶到杭州工作", "phone": "0571-87654321"}


async def test_reject_then_reapply_then_approve_with_the_pushes(db, router):
    await world(db)
    send = router_sender(router, OPENID)
    await run(send, FILL)
    [app] = await apps.list_applications(db, kind="transfer_out")
    await apps.reject(db, app.id, reason="转入准考证号与浙江省记录不符，请核对。", by="张老师")
    assert await pushed(db) == ["您的本市转出申请审核结果：未通过。\n回复“转出”查看原因并重新提交。"]
    await run(send, """
        > 转出
        < 第1号｜未通过
        < 未通过原因：转入准考证号与浙江省记录不符，请核对。
        < 重新申请：修改第1号后再次提交（未通过）
        > 重新申请
        < 【本市转出｜第1号 未通过】
        < 未通过原因：转入准考证号与浙江省记录不符
        < 确认重新提交
        > 修改 2
        < 请输入您在转入省的准考证号
        > 330118200388
        < 2. 转入准考证号：330118200388
        > 确认重新提交
        < 已重新提交，第1号转出申请现在是“待审核”
    """)
    done = await apps.approve(db, app.id, by="张老师")
    ref = done.application.details["reference"]
    texts = await pushed(db)
    assert len(texts) == 2 and texts[1].startswith(f"您的本市转出申请审核结果：已通过。\n转出编号：{ref}")
    assert "马克思主义基本原理概论、管理系统中计算机应用(实践)、中国近现代史纲要（共3门）" in texts[1]
    await run(send, f"""
        > 转出
        < 第1号｜审核通过
        < 转出编号：{ref}
        < 转入地：浙江省｜转入准考证号 330118200388
        < 转出成绩（共3门）：
        < 03709 马克思主义基本原理概论｜65分｜2024年10月通过
        < 00052 管理系统中计算机应用(实践)｜合格｜2024年10月通过
        < 凭转出编号和身份证到转入省自考办办理转入手续
        <! 重新申请
    """)


async def test_leaving_keeps_the_draft_and_continuing_goes_to_the_first_empty_field(db, router):
    await world(db)
    send = router_sender(router, OPENID)
    await run(send, """
        > 转出
        > 我已知晓
        > 江苏
        > 320118200345
        > 取消
        < 已填写的内容都保存了，回复“转出”可以接着办理
        > 转出
        < 您有一份还没提交的转出申请草稿
        < 1. 继续填写草稿
        > 1
        < 接着填写上次的草稿
        < 请选择转入层次
    """)


async def test_outside_the_window_it_says_when_it_opens(db, router):
    await world(db, open_=False)
    await run(router_sender(router, OPENID), """
        > 转出
        < 本市转出现在不在办理时间内。下一次办理时间
        <! 考生须知
    """)


async def test_a_candidate_without_transferable_results_is_told_why(db, router):
    await world(db)
    async with db.session() as s, s.begin():
        for r in (await s.execute(select(m.ScoreRecord).where(m.ScoreRecord.kind == "exam"))).scalars():
            await s.delete(r)
    await run(router_sender(router, OPENID), """
        > 转出
        > 我已知晓
        < 您目前没有可以转出的合格成绩
    """)
    assert await apps.list_applications(db, kind="transfer_out") == []


async def test_a_question_mid_form_is_answered_and_the_step_asked_again(db, router):
    await world(db)
    await run(router_sender(router, OPENID), """
        > 转出
        > 我已知晓
        > 浙江
        > 330118200345
        > 本科
        < 请输入转入专业
        > 03708成绩
        < 03708 中国近现代史纲要
        < 请输入转入专业
        > 行政管理
        < 请选择转出原因
    """)
    [app] = await apps.list_applications(db, kind="transfer_out")
    assert app.details["major"] == "行政管理" and app.details["admission_number"] == "330118200345"


async def test_changing_the_reason_to_other_asks_the_sentence_and_returns_to_the_review(db, router):
    await world(db)
    send = router_sender(router, OPENID)
    await run(send, """
        > 转出
        > 我已知晓
        > 10
        < 请输入您在转入省的准考证号
        > 330118200345
        > 2
        > 金融学
        > 1
        > 13764219053
        < 请勾选要转出的成绩
        > 03708
        < 5. 转出原因：工作调动
        < 6. 联系电话：137****9053
        < 7. 转出成绩：共1门
        > 修改 5
        < 请选择转出原因
        > 其他
        < 请简要写明转出原因
        > 回老家照顾父母
        < 5. 转出原因：回老家照顾父母
        > 修改 8
        < 没有第8项
        > 先保存
        < 已填写的内容都保存了
    """)
    [app] = await apps.list_applications(db, kind="transfer_out")
    assert app.status == "draft" and app.details["reason"] == "回老家照顾父母" and app.details["province"] == "浙江省"


async def test_my_applications_lists_the_transfer_out_application_with_its_status(db, router):
    await world(db)
    send = router_sender(router, OPENID)
    await run(send, FILL)
    await run(send, """
        > 我的申请
        < 【我的申请】
        < 本市转出：
        < 第1号｜待审核
        < 回复“转出”
    """)
