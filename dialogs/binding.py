"""Binding and password change as plain steps, for the H5 pages (bot/h5/) to drive.

Passwords never pass through the chat: the chat sends a link, the page (opened through WeChat's
web authorisation, so the openid is WeChat's word, not the visitor's) posts its forms here.

The route of a binding, one stage after another (`BindState.stage`):

    credentials ─ 证件号码 + 密码 ─┬─ a verified mobile on file ──────────────▶ code
                                  └─ none: identity ─ 姓名 + 准考证号 + 手机号 ─▶ code
    code ─ the SMS code sent to that mobile ─┬─ still the initial password ─▶ new_password ─▶ done
                                             └──────────────────────────────────────────────▶ done

Every binding proves the mobile by SMS, also a rebinding of the same WeChat after 解绑: an ID
number and its initial password (the ID's last six) are never enough. Wrong passwords and
identity details are throttled per (ID, openid) and per openid (storage/accounts.py); the record's
bound WeChat is told of failures, and a WeChat the binding moves away from is told of the move.
"""
from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from dialogs import fields as F
from dialogs.fields import Invalid
from dialogs.queries import mask_admission
from dialogs.services import Services, SmsError
from storage import accounts
from storage.db import Database
from storage.identifiers import mask_id_number, mask_mobile, normalize_id_number
from storage.passwords import hash_password, initial_password

log = logging.getLogger("zikao.binding")

SMS_TEXT = "【上海自考】您的验证码是{code}，5分钟内有效。如非本人操作，请忽略。"
HELPLINE = "400-0960-990"
WRONG_LOGIN = "证件号码或密码不正确，还可以再试{n}次。初始密码是证件号码后6位（字母大写）。"
WRONG_IDENTITY = "姓名或准考证号与证件号码不符，还可以再试{n}次。"
ALERT_FAILED = ("【账户安全提醒】有人在其他微信上用您的证件号码尝试绑定，密码或身份信息输入错误。"
                "如果不是您本人操作，请尽快修改密码；他人没有您的手机验证码无法完成绑定。")
ALERT_MOVED = ("【账户安全提醒】您的考生信息（证件号码 {masked}）已在另一个微信上完成绑定，本微信已解除绑定。"
               "如果不是您本人操作，请立即拨打技术咨询电话 " + HELPLINE + "。")


