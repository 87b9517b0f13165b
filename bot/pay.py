"""WeChat Pay (API v3, JSAPI) at the edge: the payment page, the prepay call, POST /pay/notify.

The client library is wechatpayv3 (pinned in pyproject.toml): a maintained API v3 client that
signs requests with the merchant key, verifies answers and notifications with the platform public
key (微信支付公钥, the mode WeChat Pay gives new merchants) and decrypts AEAD_AES_256_GCM
resources. wechatpy's `pay` module speaks API v2 only. We use its synchronous client on a worker
thread: a payment makes a handful of calls, not worth the httpx and aiofiles its async variant
would add.

What an order may do and what a notification means is decided in storage/payments.py; this
module only speaks the protocol.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import html
import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import quote, urlencode

from aiohttp import web
from wechatpayv3 import WeChatPay, WeChatPayType

from bot.config import Settings
from storage import payments
from storage.db import Database
from storage.models import utcnow
from storage.payments import Outcome, Payment, masked_openid, masked_order

log = logging.getLogger("zikao.pay")

REAL_PAY_API = "https://api.mch.weixin.qq.com"
# Notifications older or newer than this are refused: a captured one cannot be replayed later.
NOTIFY_MAX_SKEW_SECONDS = 300
CHINA = dt.timezone(dt.timedelta(hours=8))


class PayError(Exception):
    """WeChat Pay refused or could not be reached; `message` is for the log, `reply` for the payer."""

    def __init__(self, code: str, message: str, reply: str = "微信支付暂时不可用，请稍后再试。") -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.reply = code, message, reply


@dataclass(frozen=True)
class PayConfig:
    mchid: str
    appid: str
    api_v3_key: str
    private_key_pem: str
    cert_serial_no: str
    public_key_pem: str
    public_key_id: str
    api_base: str
    notify_url: str
    page_base: str  # where the payment page is served, as the payer's phone reaches it

    @classmethod
    def from_settings(cls, s: Settings) -> Optional["PayConfig"]:
        """None when WECHATPAY_MCHID is empty (no payment in WeChat; 我的订单 says so)."""
        if not s.wechatpay_mchid:
            return None
        page_base = s.public_base
        return cls(
            mchid=s.wechatpay_mchid, appid=s.wechat_app_id, api_v3_key=s.wechatpay_api_v3_key,
            private_key_pem=Path(s.wechatpay_private_key_path).read_text(),
            cert_serial_no=s.wechatpay_cert_serial_no,
            public_key_pem=Path(s.wechatpay_public_key_path).read_text(), public_key_id=s.wechatpay_public_key_id,
            api_base=s.wechatpay_api_base.rstrip("/"), notify_url=f"{page_base}/pay/notify", page_base=page_base)

    @property
    def link_key(self) -> bytes:
        return hashlib.sha256(b"zikao pay link\0" + self.api_v3_key.encode()).digest()


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(CHINA).isoformat(timespec="seconds")


class PayGateway:
    """The merchant's side of the API: JSAPI order, query, close, paySign, notification check."""

    def __init__(self, cfg: PayConfig) -> None:
        self.cfg = cfg
        self._wx = WeChatPay(
            wechatpay_type=WeChatPayType.JSAPI, mchid=cfg.mchid, private_key=cfg.private_key_pem,
            cert_serial_no=cfg.cert_serial_no, appid=cfg.appid, apiv3_key=cfg.api_v3_key, notify_url=cfg.notify_url,
            public_key=cfg.public_key_pem, public_key_id=cfg.public_key_id, timeout=(5, 10), logger=None)
        # The library has no setting for the API host; the pinned version keeps it here. This is
        # how the service talks to the emulator (WECHATPAY_API_BASE).
        self._wx._core._gate_way = cfg.api_base

    async def _call(self, fn: Callable[[], tuple[int, Any]]) -> tuple[int, dict[str, Any]]:
        try:
            code, body = await asyncio.to_thread(fn)
        except Exception as e:  # network errors, and an answer whose signature does not verify
            raise PayError("NETWORK", type(e).__name__) from None
        try:
            data = json.loads(body) if body else {}
        except (TypeError, ValueError):
            data = {}
        return code, data

    async def jsapi(self, order: payments.OrderView, openid: str, time_expire: dt.datetime) -> str:
        code, data = await self._call(lambda: self._wx.pay(
            description=order.description, out_trade_no=order.order_number,
            amount={"total": order.amount_fen, "currency": "CNY"}, payer={"openid": openid},
            time_expire=rfc3339(time_expire)))
        if code == 200 and data.get("prepay_id"):
            return str(data["prepay_id"])
        err = str(data.get("code", code))
        reply = {"ORDERPAID": "这个订单已经缴费，无需重复支付。", "ORDERCLOSED": "这个订单已关闭，不能再支付。"}.get(
            err, "微信支付暂时不可用，请稍后再试。")
        raise PayError(err, str(data.get("message", "")), reply)

    async def query(self, out_trade_no: str) -> Optional[dict[str, Any]]:
        code, data = await self._call(lambda: self._wx.query(out_trade_no=out_trade_no))
        if code == 200:
            return data
        if code == 404:
            return None
        raise PayError(str(data.get("code", code)), str(data.get("message", "")))

    async def close(self, out_trade_no: str) -> bool:
        """True when closed (or never known to WeChat Pay); False when it is paid."""
        code, data = await self._call(lambda: self._wx.close(out_trade_no=out_trade_no))
        if code in (200, 204) or code == 404:
            return True
        if data.get("code") == "ORDERPAID":
            return False
        raise PayError(str(data.get("code", code)), str(data.get("message", "")))

    def js_params(self, prepay_id: str, now: float) -> dict[str, str]:
        """What `WeixinJSBridge.invoke('getBrandWCPayRequest', ...)` takes."""
        ts, nonce, package = str(int(now)), secrets.token_hex(16), f"prepay_id={prepay_id}"
        return {"appId": self.cfg.appid, "timeStamp": ts, "nonceStr": nonce, "package": package, "signType": "RSA",
                "paySign": self._wx.sign([self.cfg.appid, ts, nonce, package])}

    def open_notification(self, headers: Any, body: str) -> Optional[dict[str, Any]]:
        """The verified, decrypted notification, or None (bad signature, unknown key, bad cipher)."""
        if headers.get("Wechatpay-Serial") != self.cfg.public_key_id:
            # Checked here: for an unknown serial the library would go and fetch certificates.
            return None
        try:
            data = self._wx.callback(headers, body)
        except Exception:
            return None
        return data if isinstance(data, dict) and isinstance(data.get("resource"), dict) else None


