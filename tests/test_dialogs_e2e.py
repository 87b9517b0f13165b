"""Dialog transcripts through the WeChat emulator: signed, encrypted XML over HTTP, as in production."""
from __future__ import annotations

import asyncio

from bot.app import DB, ENDPOINT
from bot.cli import sync_menu
from bot.config import load_settings
from dialogs.menu import wechat_menu
from tests.dialog_fixtures import ADMISSION, ID_NUMBER, MOBILE, PASSWORD, add_candidate
from tests.h5_client import WebView, bind, link_in
from tests.test_e2e import APP_ID, SECRET, TOKEN, scheduler_options, stack  # noqa: F401 (fixtures)
from tests.transcript import emulator_sender, run

OPENID = "o_e2e_dialog_00000000000001"

USE_AFTER_BINDING = f"""
    > 个人信息
    < 【个人信息】
    < 3101**********1234
    <! {ID_NUMBER}
    [click menu:account]
    < 【账户】请回复序号
    > 2
    < 请选择要使用的准考证号
    > 取消
    < 已取消「切换准考证号」
"""


async def test_binding_through_the_web_view_then_the_chat_knows_the_candidate(stack):
    bot, state, wechat = stack
    await add_candidate(bot.app[DB], verified=True)
    send = emulator_sender(wechat, OPENID)
    [reply] = await run(send, """
        > 个人信息
        < 需要先绑定
        < 点击这里完成绑定
        <! 请输入考生服务平台的登录密码
    """)
    async with WebView(_emulator_base(stack), OPENID) as view:
        page = await bind(view, link_in(reply), id_number=ID_NUMBER, password=PASSWORD, mobile=MOBILE)
    assert "绑定成功" in page.text and "0115****0002" in page.text
    await run(send, USE_AFTER_BINDING)


async def test_many_users_bind_at_once_through_their_web_views(stack):
    bot, state, wechat = stack
    db = bot.app[DB]
    # Password checks and hashes at once on two cores need the production budget for the chat.
    bot.app[ENDPOINT].budget = 4.5
    from tests.dialog_fixtures import add_candidate as add
    from storage.identifiers import id_check_digit

    ids = []
    for i in range(6):
        base = f"310101199001{i + 10:02d}123"
        idn = base + id_check_digit(base)
        await add(db, id_number=idn, name=f"考生{i}", numbers=(f"0115201001{i:02d}",), verified=True,
                  mobile=f"138000000{i:02d}")
        ids.append(idn)

    async def one(i: int) -> None:
        idn, openid = ids[i], f"o_e2e_many_{i:016d}"
        [reply] = await run(emulator_sender(wechat, openid), "> 绑定\n< 点击这里完成绑定")
        async with WebView(_emulator_base(stack), openid) as view:
            page = await bind(view, link_in(reply), id_number=idn, password=idn[-6:], mobile=f"138000000{i:02d}")
        assert "考*" in page.text and f"0115****01{i:02d}" in page.text, page.text
        await run(emulator_sender(wechat, openid), f"> 个人信息\n< 考生{i}")

    await asyncio.gather(*(one(i) for i in range(6)))


async def test_menu_sync_reaches_the_emulator(stack):
    bot, state, wechat = stack
    api_base = bot.app[DB] and state  # the emulator's state holds the menu once synced
    settings = load_settings({
        "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID, "WECHAT_APP_SECRET": SECRET,
        "WECHAT_API_BASE": _emulator_base(stack),
    })
    held = await sync_menu(settings)
    assert held["menu"]["button"] == wechat_menu()["button"]
    assert api_base.menu["button"][0]["name"] == "查询"


def _emulator_base(stack) -> str:
    bot, _state, _wechat = stack
    from bot.app import SETTINGS
    return bot.app[SETTINGS].wechat_api_base


async def test_first_binding_proves_identity_and_gets_its_code_from_the_emulators_sms_gateway(stack):
    bot, state, wechat = stack
    await add_candidate(bot.app[DB], verified=False)
    [reply] = await run(emulator_sender(wechat, OPENID), "> 绑定\n< 点击这里完成绑定")
    async with WebView(_emulator_base(stack), OPENID) as view:
        page = await view.open(link_in(reply))
        page = await view.post(page, "credentials", id_number=ID_NUMBER, password=PASSWORD)
        assert page.has_form("identity") and "验证码" not in (page.error or "")
        page = await view.post(page, "identity", name="王小明", admission_number=ADMISSION[0], mobile="13900001111")
        assert page.has_form("code") and "139****1111" in page.text
        page = await view.post(page, "code", code=await view.sms_code("13900001111"))
        assert page.has_form("new_password")
        page = await view.post(page, "new_password", new="Zikao2026ok", again="Zikao2026ok")
    assert "绑定成功" in page.text
    await run(emulator_sender(wechat, OPENID), "> 个人信息\n< 139****1111")
