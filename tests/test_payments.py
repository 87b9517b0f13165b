"""Paying the 毕业审定费 in WeChat: the service (bot/pay.py, storage/payments.py) against the
emulator's WeChat Pay (emulator/pay.py), end to end, and the payment rules on their own.

The test owns the clock: the service and the emulated WeChat Pay read the same `Clock`, which
starts at the real time (the library stamps its requests with the real time) and only moves when
a test moves it. The emulator's repeat schedule is compressed to nothing (`time_scale=0`).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
from decimal import Decimal
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from bot.pay import PAY, PayConfig, PayGateway, PayService, add_pay_routes, link_token
from emulator.pay import RETRY_SCHEDULE, PayState, Transaction, add_pay_routes as add_emulator_pay_routes, rsa_sign
from storage import payments as P
from storage.db import Database
from storage.identifiers import id_check_digit
from storage.importer import ImportReport, RawTable, import_tables
from storage.models import Outbox, WechatUser
from storage.models_service import Order

UTC = dt.timezone.utc
SH = dt.timezone(dt.timedelta(hours=8))
APPID = "wx0000000000000000"
OPENID = "oPayer0000000000000000000001"
OTHER_OPENID = "oOther0000000000000000000002"
ORDER = "GF202512200365"
ID_A = "31010119850101123" + id_check_digit("31010119850101123")
A1 = "012322200365"


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> dt.datetime:
        return self.now

    def ts(self) -> float:
        return self.now.timestamp()


def _sh(t: dt.datetime) -> str:
    return t.astimezone(SH).strftime("%Y-%m-%d %H:%M")


async def _load(db: Database, clock: Clock, *, window: tuple[int, int] = (-1, 10), amount: str = "150.00") -> None:
    """One candidate bound to OPENID, one 待缴费 order, a payment period `window` days around now."""
    opens, closes = clock.now + dt.timedelta(days=window[0]), clock.now + dt.timedelta(days=window[1])
    tables = {
        "courses.csv": [{"code": "03708", "name": "中国近现代史纲要", "kind": "理论"}],
        "majors.csv": [{"code": "120103", "name": "工程管理(专升本)", "level": "专升本", "required_credits": "70"}],
        "plan_courses.csv": [{"major_code": "120103", "course_code": "03708", "credits": "2", "category": "必考"}],
        "candidates.csv": [{"id_number": ID_A, "name": "王磊"}],
        "admission_numbers.csv": [{"admission_number": A1, "id_number": ID_A, "major_codes": "120103"}],
        "business_windows.csv": [{"kind": "graduation_fee", "title": "毕业审定费缴费", "opens_at": _sh(opens),
                                  "closes_at": _sh(closes)}],
        "orders.csv": [{"order_number": ORDER, "admission_number": A1, "major_code": "120103", "amount": amount,
                        "status": "待缴费", "created_at": _sh(clock.now - dt.timedelta(days=3))}],
    }
    report = await import_tables(db, {n: RawTable.from_records(n, r) for n, r in tables.items()}, ImportReport("t"))
    assert report.committed, report.format()
    async with db.session() as s, s.begin():
        cid = (await s.execute(select(Order.candidate_id))).scalar_one()
        s.add(WechatUser(openid=OPENID, candidate_id=cid, subscribed=True))
        s.add(WechatUser(openid=OTHER_OPENID, candidate_id=None, subscribed=True))


async def _order(db: Database) -> Order:
    async with db.session() as s:
        return (await s.execute(select(Order).where(Order.order_number == ORDER))).scalar_one()


async def _receipts(db: Database) -> list[Outbox]:
    async with db.session() as s:
        return list((await s.execute(select(Outbox).where(Outbox.kind == "payment_receipt"))).scalars())


@pytest.fixture
async def world(db: Database, tmp_path):
    """The emulator's WeChat Pay and the service's payment routes, each on its own port."""
    clock = Clock()
    await _load(db, clock)
    wxpay = PayState(appid=APPID, clock=clock.ts, time_scale=0)
    emu = web.Application()
    add_emulator_pay_routes(emu, wxpay)
    emu_server = TestServer(emu, port=unused_port())
    await emu_server.start_server()
    files = wxpay.write_service_files(tmp_path / "wechatpay")
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    cfg = PayConfig(
        mchid=files["WECHATPAY_MCHID"], appid=APPID, api_v3_key=files["WECHATPAY_API_V3_KEY"],
        private_key_pem=open(files["WECHATPAY_PRIVATE_KEY_PATH"]).read(),
        cert_serial_no=files["WECHATPAY_CERT_SERIAL_NO"],
        public_key_pem=open(files["WECHATPAY_PUBLIC_KEY_PATH"]).read(), public_key_id=files["WECHATPAY_PUBLIC_KEY_ID"],
        api_base=str(emu_server.make_url("")).rstrip("/"), notify_url=f"{base}/pay/notify", page_base=base)
    service = PayService(db, PayGateway(cfg), clock=clock)
    app = web.Application()
    app[PAY] = service
    add_pay_routes(app)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    import aiohttp

    session = aiohttp.ClientSession()
    yield SimpleNamespace(db=db, clock=clock, wxpay=wxpay, emu=emu_server, server=server, service=service, cfg=cfg,
                          http=session, base=base)
    await session.close()
    await server.close()
    await emu_server.close()


def _link(w, openid: str = OPENID) -> str:
    return f"{w.base}/pay/{ORDER}?" + urlencode({"openid": openid, "t": link_token(w.cfg, ORDER, openid)})


async def _prepay(w, openid: str = OPENID) -> dict:
    async with w.http.post(f"{w.base}/pay/{ORDER}/prepay",
                           json={"openid": openid, "t": link_token(w.cfg, ORDER, openid)}) as r:
        return {"status": r.status, **await r.json()}


async def _pay_in_cashier(w, params: dict) -> str:
    """What the payer does in WeChat's cashier: open it (paySign checked), press 确认支付."""
    async with w.http.get(str(w.emu.make_url("/_emu/pay/cashier")), params={**params, "return_url": _link(w)}) as r:
        page = await r.text()
        assert r.status == 200, page
    assert "确认支付" in page and "¥150.00" in page
    prepay_id = re.search(r'name="prepay_id" value="([^"]+)"', page).group(1)
    async with w.http.post(str(w.emu.make_url("/_emu/pay/confirm")),
                           data={"prepay_id": prepay_id, "return_url": _link(w)}) as r:
        return await r.text()  # followed back to the service's payment page


