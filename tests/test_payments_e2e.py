"""The 毕业审定费 paid through the whole service: 我的订单 in the chat gives the link, the page asks for
the JSAPI order, the emulator's cashier pays, the notification marks the order 已缴费 and the running
service pushes the receipt to the chat, once."""
from __future__ import annotations

import asyncio
import re
import socket

import aiohttp
from sqlalchemy import select

from bot.app import DB, create_app
from bot.config import load_settings
from bot.scheduler import SchedulerOptions
from emulator.app import start_emulator
from emulator.pay import PayState
from emulator.server import WeChatServer
from storage.models_service import Order
from tests.test_payments import APPID, OPENID, ORDER, Clock, _load

TOKEN, SECRET = "paytoken", "pay-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_my_orders_link_pays_the_fee_and_the_receipt_reaches_the_chat_once(db_url, db, aiohttp_server, tmp_path):
    clock = Clock()
    await _load(db, clock)
    bot_port, emu_port = free_port(), free_port()
    bot_base, emu_base = f"http://127.0.0.1:{bot_port}", f"http://127.0.0.1:{emu_port}"
    wxpay = PayState(appid=APPID, time_scale=0)
    runner, state = await start_emulator("127.0.0.1", emu_port, bot_url=f"{bot_base}/wechat", token=TOKEN,
                                         app_id=APPID, app_secret=SECRET, aes_key=None, mode="plain", pay=wxpay)
    settings = load_settings({
        "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APPID, "WECHAT_APP_SECRET": SECRET, "WECHAT_API_BASE": emu_base,
        "DATABASE_URL": db_url, "REPLY_BUDGET_SECONDS": "2", "PUBLIC_BASE_URL": bot_base,
        **wxpay.write_service_files(tmp_path / "wechatpay"), "WECHATPAY_API_BASE": emu_base,
    })
    bot = await aiohttp_server(create_app(settings, scheduler=SchedulerOptions(deliver_every=0.2, renew_seconds=0.2)),
                               port=bot_port)
    wechat = WeChatServer(f"{bot_base}/wechat", TOKEN, APPID, mode="plain", timeout=5.0)
    http = aiohttp.ClientSession()
    try:
        state.set_subscribed(OPENID, True)
        state.record_user_action(OPENID, "message")
        reply = (await wechat.send_text(OPENID, "我的订单")).reply.content
        assert "状态：待缴费" in reply and "点击链接在微信中缴费" in reply
        link = re.search(r"(http://\S+/pay/" + ORDER + r"\?\S+)", reply).group(1)
        async with http.get(link) as r:
            assert r.status == 200 and "微信支付" in await r.text()
        q = dict(p.split("=", 1) for p in link.split("?", 1)[1].split("&"))
        async with http.post(f"{bot_base}/pay/{ORDER}/prepay", json={"openid": OPENID, "t": q["t"]}) as r:
            params = (await r.json())["params"]
        async with http.get(f"{emu_base}/_emu/pay/cashier", params=params) as r:
            assert r.status == 200 and "确认支付" in await r.text()
        async with http.post(f"{emu_base}/_emu/pay/confirm",
                             data={"prepay_id": params["package"].removeprefix("prepay_id="), "return_url": link}) as r:
            assert "已缴费" in await r.text()
        await wxpay.drain()
        async with bot.app[DB].session() as s:
            assert (await s.execute(select(Order.status).where(Order.order_number == ORDER))).scalar_one() == "paid"
        for _ in range(100):
            if any("缴费成功" in (m.get("content") or "") for m in state.outbound):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # a second receipt would show up here
        receipts = [m for m in state.outbound if "缴费成功" in (m.get("content") or "")]
        assert len(receipts) == 1 and receipts[0]["openid"] == OPENID and ORDER in receipts[0]["content"]
        reply = (await wechat.send_text(OPENID, "我的订单")).reply.content
        assert "状态：已缴费" in reply and "点击链接" not in reply
    finally:
        await http.close()
        await wechat.close()
        await bot.close()
        await runner.cleanup()
