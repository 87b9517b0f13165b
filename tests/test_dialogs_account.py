"""Account flows as transcripts against the router: binding, lockout, SMS, unbind, password, switch."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from dialogs.router import Router
from storage import accounts
from storage.models import BindFailure, Candidate, DialogState, SmsCode, WechatUser, utcnow
from storage.passwords import verify_password
from tests.dialog_fixtures import ADMISSION, ID_NUMBER, ID_OTHER, MOBILE, PASSWORD, Inbox, add_candidate, make_router
from tests.transcript import router_sender, run

OPENID = "o_dialog_user_0000000000001"


async def test_first_binding_checks_password_then_sms_code(db):
    await add_candidate(db)
    inbox = Inbox()
    router = make_router(db, inbox)
    await run(router_sender(router, OPENID), f"""
        > 绑定
        < 请输入您的证件号码
        > 31010119900101123X
        < 校验不对
        < 请输入您的证件号码
        > {ID_NUMBER.lower()}
        < 请输入考生服务平台的登录密码
        > {PASSWORD}
        < 验证码已发送到 138****5678
        <! {PASSWORD}
        > 000000
        < 验证码不正确
        > {{code}}
        < 绑定成功
        < {ADMISSION[1]}
        < 切换准考证号
    """, values=lambda: {"code": inbox.last_code()})
    assert inbox.sent[0][0] == MOBILE
    b = await accounts.binding(db, OPENID)
    assert b.candidate_id is not None and b.admission_number == ADMISSION[1]
    async with db.session() as s:
        c = await s.get(Candidate, b.candidate_id)
        state = await s.get(DialogState, OPENID)
    assert c.mobile_verified_at is not None
    # Nothing of the password stays in the conversation.
    assert state.flow is None and PASSWORD not in repr(state.data)


async def test_verified_candidate_binds_without_sms(db):
    await add_candidate(db, verified=True)
    inbox = Inbox()
    router = make_router(db, inbox)
    await run(router_sender(router, OPENID), f"""
        > 绑定
        > {ID_NUMBER}
        > {PASSWORD}
        < 绑定成功
    """)
    assert inbox.sent == []


async def test_unknown_id_and_wrong_password_read_the_same(db):
    await add_candidate(db, verified=True)
    router = make_router(db)
    send = router_sender(router, OPENID)
    replies = await run(send, f"""
        > 绑定
        > {ID_OTHER}
        > 123456
        < 证件号码或密码不正确，还可以再试4次
    """)
    assert "没有" not in replies[-1]


async def test_five_wrong_passwords_lock_the_id_for_every_openid(db):
    await add_candidate(db, verified=True)
    router = make_router(db)
    await run(router_sender(router, OPENID), f"""
        > 绑定
        > {ID_NUMBER}
        > wrong1
        < 还可以再试4次
        > wrong2
        > wrong3
        > wrong4
        < 还可以再试1次
        > wrong5
        < 锁定15分钟
    """)
    # Another WeChat user, even with the right password, is turned away at the ID step.
    await run(router_sender(router, "o_someone_else_000000000001"), f"""
        > 绑定
        > {ID_NUMBER}
        < 绑定已暂时锁定
        < 15分钟后再试
        > {PASSWORD}
        <! 绑定成功
    """)
    assert (await accounts.binding(db, "o_someone_else_000000000001")).candidate_id is None
    # 15 minutes later the lock is gone.
    async with db.session() as s, s.begin():
        await s.execute(update(BindFailure).values(failed_at=utcnow() - dt.timedelta(minutes=16)))
    await run(router_sender(router, "o_someone_else_000000000001"), f"""
        > 绑定
        > {ID_NUMBER}
        > {PASSWORD}
        < 绑定成功
    """)


async def test_failures_are_counted_without_storing_the_id(db):
    await add_candidate(db, verified=True)
    router = make_router(db)
    await run(router_sender(router, OPENID), f"> 绑定\n> {ID_NUMBER}\n> nope\n")
    async with db.session() as s:
        keys = (await s.scalars(select(BindFailure.id_key))).all()
    assert len(keys) == 1 and ID_NUMBER not in keys[0]


async def test_sms_code_expires_and_is_single_use(db):
    await add_candidate(db)
    inbox = Inbox()
    router = make_router(db, inbox)
    send = router_sender(router, OPENID)
    await run(send, f"> 绑定\n> {ID_NUMBER}\n> {PASSWORD}\n< 验证码已发送")
    async with db.session() as s, s.begin():
        await s.execute(update(SmsCode).values(expires_at=utcnow() - dt.timedelta(seconds=1),
                                               created_at=utcnow() - dt.timedelta(minutes=6)))
    await run(send, """
        > {code}
        < 验证码已过期
        > 重发
        < 验证码已发送到
        > {code}
        < 绑定成功
    """, values=lambda: {"code": inbox.last_code()})
    assert len(inbox.sent) == 2
    # The used code is spent.
    assert await accounts.check_sms_code(db, OPENID, "bind", MOBILE, inbox.last_code()) == "missing"


async def test_sms_gateway_failure_is_explained_and_retry_works(db):
    await add_candidate(db)
    inbox = Inbox(fail=True)
    router = make_router(db, inbox)
    send = router_sender(router, OPENID)
    await run(send, f"> 绑定\n> {ID_NUMBER}\n> {PASSWORD}\n< 短信发送失败")
    inbox.fail = False
    await run(send, "> 重发\n< 验证码已发送到\n> {code}\n< 绑定成功", values=lambda: {"code": inbox.last_code()})


async def test_business_asks_to_bind_first_then_answers(db):
    await add_candidate(db, verified=True)
    router = make_router(db)
    await run(router_sender(router, OPENID), f"""
        > 个人信息
        < 需要先绑定
        < 请输入您的证件号码
        > {ID_NUMBER}
        > {PASSWORD}
        < 绑定成功
        < 【个人信息】
        < 3101**********1234
        < 138****5678
        <! {ID_NUMBER}
        <! {MOBILE}
    """)


async def test_unbind_asks_for_confirmation(db):
    await add_candidate(db, verified=True)
    router = make_router(db)
    send = router_sender(router, OPENID)
    await run(send, f"> 绑定\n> {ID_NUMBER}\n> {PASSWORD}\n< 绑定成功")
    await run(send, """
        > 解绑
        < 确定要解除绑定吗
        > 否
        < 没有解除绑定
        > 解绑
        > 是
        < 已解除绑定
        > 个人信息
        < 需要先绑定
    """)
    assert (await accounts.binding(db, OPENID)).candidate_id is None


async def test_bound_user_binding_again_is_told_how_to_change(db):
    await add_candidate(db, verified=True)
    router = make_router(db)
    send = router_sender(router, OPENID)
    await run(send, f"> 绑定\n> {ID_NUMBER}\n> {PASSWORD}\n> 绑定\n< 已经绑定\n< 解绑")


async def test_binding_from_another_wechat_moves_it_after_sms(db):
    await add_candidate(db, verified=True)
    inbox = Inbox()
    router = make_router(db, inbox)
    await run(router_sender(router, OPENID), f"> 绑定\n> {ID_NUMBER}\n> {PASSWORD}\n< 绑定成功")
    assert inbox.sent == []
    await run(router_sender(router, "o_new_phone_00000000000001"), f"""
        > 绑定
        > {ID_NUMBER}
        > {PASSWORD}
        < 验证码已发送
        > {{code}}
        < 绑定成功
    """, values=lambda: {"code": inbox.last_code()})
    assert (await accounts.binding(db, OPENID)).candidate_id is None
    assert (await accounts.binding(db, "o_new_phone_00000000000001")).candidate_id is not None


async def test_change_password_needs_old_strong_new_and_twice(db):
    cid = await add_candidate(db, verified=True)
    router = make_router(db)
    send = router_sender(router, OPENID)
    await run(send, f"> 绑定\n> {ID_NUMBER}\n> {PASSWORD}\n< 绑定成功")
    await run(send, f"""
        > 修改密码
        < 请输入原密码
        > bad-old
        < 原密码不正确
        > {PASSWORD}
        < 请输入新密码
        > 12345678
        < 同时包含字母和数字
        > {PASSWORD}
        < 至少8位
        > Zikao2026ok
        < 请再输入一次
        > Zikao2026no
        < 不一致
        > Zikao2026ok
        < 密码已修改
        <! Zikao2026ok
    """)
    async with db.session() as s:
        c = await s.get(Candidate, cid)
        state = await s.get(DialogState, OPENID)
    assert verify_password("Zikao2026ok", c.password_hash)
    assert "Zikao2026ok" not in repr(state.data) and "new_hash" not in repr(state.data)


async def test_switch_admission_number_by_number_or_value(db):
    await add_candidate(db, verified=True)
    router = make_router(db)
    send = router_sender(router, OPENID)
    await run(send, f"> 绑定\n> {ID_NUMBER}\n> {PASSWORD}\n< 绑定成功")
    await run(send, f"""
        > 切换准考证号
        < 1. {ADMISSION[1]}（当前）
        < 2. {ADMISSION[0]}
        > 3
        < 1到2之间
        > 2
        < 已切换到准考证号 {ADMISSION[0]}
    """)
    assert (await accounts.binding(db, OPENID)).admission_number == ADMISSION[0]


async def test_single_admission_number_needs_no_switch(db):
    await add_candidate(db, verified=True, numbers=("011520100009",))
    router = make_router(db)
    send = router_sender(router, OPENID)
    await run(send, f"> 绑定\n> {ID_NUMBER}\n> {PASSWORD}\n> 切换准考证号\n< 只有一个准考证号：011520100009")


async def test_update_mobile_reverifies_by_sms_and_summary_edit(db):
    cid = await add_candidate(db, verified=True)
    inbox = Inbox()
    router = make_router(db, inbox)
    send = router_sender(router, OPENID)
    await run(send, f"> 绑定\n> {ID_NUMBER}\n> {PASSWORD}\n< 绑定成功")
    await run(send, """
        > 修改联系方式
        < 1. 手机号码
        > 1
        < 请输入新的手机号码
        > 13812345678
        < 这就是您现在的手机号码
        > 139 0000 1111
        < 验证码已发送到 139****1111
        > {code}
        < 请核对「修改联系方式」
        < 1. 修改项目：手机号码
        < 2. 新手机号码：139****1111
        > 修改 2
        < 现在填写的新手机号码是：139****1111
        > 13900002222
        < 验证码已发送到 139****2222
        > {code}
        < 2. 新手机号码：139****2222
        > 确认
        < 手机号码已更新
    """, values=lambda: {"code": inbox.last_code()})
    async with db.session() as s:
        c = await s.get(Candidate, cid)
    assert c.mobile == "13900002222"


async def test_update_email_through_summary_change_of_item(db):
    cid = await add_candidate(db, verified=True)
    router = make_router(db)
    send = router_sender(router, OPENID)
    await run(send, f"> 绑定\n> {ID_NUMBER}\n> {PASSWORD}\n< 绑定成功")
    await run(send, """
        > 修改联系方式
        > 邮政编码
        < 请输入新的邮政编码
        > 2000
        < 6位数字
        > 200120
        < 2. 新邮政编码：200120
        > 修改 1
        > 2
        < 请输入新的电子邮箱
        > new@example
        < 邮箱格式不对
        > new@example.com
        < 新电子邮箱：new@example.com
        <! 200120
        > 确认
        < 电子邮箱已更新
    """)
    async with db.session() as s:
        c = await s.get(Candidate, cid)
    assert c.email == "new@example.com" and c.postcode == "200001"


async def test_router_keeps_states_of_users_apart(db):
    await add_candidate(db, verified=True)
    await add_candidate(db, id_number=ID_OTHER, name="李四", numbers=("011520100099",), verified=True)
    router: Router = make_router(db)
    a, b = router_sender(router, "o_a_000000000000000000000001"), router_sender(router, "o_b_000000000000000000000001")
    await run(a, "> 绑定\n< 证件号码")
    await run(b, "> 绑定\n< 证件号码")
    await run(a, f"> {ID_NUMBER}\n< 密码")
    await run(b, f"> {ID_OTHER}\n< 密码")
    await run(b, "> 310115\n< 证件号码或密码不正确")
    await run(a, f"> {PASSWORD}\n< 绑定成功\n< 王*")
    await run(b, "> 120042\n< 绑定成功\n< 李*")
    async with db.session() as s:
        users = {u.openid: u.candidate_id for u in (await s.scalars(select(WechatUser))).all()}
    assert users["o_a_000000000000000000000001"] != users["o_b_000000000000000000000001"]