# --- End to end -----------------------------------------------------------------------------------


async def test_payment_in_wechat_marks_the_order_paid_once_and_pushes_one_receipt(world) -> None:
    w = world
    async with w.http.get(_link(w)) as r:
        page = await r.text()
    assert r.status == 200 and "微信支付" in page and "¥150.00" in page and "/_emu/pay/cashier" in page
    pre = await _prepay(w)
    assert pre["ok"] and pre["params"]["package"].startswith("prepay_id=wx") and pre["params"]["signType"] == "RSA"
    again = await _prepay(w)
    assert again["params"]["package"] == pre["params"]["package"]  # the valid prepay_id is used again
    back = await _pay_in_cashier(w, pre["params"])
    await w.wxpay.drain()
    order = await _order(w.db)
    assert order.status == "paid" and order.transaction_id and order.paid_at is not None
    receipts = await _receipts(w.db)
    assert [r.openid for r in receipts] == [OPENID]
    assert "缴费成功：毕业审定费 150.00 元" in receipts[0].payload["text"] and ORDER in receipts[0].payload["text"]
    assert [n["status"] for n in w.wxpay.notifications] == [204]
    assert "已缴费" in back  # the cashier sent the payer back to the page
    assert (await _prepay(w))["message"] == "这个订单已经缴费，无需重复支付。"


