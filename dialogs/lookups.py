"""Queries wired to intents (考试计划, 成绩, 毕业进度, 业务, 消息, 新闻, 订单, 样例, 咨询) and the 反馈建议 flow.

The answers themselves are in dialogs/queries.py; this module only connects intents to them and
asks which major when a candidate has several (a numbered choice remembered for one message).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from dialogs import fields as F
from dialogs import materials
from dialogs import queries as Q
from dialogs.consult import Answer
from dialogs.engine import Ctx, Flow, Step
from dialogs.types import Reply

if TYPE_CHECKING:  # pragma: no cover
    from dialogs.router import Router


def viewer(ctx: Ctx) -> Q.Viewer:
    return Q.Viewer(ctx.user.openid, ctx.user.candidate_id, ctx.user.admission_number)


def _per_major(intent: str, title: str, answer):
    """考试计划 / 毕业进度: the one major, the major named, or a numbered choice among several."""

    async def run(ctx: Ctx, arg: str) -> Reply:
        v = viewer(ctx)
        if arg:
            return await answer(ctx.db, v, arg.upper())
        majors = await Q.majors(ctx.db, v)
        if not majors:
            return Reply(Q.NO_MAJOR)
        if len(majors) == 1:
            return await answer(ctx.db, v, majors[0][0])
        lines = [f"【{title}】您报考了{len(majors)}个专业，请回复序号："]
        lines += [f"{i}. {name}（{code}）" for i, (code, name) in enumerate(majors, 1)]
        return Answer("\n".join(lines), pending={"options": [[intent, code] for code, _ in majors]})

    return run


async def _latest(ctx: Ctx, arg: str) -> Reply:
    return await Q.latest_scores(ctx.db, viewer(ctx))


async def _all(ctx: Ctx, arg: str) -> Reply:
    return await Q.all_scores(ctx.db, viewer(ctx))


async def _course(ctx: Ctx, arg: str) -> Optional[Reply]:
    return await Q.course_score(ctx.db, viewer(ctx), arg)


async def _textbooks(ctx: Ctx, arg: str) -> Reply:
    if not arg:
        return Reply("请回复“教材”加课程代码或名称，如“教材 03708”。")
    return await Q.textbooks(ctx.db, arg)


async def _major_notes(ctx: Ctx, arg: str) -> Reply:
    if arg:
        return await Q.major_notes(ctx.db, arg.upper())
    if not ctx.user.bound:
        return Reply("请回复“专业说明”加专业代码，如“专业说明 020301K”。")
    majors = await Q.majors(ctx.db, viewer(ctx))
    if len(majors) == 1:
        return await Q.major_notes(ctx.db, majors[0][0])
    if not majors:
        return Reply(Q.NO_MAJOR)
    lines = ["【专业说明】请回复序号："] + [f"{i}. {name}（{code}）" for i, (code, name) in enumerate(majors, 1)]
    return Answer("\n".join(lines), pending={"options": [["query:major_notes", code] for code, _ in majors]})


async def _windows(ctx: Ctx, arg: str) -> Reply:
    return await Q.windows(ctx.db, ctx.now)


async def _messages(ctx: Ctx, arg: str) -> Reply:
    return await Q.messages(ctx.db, viewer(ctx))


async def _message(ctx: Ctx, arg: str) -> Reply:
    return await Q.message_detail(ctx.db, viewer(ctx), int(arg))


async def _news(ctx: Ctx, arg: str) -> Reply:
    return await Q.news(ctx.db, int(arg) if arg else None, viewer=viewer(ctx))


async def _orders(ctx: Ctx, arg: str) -> Reply:
    return await Q.orders(ctx.db, viewer(ctx), pay_link=ctx.services.pay_link if ctx.services else None)


async def _contacts(ctx: Ctx, arg: str) -> Reply:
    return Q.contacts()


class _Samples:
    """凭证样例: the list, and each picture uploaded once through the media API and reused."""

    def __init__(self) -> None:
        self.media: Optional[Q.SampleMedia] = None

    async def menu(self, ctx: Ctx, arg: str) -> Reply:
        return Q.samples_menu()

    async def one(self, ctx: Ctx, arg: str) -> Reply:
        if self.media is None:
            if ctx.services is None or ctx.services.upload_image is None:
                return Reply("样例图片暂时无法发送，请稍后再试。")
            self.media = Q.SampleMedia(ctx.db, ctx.services.upload_image)
        return await Q.sample(int(arg), self.media)


# --- 反馈建议 ------------------------------------------------------------------------------------


async def _feedback_submit(ctx: Ctx) -> str:
    a = ctx.answers
    reply = await Q.save_feedback(ctx.db, viewer(ctx), title=a["title"], body=a["body"],
                                  contact_name=a.get("name"), contact_phone_number=a.get("phone"))
    return reply.text


async def _phone_check(ctx: Ctx, value: Optional[str]) -> Optional[str]:
    return Q.contact_phone(value) if value else None


class _PhoneShown(F.Text):
    def show(self, value) -> str:
        from storage.identifiers import mask_mobile, valid_mobile
        if not value:
            return "（未填）"
        return mask_mobile(value) if valid_mobile(value) else value


FEEDBACK = Flow(
    name="feedback",
    title="反馈建议",
    intro="欢迎提出意见和建议，带*的为必填项。",
    steps=[
        # A question here is the feedback itself, not something to answer aside.
        Step("title", "标题", F.Text(min_len=2, max_len=30, hint="2-30个字。"), "*请输入标题（30字以内）：",
             asides=False),
        Step("body", "意见或建议", F.Text(min_len=5, max_len=500, hint="5-500个字。"), "*请输入您的意见或建议（500字以内）：",
             asides=False),
        Step("name", "联系人", F.Text(max_len=20, optional=True, hint="不填请回复“无”。"), "联系人（可不填，回复“无”跳过）："),
        Step("phone", "联系电话", _PhoneShown(max_len=20, optional=True, hint="手机号码或带区号的固定电话，不填请回复“无”。"),
             "联系电话（可不填，回复“无”跳过）：", check=_phone_check),
    ],
    submit=_feedback_submit,
)


def register(router: "Router") -> None:
    samples = _Samples()
    router.add_query("query:latest_scores", _latest)
    router.add_query("query:all_scores", _all)
    router.add_query("query:course_score", _course)
    router.add_query("query:plan", _per_major("query:plan", "考试计划", Q.plan))
    router.add_query("query:progress", _per_major("query:progress", "毕业进度", Q.progress))
    router.add_query("query:textbooks", _textbooks, needs_binding=False)
    router.add_query("query:major_notes", _major_notes, needs_binding=False)
    router.add_query("query:windows", _windows, needs_binding=False)
    router.add_query("query:messages", _messages)
    router.add_query("query:message", _message)
    router.add_query("query:news", _news, needs_binding=False)
    router.add_query("query:orders", _orders)
    router.add_query("query:samples", samples.menu, needs_binding=False)
    router.add_query("query:sample", samples.one, needs_binding=False)
    router.add_query("query:contacts", _contacts, needs_binding=False)
    router.add_flow(FEEDBACK)
    materials.register(router)
