"""Account flows: 绑定, 解绑, 修改密码, 切换准考证号, 个人信息 and 修改联系方式.

绑定 and 修改密码 answer with a link to their H5 page (dialogs/binding.py): no password is ever
typed into the chat. The other flows run in the chat.
"""
from __future__ import annotations

import html
import logging
from typing import Optional

from dialogs import fields as F
from dialogs.binding import SMS_TEXT
from dialogs.engine import Ctx, EndFlow, Flow, Step, join
from dialogs.fields import Invalid
from dialogs.queries import mask_admission
from dialogs.services import SmsError
from dialogs.types import Reply
from storage import accounts
from storage.identifiers import mask_id_number, mask_mobile

log = logging.getLogger("zikao.account")

RESEND_WORDS = frozenset({"重发", "重新发送", "没收到", "再发一次"})
_RESEND = "__resend__"


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
# Binding and password changes happen on H5 pages (dialogs/binding.py, bot/h5/): a password typed
# in the chat would stay in the chat history. The chat sends the link.


def page_link(ctx: Ctx, page: str, label: str) -> Optional[str]:
    """`<a href="…">label</a>` to one of the H5 pages, or None when the service has no pages."""
    web_page = getattr(ctx.services, "web_page", None) if ctx.services is not None else None
    if web_page is None:
        return None
    return f'<a href="{html.escape(web_page(page), quote=True)}">{label}</a>'


PAGE_MISSING = "绑定页面暂时无法打开，请稍后再试，或拨打技术咨询电话 400-0960-990。"


async def _bind_begin(ctx: Ctx):
    if ctx.user.bound:
        return "您已经绑定了考生信息，可以直接查询和办理。\n如需更换绑定，请先回复“解绑”。"
    link = page_link(ctx, "bind", "点击这里完成绑定")
    if link is None:
        return PAGE_MISSING
    return ("请在页面中输入证件号码和密码，并用手机验证码完成绑定：\n" + link +
            "\n密码只在页面中填写，请不要在聊天中发送。绑定完成后回到这里即可查询和办理。")


# A flow with no steps: its begin always answers (the link, or why not), so it never starts. It
# stays a flow so that "绑定", the menu key and "business needs binding first" reach it the same
# way; the steps themselves are on the H5 page (dialogs/binding.py).
BIND = Flow(
    name="bind",
    title="绑定考生信息",
    needs_binding=False,
    confirm=False,
    begin=_bind_begin,
    steps=[],
)


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


async def _password_begin(ctx: Ctx):
    link = page_link(ctx, "password", "点击这里修改密码")
    if link is None:
        return PAGE_MISSING.replace("绑定页面", "修改密码页面")
    return "为保护您的密码，请在页面中修改：\n" + link + "\n密码只在页面中填写，请不要在聊天中发送。"


PASSWORD = Flow(
    name="password",
    title="修改密码",
    confirm=False,
    begin=_password_begin,
    steps=[],  # like BIND: the page has the steps
)


# --- 切换准考证号 --------------------------------------------------------------------------------


async def _switch_begin(ctx: Ctx):
    numbers = await accounts.admission_numbers(ctx.db, ctx.user.candidate_id)
    if len(numbers) <= 1:
        return f"您只有一个准考证号{('：' + mask_admission(numbers[0])) if numbers else ''}，不需要切换。"
    return None


async def _number_options(ctx: Ctx):
    numbers = await accounts.admission_numbers(ctx.db, ctx.user.candidate_id)
    return [(n, mask_admission(n) + ("（当前）" if n == ctx.user.admission_number else "")) for n in numbers]


async def _switch_submit(ctx: Ctx) -> str:
    number = ctx.answers["number"]
    if not await accounts.set_active_number(ctx.db, ctx.user.openid, ctx.user.candidate_id, number):
        raise Invalid("这个准考证号不属于您，请重新选择。")
    ctx.user.admission_number = number
    return f"已切换到准考证号 {mask_admission(number)}，之后的查询和办理都使用它。"


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
        lines.insert(3, f"当前准考证号：{mask_admission(ctx.user.admission_number)}")
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
    await accounts.update_contacts(ctx.db, ctx.user.candidate_id, {which: ctx.answers[which]}, openid=ctx.user.openid)
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