async def test_ten_identical_notifications_pay_once_with_one_receipt(world, caplog) -> None:
    w = world
    caplog.set_level(logging.INFO, logger="zikao.pay")
    w.wxpay.duplicates_after_success = 9
    await _pay_in_cashier(w, (await _prepay(w))["params"])
    await w.wxpay.drain()
    assert [n["status"] for n in w.wxpay.notifications] == [204] * 10
    assert len(await _receipts(w.db)) == 1
    order = await _order(w.db)
    assert order.status == "paid"
    messages = [r.getMessage() for r in caplog.records if r.name == "zikao.pay"]
    # Exactly one payment recorded: by the first notification, or by the payment page's query when
    # the payer came back first (then all ten notifications are repeats).
    assert sum(m.startswith("paid:") for m in messages) == 1
    by_notification = sum(m.startswith("paid:") and "(by query)" not in m for m in messages)
    assert sum(m.startswith("repeated notification") for m in messages) == 10 - by_notification


async def test_concurrent_identical_notifications_pay_once_with_one_receipt(world, caplog) -> None:
    w = world
    caplog.set_level(logging.INFO, logger="zikao.pay")
    await _prepay(w)
    txn = w.wxpay.transactions[ORDER]
    txn.trade_state, txn.transaction_id, txn.success_time = "SUCCESS", "4200000000202611290001", w.wxpay.now_rfc3339()
    body = w.wxpay.notification_body(txn)

    async def post() -> int:
        async with w.http.post(f"{w.base}/pay/notify", data=body.encode(), headers=w.wxpay.signed_headers(body)) as r:
            return r.status

    statuses = await asyncio.gather(*(post() for _ in range(10)))
    assert statuses == [204] * 10
    assert len(await _receipts(w.db)) == 1
    assert sum(r.getMessage().startswith("paid:") for r in caplog.records if r.name == "zikao.pay") == 1
    assert (await _order(w.db)).transaction_id == "4200000000202611290001"


# --- Refused notifications ----------------------------------------------------------------------


async def test_notification_with_a_bad_signature_is_refused_and_changes_nothing(world, caplog) -> None:
    w = world
    await _prepay(w)
    txn = w.wxpay.transactions[ORDER]
    txn.trade_state, txn.transaction_id = "SUCCESS", "4200000000202611290002"
    body = w.wxpay.notification_body(txn)
    forged = dict(w.wxpay.signed_headers(body))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged["Wechatpay-Signature"] = rsa_sign(other, f"{forged['Wechatpay-Timestamp']}\n{forged['Wechatpay-Nonce']}\n{body}\n")
    tampered = body.replace('"summary": "支付成功"', '"summary": "x"')
    stale = w.wxpay.signed_headers(body) | {"Wechatpay-Timestamp": str(int(w.clock.ts()) - 3600)}
    caplog.set_level(logging.INFO)
    for data, headers in ((body, forged), (tampered, w.wxpay.signed_headers(body)), (body, stale),
                          (body, w.wxpay.signed_headers(body) | {"Wechatpay-Serial": "PUB_KEY_ID_OTHER"})):
        async with w.http.post(f"{w.base}/pay/notify", data=data.encode(), headers=headers) as r:
            assert r.status == 401
    assert (await _order(w.db)).status == "pending" and not await _receipts(w.db)
    assert "payment notification refused" in caplog.text
    assert ORDER not in caplog.text and forged["Wechatpay-Signature"] not in caplog.text


async def test_notification_with_the_wrong_amount_is_refused_logged_masked_and_repeated(world, caplog) -> None:
    w = world
    params = (await _prepay(w))["params"]
    w.wxpay.transactions[ORDER].total = 1  # WeChat Pay says 0.01 yuan was paid
    caplog.set_level(logging.INFO)
    await _pay_in_cashier_amount(w, params)
    await w.wxpay.drain()
    assert (await _order(w.db)).status == "pending" and not await _receipts(w.db)
    assert [n["status"] for n in w.wxpay.notifications] == [400] * (1 + len(RETRY_SCHEDULE))
    assert "refused (amount_mismatch)" in caplog.text and ORDER not in caplog.text and "…0365" in caplog.text


async def _pay_in_cashier_amount(w, params: dict) -> None:
    prepay_id = params["package"].removeprefix("prepay_id=")
    async with w.http.post(str(w.emu.make_url("/_emu/pay/confirm")), data={"prepay_id": prepay_id}) as r:
        assert r.status == 200


