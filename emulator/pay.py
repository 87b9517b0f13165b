"""WeChat Pay API v3 as the emulator serves it: JSAPI orders, query, close, a cashier page, notifications.

Like the real service:
- requests must carry a valid `Authorization: WECHATPAY2-SHA256-RSA2048 ...` made with the
  merchant's private key (checked against the merchant's public key, 401 SIGN_ERROR otherwise);
- answers are signed with the platform key (`Wechatpay-Serial` = the platform public key id), so
  the merchant's client verifies them;
- the cashier page (what `getBrandWCPayRequest` shows in WeChat) checks the JSAPI `paySign`;
  "确认支付" pays the transaction;
- a payment notification (AEAD_AES_256_GCM under the APIv3 key, signed with the platform key)
  goes to the order's notify_url and is repeated on anything but a 2xx answer, on WeChat Pay's
  schedule (15s/15s/30s/3m/... 24 h 4 min in all) times `time_scale`; `duplicates_after_success`
  sends it again after it was accepted (WeChat Pay does that too).

The keys (merchant and platform RSA 2048) are made when the emulator starts; `write_service_files`
leaves the merchant private key and the platform public key where the service reads them.
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import html
import json
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import aiohttp
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger("emulator.pay")

# Seconds between the attempts of one notification (PROTOCOL.md): 15 in all after the first.
RETRY_SCHEDULE: tuple[float, ...] = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800,
                                     21600, 21600)
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
CHINA = dt.timezone(dt.timedelta(hours=8))
DEMO_MCHID = "1900000001"
_AUTH = re.compile(r'(\w+)="([^"]*)"')

PAY_STATE = web.AppKey("emulator_pay_state", object)


def _pem_private(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _pem_public(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def rsa_sign(key: rsa.RSAPrivateKey, message: str) -> str:
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(key: rsa.RSAPublicKey, message: str, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature), message.encode(), padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, ValueError):
        return False


@dataclass
class PayKeys:
    """The merchant's API key pair (商户API私钥) and the platform's (微信支付公钥)."""

    merchant: rsa.RSAPrivateKey
    merchant_serial: str
    platform: rsa.RSAPrivateKey
    public_key_id: str

    @classmethod
    def generate(cls) -> "PayKeys":
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), secrets.token_hex(20).upper(),
                   rsa.generate_private_key(public_exponent=65537, key_size=2048),
                   "PUB_KEY_ID_01" + secrets.token_hex(8).upper())

    @property
    def merchant_private_pem(self) -> str:
        return _pem_private(self.merchant)

    @property
    def platform_public_pem(self) -> str:
        return _pem_public(self.platform.public_key())


@dataclass
class Transaction:
    out_trade_no: str
    appid: str
    mchid: str
    description: str
    notify_url: str
    total: int
    payer_openid: str
    time_expire: Optional[str]
    prepay_ids: list[str] = field(default_factory=list)
    trade_state: str = "NOTPAY"  # NOTPAY / SUCCESS / CLOSED
    transaction_id: str = ""
    success_time: str = ""

    def resource(self) -> dict[str, Any]:
        """The transaction as a query answers and a notification carries it."""
        out: dict[str, Any] = {
            "appid": self.appid, "mchid": self.mchid, "out_trade_no": self.out_trade_no,
            "trade_state": self.trade_state, "trade_state_desc": _STATE_DESC[self.trade_state],
            "amount": {"total": self.total, "currency": "CNY"}, "payer": {"openid": self.payer_openid},
            "attach": "",
        }
        if self.trade_state == "SUCCESS":
            out.update(transaction_id=self.transaction_id, trade_type="JSAPI", bank_type="OTHERS",
                       success_time=self.success_time)
            out["amount"].update(payer_total=self.total, payer_currency="CNY")
        return out


_STATE_DESC = {"NOTPAY": "未支付", "SUCCESS": "支付成功", "CLOSED": "已关闭"}


class PayState:
    """What the emulated WeChat Pay knows. One event loop: no locks."""

    def __init__(self, *, mchid: str = DEMO_MCHID, appid: str, api_v3_key: Optional[str] = None,
                 keys: Optional[PayKeys] = None, clock: Optional[Callable[[], float]] = None,
                 time_scale: float = 1.0, duplicates_after_success: int = 0,
                 session: Optional[aiohttp.ClientSession] = None) -> None:
        self.mchid = mchid
        self.appid = appid
        self.api_v3_key = api_v3_key or secrets.token_hex(16)  # 32 characters, as the merchant sets it
        self.keys = keys or PayKeys.generate()
        self.clock = clock or time.time
        # Merchant requests are stamped by the client library with the real time: their skew is
        # checked against it, whatever a test does with `clock` (business time: expiry, notifications).
        self.wall_clock: Callable[[], float] = time.time
        self.time_scale = time_scale
        self.duplicates_after_success = duplicates_after_success
        self.retry_schedule = RETRY_SCHEDULE
        self.sleep: Callable[[float], Any] = asyncio.sleep  # tests record the waits
        self.transactions: dict[str, Transaction] = {}
        self.prepays: dict[str, str] = {}  # prepay_id -> out_trade_no
        self.notifications: list[dict[str, Any]] = []  # every attempt: {"out_trade_no", "attempt", "status", ...}
        self._session = session
        self._own_session = session is None
        self._tasks: set[asyncio.Task] = set()
        self._sent = 0

    # --- signing -------------------------------------------------------------------------------

    def signed_headers(self, body: str) -> dict[str, str]:
        ts, nonce = str(int(self.clock())), secrets.token_hex(16)
        return {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce, "Wechatpay-Serial": self.keys.public_key_id,
                "Wechatpay-Signature-Type": SIGNATURE_TYPE,
                "Wechatpay-Signature": rsa_sign(self.keys.platform, f"{ts}\n{nonce}\n{body}\n")}

    def check_authorization(self, method: str, path_qs: str, header: str, body: str) -> Optional[str]:
        """Why the merchant's request signature is refused, or None."""
        scheme, _, rest = header.partition(" ")
        if scheme != SIGNATURE_TYPE:
            return "Authorization 缺少或格式错误"
        parts = dict(_AUTH.findall(rest))
        if parts.get("mchid") != self.mchid:
            return "mchid 与签名不符"
        if parts.get("serial_no") != self.keys.merchant_serial:
            return "商户证书序列号错误"
        message = f"{method}\n{path_qs}\n{parts.get('timestamp', '')}\n{parts.get('nonce_str', '')}\n{body}\n"
        if not rsa_verify(self.keys.merchant.public_key(), message, parts.get("signature", "")):
            return "签名错误"
        try:
            if abs(self.wall_clock() - int(parts.get("timestamp", "0"))) > 300:
                return "请求时间戳过期"
        except ValueError:
            return "时间戳格式错误"
        return None

    def check_pay_sign(self, app_id: str, time_stamp: str, nonce_str: str, package: str, pay_sign: str) -> bool:
        return rsa_verify(self.keys.merchant.public_key(), f"{app_id}\n{time_stamp}\n{nonce_str}\n{package}\n", pay_sign)

    def encrypt(self, plaintext: str, associated_data: str = "transaction") -> dict[str, str]:
        nonce = secrets.token_hex(6)  # 12 characters, used as bytes like WeChat Pay's
        ct = AESGCM(self.api_v3_key.encode()).encrypt(nonce.encode(), plaintext.encode(), associated_data.encode())
        return {"algorithm": "AEAD_AES_256_GCM", "ciphertext": base64.b64encode(ct).decode(),
                "associated_data": associated_data, "original_type": "transaction", "nonce": nonce}

    # --- transactions --------------------------------------------------------------------------

    def now_rfc3339(self) -> str:
        return dt.datetime.fromtimestamp(self.clock(), CHINA).isoformat(timespec="seconds")

    def pay(self, prepay_id: str) -> Transaction:
        """The payer confirmed: SUCCESS, and the notification is on its way. Raises KeyError/ValueError."""
        txn = self.transactions[self.prepays[prepay_id]]
        if txn.trade_state == "SUCCESS":
            raise ValueError("该订单已支付")
        if txn.trade_state == "CLOSED":
            raise ValueError("该订单已关闭")
        if txn.time_expire and dt.datetime.fromisoformat(txn.time_expire).timestamp() <= self.clock():
            txn.trade_state = "CLOSED"
            raise ValueError("该订单已过支付期限")
        self._sent += 1
        txn.trade_state = "SUCCESS"
        txn.transaction_id = f"4200{int(self.clock()):010d}{self._sent:06d}"[:28]
        txn.success_time = self.now_rfc3339()
        self.notify(txn)
        return txn

    def notification_body(self, txn: Transaction) -> str:
        return json.dumps({
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, txn.transaction_id)), "create_time": self.now_rfc3339(),
            "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
            "resource": self.encrypt(json.dumps(txn.resource(), ensure_ascii=False)),
        }, ensure_ascii=False)

    def notify(self, txn: Transaction) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(self._deliver(txn, self.notification_body(txn)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _post(self, txn: Transaction, body: str, attempt: int, kind: str) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        status: Any
        try:
            async with self._session.post(txn.notify_url, data=body.encode(), headers={
                    "Content-Type": "application/json", **self.signed_headers(body)}) as r:
                await r.read()
                status = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            status = type(e).__name__
        self.notifications.append({"out_trade_no": txn.out_trade_no, "attempt": attempt, "kind": kind,
                                   "status": status, "at": self.clock()})
        return isinstance(status, int) and 200 <= status < 300

    async def _deliver(self, txn: Transaction, body: str) -> None:
        attempt = 1
        ok = await self._post(txn, body, attempt, "first")
        for wait in self.retry_schedule:
            if ok:
                break
            await self.sleep(wait * self.time_scale)
            attempt += 1
            ok = await self._post(txn, body, attempt, "retry")
        if not ok:
            log.warning("notification of …%s given up after %d attempts", txn.out_trade_no[-4:], attempt)
            return
        for _ in range(self.duplicates_after_success):
            attempt += 1
            await self._post(txn, body, attempt, "duplicate")

    async def drain(self) -> None:
        """Wait for every notification under way (tests; a short `time_scale` keeps it quick)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._own_session and self._session is not None:
            await self._session.close()

    def write_service_files(self, directory: str | Path) -> dict[str, str]:
        """Leave the merchant's private key and the platform public key for the service; returns
        the service's settings (WECHATPAY_...) that go with them."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        key, pub = d / "apiclient_key.pem", d / "pub_key.pem"
        key.write_text(self.keys.merchant_private_pem)
        key.chmod(0o600)
        pub.write_text(self.keys.platform_public_pem)
        return {"WECHATPAY_MCHID": self.mchid, "WECHATPAY_API_V3_KEY": self.api_v3_key,
                "WECHATPAY_PRIVATE_KEY_PATH": str(key), "WECHATPAY_CERT_SERIAL_NO": self.keys.merchant_serial,
                "WECHATPAY_PUBLIC_KEY_PATH": str(pub), "WECHATPAY_PUBLIC_KEY_ID": self.keys.public_key_id}


# --- HTTP ---------------------------------------------------------------------------------------


def _state(request: web.Request) -> PayState:
    return request.app[PAY_STATE]  # type: ignore[return-value]


def _error(state: PayState, status: int, code: str, message: str) -> web.Response:
    body = json.dumps({"code": code, "message": message}, ensure_ascii=False)
    return web.Response(status=status, text=body, content_type="application/json", headers=state.signed_headers(body))


def _ok(state: PayState, payload: Optional[dict[str, Any]], status: int = 200) -> web.Response:
    body = "" if payload is None else json.dumps(payload, ensure_ascii=False)
    headers = state.signed_headers(body)
    if payload is None:
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


async def _authorized(request: web.Request) -> tuple[str, Optional[web.Response]]:
    state = _state(request)
    body = await request.text()
    why = state.check_authorization(request.method, request.path_qs, request.headers.get("Authorization", ""), body)
    if why:
        return body, _error(state, 401, "SIGN_ERROR", why)
    return body, None


async def jsapi(request: web.Request) -> web.Response:
    state = _state(request)
    body, refused = await _authorized(request)
    if refused:
        return refused
    try:
        req = json.loads(body)
        total = req["amount"]["total"]
        openid = req["payer"]["openid"]
        fields = (req["appid"], req["mchid"], req["description"], req["out_trade_no"], req["notify_url"])
    except (ValueError, KeyError, TypeError):
        return _error(state, 400, "PARAM_ERROR", "缺少必填参数")
    appid, mchid, description, out_trade_no, notify_url = fields
    if mchid != state.mchid:
        return _error(state, 400, "MCH_NOT_EXISTS", "商户号不存在")
    if appid != state.appid:
        return _error(state, 400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
    if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
        return _error(state, 400, "PARAM_ERROR", "amount.total 应为正整数（分）")
    if not re.fullmatch(r"[A-Za-z0-9_\-|*]{6,32}", str(out_trade_no)):
        return _error(state, 400, "PARAM_ERROR", "out_trade_no 格式错误")
    if not str(notify_url).startswith(("http://", "https://")):
        return _error(state, 400, "PARAM_ERROR", "notify_url 格式错误")
    txn = state.transactions.get(out_trade_no)
    if txn is not None:
        if txn.trade_state == "SUCCESS":
            return _error(state, 400, "ORDERPAID", "该订单已支付")
        if txn.trade_state == "CLOSED":
            return _error(state, 400, "ORDERCLOSED", "该订单已关闭")
        if (txn.total, txn.description, txn.payer_openid) != (total, description, openid):
            return _error(state, 400, "INVALID_REQUEST", "商户订单号重复")
    else:
        txn = state.transactions[out_trade_no] = Transaction(
            out_trade_no, appid, mchid, description, notify_url, total, openid, req.get("time_expire"))
    prepay_id = "wx" + secrets.token_hex(15)
    txn.prepay_ids.append(prepay_id)
    state.prepays[prepay_id] = out_trade_no
    return _ok(state, {"prepay_id": prepay_id})


async def query(request: web.Request) -> web.Response:
    state = _state(request)
    _, refused = await _authorized(request)
    if refused:
        return refused
    if request.query.get("mchid") != state.mchid:
        return _error(state, 400, "PARAM_ERROR", "mchid 错误")
    txn = state.transactions.get(request.match_info["out_trade_no"])
    if txn is None:
        return _error(state, 404, "ORDER_NOT_EXIST", "订单不存在")
    return _ok(state, txn.resource())


async def close(request: web.Request) -> web.Response:
    state = _state(request)
    _, refused = await _authorized(request)
    if refused:
        return refused
    txn = state.transactions.get(request.match_info["out_trade_no"])
    if txn is None:
        return _error(state, 404, "ORDER_NOT_EXIST", "订单不存在")
    if txn.trade_state == "SUCCESS":
        return _error(state, 400, "ORDERPAID", "该订单已支付")
    txn.trade_state = "CLOSED"
    return _ok(state, None, 204)


_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>微信支付</title>
<style>body{{font-family:sans-serif;background:#ededed;margin:0}}main{{max-width:420px;margin:0 auto;padding:24px}}
.amt{{font-size:36px;text-align:center;margin:16px 0}}.desc{{text-align:center;color:#555}}
button{{width:100%;padding:12px;background:#07c160;color:#fff;border:0;border-radius:6px;font-size:17px}}
.err{{color:#c00;text-align:center}}</style></head><body><main>{content}</main></body></html>"""


def _page(content: str, status: int = 200) -> web.Response:
    return web.Response(status=status, text=_PAGE.format(content=content), content_type="text/html")


async def cashier(request: web.Request) -> web.Response:
    """What WeChat shows when a page calls getBrandWCPayRequest: checked, then 确认支付."""
    state = _state(request)
    q = request.query
    package = q.get("package", "")
    prepay_id = package.removeprefix("prepay_id=")
    if q.get("appId") != state.appid or q.get("signType") != "RSA" or not state.check_pay_sign(
            q.get("appId", ""), q.get("timeStamp", ""), q.get("nonceStr", ""), package, q.get("paySign", "")):
        return _page('<p class="err">支付验证签名失败</p>', 400)
    txn = state.transactions.get(state.prepays.get(prepay_id, ""))
    if txn is None:
        return _page('<p class="err">订单不存在</p>', 404)
    if txn.trade_state != "NOTPAY":
        return _page(f'<p class="err">{_STATE_DESC[txn.trade_state]}</p>', 409)
    back = q.get("return_url", "")
    return _page(
        f'<p class="desc">{html.escape(txn.description)}</p><p class="amt">¥{txn.total / 100:.2f}</p>'
        f'<form method="post" action="/_emu/pay/confirm"><input type="hidden" name="prepay_id" value="{html.escape(prepay_id)}">'
        f'<input type="hidden" name="return_url" value="{html.escape(back)}"><button type="submit">确认支付</button></form>')


async def confirm(request: web.Request) -> web.Response:
    state = _state(request)
    form = await request.post()
    prepay_id, back = str(form.get("prepay_id", "")), str(form.get("return_url", ""))
    try:
        state.pay(prepay_id)
    except KeyError:
        return _page('<p class="err">订单不存在</p>', 404)
    except ValueError as e:
        return _page(f'<p class="err">{html.escape(str(e))}</p>', 409)
    if back.startswith(("http://", "https://")):
        raise web.HTTPSeeOther(back)
    return _page('<p class="amt">支付成功</p>')


async def control(request: web.Request) -> web.Response:
    """GET: transactions and notification attempts; POST: time_scale, duplicates_after_success."""
    state = _state(request)
    if request.method == "POST":
        body = await request.json()
        if "time_scale" in body:
            state.time_scale = float(body["time_scale"])
        if "duplicates_after_success" in body:
            state.duplicates_after_success = int(body["duplicates_after_success"])
    return web.json_response({
        "mchid": state.mchid, "time_scale": state.time_scale, "duplicates_after_success": state.duplicates_after_success,
        "transactions": [t.resource() for t in state.transactions.values()], "notifications": state.notifications,
    })


def add_pay_routes(app: web.Application, state: PayState) -> PayState:
    app[PAY_STATE] = state
    app.router.add_post("/v3/pay/transactions/jsapi", jsapi)
    app.router.add_get("/v3/pay/transactions/out-trade-no/{out_trade_no}", query)
    app.router.add_post("/v3/pay/transactions/out-trade-no/{out_trade_no}/close", close)
    app.router.add_get("/_emu/pay/cashier", cashier)
    app.router.add_post("/_emu/pay/confirm", confirm)
    app.router.add_route("*", "/_emu/pay", control)

    async def _cleanup(app: web.Application) -> None:
        await state.close()

    app.on_cleanup.append(_cleanup)
    return state



def write_pay_env(state: PayState, directory: str | Path, api_base: str) -> Path:
    """The keys and a KEY=VALUE file of the service's WECHATPAY_* settings (for ZIKAO_CONFIG)."""
    values = state.write_service_files(directory) | {"WECHATPAY_API_BASE": api_base}
    path = Path(directory) / "wechatpay.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path
