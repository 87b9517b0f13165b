"""Tencent Cloud SMS API 3.0 (`SendSms`, 2021-01-11) as the emulator's SMS provider speaks it.

`POST /` with the `X-TC-*` headers, as `https://sms.tencentcloudapi.com/` takes it. Every request's
TC3-HMAC-SHA256 signature is recomputed with Tencent's own SDK (tencentcloud-sdk-python-common,
the signing its clients use), so the bot's independent implementation (bot/sms_tencent.py) is
checked against the provider's reference, not against itself. Then, as the provider does:

| check | answer (`Response.Error.Code`, HTTP 200) |
| --- | --- |
| missing or malformed Authorization, wrong signature, signed headers other than content-type;host | AuthFailure.SignatureFailure |
| X-TC-Timestamp more than 5 minutes from the provider's clock | AuthFailure.SignatureExpire |
| unknown SecretId | AuthFailure.SecretIdNotFound |
| X-TC-Action not SendSms / X-TC-Version not 2021-01-11 | InvalidAction / NoSuchVersion |
| body not a JSON object with the fields | InvalidParameter |
| SmsSdkAppId not the account's | InvalidParameterValue.SdkAppIdNotExist |
| SignName not approved | FailedOperation.SignatureIncorrectOrUnapproved |
| TemplateId not approved | FailedOperation.TemplateIncorrectOrUnapproved |
| TemplateParamSet not the template's number of parameters | FailedOperation.TemplateParamSetNotMatchApprovedTemplate |

Each number then gets its status in `SendStatusSet`: `Ok`, or InvalidParameterValue.IncorrectPhoneNumber
(not +86 and a mainland mobile), LimitExceeded.PhoneNumberThirtySecondLimit /
LimitExceeded.PhoneNumberOneHourLimit (the gateway's per-number limits), or a fault's
FailedOperation.PhoneNumberInBlacklist (`errcode` 1007). Other fault `errcode`s answer
InternalError.SendAndRecvFail; `delay` and `drop` as for the generic gateway. Accepted messages are
rendered with the signature (【上海自考】...) and recorded in the same `SmsState`, so they show in
the chat page's 短信 panel.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aiohttp import web

from .sms import CARRIER_REFUSED, MINUTE_LIMIT, TOO_FREQUENT, SmsRefusal, SmsState, finished_even_if_abandoned, take_fault

SIGNATURE_WINDOW = 300  # seconds
_AUTH = re.compile(r"TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d{2}-\d{2})/([a-z]+)/tc3_request, "
                   r"SignedHeaders=([a-z;-]+), Signature=([0-9a-f]{64})")
_PHONE = re.compile(r"\+861[3-9][0-9]{9}")


@dataclass
class TencentAccount:
    """What the emulated Tencent Cloud account has registered."""

    secret_id: str = "AKIDzikaoDemoSecretId000000000000000"
    secret_key: str = "zikao-demo-tencent-secret-key-00"
    sdk_app_id: str = "1400000001"
    sign_names: set[str] = field(default_factory=lambda: {"上海自考"})
    # Approved templates: id -> text with {1}, {2} ... for the parameters.
    templates: dict[str, str] = field(default_factory=lambda: {
        "1000001": "您的验证码是{1}，{2}分钟内有效。如非本人操作，请忽略。",
    })


TENCENT_KEY = web.AppKey("emulator_tencent_sms", TencentAccount)


def tencent_account(app: web.Application) -> TencentAccount:
    return app[TENCENT_KEY]


def _reference_signature(secret_key: str, *, method: str, path: str, host: str, content_type: str,
                         body: bytes, timestamp: str, date: str, service: str) -> str:
    """The signature Tencent's SDK computes for this request (its AbstractClient signing)."""
    from tencentcloud.common.abstract_client import AbstractClient

    req = SimpleNamespace(method=method, uri=path, data=body,
                          header={"Content-Type": content_type, "Host": host, "X-TC-Timestamp": timestamp})
    return AbstractClient._get_tc3_signature(None, None, req, date, service, secret_key)