async def test_notification_for_an_unknown_order_is_refused(world, caplog) -> None:
    w = world
    w.wxpay.transactions["GF999999999999"] = Transaction("GF999999999999", APPID, w.wxpay.mchid, "x",
                                                         f"{w.base}/pay/notify", 15000, OPENID, None, ["wxunknown"])
    w.wxpay.prepays["wxunknown"] = "GF999999999999"
    w.wxpay.retry_schedule = ()
    caplog.set_level(logging.INFO)
    w.wxpay.pay("wxunknown")
    await w.wxpay.drain()
    assert [n["status"] for n in w.wxpay.notifications] == [400]
    assert "refused (unknown_order)" in caplog.text and not await _receipts(w.db)


async def test_notification_for_a_closed_order_is_refused_and_the_order_stays_closed(world, caplog) -> None:
    w = world
    params = (await _prepay(w))["params"]
    assert await P.close_order(w.db, ORDER, w.clock())
    w.wxpay.retry_schedule = ()
    caplog.set_level(logging.INFO)
    await _pay_in_cashier_amount(w, params)
    await w.wxpay.drain()
    assert [n["status"] for n in w.wxpay.notifications] == [400]
    assert (await _order(w.db)).status == "closed" and not await _receipts(w.db)
    assert "refused (closed_order)" in caplog.text


async def test_emulator_repeats_a_notification_until_the_service_answers_2xx() -> None:
    answers = [500, 503, 404, 204]
    seen: list[dict] = []

    async def notify(request: web.Request) -> web.Response:
        seen.append(json.loads(await request.text()))
        return web.Response(status=answers[len(seen) - 1])

    app = web.Application()
    app.router.add_post("/notify", notify)
    server = TestServer(app)
    await server.start_server()
    state = PayState(appid=APPID, time_scale=1 / 1000)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    state.sleep = sleep
    txn = Transaction("GF0000000009", APPID, state.mchid, "x", str(server.make_url("/notify")), 100, OPENID, None, ["wx1"])
    state.transactions[txn.out_trade_no], state.prepays["wx1"] = txn, txn.out_trade_no
    try:
        state.pay("wx1")
        await state.drain()
    finally:
        await state.close()
        await server.close()
    assert [n["status"] for n in state.notifications] == [500, 503, 404, 204]
    assert waits == [s / 1000 for s in RETRY_SCHEDULE[:3]]  # 15 s, 15 s, 30 s, time-compressed
    assert len({s["id"] for s in seen}) == 1  # the same notification each time


async def test_emulator_refuses_an_unsigned_order(world) -> None:
    w = world
    async with w.http.post(str(w.emu.make_url("/v3/pay/transactions/jsapi")), json={"out_trade_no": ORDER}) as r:
        assert r.status == 401 and (await r.json())["code"] == "SIGN_ERROR"


# --- The payment period -------------------------------------------------------------------------


async def test_unpaid_order_closes_when_the_payment_period_ends_also_at_wechat_pay(world) -> None:
    w = world
    await _prepay(w)
    assert await w.service.close_unpaid(w.clock.now + dt.timedelta(days=9)) == 0
    w.clock.now += dt.timedelta(days=11)
    assert await w.service.close_unpaid() == 1
    order = await _order(w.db)
    assert order.status == "closed" and order.closed_at == w.clock.now
    assert w.wxpay.transactions[ORDER].trade_state == "CLOSED"
    assert await w.service.close_unpaid() == 0


async def test_close_job_records_a_payment_whose_notification_was_lost(world) -> None:
    w = world
    params = (await _prepay(w))["params"]
    w.wxpay.retry_schedule = ()
    w.wxpay.transactions[ORDER].notify_url = f"http://127.0.0.1:{unused_port()}/pay/notify"  # nobody listens
    await _pay_in_cashier_amount(w, params)
    await w.wxpay.drain()
    assert (await _order(w.db)).status == "pending"
    w.clock.now += dt.timedelta(days=11)
    assert await w.service.close_unpaid() == 0
    assert (await _order(w.db)).status == "paid" and len(await _receipts(w.db)) == 1