def _minutes(td) -> int:
    s = td.total_seconds()
    return max(1, int(s // 60) + (1 if s % 60 else 0))


def lock_text(lock: accounts.Lock) -> str:
    if lock.scope == "openid":
        return (f"您输入错误的次数太多，请{_minutes(lock.left)}分钟后再试。"
                f"忘记密码请拨打技术咨询电话 {HELPLINE}。")
    return (f"该证件号码在本微信上密码错误次数过多，请{_minutes(lock.left)}分钟后再试。"
            f"忘记密码请拨打技术咨询电话 {HELPLINE}。")


# The new-password rule; the consultation service quotes it from here (dialogs/faq/facts.py).
PASSWORD_MIN, PASSWORD_MAX = 8, 32
PASSWORD_RULE = f"{PASSWORD_MIN}-{PASSWORD_MAX}位，同时包含字母和数字"


def password_problem(password: str, id_number: str) -> str | None:
    """Why a new password is too weak, or None."""
    if len(password) < PASSWORD_MIN:
        return f"新密码至少{PASSWORD_MIN}位。"
    if len(password) > PASSWORD_MAX:
        return f"新密码最多{PASSWORD_MAX}位。"
    if not re.search(r"[A-Za-z]", password) or not re.search(r"\d", password):
        return "新密码需要同时包含字母和数字。"
    if len(set(password)) < 4:
        return "新密码太简单了，请换一个。"
    if id_number and (password.upper() == initial_password(id_number) or normalize_id_number(id_number) in password.upper()):
        return "新密码不能是证件号码或初始密码。"
    return None


@dataclass
class BindState:
    """Where one visitor is in the binding; kept (as a dict) in the page's encrypted session."""

    stage: str = "credentials"  # credentials / identity / code / new_password / done
    candidate_id: Optional[int] = None
    mobile: Optional[str] = None  # where the code goes
    mobile_is_new: bool = False  # proven by the code: stored as the verified reserved mobile
    initial: bool = False  # the password is still the initial one: replace it before binding
    code_sent: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[dict[str, Any]]) -> "BindState":
        known = {k: v for k, v in (d or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class Outcome:
    state: BindState
    error: Optional[str] = None  # shown in red above the form
    notice: Optional[str] = None  # shown in green (code sent, binding done)
    done_lines: list[str] = field(default_factory=list)


async def send_code(db: Database, services: Optional[Services], openid: str, mobile: str, purpose: str) -> Optional[str]:
    """Send a code to `mobile`; None when sent, else the reason the candidate reads."""
    if services is None or services.sms is None:
        return "短信服务暂时不可用，请稍后再试。"
    code = await accounts.new_sms_code(db, openid, mobile, purpose)
    if code is None:
        return "验证码发送太频繁，请稍后再点“重新发送”。"
    try:
        await services.sms.send(mobile, SMS_TEXT.format(code=code.code))
    except SmsError as e:
        log.warning("SMS to %s failed: %s", mask_mobile(mobile), e)
        await accounts.forget_sms_code(db, openid, purpose)
        return "短信发送失败，请稍后点“重新发送”再试。"
    return None


async def _to_code(db: Database, services: Optional[Services], openid: str, state: BindState) -> Outcome:
    state.stage = "code"
    problem = await send_code(db, services, openid, state.mobile or "", "bind")
    state.code_sent = problem is None
    if problem:
        return Outcome(state, error=problem)
    return Outcome(state, notice=f"验证码已发送到 {mask_mobile(state.mobile or '')}，5分钟内有效。")


def _parse(field: F.Field, text: str) -> Any:
    return field.parse_text((text or "").strip())


async def submit_credentials(db: Database, services: Optional[Services], openid: str,
                             id_text: str, password: str) -> Outcome:
    state = BindState()
    try:
        id_number = _parse(F.IdNumber(), id_text)
    except Invalid as e:
        return Outcome(state, error=e.reason)
    if not password:
        return Outcome(state, error="请输入密码。")
    lock = await accounts.locked_for(db, id_number, openid)
    if lock is not None:
        return Outcome(state, error=lock_text(lock))
    login = await accounts.check_login(db, id_number, password, openid)
    if login is None:
        left = await accounts.record_failure(db, id_number, openid, alert_text=ALERT_FAILED)
        log.info("binding: wrong password for %s", mask_id_number(id_number))
        if left <= 0:
            lock = await accounts.locked_for(db, id_number, openid)
            return Outcome(state, error=lock_text(lock) if lock else WRONG_LOGIN.format(n=0))
        return Outcome(state, error=WRONG_LOGIN.format(n=left))
    await accounts.clear_failures(db, id_number, openid)
    state.candidate_id = login.id
    state.initial = login.initial_password
    if login.mobile_verified and login.mobile:
        state.mobile = login.mobile
        return await _to_code(db, services, openid, state)
    state.stage = "identity"
    return Outcome(state, notice="系统中没有您验证过的手机号。请核对身份信息，并验证您本人的手机号码。")


async def submit_identity(db: Database, services: Optional[Services], openid: str, state: BindState,
                          name: str, admission_text: str, mobile_text: str) -> Outcome:
    if state.stage != "identity" or state.candidate_id is None:
        return Outcome(BindState(), error="请重新输入证件号码和密码。")
    id_number = await accounts.id_number_of(db, state.candidate_id)
    lock = await accounts.locked_for(db, id_number, openid)
    if lock is not None:
        return Outcome(BindState(), error=lock_text(lock))
    try:
        number = _parse(F.AdmissionNo(), admission_text)
        mobile = _parse(F.Mobile(), mobile_text)
        if not (name or "").strip():
            raise Invalid("请输入姓名。")
    except Invalid as e:
        return Outcome(state, error=e.reason)
    if not await accounts.check_identity(db, state.candidate_id, name, number):
        left = await accounts.record_failure(db, id_number, openid, alert_text=ALERT_FAILED)
        if left <= 0:
            return Outcome(BindState(), error=lock_text(await accounts.locked_for(db, id_number, openid)
                                                       or accounts.Lock("pair", accounts.LOCK_WINDOW)))
        return Outcome(state, error=WRONG_IDENTITY.format(n=left))
    state.mobile, state.mobile_is_new = mobile, True
    return await _to_code(db, services, openid, state)


async def resend_code(db: Database, services: Optional[Services], openid: str, state: BindState) -> Outcome:
    if state.stage != "code" or not state.mobile:
        return Outcome(state, error="请先完成上一步。")
    return await _to_code(db, services, openid, state)


async def submit_code(db: Database, openid: str, state: BindState, code_text: str) -> Outcome:
    if state.stage != "code" or state.candidate_id is None or not state.mobile:
        return Outcome(BindState(), error="请重新输入证件号码和密码。")
    code = (code_text or "").strip()
    if not re.fullmatch(r"\d{6}", code):
        return Outcome(state, error="验证码是短信中的6位数字。")
    result = await accounts.check_sms_code(db, openid, "bind", state.mobile, code)
    if result == "wrong":
        return Outcome(state, error="验证码不正确，请核对短信后重新输入。")
    if result == "expired":
        return Outcome(state, error="验证码已过期，请点“重新发送”获取新的验证码。")
    if result == "exhausted":
        return Outcome(state, error="验证码输错次数太多，已失效。请点“重新发送”获取新的验证码。")
    if result != "ok":
        return Outcome(state, error="请先点“重新发送”获取验证码。")
    if state.initial:
        state.stage = "new_password"
        return Outcome(state, notice="手机验证成功。您还在使用初始密码，请先设置新密码，设置后即完成绑定。")
    return await _complete(db, openid, state, None)


async def submit_new_password(db: Database, openid: str, state: BindState, new: str, again: str) -> Outcome:
    if state.stage != "new_password" or state.candidate_id is None:
        return Outcome(BindState(), error="请重新输入证件号码和密码。")
    id_number = await accounts.id_number_of(db, state.candidate_id)
    problem = password_problem(new or "", id_number)
    if problem:
        return Outcome(state, error=problem)
    if new != again:
        return Outcome(state, error="两次输入的新密码不一致，请重新输入。")
    return await _complete(db, openid, state, await asyncio.to_thread(hash_password, new))


async def _complete(db: Database, openid: str, state: BindState, new_hash: Optional[str]) -> Outcome:
    cid = state.candidate_id
    assert cid is not None
    id_number = await accounts.id_number_of(db, cid)
    numbers = await accounts.admission_numbers(db, cid)
    lines = await success_lines(db, cid, numbers[0] if numbers else None, len(numbers))
    await accounts.bind(db, openid, cid, verified_mobile=state.mobile if state.mobile_is_new else None,
                        new_password_hash=new_hash, moved_text=ALERT_MOVED.format(masked=mask_id_number(id_number)),
                        bound_text="\n".join(["绑定成功！", *lines[:-1], "现在可以查成绩、考试计划，办理各项业务了。"]))
    state.stage = "done"
    return Outcome(state, notice="绑定成功！", done_lines=lines)


async def success_lines(db: Database, candidate_id: int, active: Optional[str], count: int) -> list[str]:
    """What a finished binding says (the page, and the chat through a push); the 准考证号 masked
    like in every other reply. `active` is the number binding makes active (the newest)."""
    info = await accounts.profile(db, candidate_id)
    name = info.get("name") or ""
    lines = [f"欢迎您，{name[:1] + '*' * (len(name) - 1)}。"]
    if active:
        lines.append(f"当前准考证号：{mask_admission(active)}")
    if count > 1:
        lines.append(f"您有{count}个准考证号，在聊天中回复“切换准考证号”可以更换。")
    lines.append("请返回聊天窗口，查成绩、考试计划，办理各项业务。")
    return lines


async def change_password(db: Database, openid: str, candidate_id: int, old: str, new: str, again: str) -> Outcome:
    """The 修改密码 page: old password (throttled like binding), a strong new one, twice."""
    state = BindState(stage="password", candidate_id=candidate_id)
    id_number = await accounts.id_number_of(db, candidate_id)
    lock = await accounts.locked_for(db, id_number, openid)
    if lock is not None:
        return Outcome(state, error=lock_text(lock))
    if not await accounts.verify_candidate_password(db, candidate_id, old or ""):
        left = await accounts.record_failure(db, id_number, openid)
        if left <= 0:
            return Outcome(state, error=lock_text(await accounts.locked_for(db, id_number, openid)
                                                  or accounts.Lock("pair", accounts.LOCK_WINDOW)))
        return Outcome(state, error=f"原密码不正确，还可以再试{left}次。")
    await accounts.clear_failures(db, id_number, openid)
    problem = password_problem(new or "", id_number)
    if problem:
        return Outcome(state, error=problem)
    if new != again:
        return Outcome(state, error="两次输入的新密码不一致，请重新输入。")
    if new == old:
        return Outcome(state, error="新密码不能和原密码相同。")
    await accounts.set_password_hash(db, candidate_id, await asyncio.to_thread(hash_password, new), openid=openid)
    state.stage = "done"
    return Outcome(state, notice="密码已修改。下次登录考生服务平台请使用新密码。")