def _response(payload: dict[str, Any]) -> web.Response:
    payload["RequestId"] = str(uuid.uuid4())
    return web.json_response({"Response": payload}, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _error(code: str, message: str) -> web.Response:
    return _response({"Error": {"Code": code, "Message": message}})


def _render(template: str, params: list[str]) -> str:
    for i, value in enumerate(params, 1):
        template = template.replace("{%d}" % i, value)
    return template


def add_tencent_routes(app: web.Application, sms: SmsState, account: TencentAccount | None = None) -> TencentAccount:
    account = account or TencentAccount()
    app[TENCENT_KEY] = account

    async def serve(request: web.Request) -> web.StreamResponse:
        raw, fault, dropped = await take_fault(sms, request)
        if dropped is not None:
            return dropped
        errcode = fault.errcode if fault is not None else None
        blacklisted = errcode == CARRIER_REFUSED
        if errcode is not None and not blacklisted:
            return _error("InternalError.SendAndRecvFail", "injected fault")
        refused = _check_request(request, raw, account, sms.now())
        if refused is not None:
            return refused
        body = json.loads(raw.decode("utf-8"))
        text = "【%s】%s" % (body["SignName"], _render(account.templates[body["TemplateId"]], body["TemplateParamSet"]))
        statuses = []
        for phone in body["PhoneNumberSet"]:
            status = {"PhoneNumber": phone, "SerialNo": "", "Fee": 0, "SessionContext": "", "IsoCode": "CN"}
            if not isinstance(phone, str) or not _PHONE.fullmatch(phone):
                status.update(Code="InvalidParameterValue.IncorrectPhoneNumber", Message="incorrect phone number")
            elif blacklisted:
                status.update(Code="FailedOperation.PhoneNumberInBlacklist", Message="phone number in blacklist")
            else:
                result = sms.submit(phone[3:], text)
                if isinstance(result, SmsRefusal):
                    code = {TOO_FREQUENT: "LimitExceeded.PhoneNumberThirtySecondLimit",
                            MINUTE_LIMIT: "LimitExceeded.PhoneNumberOneHourLimit"}.get(
                        result.code, "InvalidParameterValue.IncorrectPhoneNumber")
                    status.update(Code=code, Message=result.message)
                else:
                    status.update(Code="Ok", Message="send success", Fee=result["segments"],
                                  SerialNo=f"2028:{secrets.randbelow(10**18)}")
            statuses.append(status)
        return _response({"SendStatusSet": statuses})

    app.router.add_post("/", finished_even_if_abandoned(sms, serve))
    return account


def _check_request(request: web.Request, raw: bytes, account: TencentAccount, now: float) -> web.Response | None:
    """The provider's refusal of the call as a whole, or None when it may go on."""
    h = request.headers
    m = _AUTH.fullmatch(h.get("Authorization", ""))
    if m is None or m.group(4) != "content-type;host":
        return _error("AuthFailure.SignatureFailure", "the Authorization header is missing or malformed")
    secret_id, date, service, _signed, signature = m.groups()
    if h.get("X-TC-Action") != "SendSms":
        return _error("InvalidAction", f"action {h.get('X-TC-Action')!r} not found")
    if h.get("X-TC-Version") != "2021-01-11":
        return _error("NoSuchVersion", "the API version does not exist")
    try:
        timestamp = int(h.get("X-TC-Timestamp", ""))
    except ValueError:
        return _error("AuthFailure.SignatureFailure", "X-TC-Timestamp is not a number")
    if abs(now - timestamp) > SIGNATURE_WINDOW:
        return _error("AuthFailure.SignatureExpire", "the signature has expired (timestamp too far from now)")
    if secret_id != account.secret_id:
        return _error("AuthFailure.SecretIdNotFound", "the SecretId does not exist")
    expected_date = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d")
    expected = _reference_signature(account.secret_key, method=request.method, path=request.path,
                                    host=h.get("Host", ""), content_type=h.get("Content-Type", ""), body=raw,
                                    timestamp=str(timestamp), date=expected_date, service="sms")
    if date != expected_date or service != "sms" or not secrets.compare_digest(signature, expected):
        return _error("AuthFailure.SignatureFailure", "the signature does not match")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        body = None
    fields = ("PhoneNumberSet", "SmsSdkAppId", "SignName", "TemplateId")
    if (not isinstance(body, dict) or any(f not in body for f in fields)
            or not isinstance(body["PhoneNumberSet"], list) or not body["PhoneNumberSet"]
            or not isinstance(body.get("TemplateParamSet", []), list)):
        return _error("InvalidParameter", "the request body is not a valid SendSms request")
    if body["SmsSdkAppId"] != account.sdk_app_id:
        return _error("InvalidParameterValue.SdkAppIdNotExist", "SmsSdkAppId does not exist")
    if body["SignName"] not in account.sign_names:
        return _error("FailedOperation.SignatureIncorrectOrUnapproved", "the signature is not approved")
    template = account.templates.get(str(body["TemplateId"]))
    if template is None:
        return _error("FailedOperation.TemplateIncorrectOrUnapproved", "the template is not approved")
    params = body.get("TemplateParamSet", [])
    if len(params) != len(re.findall(r"\{\d+\}", template)) or not all(isinstance(p, str) for p in params):
        return _error("FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
                      "TemplateParamSet does not match the approved template")
    return None