async def test_payment_page_outside_the_period_says_when_it_opens(db, tmp_path) -> None:
    clock = Clock()
    await _load(db, clock, window=(5, 15))
    window = await P.fee_window(db, clock())
    order = await P.load_order(db, ORDER)
    why = P.payment_refusal(order, window, payer_candidate_id=order.candidate_id)
    opens = (clock.now + dt.timedelta(days=5)).astimezone(SH).strftime("%Y年%m月%d日 %H:%M")
    assert why.startswith("现在不在毕业审定费缴费时间内。缴费时间：" + opens)


async def test_payment_page_refuses_a_link_not_made_by_the_service_and_another_candidates_order(world) -> None:
    w = world
    async with w.http.get(f"{w.base}/pay/{ORDER}?openid={OPENID}&t=0000") as r:
        assert r.status == 403 and "链接无效" in await r.text()
    async with w.http.get(_link(w, OTHER_OPENID)) as r:
        assert r.status == 404 and "没有找到这个订单" in await r.text()
    assert (await _prepay(w, OTHER_OPENID))["message"].startswith("没有找到这个订单")


# --- Rules --------------------------------------------------------------------------------------


def _view(**kw) -> P.OrderView:
    base = dict(order_number=ORDER, candidate_id=1, item="毕业审定费", major_name="工程管理(专升本)",
                amount=Decimal("150.00"), status="pending", created_at=dt.datetime(2025, 12, 20, tzinfo=UTC))
    return P.OrderView(**(base | kw))


def _payment(**kw) -> P.Payment:
    base = dict(out_trade_no=ORDER, transaction_id="T1", trade_state="SUCCESS", amount_total=15000, currency="CNY",
                payer_openid=OPENID, success_time=None)
    return P.Payment(**(base | kw))


@pytest.mark.parametrize("order, payment, outcome", [
    (None, {}, P.Outcome.UNKNOWN_ORDER),
    ({}, {}, P.Outcome.PAID),
    ({}, {"amount_total": 14999}, P.Outcome.AMOUNT_MISMATCH),
    ({}, {"currency": "USD"}, P.Outcome.AMOUNT_MISMATCH),
    ({}, {"trade_state": "NOTPAY"}, P.Outcome.NOT_SUCCESS),
    ({"status": "closed"}, {}, P.Outcome.CLOSED_ORDER),
    ({"status": "paid", "transaction_id": "T1"}, {}, P.Outcome.ALREADY_PAID),
    ({"status": "paid", "transaction_id": "T0"}, {}, P.Outcome.OTHER_TRANSACTION),
])
def test_what_a_notification_means_for_its_order(order, payment, outcome) -> None:
    assert P.judge_notification(None if order is None else _view(**order), _payment(**payment)) is outcome


def test_amounts_go_to_wechat_pay_in_fen() -> None:
    assert [P.amount_fen(Decimal(a)) for a in ("150", "80.50", "0.01")] == [15000, 8050, 1]


def test_an_unpaid_order_closes_only_after_a_period_it_could_be_paid_in_has_ended() -> None:
    t = dt.datetime(2026, 1, 1, tzinfo=UTC)
    w = SimpleNamespace(kind="graduation_fee", opens_at=t + dt.timedelta(days=10), closes_at=t + dt.timedelta(days=20))
    later = SimpleNamespace(kind="graduation_fee", opens_at=t + dt.timedelta(days=40), closes_at=t + dt.timedelta(days=50))
    assert not P.period_over(t, [w], t + dt.timedelta(days=5))  # not open yet
    assert not P.period_over(t, [w], t + dt.timedelta(days=15))  # open
    assert P.period_over(t, [w], t + dt.timedelta(days=20))  # ended
    assert not P.period_over(t + dt.timedelta(days=30), [w, later], t + dt.timedelta(days=35))  # made after it
    assert not P.period_over(t, [w, later], t + dt.timedelta(days=45))  # another period open


