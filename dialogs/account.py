"""Account flows: 绑定, 解绑, 修改密码, 切换准考证号, 个人信息 and 修改联系方式.

Passwords are `secret` steps: the engine hands them to the check and never keeps them; the
only trace of a new password in the dialog state is its salted hash between the two entries.
"""
from __future__ import annotations

import asyncio
import logging
import re

from dialogs import fields as F
from dialogs.engine import Ctx, EndFlow, Flow, Step, join
from dialogs.fields import Invalid
from dialogs.services import SmsError
from dialogs.types import Reply
from storage import accounts
from storage.identifiers import mask_id_number, mask_mobile, normalize_id_number
from storage.passwords import hash_password, initial_password, verify_password

log = logging.getLogger("zikao.account")

SMS_TEXT = "【上海自考】您的验证码是{code}，5分钟内有效。如非本人操作，请忽略。"
RESEND_WORDS = frozenset({"重发", "重新发送", "没收到", "再发一次"})
_RESEND = "__resend__"


def _minutes(td) -> int:
    return max(1, int(td.total_seconds() // 60) + (1 if td.total_seconds() % 60 else 0))


def _mask_name(name: str) -> str:
    return name[:1] + "*" * (len(name) - 1) if name else ""


# --- SMS verification, shared by binding and the mobile change -----------------------------------


class SmsCodeField(F.Digits):
    def parse_text(self, text: str):
        if text in RESEND_WORDS:
            return _RESEND
        return super().parse_text(text)


def _sms_step(name: str, purpose: str, mobile_of) -> Step:
    """A step that sends a code to `mobile_of(ctx)` when asked and checks the reply."""

    async def send(ctx: Ctx, *, force: bool) -> str:
        mobile = mobile_of(ctx)
        sent = ctx.scratch.get(f"{name}_sent")
        if sent == mobile and not force:
            return f"验证码已发送到 {mask_mobile(mobile)}，5分钟内有效。"
        if ctx.services is None or ctx.services.sms is None:
            return "短信服务暂时不可用，请稍后再试。"
        code = await accounts.new_sms_code(ctx.db, ctx.user.openid, mobile, purpose)
        if code is None:
            return "验证码发送太频繁，请稍后再回复“重发”。"
        try:
            await ctx.services.sms.send(mobile, SMS_TEXT.format(code=code.code))
        except SmsError as e:
            log.warning("SMS to %s failed: %s", mask_mobile(mobile), e)
            await accounts.forget_sms_code(ctx.db, ctx.user.openid, purpose)
            return "短信发送失败，请稍后回复“重发”再试。"
        ctx.scratch[f"{name}_sent"] = mobile
        return f"验证码已发送到 {mask_mobile(mobile)}，5分钟内有效。"

    async def prompt(ctx: Ctx) -> str:
        status = await send(ctx, force=False)
        return join(status, "请回复6位短信验证码（没收到请回复“重发”）。")

    async def check(ctx: Ctx, code: str):
        mobile = mobile_of(ctx)
        if code == _RESEND:
            status = await send(ctx, force=True)
            raise Invalid(status)
        result = await accounts.check_sms_code(ctx.db, ctx.user.openid, purpose, mobile, code)
        if result == "ok":
            return "verified"
        ctx.scratch.pop(f"{name}_sent", None)
        if result == "wrong":
            ctx.scratch[f"{name}_sent"] = mobile
            raise Invalid("验证码不正确，请核对短信后重新输入。")
        if result == "expired":
            raise Invalid("验证码已过期，请回复“重发”获取新的验证码。")
        if result == "exhausted":
            raise Invalid("验证码输错次数太多，已失效。请回复“重发”获取新的验证码。")
        raise Invalid("请先回复“重发”获取验证码。")

    return Step(name, "短信验证", SmsCodeField(length=6, hint="短信中的6位数字。"), prompt,
                check=check, in_summary=False, when=lambda ctx: True)


# --- 绑定 ----------------------------------------------------------------------------------------


async def _bind_begin(ctx: Ctx):
    if ctx.user.bound:
        return "您已经绑定了考生信息，可以直接查询和办理。\n如需更换绑定，请先回复“解绑”。"
    return None


async def _check_id(ctx: Ctx, id_number: str) -> str:
    left = await accounts.locked_for(ctx.db, id_number)
    if left is not None:
        raise EndFlow(f"该证件号码密码错误次数过多，绑定已暂时锁定。\n请{_minutes(left)}分钟后再试，"
                      "或拨打技术咨询电话 400-0960-990。")
    return id_number


async def _check_password(ctx: Ctx, password: str) -> None:
    id_number = ctx.answers["id_number"]
    left = await accounts.locked_for(ctx.db, id_number)
    if left is not None:
        raise EndFlow(f"该证件号码密码错误次数过多，绑定已暂时锁定。\n请{_minutes(left)}分钟后再试。")
    login = await accounts.check_login(ctx.db, id_number, password, ctx.user.openid)
    if login is None:
        remaining = await accounts.record_failure(ctx.db, id_number, ctx.user.openid)
        log.info("binding: wrong password for %s from %s", mask_id_number(id_number), ctx.user.openid[-6:])
        if remaining <= 0:
            raise EndFlow("密码错误次数过多，该证件号码的绑定已锁定15分钟。\n"
                          "忘记密码可拨打技术咨询电话 400-0960-990。")
        raise Invalid(f"证件号码或密码不正确，还可以再试{remaining}次。\n"
                      "初始密码是证件号码后6位（字母大写）。证件号码输错了请回复“返回”。")
    await accounts.clear_failures(ctx.db, id_number)
    ctx.scratch["candidate_id"] = login.id
    ctx.scratch["name"] = login.name
    ctx.scratch["reserved_mobile"] = login.mobile
    # The first binding, or moving the binding to another WeChat, proves the phone by SMS.
    ctx.scratch["needs_sms"] = (not login.mobile_verified) or login.bound_elsewhere
    return None


def _needs_sms(ctx: Ctx) -> bool:
    return bool(ctx.scratch.get("needs_sms"))


def _bind_mobile(ctx: Ctx) -> str:
    return ctx.answers.get("mobile") or ctx.scratch.get("reserved_mobile") or ""


async def _bind_submit(ctx: Ctx) -> str:
    cid = ctx.scratch["candidate_id"]
    verified = _bind_mobile(ctx) if _needs_sms(ctx) else None
    active = await accounts.bind(ctx.db, ctx.user.openid, cid, verified_mobile=verified)
    ctx.user.candidate_id, ctx.user.admission_number = cid, active
    numbers = await accounts.admission_numbers(ctx.db, cid)
    lines = [f"绑定成功！欢迎您，{_mask_name(ctx.scratch.get('name', ''))}。"]
    if active:
        lines.append(f"当前准考证号：{active}")
    if len(numbers) > 1:
        lines.append(f"您有{len(numbers)}个准考证号，回复“切换准考证号”可以更换。")
    if not ctx.scratch.get("then"):
        lines.append("现在可以查成绩、考试计划，办理各项业务了。")
    return "\n".join(lines)


BIND = Flow(
    name="bind",
    title="绑定考生信息",
    needs_binding=False,
    confirm=False,
    begin=_bind_begin,
    intro="绑定后即可在微信中查询和办理业务，只需绑定一次。",
    steps=[
        Step("id_number", "证件号码", F.IdNumber(), "请输入您的证件号码（身份证号）：", check=_check_id),
        Step("password", "密码", F.Secret(), "请输入考生服务平台的登录密码：\n（初始密码为证件号码后6位，字母大写）",
             secret=True, check=_check_password),
        Step("mobile", "手机号码", F.Mobile(),
             "首次绑定需要验证手机。系统中没有您的预留手机号，请输入您本人的手机号码：",
             when=lambda ctx: _needs_sms(ctx) and not ctx.scratch.get("reserved_mobile")),
        Step("code", "短信验证", SmsCodeField(), "", in_summary=False),  # replaced below
    ],
    submit=_bind_submit,
)
_code = _sms_step("code", "bind", _bind_mobile)
_code.when = _needs_sms
BIND.steps[-1] = _code


# --- 解绑 ----------------------------------------------------------------------------------------


async def _unbind_sure(ctx: Ctx, yes: bool) -> bool:
    if not yes:
        raise EndFlow("好的，没有解除绑定。")
    return yes


async def _unbind_submit(ctx: Ctx) -> str:
    await accounts.unbind(ctx.db, ctx.user.openid)
    ctx.user.candidate_id = ctx.user.admission_number = None
    return "已解除绑定。\n需要时回复“绑定”可以重新绑定。"


UNBIND = Flow(
    name="unbind",
    title="解除绑定",
    confirm=False,
    steps=[Step("sure", "确认解绑", F.YesNo(), "确定要解除绑定吗？解绑后查询和办理需要重新绑定。\n请回复“是”或“否”。",
                check=_unbind_sure)],
    submit=_unbind_submit,
)


# --- 修改密码 ------------------------------------------------------------------------------------


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


async def _check_old(ctx: Ctx, password: str) -> None:
    id_number = await accounts.id_number_of(ctx.db, ctx.user.candidate_id)
    left = await accounts.locked_for(ctx.db, id_number)
    if left is not None:
        raise EndFlow(f"密码错误次数过多，请{_minutes(left)}分钟后再试。")
    if not await accounts.verify_candidate_password(ctx.db, ctx.user.candidate_id, password):
        remaining = await accounts.record_failure(ctx.db, id_number, ctx.user.openid)
        if remaining <= 0:
            raise EndFlow("密码错误次数过多，已暂时锁定15分钟。")
        raise Invalid(f"原密码不正确，还可以再试{remaining}次。")
    await accounts.clear_failures(ctx.db, id_number)
    return None


async def _check_new(ctx: Ctx, password: str) -> None:
    id_number = await accounts.id_number_of(ctx.db, ctx.user.candidate_id)
    problem = password_problem(password, id_number)
    if problem:
        raise Invalid(problem)
    if await accounts.verify_candidate_password(ctx.db, ctx.user.candidate_id, password):
        raise Invalid("新密码不能和原密码相同。")
    ctx.scratch["new_hash"] = await asyncio.to_thread(hash_password, password)
    return None


async def _check_again(ctx: Ctx, password: str) -> None:
    stored = ctx.scratch.get("new_hash") or ""
    if not await asyncio.to_thread(verify_password, password, stored):
        raise Invalid("两次输入的新密码不一致，请再输入一次新密码。\n想重新设置新密码请回复“返回”。")
    return None


async def _password_submit(ctx: Ctx) -> str:
    await accounts.set_password_hash(ctx.db, ctx.user.candidate_id, ctx.scratch.pop("new_hash"))
    return "密码已修改。下次登录考生服务平台请使用新密码。"


PASSWORD = Flow(
    name="password",
    title="修改密码",
    confirm=False,
    steps=[
        Step("old", "原密码", F.Secret(), "请输入原密码：", secret=True, check=_check_old),
        Step("new", "新密码", F.Secret(hint=f"{PASSWORD_RULE}。"),
             f"请输入新密码（{PASSWORD_RULE}）：", secret=True, check=_check_new),
        Step("again", "确认新密码", F.Secret(), "请再输入一次新密码：", secret=True, check=_check_again),
    ],
    submit=_password_submit,
)


# --- 切换准考证号 --------------------------------------------------------------------------------


async def _switch_begin(ctx: Ctx):
    numbers = await accounts.admission_numbers(ctx.db, ctx.user.candidate_id)
    if len(numbers) <= 1:
        return f"您只有一个准考证号{('：' + numbers[0]) if numbers else ''}，不需要切换。"
    return None


async def _number_options(ctx: Ctx):
    numbers = await accounts.admission_numbers(ctx.db, ctx.user.candidate_id)
    return [(n, n + ("（当前）" if n == ctx.user.admission_number else "")) for n in numbers]


async def _switch_submit(ctx: Ctx) -> str:
    number = ctx.answers["number"]
    if not await accounts.set_active_number(ctx.db, ctx.user.openid, ctx.user.candidate_id, number):
        raise Invalid("这个准考证号不属于您，请重新选择。")
    ctx.user.admission_number = number
    return f"已切换到准考证号 {number}，之后的查询和办理都使用它。"


SWITCH = Flow(
    name="switch_number",
    title="切换准考证号",
    confirm=False,
    begin=_switch_begin,
    steps=[Step("number", "准考证号", F.Choice(), "请选择要使用的准考证号：", options=_number_options)],
    submit=_switch_submit,
)


# --- 个人信息 ------------------------------------------------------------------------------------


def _show_profile_value(name: str, value) -> str:
    if value is None or value == "":
        return "未填写"
    if name == "id_number":
        return mask_id_number(value)
    if name in ("mobile", "emergency_mobile"):
        return mask_mobile(value)
    if name == "landline":
        s = str(value)
        return s[:-4].rstrip() + "****" if len(s) > 4 else "****"
    if isinstance(value, bool):
        return "是" if value else "否"
    return str(value)


async def profile_reply(ctx: Ctx) -> Reply:
    from dialogs import materials  # 我的材料 is its own feature; this line is its link from here

    info = await accounts.profile(ctx.db, ctx.user.candidate_id)
    if not info:
        return Reply("没有找到您的考生信息，请回复“解绑”后重新绑定。")
    lines = ["【个人信息】"]
    for name, label in accounts.PROFILE_FIELDS:
        lines.append(f"{label}：{_show_profile_value(name, info.get(name))}")
    if ctx.user.admission_number:
        lines.insert(3, f"当前准考证号：{ctx.user.admission_number}")
    lines.append(await materials.profile_line(ctx))
    lines.append("\n修改手机、邮箱、地址等请回复“修改联系方式”。")
    return Reply("\n".join(lines))


CONTACT_CHOICES = (
    ("mobile", "手机号码"),
    ("email", "电子邮箱"),
    ("mailing_address", "通讯地址"),
    ("postcode", "邮政编码"),
    ("emergency_contact", "紧急联系人"),
    ("emergency_mobile", "紧急联系人手机号"),
)


def _which(name: str):
    return lambda ctx: ctx.answers.get("which") == name


async def _new_mobile_check(ctx: Ctx, mobile: str) -> str:
    info = await accounts.profile(ctx.db, ctx.user.candidate_id)
    if info.get("mobile") == mobile:
        raise Invalid("这就是您现在的手机号码，不需要修改。")
    # A different number must be verified again.
    ctx.scratch.pop("code_sent", None)
    ctx.answers.pop("code", None)
    return mobile


async def _contact_submit(ctx: Ctx) -> str:
    which = ctx.answers["which"]
    if which == "mobile" and ctx.answers.get("code") != "verified":
        raise Invalid("新手机号还没有通过短信验证。")
    await accounts.update_contacts(ctx.db, ctx.user.candidate_id, {which: ctx.answers[which]})
    label = dict(CONTACT_CHOICES)[which]
    return f"{label}已更新。回复“个人信息”可以查看。"


_contact_code = _sms_step("code", "mobile", lambda ctx: ctx.answers.get("mobile", ""))
_contact_code.when = _which("mobile")

CONTACT = Flow(
    name="contact",
    title="修改联系方式",
    steps=[
        Step("which", "修改项目", F.Choice(options=CONTACT_CHOICES), "请选择要修改的项目：",
             options=None),
        Step("mobile", "新手机号码", F.Mobile(), "请输入新的手机号码：", when=_which("mobile"), check=_new_mobile_check),
        _contact_code,
        Step("email", "新电子邮箱", F.Email(), "请输入新的电子邮箱：", when=_which("email")),
        Step("mailing_address", "新通讯地址", F.Text(min_len=5, max_len=100, hint="写到门牌号，5-100个字。"),
             "请输入新的通讯地址（写到门牌号）：", when=_which("mailing_address")),
        Step("postcode", "新邮政编码", F.Postcode(), "请输入新的邮政编码（6位数字）：", when=_which("postcode")),
        Step("emergency_contact", "紧急联系人", F.Text(min_len=2, max_len=20, hint="联系人姓名，2-20个字。"),
             "请输入紧急联系人姓名：", when=_which("emergency_contact")),
        Step("emergency_mobile", "紧急联系人手机号", F.Mobile(), "请输入紧急联系人手机号码：", when=_which("emergency_mobile")),
    ],
    submit=_contact_submit,
)

FLOWS = (BIND, UNBIND, PASSWORD, SWITCH, CONTACT)