def link_token(cfg: PayConfig, order_number: str, openid: str) -> str:
    """The payment page's link names the payer; the token says the service made the link."""
    return hmac.new(cfg.link_key, f"{order_number}\0{openid}".encode(), hashlib.sha256).hexdigest()[:32]


def pay_link(cfg: PayConfig, order_number: str, openid: str) -> str:
    return f"{cfg.page_base}/pay/{quote(order_number)}?" + urlencode(
        {"openid": openid, "t": link_token(cfg, order_number, openid)})


class PayService:
    """The routes of the payment, over the gateway and the database."""

    def __init__(self, db: Database, gateway: PayGateway, *, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.db = db
        self.gateway = gateway
        self.cfg = gateway.cfg
        self.clock = clock

    def link(self, order_number: str, openid: str) -> str:
        return pay_link(self.cfg, order_number, openid)

    # --- the payer ----------------------------------------------------------------------------

    def _payer(self, order_number: str, openid: str, token: str) -> bool:
        return bool(openid) and hmac.compare_digest(link_token(self.cfg, order_number, openid), token)

    async def _refusal(self, order_number: str, openid: str, now: dt.datetime) -> tuple[Optional[payments.OrderView], Optional[str], Any]:
        order = await payments.load_order(self.db, order_number)
        window = await payments.fee_window(self.db, now)
        why = payments.payment_refusal(order, window, payer_candidate_id=await payments.candidate_of(self.db, openid))
        return order, why, window

    async def prepay(self, request: web.Request) -> web.Response:
        """JSAPI parameters for the page; a prepay_id still valid for this payer is used again."""
        number = request.match_info["order_number"]
        try:
            body = await request.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        openid, token = str(body.get("openid", "")), str(body.get("t", ""))
        if not self._payer(number, openid, token):
            return web.json_response({"ok": False, "message": "链接无效，请在公众号回复“我的订单”重新打开。"}, status=403)
        now = self.clock()
        order, why, window = await self._refusal(number, openid, now)
        if why or order is None or window.open is None:
            return web.json_response({"ok": False, "message": why}, status=409)
        prepay_id = payments.reusable_prepay(order, openid, now)
        if prepay_id is None:
            expires = payments.prepay_expiry(now, window.open.closes_at)
            try:
                prepay_id = await self.gateway.jsapi(order, openid, window.open.closes_at)
            except PayError as e:
                log.warning("JSAPI order for %s refused: %s", masked_order(number), e.code)
                return web.json_response({"ok": False, "message": e.reply}, status=502)
            await payments.save_prepay(self.db, number, prepay_id=prepay_id, openid=openid, expires_at=expires)
        return web.json_response({"ok": True, "params": self.gateway.js_params(prepay_id, now.timestamp())})

    async def page(self, request: web.Request) -> web.Response:
        number = request.match_info["order_number"]
        openid, token = request.query.get("openid", ""), request.query.get("t", "")
        if not self._payer(number, openid, token):
            return _page("<p class='err'>链接无效，请在公众号回复“我的订单”重新打开。</p>", status=403)
        now = self.clock()
        order = await payments.load_order(self.db, number)
        if order is not None and order.status == "pending" and order.prepay_id:
            await self.reconcile(number, now)  # back from the cashier before the notification came
        order, why, _ = await self._refusal(number, openid, now)
        if order is None or order.candidate_id != await payments.candidate_of(self.db, openid):
            return _page(f"<p class='err'>{html.escape(why or '')}</p>", status=404)
        head = (f"<h1>{html.escape(order.item)}</h1><p>专业：{html.escape(order.major_name)}</p>"
                f"<p>订单号：{html.escape(order.order_number)}</p><p class='amt'>¥{order.amount:.2f}</p>")
        if order.status == "paid":
            return _page(head + "<p class='ok'>已缴费。缴费凭证已发送到公众号。</p>")
        if why:
            return _page(head + f"<p class='err'>{html.escape(why)}</p>")
        cashier = "" if self.cfg.api_base == REAL_PAY_API else f"{self.cfg.api_base}/_emu/pay/cashier"
        script = _SCRIPT % {"prepay": json.dumps(f"/pay/{quote(number)}/prepay"), "openid": json.dumps(openid),
                            "t": json.dumps(token), "cashier": json.dumps(cashier),
                            "back": json.dumps(str(request.url))}
        return _page(head + "<button id='pay'>微信支付</button><p id='msg' class='err'></p>" + script)

    # --- WeChat Pay -----------------------------------------------------------------------------

    async def notify(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode("utf-8", errors="replace")
        if not _fresh(request.headers.get("Wechatpay-Timestamp", ""), self.clock()):
            log.warning("payment notification refused: timestamp outside %d s", NOTIFY_MAX_SKEW_SECONDS)
            return _fail(401, "timestamp")
        data = self.gateway.open_notification(request.headers, body)
        if data is None:
            log.warning("payment notification refused: signature or cipher does not verify (serial %s)",
                        request.headers.get("Wechatpay-Serial", "-")[:24])
            return _fail(401, "signature")
        resource = data["resource"]
        if resource.get("mchid") != self.cfg.mchid or resource.get("appid") != self.cfg.appid:
            log.warning("payment notification refused: another merchant or app")
            return _fail(400, "merchant")
        try:
            p = Payment.from_resource(resource)
        except (TypeError, ValueError):
            log.warning("payment notification refused: malformed resource")
            return _fail(400, "resource")
        outcome = await payments.record_payment(self.db, p, now=self.clock())
        return self._answer(p, outcome)

    def _answer(self, p: Payment, outcome: Outcome) -> web.Response:
        where = f"order {masked_order(p.out_trade_no)} payer {masked_openid(p.payer_openid)} amount {p.amount_total}"
        if outcome is Outcome.PAID:
            log.info("paid: %s", where)
        elif outcome is Outcome.ALREADY_PAID:
            log.info("repeated notification of a paid order: %s", where)
        elif outcome is Outcome.NOT_SUCCESS:
            log.info("notification with trade_state %s: %s", p.trade_state, where)
        else:
            # Money may have been taken for an order we cannot accept: staff must refund it.
            log.error("payment notification refused (%s): %s", outcome.value, where)
        if outcome.accepted:
            return web.Response(status=204)
        return _fail(400, outcome.value)

    async def reconcile(self, order_number: str, now: dt.datetime) -> Optional[Outcome]:
        """Ask WeChat Pay how the order stands; a payment found is recorded like a notification."""
        try:
            found = await self.gateway.query(order_number)
        except PayError as e:
            log.warning("query of %s failed: %s", masked_order(order_number), e.code)
            return None
        if not found or found.get("trade_state") != "SUCCESS":
            return None
        p = Payment.from_resource(found)
        outcome = await payments.record_payment(self.db, p, now=now)
        if outcome is Outcome.PAID:  # found by asking before (or instead of) the notification
            log.info("paid: order %s payer %s amount %s (by query)", masked_order(p.out_trade_no),
                     masked_openid(p.payer_openid), p.amount_total)
        return outcome

    async def close_unpaid(self, now: Optional[dt.datetime] = None) -> int:
        """The scheduled job: close unpaid orders whose payment period ended, at WeChat Pay first."""
        now = now or self.clock()
        closed = 0
        for order in await payments.due_for_closing(self.db, now):
            if order.prepay_id:
                if await self.reconcile(order.order_number, now) in (Outcome.PAID, Outcome.ALREADY_PAID):
                    continue
                try:
                    if not await self.gateway.close(order.order_number):
                        await self.reconcile(order.order_number, now)  # paid in between
                        continue
                except PayError as e:
                    log.warning("close of %s at WeChat Pay failed (%s); next run", masked_order(order.order_number), e.code)
                    continue
            if await payments.close_order(self.db, order.order_number, now):
                closed += 1
                log.info("closed unpaid order %s: payment period over", masked_order(order.order_number))
        return closed


def _fresh(timestamp: str, now: dt.datetime) -> bool:
    try:
        return abs(now.timestamp() - int(timestamp)) <= NOTIFY_MAX_SKEW_SECONDS
    except ValueError:
        return False


def _fail(status: int, why: str) -> web.Response:
    return web.json_response({"code": "FAIL", "message": why}, status=status)


_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>毕业审定费缴费</title>
<style>body{font-family:sans-serif;margin:0;background:#f5f5f5}main{max-width:420px;margin:0 auto;padding:20px}
h1{font-size:20px}.amt{font-size:32px;text-align:center}.err{color:#c00}.ok{color:#07c160;font-size:18px}
button{width:100%%;padding:12px;background:#07c160;color:#fff;border:0;border-radius:6px;font-size:17px}
</style></head><body><main>%s</main></body></html>"""

# In WeChat the page calls WeixinJSBridge; elsewhere (the emulator's chat page) it opens the
# emulator's cashier with the same parameters.
_SCRIPT = """<script>
document.getElementById('pay').onclick = function () {
  var msg = document.getElementById('msg'); msg.textContent = '';
  fetch(%(prepay)s, {method: 'POST', headers: {'Content-Type': 'application/json'},
                     body: JSON.stringify({openid: %(openid)s, t: %(t)s})})
    .then(function (r) { return r.json(); })
    .then(function (d) {
      if (!d.ok) { msg.textContent = d.message; return; }
      if (window.WeixinJSBridge) {
        WeixinJSBridge.invoke('getBrandWCPayRequest', d.params, function () { location.reload(); });
      } else if (%(cashier)s) {
        var q = new URLSearchParams(d.params); q.set('return_url', %(back)s);
        location.href = %(cashier)s + '?' + q.toString();
      } else { msg.textContent = '请在微信中打开此页面完成支付。'; }
    }).catch(function () { msg.textContent = '网络不稳定，请稍后再试。'; });
};
</script>"""


def _page(content: str, status: int = 200) -> web.Response:
    return web.Response(status=status, text=_PAGE % content, content_type="text/html")


PAY = web.AppKey("pay_service", PayService)


def add_pay_routes(app: web.Application) -> None:
    """The payment routes; the PayService is put under `PAY` when the app starts."""
    async def notify(request: web.Request) -> web.Response:
        return await request.app[PAY].notify(request)

    async def page(request: web.Request) -> web.Response:
        return await request.app[PAY].page(request)

    async def prepay(request: web.Request) -> web.Response:
        return await request.app[PAY].prepay(request)

    app.router.add_post("/pay/notify", notify)
    app.router.add_get("/pay/{order_number}", page)
    app.router.add_post("/pay/{order_number}/prepay", prepay)