def test_payment_is_refused_for_paid_closed_and_foreign_orders() -> None:
    from storage.applications import WindowCheck

    open_window = WindowCheck("graduation_fee", SimpleNamespace(closes_at=None), None)
    assert P.payment_refusal(_view(), open_window, payer_candidate_id=1) is None
    assert P.payment_refusal(_view(), open_window, payer_candidate_id=2).startswith("没有找到")
    assert P.payment_refusal(_view(status="paid"), open_window, payer_candidate_id=1) == "这个订单已经缴费，无需重复支付。"
    assert "已关闭" in P.payment_refusal(_view(status="closed"), open_window, payer_candidate_id=1)
    closed = WindowCheck("graduation_fee", None, None)
    assert "另行通知" in P.payment_refusal(_view(), closed, payer_candidate_id=1)


# --- 我的订单 and settings --------------------------------------------------------------------------


async def test_my_orders_before_the_period_says_when_it_opens_and_inside_it_gives_the_payment_link(db) -> None:
    from dialogs import queries as dq

    clock = Clock()
    await _load(db, clock, window=(5, 15))
    order = await P.load_order(db, ORDER)
    viewer = dq.Viewer(OPENID, order.candidate_id, A1)
    link = lambda number, openid: f"https://pay.example/{number}/{openid}"  # noqa: E731
    before = (await dq.orders(db, viewer, now=clock.now, pay_link=link)).text
    opens = (clock.now + dt.timedelta(days=5)).astimezone(SH).strftime("%Y年%m月%d日 %H:%M")
    assert f"缴费时间：{opens} 至 " in before and "届时回复“我的订单”即可在微信中缴费。" in before
    assert "https://pay.example" not in before
    inside = (await dq.orders(db, viewer, now=clock.now + dt.timedelta(days=6), pay_link=link)).text
    assert f"订单{ORDER}：https://pay.example/{ORDER}/{OPENID}" in inside
    without = (await dq.orders(db, viewer, now=clock.now + dt.timedelta(days=6))).text
    assert "请登录考籍管理服务平台" in without and "https://" not in without


def test_wechat_pay_settings_are_checked_at_start(tmp_path) -> None:
    from bot.config import ConfigError, load_settings

    files = PayState(appid=APPID).write_service_files(tmp_path)
    ok = load_settings(files | {"PUBLIC_BASE_URL": "https://zikao.example"})
    assert ok.wechatpay_mchid == files["WECHATPAY_MCHID"] and ok.describe()["wechatpay_api_v3_key"] == "set"
    assert PayConfig.from_settings(ok).notify_url == "https://zikao.example/pay/notify"
    assert PayConfig.from_settings(load_settings({})) is None
    for bad, var in (({"WECHATPAY_MCHID": "abc"}, "WECHATPAY_MCHID"),
                     ({"WECHATPAY_API_V3_KEY": "short"}, "WECHATPAY_API_V3_KEY"),
                     ({"WECHATPAY_PRIVATE_KEY_PATH": str(tmp_path / "none.pem")}, "WECHATPAY_PRIVATE_KEY_PATH"),
                     ({"WECHATPAY_PUBLIC_KEY_ID": ""}, "WECHATPAY_CERT_SERIAL_NO")):
        with pytest.raises(ConfigError, match=var):
            load_settings(files | bad)


async def test_reimporting_an_older_export_does_not_undo_a_payment_made_in_wechat(db) -> None:
    clock = Clock()
    await _load(db, clock)
    await P.record_payment(db, P.Payment(ORDER, "4200000000202611290003", "SUCCESS", 15000, "CNY", OPENID, None),
                           now=clock())
    stale = {"orders.csv": [{"order_number": ORDER, "admission_number": A1, "major_code": "120103", "amount": "150",
                             "status": "待缴费", "created_at": _sh(clock.now - dt.timedelta(days=3))}]}
    report = await import_tables(db, {n: RawTable.from_records(n, r) for n, r in stale.items()}, ImportReport("t"))
    assert report.committed, report.format()
    order = await _order(db)
    assert order.status == "paid" and order.paid_at == clock.now
