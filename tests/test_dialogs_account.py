"""Account flows: binding (the chat's link, the page's steps in dialogs/binding.py), throttles,
SMS, unbind, password, switch, contacts."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from dialogs import binding
from dialogs.router import Router
from storage import accounts, keys
from storage.identifiers import id_check_digit
from storage.models import BindFailure, Candidate, DialogState, Outbox, SmsCode, WechatUser, utcnow
from storage.passwords import hash_password, verify_password
from tests.dialog_fixtures import (
    ADMISSION, ID_NUMBER, ID_OTHER, MOBILE, NAME, NEW_PASSWORD, PAGE_BASE, PASSWORD, Inbox, add_candidate,
    bind_on_page, make_router, make_services,
)
from tests.transcript import router_sender, run

OPENID = "o_dialog_user_0000000000001"
STRANGER = "o_stranger_000000000000001"


async def _set_password(db, cid: int, password: str) -> None:
    async with db.session() as s, s.begin():
        await s.execute(update(Candidate).where(Candidate.id == cid).values(password_hash=hash_password(password)))


async def _minute_later(db) -> None:
    """As if a minute passed since the last SMS (one number gets one code a minute, whoever asks)."""
    async with db.session() as s, s.begin():
        await s.execute(update(SmsCode).values(created_at=utcnow() - dt.timedelta(minutes=2)))


async def _pushes(db, openid: str, about: str = "") -> list[str]:
    """The account pushes waiting for `openid` (those containing `about`), oldest first."""
    async with db.session() as s:
        rows = (await s.scalars(select(Outbox).where(Outbox.openid == openid, Outbox.kind == "account")
                                .order_by(Outbox.id))).all()
    return [r.payload["text"] for r in rows if about in r.payload["text"]]


# --- the chat: a link, never a password prompt ------------------------------------------------


async def test_bind_in_chat_sends_the_page_link_and_never_asks_for_the_password(db):
    await add_candidate(db, verified=True)
    replies = await run(router_sender(make_router(db), OPENID), f"""
        > 绑定
        < <a href="{PAGE_BASE}bind">点击这里完成绑定</a>
        < 请不要在聊天中发送
        <! 请输入考生服务平台的登录密码
    """)
    assert "openid" not in replies[0] and OPENID not in replies[0]
    async with db.session() as s:
        state = await s.get(DialogState, OPENID)
    assert state is None or state.flow is None


async def test_change_password_in_chat_sends_the_page_link(db):
    await add_candidate(db, verified=True)
    await bind_on_page(db, OPENID)
    await run(router_sender(make_router(db), OPENID), f"""
        > 修改密码
        < <a href="{PAGE_BASE}password">点击这里修改密码</a>
        <! 请输入原密码
    """)


async def test_business_asks_to_bind_first_with_the_link_then_answers_once_bound(db):
    await add_candidate(db, verified=True)
    send = router_sender(make_router(db), OPENID)
    await run(send, """
        > 个人信息
        < 需要先绑定
        < 点击这里完成绑定
    """)
    await bind_on_page(db, OPENID)
    await run(send, f"""
        > 个人信息
        < 【个人信息】
        < 3101**********1234
        < 138****5678
        <! {ID_NUMBER}
        <! {MOBILE}
    """)


async def test_bound_user_binding_again_is_told_how_to_change(db):
    await add_candidate(db, verified=True)
    await bind_on_page(db, OPENID)
    await run(router_sender(make_router(db), OPENID), "> 绑定\n< 已经绑定\n< 解绑\n<! 点击这里")


# --- the page's steps: who may bind -------------------------------------------------------------


async def test_verified_candidate_binds_with_password_and_sms_to_the_reserved_mobile(db):
    cid = await add_candidate(db, verified=True)
    await _set_password(db, cid, "Kaoshi2024")
    inbox = Inbox()
    services = make_services(inbox)
    out = await binding.submit_credentials(db, services, OPENID, ID_NUMBER.lower(), "Kaoshi2024")
    assert out.state.stage == "code" and out.notice == "验证码已发送到 138****5678，5分钟内有效。"
    assert inbox.sent[0][0] == MOBILE
    wrong = await binding.submit_code(db, OPENID, out.state, "000000")
    assert wrong.error == "验证码不正确，请核对短信后重新输入。"
    done = await binding.submit_code(db, OPENID, out.state, inbox.last_code())
    assert done.state.stage == "done"
    b = await accounts.binding(db, OPENID)
    assert b.candidate_id == cid and b.admission_number == ADMISSION[1]


async def test_bind_success_masks_the_admission_number_on_the_page_and_in_the_chat(db):
    # Issue 10: the bind-success reply showed the full 准考证号 while every other reply masked it.
    await add_candidate(db, verified=True)
    out = await bind_on_page(db, OPENID)
    text = "\n".join(out.done_lines)
    assert "当前准考证号：0115****0002" in text and ADMISSION[1] not in text and "王**" in text
    assert "切换准考证号" in text
    [chat] = await _pushes(db, OPENID)
    assert chat.startswith("绑定成功！") and "当前准考证号：0115****0002" in chat
    assert ADMISSION[1] not in chat and ADMISSION[0] not in chat


async def test_unknown_id_and_wrong_password_read_the_same(db):
    await add_candidate(db, verified=True)
    services = make_services()
    unknown = await binding.submit_credentials(db, services, OPENID, ID_OTHER, "123456")
    wrong = await binding.submit_credentials(db, services, "o_other_00000000000000000001", ID_NUMBER, "123456")
    assert unknown.error == wrong.error == binding.WRONG_LOGIN.format(n=4)
    bad = await binding.submit_credentials(db, services, OPENID, "31010119900101123X", PASSWORD)
    assert "校验不对" in bad.error


async def test_unverified_mobile_needs_name_and_admission_number_before_a_mobile_is_stored(db):
    # Finding 2: with no verified mobile on file, the ID and its initial password used to let
    # anyone verify "their" mobile and keep it as the reserved one.
    cid = await add_candidate(db, verified=False)
    inbox = Inbox()
    services = make_services(inbox)
    out = await binding.submit_credentials(db, services, STRANGER, ID_NUMBER, PASSWORD)
    assert out.state.stage == "identity" and inbox.sent == []
    attacker_phone = "13700001111"
    refused = await binding.submit_identity(db, services, STRANGER, out.state, "张三", ADMISSION[0], attacker_phone)
    assert refused.error == binding.WRONG_IDENTITY.format(n=4) and inbox.sent == []
    refused = await binding.submit_identity(db, services, STRANGER, out.state, NAME, "011599999999", attacker_phone)
    assert refused.error and inbox.sent == []
    assert (await accounts.binding(db, STRANGER)).candidate_id is None
    async with db.session() as s:
        c = await s.get(Candidate, cid)
    assert c.mobile_verified_at is None and c.mobile == MOBILE
    # The candidate with the right details proves the mobile, replaces the initial password, binds.
    inbox2 = Inbox()
    services2 = make_services(inbox2)
    out = await binding.submit_credentials(db, services2, OPENID, ID_NUMBER, PASSWORD)
    out = await binding.submit_identity(db, services2, OPENID, out.state, " 王小明 ", ADMISSION[0], "139 0000 1111")
    assert out.state.stage == "code" and inbox2.sent[-1][0] == "13900001111"
    out = await binding.submit_code(db, OPENID, out.state, inbox2.last_code())
    assert out.state.stage == "new_password" and (await accounts.binding(db, OPENID)).candidate_id is None
    out = await binding.submit_new_password(db, OPENID, out.state, NEW_PASSWORD, NEW_PASSWORD)
    assert out.state.stage == "done"
    async with db.session() as s:
        c = await s.get(Candidate, cid)
    assert c.mobile == "13900001111" and c.mobile_verified_at is not None
    assert verify_password(NEW_PASSWORD, c.password_hash) and not verify_password(PASSWORD, c.password_hash)


async def test_initial_password_must_be_replaced_before_the_binding_completes(db):
    await add_candidate(db, verified=True)
    inbox = Inbox()
    out = await binding.submit_credentials(db, make_services(inbox), OPENID, ID_NUMBER, PASSWORD)
    out = await binding.submit_code(db, OPENID, out.state, inbox.last_code())
    assert out.state.stage == "new_password" and "初始密码" in out.notice
    weak = await binding.submit_new_password(db, OPENID, out.state, "12345678", "12345678")
    assert weak.error == "新密码需要同时包含字母和数字。"
    same = await binding.submit_new_password(db, OPENID, out.state, PASSWORD, PASSWORD)
    assert same.error == "新密码至少8位。"
    mismatch = await binding.submit_new_password(db, OPENID, out.state, NEW_PASSWORD, NEW_PASSWORD + "x")
    assert "不一致" in mismatch.error
    assert (await accounts.binding(db, OPENID)).candidate_id is None
    done = await binding.submit_new_password(db, OPENID, out.state, NEW_PASSWORD, NEW_PASSWORD)
    assert done.state.stage == "done" and (await accounts.binding(db, OPENID)).candidate_id is not None


async def test_rebinding_after_unbind_needs_the_sms_code_again(db):
    # Finding 2: after 解绑, ID + password used to bind again with no SMS at all.
    await add_candidate(db, verified=True)
    await bind_on_page(db, OPENID)
    await accounts.unbind(db, OPENID)
    await _minute_later(db)
    inbox = Inbox()
    out = await binding.submit_credentials(db, make_services(inbox), OPENID, ID_NUMBER, NEW_PASSWORD)
    assert out.state.stage == "code" and len(inbox.sent) == 1
    assert (await accounts.binding(db, OPENID)).candidate_id is None
    # Skipping the code step is not possible: the state machine refuses to jump.
    skipped = await binding.submit_new_password(db, OPENID, out.state, "Another2026", "Another2026")
    assert skipped.error and (await accounts.binding(db, OPENID)).candidate_id is None
    assert (await binding.submit_code(db, OPENID, out.state, inbox.last_code())).state.stage == "done"


# --- throttles: per openid across IDs, per (ID, openid), never a weapon against the owner ---------


def _ids(n: int) -> list[str]:
    out = []
    for i in range(n):
        base = f"3101011990{(i // 28) + 1:02d}{(i % 28) + 1:02d}123"
        out.append(base + id_check_digit(base))
    return out


async def test_sixty_ids_from_one_openid_are_throttled_at_the_tenth_wrong_password(db):
    # Finding 2: one openid tried passwords against 60 ID numbers; the lock counted per ID only.
    services = make_services()
    errors = []
    for idn in _ids(60):
        out = await binding.submit_credentials(db, services, STRANGER, idn, idn[-6:])
        errors.append(out.error)
    assert errors[0] == binding.WRONG_LOGIN.format(n=4)
    assert all("分钟后再试" in e for e in errors[10:]), errors[9:12]
    assert "输入错误的次数太多" in errors[-1]
    # The throttle refuses before scrypt runs: no failures recorded after the tenth.
    async with db.session() as s:
        assert len((await s.scalars(select(BindFailure).where(BindFailure.openid == STRANGER))).all()) == 10
    # Another WeChat is not affected.
    await add_candidate(db, verified=True)
    ok = await binding.submit_credentials(db, services, OPENID, ID_NUMBER, PASSWORD)
    assert ok.error is None and ok.state.stage == "code"


async def test_five_wrong_passwords_from_strangers_do_not_stop_the_owner(db):
    # Finding 3: 5 wrong passwords from any openids used to lock binding and password change for
    # the ID for 15 minutes.
    cid = await add_candidate(db, verified=True)
    await bind_on_page(db, OPENID)
    services = make_services()
    for i in range(5):
        out = await binding.submit_credentials(db, services, STRANGER, ID_NUMBER, f"wrong{i}")
    assert "分钟后再试" in out.error
    again = await binding.submit_credentials(db, services, STRANGER, ID_NUMBER, NEW_PASSWORD)
    assert "分钟后再试" in again.error  # the stranger waits, even with the right password
    for i in range(5):
        await binding.submit_credentials(db, services, f"o_crowd_{i:019d}", ID_NUMBER, "wrong")
    # The owner changes the password (bound WeChat) ...
    changed = await binding.change_password(db, OPENID, cid, NEW_PASSWORD, "Fresh2026pw", "Fresh2026pw")
    assert changed.error is None and changed.state.stage == "done"
    # ... and binds a new phone through the verified path (password + SMS to the reserved mobile).
    await _minute_later(db)
    inbox = Inbox()
    moved = await bind_on_page(db, "o_owner_new_phone_00000001", inbox, password="Fresh2026pw")
    assert moved.state.stage == "done" and inbox.sent[0][0] == MOBILE
    # 15 minutes later the stranger may try again.
    async with db.session() as s, s.begin():
        await s.execute(update(BindFailure).values(failed_at=utcnow() - dt.timedelta(minutes=16)))
    later = await binding.submit_credentials(db, services, STRANGER, ID_NUMBER, "wrong")
    assert later.error == binding.WRONG_LOGIN.format(n=4)


async def test_the_bound_wechat_is_told_of_failed_attempts_at_most_once_an_hour(db):
    await add_candidate(db, verified=True)
    await bind_on_page(db, OPENID)
    services = make_services()
    for i in range(4):
        await binding.submit_credentials(db, services, f"o_crowd_{i:019d}", ID_NUMBER, "wrong")
    pushes = await _pushes(db, OPENID, "账户安全提醒")
    assert len(pushes) == 1 and "尝试绑定" in pushes[0] and ID_NUMBER not in pushes[0]
    # The owner's own typo does not alert the owner.
    await binding.submit_credentials(db, services, OPENID, ID_NUMBER, "typo")
    assert len(await _pushes(db, OPENID, "账户安全提醒")) == 1


async def test_the_previous_wechat_is_told_when_the_binding_moves(db):
    await add_candidate(db, verified=True)
    await bind_on_page(db, OPENID)
    await _minute_later(db)
    await bind_on_page(db, "o_new_phone_00000000000001", password=NEW_PASSWORD)
    assert (await accounts.binding(db, OPENID)).candidate_id is None
    assert (await accounts.binding(db, "o_new_phone_00000000000001")).candidate_id is not None
    pushes = await _pushes(db, OPENID, "账户安全提醒")
    assert len(pushes) == 1 and "另一个微信上完成绑定" in pushes[0] and "3101**********1234" in pushes[0]
    assert await _pushes(db, "o_new_phone_00000000000001", "账户安全提醒") == []
    events = [e.event for e in await accounts.audit_events(db, id_number=ID_NUMBER)]
    assert events.count("bind_moved") == 1 and events.count("bind") == 2


async def test_failures_are_counted_without_storing_the_id(db):
    await add_candidate(db, verified=True)
    await binding.submit_credentials(db, make_services(), OPENID, ID_NUMBER, "nope")
    async with db.session() as s:
        stored = (await s.scalars(select(BindFailure.id_key))).all()
    assert stored == [keys.id_index(ID_NUMBER)] and ID_NUMBER not in stored[0]


# --- SMS codes ------------------------------------------------------------------------------------


async def test_sms_code_expires_and_is_single_use(db):
    await add_candidate(db, verified=True)
    inbox = Inbox()
    services = make_services(inbox)
    out = await binding.submit_credentials(db, services, OPENID, ID_NUMBER, PASSWORD)
    async with db.session() as s, s.begin():
        await s.execute(update(SmsCode).values(expires_at=utcnow() - dt.timedelta(seconds=1),
                                               created_at=utcnow() - dt.timedelta(minutes=6)))
    expired = await binding.submit_code(db, OPENID, out.state, inbox.last_code())
    assert expired.error == "验证码已过期，请点“重新发送”获取新的验证码。"
    again = await binding.resend_code(db, services, OPENID, out.state)
    assert again.notice.startswith("验证码已发送到") and len(inbox.sent) == 2
    assert (await binding.submit_code(db, OPENID, again.state, inbox.last_code())).state.stage == "new_password"
    # The used code is spent.
    assert await accounts.check_sms_code(db, OPENID, "bind", MOBILE, inbox.last_code()) == "missing"


async def test_sms_gateway_failure_is_explained_and_resend_works(db):
    await add_candidate(db, verified=True)
    inbox = Inbox(fail=True)
    services = make_services(inbox)
    out = await binding.submit_credentials(db, services, OPENID, ID_NUMBER, PASSWORD)
    assert out.error == "短信发送失败，请稍后点“重新发送”再试。"
    inbox.fail = False
    again = await binding.resend_code(db, services, OPENID, out.state)
    assert again.error is None and (await binding.submit_code(db, OPENID, again.state, inbox.last_code())).error is None


async def test_one_mobile_gets_limited_codes_whatever_the_openids(db):
    # Finding 6: SMS was throttled per openid only: 5 openids sent 5 codes to one phone in a second.
    first = await accounts.new_sms_code(db, "o_sms_a_000000000000000001", MOBILE, "mobile")
    assert first is not None
    assert await accounts.new_sms_code(db, "o_sms_b_000000000000000001", MOBILE, "mobile") is None
    assert await accounts.new_sms_code(db, "o_sms_b_000000000000000001", "13900001111", "mobile") is not None
    # Spaced a minute apart, still at most SMS_PER_NUMBER_HOURLY an hour to one number.
    t = utcnow()
    sent = 0
    for i in range(10):
        if await accounts.new_sms_code(db, f"o_sms_{i:020d}", "13600002222", "mobile",
                                       now=t + dt.timedelta(minutes=2 * i)) is not None:
            sent += 1
    assert sent == accounts.SMS_PER_NUMBER_HOURLY
    async with db.session() as s:
        stored = (await s.scalars(select(SmsCode.mobile_key))).all()
    assert all(MOBILE not in k and "13600002222" not in k for k in stored)


# --- unbind, password, switch, contacts -----------------------------------------------------------


async def test_unbind_asks_for_confirmation(db):
    await add_candidate(db, verified=True)
    await bind_on_page(db, OPENID)
    send = router_sender(make_router(db), OPENID)
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
    assert [e.event for e in await accounts.audit_events(db, limit=1)] == ["unbind"]


async def test_change_password_page_needs_old_strong_new_and_twice(db):
    cid = await add_candidate(db, verified=True)
    await bind_on_page(db, OPENID)
    out = await binding.change_password(db, OPENID, cid, "bad-old", "Zikao2027ok", "Zikao2027ok")
    assert out.error == "原密码不正确，还可以再试4次。"
    out = await binding.change_password(db, OPENID, cid, NEW_PASSWORD, "12345678", "12345678")
    assert "同时包含字母和数字" in out.error
    out = await binding.change_password(db, OPENID, cid, NEW_PASSWORD, PASSWORD, PASSWORD)
    assert "至少8位" in out.error
    out = await binding.change_password(db, OPENID, cid, NEW_PASSWORD, "Zikao2027ok", "Zikao2027no")
    assert "不一致" in out.error
    out = await binding.change_password(db, OPENID, cid, NEW_PASSWORD, NEW_PASSWORD, NEW_PASSWORD)
    assert "不能和原密码相同" in out.error
    out = await binding.change_password(db, OPENID, cid, NEW_PASSWORD, "Zikao2027ok", "Zikao2027ok")
    assert out.error is None and out.notice.startswith("密码已修改")
    async with db.session() as s:
        c = await s.get(Candidate, cid)
    assert verify_password("Zikao2027ok", c.password_hash)
    assert [e.event for e in await accounts.audit_events(db, limit=1)] == ["password_change"]


async def test_switch_admission_number_by_number_masked_in_replies(db):
    await add_candidate(db, verified=True)
    await bind_on_page(db, OPENID)
    await run(router_sender(make_router(db), OPENID), f"""
        > 切换准考证号
        < 1. 0115****0002（当前）
        < 2. 0115****0001
        <! {ADMISSION[0]}
        > 3
        < 1到2之间
        > 2
        < 已切换到准考证号 0115****0001
        <! {ADMISSION[0]}
    """)
    assert (await accounts.binding(db, OPENID)).admission_number == ADMISSION[0]


async def test_single_admission_number_needs_no_switch(db):
    await add_candidate(db, verified=True, numbers=("011520100009",))
    await bind_on_page(db, OPENID)
    await run(router_sender(make_router(db), OPENID), "> 切换准考证号\n< 只有一个准考证号：0115****0009")


async def test_update_mobile_reverifies_by_sms_and_summary_edit(db):
    cid = await add_candidate(db, verified=True)
    await bind_on_page(db, OPENID)
    inbox = Inbox()
    send = router_sender(make_router(db, inbox), OPENID)
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
    [event] = await accounts.audit_events(db, event="contact_change", limit=1)
    assert event.detail == {"fields": ["mobile"], "mobile": "139****2222"}


async def test_update_email_through_summary_change_of_item(db):
    cid = await add_candidate(db, verified=True)
    await bind_on_page(db, OPENID)
    send = router_sender(make_router(db), OPENID)
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
    await add_candidate(db, id_number=ID_OTHER, name="李四", numbers=("011520100099",), verified=True,
                        mobile="13900009999")
    await bind_on_page(db, "o_a_000000000000000000000001")
    await bind_on_page(db, "o_b_000000000000000000000001", id_number=ID_OTHER, password="120042",
                       admission="011520100099")
    router: Router = make_router(db)
    a, b = router_sender(router, "o_a_000000000000000000000001"), router_sender(router, "o_b_000000000000000000000001")
    await run(a, "> 修改联系方式\n< 请选择要修改的项目")
    await run(b, "> 修改联系方式\n< 请选择要修改的项目")
    await run(a, "> 邮政编码\n< 请输入新的邮政编码")
    await run(b, "> 电子邮箱\n< 请输入新的电子邮箱")
    await run(a, "> 200120\n< 新邮政编码：200120")
    await run(b, "> li@example.com\n< 新电子邮箱：li@example.com")
    async with db.session() as s:
        users = {u.openid: u.candidate_id for u in (await s.scalars(select(WechatUser))).all()}
    assert users["o_a_000000000000000000000001"] != users["o_b_000000000000000000000001"]
