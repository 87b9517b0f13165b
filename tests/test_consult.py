"""Consultation through the router: answers, suggestions picked by number, requests that start flows."""
from __future__ import annotations

import pytest

from dialogs.consult import Consultant
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
    first = faq.match("怎么修改手机号").suggestions[0]
    replies = await run(router_sender(router, OPENID), """
        > 怎么修改手机号
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


async def test_how_to_unbind_offers_unbinding(router, db):
    await add_candidate(db, verified=True)
    send = router_sender(router, OPENID)
    await bind_on_page(db, OPENID)
    await run(send, "> 怎么解绑\n< 确定要解除绑定吗\n> 否\n< 没有解除绑定")
