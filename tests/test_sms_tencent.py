"""Tencent Cloud SMS: bot.sms_tencent.TencentSmsGateway against the emulator speaking SendSms
(emulator/sms_tencent.py, which checks every signature with Tencent's own SDK signing)."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import aiohttp
import pytest

from bot.config import ConfigError, load_settings
from bot.sms import build_gateway
from bot.sms_tencent import TencentSmsGateway, tc3_authorization, template_params
from dialogs.account import SMS_TEXT
from dialogs.services import SmsError
from emulator.api import EmulatorState
from emulator.app import create_emulator_app
from emulator.sms import CARRIER_REFUSED, sms_state
from emulator.sms_tencent import TencentAccount, _reference_signature, tencent_account
from tests.test_chat_page import APP_ID, APP_SECRET, TOKEN

MOBILE = "13812341234"
CODE = "482916"
TEXT = SMS_TEXT.format(code=CODE)


@pytest.fixture
async def emu(aiohttp_client):
    state = EmulatorState(APP_ID, APP_SECRET, seed=5)
    app = create_emulator_app(bot_url="http://127.0.0.1:9/wechat", token=TOKEN, app_id=APP_ID,
                              app_secret=APP_SECRET, aes_key=None, mode="plain", state=state)
    client = await aiohttp_client(app)
    return SimpleNamespace(client=client, state=state, sms=sms_state(app), account=tencent_account(app),
                           base=str(client.make_url("")).rstrip("/"))


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def gateway_for(emu, session, **kw) -> TencentSmsGateway:
    a: TencentAccount = emu.account
    args = dict(secret_id=a.secret_id, secret_key=a.secret_key, sdk_app_id=a.sdk_app_id, sign_name="上海自考",
                template_id="1000001", endpoint=emu.base, timeout=2.0, clock=emu.state.now)
    return TencentSmsGateway(session, **(args | kw))


async def refused(gateway, mobile=MOBILE, text=TEXT) -> str:
    with pytest.raises(SmsError) as e:
        await gateway.send(mobile, text)
    return str(e.value)


def test_signing_matches_tencents_sdk():
    body = b'{"PhoneNumberSet":["+8613812341234"]}'
    auth = tc3_authorization("AKIDexample", "secret-key", host="sms.tencentcloudapi.com", path="/", body=body,
                             timestamp=1700000000)
    assert auth.startswith("TC3-HMAC-SHA256 Credential=AKIDexample/2023-11-14/sms/tc3_request, "
                           "SignedHeaders=content-type;host, Signature=")
    reference = _reference_signature("secret-key", method="POST", path="/", host="sms.tencentcloudapi.com",
                                     content_type="application/json; charset=utf-8", body=body,
                                     timestamp="1700000000", date="2023-11-14", service="sms")
    assert auth.endswith(f"Signature={reference}")


def test_the_code_and_its_minutes_are_the_template_parameters():
    assert template_params(TEXT) == [CODE, "5"]
    assert template_params("【上海自考】您的申请已通过。") is None


async def test_a_code_reaches_the_phone_through_the_approved_template(emu, session, caplog):
    caplog.set_level(logging.DEBUG)
    await gateway_for(emu, session).send(MOBILE, TEXT)
    (msg,) = emu.sms.messages
    assert msg["mobile"] == MOBILE and msg["text"] == TEXT  # 【上海自考】 + the template, filled in
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert MOBILE not in logged and CODE not in logged and emu.account.secret_key not in logged


async def test_the_provider_refuses_what_it_should(emu, session):
    assert (await refused(gateway_for(emu, session, secret_key="wrong-key"))).startswith(
        "refused: AuthFailure.SignatureFailure")
    assert (await refused(gateway_for(emu, session, secret_id="AKIDnobody"))).startswith(
        "refused: AuthFailure.SecretIdNotFound")
    assert (await refused(gateway_for(emu, session, clock=lambda: emu.state.now() - 600))).startswith(
        "refused: AuthFailure.SignatureExpire")
    assert (await refused(gateway_for(emu, session, sdk_app_id="1400999999"))).startswith(
        "refused: InvalidParameterValue.SdkAppIdNotExist")
    assert (await refused(gateway_for(emu, session, sign_name="别的签名"))).startswith(
        "refused: FailedOperation.SignatureIncorrectOrUnapproved")
    assert (await refused(gateway_for(emu, session, template_id="999"))).startswith(
        "refused: FailedOperation.TemplateIncorrectOrUnapproved")
    assert (await refused(gateway_for(emu, session), mobile="12345")).startswith(
        "refused: InvalidParameterValue.IncorrectPhoneNumber")
    assert emu.sms.messages == []


async def test_a_text_without_a_code_is_not_sent(emu, session):
    reason = await refused(gateway_for(emu, session), text="【上海自考】您的申请已通过。")
    assert "no approved template" in reason and emu.sms.messages == []


async def test_limits_faults_and_timeouts(emu, session):
    gw = gateway_for(emu, session)
    await gw.send(MOBILE, TEXT)
    reason = await refused(gw)
    assert reason.startswith("refused: LimitExceeded.PhoneNumberThirtySecondLimit") and CODE not in reason
    emu.state.advance(60)
    emu.state.faults.add("sms", errcode=CARRIER_REFUSED, times=1)
    assert (await refused(gw)).startswith("refused: FailedOperation.PhoneNumberInBlacklist")
    emu.state.faults.add("sms", errcode=1503, times=1)
    assert (await refused(gw)).startswith("refused: InternalError.SendAndRecvFail")
    emu.state.faults.add("sms", delay=1.0, times=1)
    assert await refused(gateway_for(emu, session, timeout=0.2)) == "no answer within 0.2 s"
    emu.state.faults.add("sms", drop=True, times=1)
    assert (await refused(gw)).startswith("unreachable")


def test_settings_choose_the_provider():
    base = {"SMS_PROVIDER": "tencent", "TENCENT_SMS_SECRET_ID": "AKIDx", "TENCENT_SMS_SECRET_KEY": "k3y-value",
            "TENCENT_SMS_SDK_APP_ID": "1400000001", "TENCENT_SMS_TEMPLATE_ID": "1000001"}
    settings = load_settings(base)
    assert settings.describe()["tencent_sms_secret_key"] == "set"
    gw = build_gateway(settings, session=None)
    assert isinstance(gw, TencentSmsGateway) and gw.url == "https://sms.tencentcloudapi.com/"
    assert "k3y-value" not in repr(gw)
    with pytest.raises(ConfigError, match="TENCENT_SMS_TEMPLATE_ID"):
        load_settings({k: v for k, v in base.items() if k != "TENCENT_SMS_TEMPLATE_ID"})
    with pytest.raises(ConfigError, match="SMS_PROVIDER"):
        load_settings({"SMS_PROVIDER": "carrier-pigeon"})
