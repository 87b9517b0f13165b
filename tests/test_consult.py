"""Consultation through the router: answers, suggestions picked by number, requests that start flows."""
from __future__ import annotations

import pytest

from dialogs.consult import Consultant, offer_line
from dialogs.faq import FaqService, format_none
from tests.dialog_fixtures import add_candidate, bind_on_page, make_router
from tests.transcript import router_sender, run

OPENID = "o_consult_000000000000000001"


@pytest.fixture(scope="module")
def faq(tmp_path_factory) -> FaqService:
    service = FaqService(cache_dir=tmp_path_factory.mktemp("jieba"))
    service.warm()
    return service


@pytest.fixture
def router(db, faq):
    return make_router(db, faq=Consultant(faq))


async def test_a_clear_question_gets_its_answer(router, faq):
    replies = await run(router_sender(router, OPENID), """
        > 初始密码是什么
        < 后6位
    """)
    assert replies[0] == faq.get("password-initial").answer


async def test_suggestions_are_picked_by_number(router, faq):
    first = faq.match("密码").suggestions[0]  # one word naming three entries
    replies = await run(router_sender(router, OPENID), """
        > 密码
        < 你是不是想问
        > 1
    """)
    assert f"1. {first.title}" in replies[0]
    if first.action is None:
        assert replies[1] == first.answer
    else:
        assert replies[1] and replies[1] != replies[0]
    # The number is one-shot: the same digit later is not a pick any more.
    again = await run(router_sender(router, OPENID), "> 1\n")
    assert again[0] != replies[1]


async def test_nothing_fitting_says_so_and_offers_feedback(router):
    replies = await run(router_sender(router, OPENID), "> 今天天气怎么样\n< 反馈建议\n< 400-0960-990")
    assert replies[0] == format_none()


async def test_a_request_starts_its_flow_after_binding(router, db):
    await add_candidate(db, verified=True)
    send = router_sender(router, OPENID)
    await run(send, """
        > 我想申请免考
        < 需要先绑定
        < 点击这里完成绑定
    """)
    await bind_on_page(db, OPENID)
    await run(send, "> 我想申请免考\n< 申请免考")


async def test_course_question_of_an_unbound_user_binds_first_then_answers(router, db):
    await add_candidate(db, verified=True)
    await run(router_sender(router, OPENID), """
        > 我英语二多少分
        < 需要先绑定
        < 点击这里完成绑定
    """)


async def bound_sender(router, db):
    """A sender for a candidate who has just bound their WeChat."""
    await add_candidate(db, verified=True)
    send = router_sender(router, OPENID)
    await bind_on_page(db, OPENID)
    return send


async def test_how_to_unbind_is_answered_and_unbinding_offered(router, db, faq):
    send = await bound_sender(router, db)
    replies = await run(send, "> 怎么解绑\n< 回复“解绑”")
    assert replies[0].startswith(faq.get("unbind").answer) and "确定要解除绑定吗" not in replies[0]
    await run(send, "> 解绑\n< 确定要解除绑定吗\n> 否\n< 没有解除绑定")


# --- issue 17: the answer text first, the action offered after it ----------------------------------

async def test_an_entry_linked_to_a_query_answers_with_its_text_then_offers_the_query(router, db, faq):
    # Reported: 成绩什么时候出 -> "暂无新闻通知"; 毕业证什么时候发 -> the 站内消息 list.
    send = await bound_sender(router, db)
    replies = await run(send, "> 成绩什么时候出\n> 毕业证什么时候发")
    assert replies[0].startswith(faq.get("score-release-time").answer) and "暂无" not in replies[0]
    assert replies[0].endswith(offer_line("query:news", "")) and "当前：" not in replies[0]
    # 毕业证发放 is not settled by the manuals: the reply refers on (and lists no messages).
    assert replies[1] == faq.get("grad-certificate").answer and "400-0960-990" in replies[1]


@pytest.mark.parametrize("text, entry_id", [("怎么看站内消息", "messages"), ("提交的免考申请怎么修改", "exemption-edit"),
                                            ("免考需要什么材料", "exemption-evidence")])
async def test_a_how_question_of_an_unbound_user_is_answered_not_turned_into_binding(router, faq, text, entry_id):
    replies = await run(router_sender(router, OPENID), f"> {text}\n")
    assert replies[0].startswith(faq.get(entry_id).answer)
    assert "需要先绑定" not in replies[0] and "证件号码" not in replies[0].split("\n")[-1]


async def test_two_majors_at_once_is_answered_not_refused(router, faq):
    # Reported: "can two majors graduate at once" got "微信中暂时还不能办理".
    replies = await run(router_sender(router, OPENID), "> 可以同时申请两个专业毕业吗\n")
    assert replies[0].startswith(faq.get("grad-another-major").answer)
    assert "暂时还不能办理" not in replies[0]


async def test_a_question_about_dates_carries_the_live_window(router, db, faq):
    import datetime as dt

    from storage import models as m
    from storage.models import utcnow
    t = utcnow()
    async with db.session() as s, s.begin():
        s.add(m.BusinessWindow(kind="exemption", title="2026年下半年申请免考",
                               opens_at=t - dt.timedelta(days=1), closes_at=t + dt.timedelta(days=10)))
    replies = await run(router_sender(router, OPENID), "> 免考什么时候可以申请\n< 申请免考正在开放")
    assert replies[0].startswith(faq.get("exemption-window").answer)


async def test_an_out_of_scope_question_gets_the_referral(router):
    replies = await run(router_sender(router, OPENID), "> 报名费多少钱\n< 反馈建议\n< 400-0960-990")
    assert "上海招考热线" in replies[0]


async def test_a_picked_suggestion_shows_its_answer_and_offers_the_action(router, faq):
    m = faq.match("审核")
    replies = await run(router_sender(router, OPENID), "> 审核\n< 1. \n< 2. \n< 3. \n> 1\n")
    assert replies[1].startswith(m.suggestions[0].answer)
