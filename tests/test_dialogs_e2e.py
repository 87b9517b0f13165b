"""Dialog transcripts through the WeChat emulator: signed, encrypted XML over HTTP, as in production."""
from __future__ import annotations

import asyncio

from bot.app import DB, ENDPOINT
from bot.cli import sync_menu
from bot.config import load_settings
from dialogs.menu import wechat_menu
from tests.dialog_fixtures import ID_NUMBER, PASSWORD, add_candidate
from tests.test_e2e import APP_ID, SECRET, TOKEN, scheduler_options, stack  # noqa: F401 (fixtures)
from tests.transcript import emulator_sender, run

OPENID = "o_e2e_dialog_00000000000001"

BIND_AND_USE = f"""
    > 个人信息
    < 需要先绑定
    > 31010119900101123X
    < 校验不对
    > {ID_NUMBER}
    < 请输入考生服务平台的登录密码
    > 返回
    < 上一步您填写的证件号码是：3101**********1234
    > {ID_NUMBER}
    > 帮助
    < 您正在办理「绑定考生信息」
    < 请输入考生服务平台的登录密码
    > {PASSWORD}
    < 绑定成功
    < 【个人信息】
    <! {ID_NUMBER}
    [click menu:account]
    < 【账户】请回复序号
    > 2
    < 请选择要使用的准考证号
    > 取消
    < 已取消「切换准考证号」
"""


async def test_binding_transcript_through_the_emulator(stack):
    bot, state, wechat = stack
    await add_candidate(bot.app[DB], verified=True)
    await run(emulator_sender(wechat, OPENID), BIND_AND_USE)


async def test_many_users_interleaved_through_the_emulator(stack):
    bot, state, wechat = stack
    db = bot.app[DB]
    # Six password checks at once (scrypt, ~0.1 s each on two cores) need the production budget,
    # not the short one the other end-to-end tests use to provoke late answers.
    bot.app[ENDPOINT].budget = 4.5
    from tests.dialog_fixtures import add_candidate as add
    from storage.identifiers import id_check_digit

    ids = []
    for i in range(6):
        base = f"310101199001{i + 10:02d}123"
        idn = base + id_check_digit(base)
        await add(db, id_number=idn, name=f"考生{i}", numbers=(f"0115201001{i:02d}",), verified=True)
        ids.append(idn)

    async def one(i: int) -> None:
        idn = ids[i]
        await run(emulator_sender(wechat, f"o_e2e_many_{i:016d}"), f"""
            > 绑定
            < 请输入您的证件号码
            > {idn}
            < 密码
            > {idn[-6:]}
            < 绑定成功
            < 考*
            < 0115201001{i:02d}
        """)

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


async def test_first_binding_gets_its_code_from_the_emulators_sms_gateway(stack):
    import aiohttp
    import re as _re

    bot, state, wechat = stack
    await add_candidate(bot.app[DB], verified=False)
    base = _emulator_base(stack)
    codes: dict[str, str] = {}

    async def fetch_code() -> None:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/_emu/sms", params={"mobile": "13812345678"}) as resp:
                messages = (await resp.json())["messages"]
        codes["code"] = _re.search(r"\d{6}", messages[0]["text"]).group(0)

    send = emulator_sender(wechat, OPENID)
    await run(send, f"""
        > 绑定
        > {ID_NUMBER}
        > {PASSWORD}
        < 验证码已发送到 138****5678
    """)
    await fetch_code()
    await run(send, "> {code}\n< 绑定成功", values=lambda: codes)
