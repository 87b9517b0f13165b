"""Outbox delivery against the in-process WeChat emulator, on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from typing import Any

import aiohttp
import pytest
from sqlalchemy import insert, select, update

from bot.dedupe import Deduper
from bot.delivery import (
    deliver_late_reply,
    CHANNEL_CUSTOM,
    CHANNEL_TEMPLATE,
    UNCONFIRMED,
    Deliverer,
    TokenBucket,
    fit_template_value,
    record_template_finish,
    release_waiting,
    shanghai_midnight,
    split_text,
)
from bot.token_store import MemoryTokenStore
from bot.wechat_client import WeChatClient
from dialogs.types import Reply
from emulator.api import DEFAULT_APP_ID, DEFAULT_APP_SECRET, EmulatorState, create_api_app
from storage.db import Database
from storage.models import Outbox, WechatUser, utcnow

TEMPLATES = {
    "review_result": "TM_REVIEW_RESULT",
    "exam_notice": "TM_EXAM_NOTICE",
    "score_release": "TM_SCORE_RELEASE",
    "business_reminder": "TM_BUSINESS_REMINDER",
}
NOTICE_DATA = {"thing1": "2025年4月自学考试", "time2": "2025-04-12 09:00", "thing3": "见准考证"}
REVIEW_DATA = {"thing1": "免考申请", "phrase2": "审核通过", "time3": "2025-03-01 10:00", "thing4": "请留意后续通知"}


class Clock:
    """The deliverer's idea of now (database times): real time plus an offset tests move."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += dt.timedelta(seconds=seconds)


@pytest.fixture
def state() -> EmulatorState:
    return EmulatorState(seed=11)


@pytest.fixture
async def api(aiohttp_server, state):
    return await aiohttp_server(create_api_app(state))


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def make_client(session, api, **kw) -> WeChatClient:
    kw.setdefault("timeout", 0.5)
    kw.setdefault("max_retries", 0)  # retries are the outbox's business in these tests
    return WeChatClient(session, api_base=str(api.make_url("/")), app_id=DEFAULT_APP_ID,
                        app_secret=DEFAULT_APP_SECRET, token_store=MemoryTokenStore(), **kw)


@pytest.fixture
def client(session, api) -> WeChatClient:
    return make_client(session, api)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def deliverer(db, client, clock, **kw) -> Deliverer:
    kw.setdefault("templates", TEMPLATES)
    kw.setdefault("rate_per_second", 1000.0)
    kw.setdefault("lease_seconds", 60.0)
    return Deliverer(db, client, clock=clock, **kw)


async def add_user(db: Database, openid: str, *, interaction: dt.datetime | None = None, subscribed: bool = True) -> None:
    async with db.session() as s, s.begin():
        s.add(WechatUser(openid=openid, subscribed=subscribed, last_interaction_at=interaction))


async def add_row(db: Database, openid: str, *, kind: str = "notice", text: str = "【考试通知】2025年4月自学考试将于4月12日举行。",
                  template: dict | None = None, priority: int = 5, status: str = "pending", key: str | None = None,
                  due_at: dt.datetime | None = None, **payload_extra: Any) -> int:
    payload: dict[str, Any] = {"text": text, **payload_extra}
    if template is not None:
        payload["template"] = template
    async with db.session() as s, s.begin():
        row = Outbox(openid=openid, kind=kind, payload=payload, client_msg_id=key or f"{kind}-{openid}",
                     status=status, priority=priority, due_at=due_at or utcnow() - dt.timedelta(seconds=1))
        s.add(row)
        await s.flush()
        return row.id


async def rows(db: Database) -> dict[int, Outbox]:
    async with db.session() as s:
        return {r.id: r for r in (await s.execute(select(Outbox).order_by(Outbox.id))).scalars()}


async def emulator_idle(state: EmulatorState) -> None:
    """Calls still being served (a delayed answer the client gave up on) run to their end."""
    while state._tasks:
        await asyncio.gather(*list(state._tasks), return_exceptions=True)


def notice(**data: str) -> dict:
    return {"kind": "exam_notice", "data": data or dict(NOTICE_DATA)}


# --- channels ---------------------------------------------------------------------------------


async def test_template_message_carries_the_rows_client_msg_id(db, client, state, clock):
    state.set_subscribed("o_tpl", True)
    await add_user(db, "o_tpl")
    long_value = "上海市2025年上半年高等教育自学考试\n报名须知"
    row_id = await add_row(db, "o_tpl", template=notice(thing1=long_value, time2="2025-04-12"), key="notice-7-o_tpl",
                           url="https://zikao.example/notice/7")
    stats = await deliverer(db, client, clock).run_once()
    assert (stats.claimed, stats.sent, stats.failed, stats.retried, stats.waiting) == (1, 1, 0, 0, 0)
    [call] = state.calls_to("message/template/send")
    assert call["body"]["client_msg_id"] == "notice-7-o_tpl"
    assert call["body"]["template_id"] == "TM_EXAM_NOTICE" and call["body"]["url"] == "https://zikao.example/notice/7"
    [out] = state.outbound
    assert out["type"] == "template" and out["openid"] == "o_tpl"
    assert out["data"]["thing1"] == fit_template_value(long_value)
    assert len(out["data"]["thing1"]) == 20 and "\n" not in out["data"]["thing1"]
    row = (await rows(db))[row_id]
    assert row.status == "sent" and row.channel == CHANNEL_TEMPLATE and row.wechat_msgid == str(out["msgid"])
    assert row.sent_at is not None and row.claimed_until is None and row.attempts == 1 and row.last_error is None


async def test_customer_service_text_inside_the_48_hour_window(db, client, state, clock):
    state.record_user_action("o_cs", "message")
    await add_user(db, "o_cs", interaction=utcnow() - dt.timedelta(hours=47))
    row_id = await add_row(db, "o_cs", text="您的成绩复核申请已受理。")  # no template: customer service only
    stats = await deliverer(db, client, clock).run_once()
    assert stats.sent == 1
    assert [(o["type"], o["content"]) for o in state.outbound] == [("text", "您的成绩复核申请已受理。")]
    row = (await rows(db))[row_id]
    assert row.status == "sent" and row.channel == CHANNEL_CUSTOM and row.wechat_msgid is None


async def test_unconfigured_template_goes_as_customer_service_text(db, client, state, clock):
    state.record_user_action("o_cs2", "message")
    await add_user(db, "o_cs2", interaction=utcnow())
    await add_row(db, "o_cs2", template=notice(), text="完整的考试通知正文")
    await deliverer(db, client, clock, templates={"review_result": "TM_REVIEW_RESULT"}).run_once()
    assert [(o["type"], o.get("content")) for o in state.outbound] == [("text", "完整的考试通知正文")]


async def test_outside_the_window_waits_until_the_next_message(db, client, state, clock):
    await add_user(db, "o_away", interaction=utcnow() - dt.timedelta(hours=49))
    await add_user(db, "o_other")  # never wrote
    away = await add_row(db, "o_away", text="您的免考申请审核未通过：材料不全。", kind="review_outcome", priority=0)
    other = await add_row(db, "o_other", text="另一位考生的通知")
    d = deliverer(db, client, clock)
    stats = await d.run_once()
    assert stats.waiting == 2 and stats.sent == 0
    assert state.calls_to("message/custom/send") == []  # no call wasted on a closed window
    assert {r.status for r in (await rows(db)).values()} == {"waiting"}

    # The candidate writes: the dedupe transaction that records it releases their waiting rows.
    state.record_user_action("o_away", "message")
    deduper = Deduper(db)
    assert (await deduper.claim("o_away:9001", "o_away", wait_seconds=1.0)).owner
    await deduper.finish("o_away:9001", Reply("帮助文本"), "o_away")
    now = (await rows(db))
    assert now[away].status == "pending" and now[away].due_at <= utcnow()
    assert now[other].status == "waiting"

    stats = await d.run_once()
    assert stats.sent == 1 and stats.claimed == 1
    assert [o["content"] for o in state.outbound] == ["您的免考申请审核未通过：材料不全。"]
    assert (await rows(db))[away].status == "sent"


async def test_sweep_releases_waiting_rows_whose_user_wrote_since(db, client, state, clock):
    """A release that raced with a claim is repaired: waiting rows whose user wrote afterwards."""
    await add_user(db, "o_race", interaction=utcnow() - dt.timedelta(days=3))
    row_id = await add_row(db, "o_race", text="迟到的回复", kind="reply", status="waiting",
                           due_at=utcnow() - dt.timedelta(minutes=5))
    async with db.session() as s, s.begin():  # the message was recorded without releasing the row
        await s.execute(update(WechatUser).values(last_interaction_at=utcnow() - dt.timedelta(minutes=1)))
    state.record_user_action("o_race", "message")
    stats = await deliverer(db, client, clock).run_once()
    assert stats.sent == 1 and (await rows(db))[row_id].status == "sent"


async def test_long_reply_with_image_is_sent_in_parts_and_resumes_after_a_failure(db, client, state, clock):
    state.record_user_action("o_long", "message")
    await add_user(db, "o_long", interaction=utcnow())
    media_id = state.add_media(b"\xff\xd8\xff" + b"j" * 100, "image/jpeg", "card.jpg")
    text = "\n".join(f"第{i}行：课程代码00015 英语（二） 成绩合格" for i in range(60))
    parts = split_text(text)
    assert len(parts) == 2 and all(len(p.encode()) <= 2048 for p in parts) and "\n".join(parts) == text
    row_id = await add_row(db, "o_long", kind="reply", text=text, image=media_id)
    # The second part meets a busy WeChat once (rules are tried in order; the first is spent at once).
    state.faults.add("message/custom/send", delay=0.001, times=1)
    state.faults.add("message/custom/send", errcode=-1, times=1)
    d = deliverer(db, client, clock)
    stats = await d.run_once()
    assert stats.retried == 1
    row = (await rows(db))[row_id]
    assert row.status == "pending" and row.payload["cs_done"] == 1
    clock.advance(3)
    assert (await d.run_once()).sent == 1
    assert [(o["type"], o.get("content"), o.get("media_id")) for o in state.outbound] == [
        ("text", parts[0], None), ("text", parts[1], None), ("image", None, media_id)]


async def test_reply_whose_image_expired_sends_its_text_and_fails_with_the_reason(db, client, state, clock):
    state.record_user_action("o_img", "message")
    await add_user(db, "o_img", interaction=utcnow())
    media_id = state.add_media(b"\xff\xd8\xff" + b"j" * 100, "image/jpeg", "card.jpg")
    state.advance(3 * 86400 + 1)  # the picture's media_id has expired
    state.record_user_action("o_img", "message")
    row_id = await add_row(db, "o_img", kind="reply", text="您要的样例如下：", image=media_id)
    stats = await deliverer(db, client, clock).run_once()
    assert stats.failed == 1 and stats.retried == 0
    row = (await rows(db))[row_id]
    assert row.status == "failed" and row.last_error == "40007 media_id unknown or expired"
    assert row.payload["cs_done"] == 1  # the text went out and is not sent again
    assert [o["type"] for o in state.outbound] == ["text"]


# --- late replies (missed the passive-reply budget) -------------------------------------------


async def test_late_reply_goes_out_at_once_and_leaves_no_row(db, client, state):
    state.record_user_action("o_late", "message")
    media_id = state.add_media(b"\xff\xd8\xff" + b"j" * 100, "image/jpeg", "card.jpg")
    await deliver_late_reply(db, client, "o_late", "查好了：", media_id)
    assert [o["type"] for o in state.outbound] == ["text", "image"]
    assert await rows(db) == {}


async def test_late_reply_outside_the_window_waits_for_the_user(db, client, state):
    state.set_subscribed("o_late", True)  # followed, but no message within 48 hours
    await deliver_late_reply(db, client, "o_late", "查好了：", None)
    (row,) = (await rows(db)).values()
    assert (row.kind, row.status, row.payload["text"]) == ("reply", "waiting", "查好了：")
    assert row.last_error.startswith("45015") and row.priority == 0


async def test_late_reply_meeting_a_busy_wechat_is_due_now_with_only_the_unsent_part(db, client, state):
    state.record_user_action("o_late", "message")
    text = "\n".join(f"第{i}行：课程代码00015 英语（二） 成绩合格" for i in range(60))
    first, second = split_text(text)
    state.faults.add("message/custom/send", delay=0.001, times=1)  # the first part goes through
    state.faults.add("message/custom/send", errcode=-1, times=1)
    await deliver_late_reply(db, client, "o_late", text, None)
    (row,) = (await rows(db)).values()
    assert (row.status, row.payload["text"]) == ("pending", second)
    assert [o["content"] for o in state.outbound] == [first]


async def test_late_reply_whose_picture_expired_sends_the_text_and_drops_the_picture(db, client, state):
    state.record_user_action("o_late", "message")
    await deliver_late_reply(db, client, "o_late", "样例如下：", "no-such-media")
    assert [o["type"] for o in state.outbound] == ["text"]
    assert await rows(db) == {}


async def test_release_waiting_in_a_callers_transaction(db):
    a = await add_row(db, "o_rel_a", status="waiting", key="rel-a")
    a2 = await add_row(db, "o_rel_a", status="waiting", key="rel-a2", kind="reply")
    b = await add_row(db, "o_rel_b", status="waiting", key="rel-b")
    c = await add_row(db, "o_rel_c", status="failed", key="rel-c")
    at = utcnow()
    async with db.engine.begin() as conn:
        assert await release_waiting(conn, ["o_rel_a", "o_rel_c", "o_rel_a"], at) == 2
    async with db.session() as s, s.begin():
        assert await release_waiting(s, []) == 0
        assert await release_waiting(s, ["o_rel_nobody"]) == 0
    r = await rows(db)
    assert [r[i].status for i in (a, a2, b, c)] == ["pending", "pending", "waiting", "failed"]
    assert r[a].due_at == at


# --- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["busy", "frequency", "minute_limit", "timeout", "drop"])
async def test_transient_failures_are_retried_with_backoff(db, client, state, clock, fault):
    state.set_subscribed("o_retry", True)
    await add_user(db, "o_retry")
    row_id = await add_row(db, "o_retry", template=notice())
    rule = {"busy": {"errcode": -1}, "frequency": {"errcode": 45009}, "minute_limit": {"errcode": 45011},
            "timeout": {"delay": 1.5}, "drop": {"drop": True}}[fault]
    state.faults.add("message/template/send", times=1, **rule)
    d = deliverer(db, client, clock, backoff_base=4.0)
    before = clock()
    stats = await d.run_once()
    after = clock()  # the failure happened in between (a timeout takes real time, more on a busy machine)
    assert (stats.retried, stats.sent) == (1, 0)
    row = (await rows(db))[row_id]
    assert row.status == "pending" and row.attempts == 1 and row.claimed_until is None
    assert row.last_error.startswith({"busy": "-1", "frequency": "45009", "minute_limit": "45011",
                                      "timeout": "-1 network", "drop": "-1 network"}[fault])
    # equal jitter: between half and all of 4 s after the failure
    assert before + dt.timedelta(seconds=2.0) <= row.due_at <= after + dt.timedelta(seconds=4.0)

    assert (await d.run_once()).claimed == 0  # not due yet
    clock.advance(4.5)
    assert (await d.run_once()).sent == 1
    await emulator_idle(state)  # a timed-out call is still served by WeChat, late
    assert [o["openid"] for o in state.outbound] == ["o_retry"]  # once, whatever happened to the first call
    row = (await rows(db))[row_id]
    assert row.status == "sent" and row.attempts == 2


async def test_backoff_grows_and_gives_up_after_max_attempts(db, client, state, clock):
    state.set_subscribed("o_busy", True)
    row_id = await add_row(db, "o_busy", template=notice())
    state.faults.add("message/template/send", errcode=-1)
    d = deliverer(db, client, clock, max_attempts=3, backoff_base=2.0, backoff_max=5.0)
    waits = []  # (earliest, latest) seconds from the failure to due_at: the failure is inside the pass
    for _ in range(3):
        start = clock()
        await d.run_once()
        end = clock()
        row = (await rows(db))[row_id]
        waits.append(((row.due_at - end).total_seconds(), (row.due_at - start).total_seconds()))
        clock.advance(10)
    assert row.status == "failed" and row.attempts == 3
    assert row.last_error.startswith("gave up after 3 attempts: -1")
    # 2 s, then 4 s, each half jittered
    assert 1.0 <= waits[0][1] and waits[0][0] <= 2.0 and 2.0 <= waits[1][1] and waits[1][0] <= 4.0
    assert len(state.calls_to("message/template/send")) == 3


@pytest.mark.parametrize("case", ["43004", "40003", "48001"])
async def test_permanent_errors_fail_at_once_with_the_reason(db, client, state, clock, case):
    if case == "43004":
        state.set_subscribed("o_perm", False)
    elif case == "48001":
        state.set_subscribed("o_perm", True)
        state.faults.add("message/template/send", errcode=48001)
    # 40003: WeChat has never heard of this openid
    row_id = await add_row(db, "o_perm", template=notice())
    stats = await deliverer(db, client, clock).run_once()
    assert stats.failed == 1
    row = (await rows(db))[row_id]
    reason = {"43004": "43004 not subscribed", "40003": "40003 invalid openid", "48001": "48001 api unauthorized"}[case]
    assert row.status == "failed" and row.last_error == reason
    assert len(state.calls_to("message/template/send")) == 1 and state.outbound == []


async def test_template_argument_error_fails(db, client, state, clock):
    state.set_subscribed("o_arg", True)
    row_id = await add_row(db, "o_arg", template=notice(), url="ftp://not-a-web-page")
    await deliverer(db, client, clock).run_once()
    row = (await rows(db))[row_id]
    assert row.status == "failed" and row.last_error == "47003 template argument invalid"


async def test_invalid_template_id_falls_back_to_customer_service(db, client, state, clock):
    state.record_user_action("o_fb", "message")
    await add_user(db, "o_fb", interaction=utcnow())
    await add_user(db, "o_fb_away", interaction=utcnow() - dt.timedelta(days=5))
    state.set_subscribed("o_fb_away", True)
    inside = await add_row(db, "o_fb", template=notice(), text="考试通知全文")
    away = await add_row(db, "o_fb_away", template=notice(), text="考试通知全文")
    stats = await deliverer(db, client, clock, templates={"exam_notice": "TM_WRONG_ID"}).run_once()
    assert (stats.sent, stats.waiting) == (1, 1)
    assert [(o["openid"], o["type"]) for o in state.outbound] == [("o_fb", "text")]
    r = await rows(db)
    assert r[inside].channel == CHANNEL_CUSTOM and r[away].status == "waiting"
    assert r[away].last_error.startswith("40037")


@pytest.mark.parametrize("errcode", [45015, 45047])
async def test_customer_service_refusals_wait_for_the_user(db, client, state, clock, errcode):
    await add_user(db, "o_ref", interaction=utcnow() - dt.timedelta(hours=1))  # our record says the window is open
    state.record_user_action("o_ref", "message")
    state.faults.add("message/custom/send", errcode=errcode)
    row_id = await add_row(db, "o_ref", text="成绩复核结果：维持原成绩。", kind="review_outcome", priority=0)
    stats = await deliverer(db, client, clock).run_once()
    assert stats.waiting == 1
    row = (await rows(db))[row_id]
    assert row.status == "waiting" and row.last_error.startswith(str(errcode))


@pytest.mark.parametrize("kind", ["review_outcome", "feedback_reply", "notice"])
async def test_customer_service_timeout_policy(db, session, api, state, clock, kind):
    """A CS send that may have reached WeChat: a candidate's own messages (review outcomes, the
    office's answer to their 反馈建议) are resent (at least once), bulk pushes are not (at most
    once) and are marked unconfirmed."""
    client = make_client(session, api, timeout=0.3)
    state.record_user_action("o_slow", "message")
    await add_user(db, "o_slow", interaction=utcnow())
    row_id = await add_row(db, "o_slow", kind=kind, text="您的申请已办结。")
    state.faults.add("message/custom/send", delay=1.0, times=1)
    d = deliverer(db, client, clock, backoff_base=1.0)
    await d.run_once()
    await emulator_idle(state)
    clock.advance(2)
    await d.run_once()
    row = (await rows(db))[row_id]
    assert row.status == "sent"
    delivered = [o for o in state.outbound if o["openid"] == "o_slow"]
    if kind != "notice":
        assert len(delivered) == 2 and row.attempts == 2 and row.delivery_status is None  # a duplicate, never a loss
    else:
        assert len(delivered) == 1 and row.attempts == 1 and row.delivery_status == UNCONFIRMED
        assert row.last_error.startswith("-1 network")


# --- rate, cap, priority ----------------------------------------------------------------------


class FakeTime:
    """monotonic() and sleep() for the token bucket: sleeping moves time, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds
        await asyncio.sleep(0)


async def test_token_bucket_paces_to_the_rate():
    t = FakeTime()
    bucket = TokenBucket(5.0, burst=2, monotonic=t.monotonic, sleep=t.sleep)
    stamps = []
    for _ in range(12):
        await bucket.acquire()
        stamps.append(t.now - 1000.0)
    assert stamps[:2] == [0.0, 0.0]  # the burst
    for i, at in enumerate(stamps):
        assert at >= (i + 1 - 2) / 5.0 - 1e-9  # never ahead of rate * t + burst
    assert stamps[-1] == pytest.approx(10 / 5.0)


async def test_deliveries_stay_under_the_rate_and_stop_at_max_seconds(db, client, state, clock):
    t = FakeTime()
    for i in range(40):
        state.set_subscribed(f"o_rate_{i:02d}", True)
        await add_row(db, f"o_rate_{i:02d}", template=notice())
    sent_at: list[float] = []
    real_send = client.send_template

    async def timed_send(*a, **kw):
        sent_at.append(t.now)
        return await real_send(*a, **kw)

    client.send_template = timed_send
    d = deliverer(db, client, clock, rate_per_second=10.0, monotonic=t.monotonic, sleep=t.sleep)
    stats = await d.run_once(max_seconds=2.0)
    # 2 s at 10/s (burst 1): about 20 sent, the rest released for the next run, none lost.
    assert 20 <= stats.sent <= 21 + d.concurrency and stats.sent + stats.released == stats.claimed
    for i, at in enumerate(sent_at):
        assert at - sent_at[0] >= i / 10.0 - 1e-9
    stats2 = await d.run_once(max_seconds=100.0)
    assert stats.sent + stats2.sent == 40
    assert len({o["openid"] for o in state.outbound}) == len(state.outbound) == 40
    assert all(r.status == "sent" for r in (await rows(db)).values())


async def test_daily_cap_counts_every_process_and_resets_at_beijing_midnight(db, client, state, clock):
    for i in range(5):
        state.set_subscribed(f"o_cap_{i}", True)
        await add_row(db, f"o_cap_{i}", template=notice())
    stats = await deliverer(db, client, clock, daily_cap=3).run_once()
    assert stats.sent == 3 and stats.capped
    other_process = await deliverer(db, client, clock, daily_cap=3).run_once()
    assert other_process.sent == 0 and other_process.capped
    assert Counter(r.status for r in (await rows(db)).values()) == {"sent": 3, "pending": 2}
    # The next day in Beijing.
    clock.offset += shanghai_midnight(clock()) + dt.timedelta(days=1, seconds=1) - clock()
    assert (await deliverer(db, client, clock, daily_cap=3).run_once()).sent == 2
    assert len(state.outbound) == 5


async def test_review_outcome_goes_before_a_thousand_notices(db, client, state, clock):
    earlier = utcnow() - dt.timedelta(minutes=5)
    async with db.engine.begin() as conn:
        await conn.execute(insert(Outbox), [
            {"openid": f"o_bulk_{i:04d}", "kind": "notice", "payload": {"text": "通知", "template": notice()},
             "client_msg_id": f"notice-1-{i}", "status": "pending", "priority": 5, "due_at": earlier}
            for i in range(1000)])
    state.set_subscribed("o_review", True)
    review = await add_row(db, "o_review", kind="review_outcome", priority=0,
                           template={"kind": "review_result", "data": REVIEW_DATA})
    # A cap of one: exactly one row may go, and it must be the review outcome.
    stats = await deliverer(db, client, clock, daily_cap=1, batch_size=50).run_once()
    assert stats.sent == 1
    assert state.calls_to("message/template/send")[0]["body"]["touser"] == "o_review"
    assert (await rows(db))[review].status == "sent"


# --- crashes and concurrency ------------------------------------------------------------------


async def test_killed_mid_batch_the_rows_are_finished_after_the_lease_once_each(db, db_url, session, api, state, clock):
    n, concurrency = 30, 4
    for i in range(n):
        state.set_subscribed(f"o_crash_{i:02d}", True)
        await add_row(db, f"o_crash_{i:02d}", template=notice(), key=f"crash-{i}")
    dying = make_client(session, api)
    real_send = dying.send_template
    calls, hung, frozen, never = [0], [0], asyncio.Event(), asyncio.Event()

    async def send_then_die(*args, **kw):
        calls[0] += 1
        number = calls[0]
        msgid = await real_send(*args, **kw)
        if number > 10:  # from the eleventh on, the message reaches WeChat and the process dies
            hung[0] += 1
            if hung[0] == concurrency:
                frozen.set()
            await never.wait()
        return msgid

    dying.send_template = send_then_die
    first = deliverer(db, dying, clock, concurrency=concurrency, lease_seconds=30)
    task = asyncio.create_task(first.run_once())
    await frozen.wait()
    task.cancel()  # the kill: nothing after the sends runs
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(state.outbound) == 10 + concurrency
    r = await rows(db)
    stranded = [x for x in r.values() if x.status == "claimed"]
    assert len(stranded) == n - 10 and all(x.claimed_by == first.owner for x in stranded)

    second_db = Database(db_url)  # another process
    try:
        second = deliverer(second_db, make_client(session, api), clock)
        assert (await second.run_once()).claimed == 0  # the dead process's lease still holds
        clock.advance(31)
        stats = await second.run_once()
    finally:
        await second_db.dispose()
    assert stats.sent == n - 10
    r = await rows(db)
    assert all(x.status == "sent" for x in r.values())
    per_user = Counter(o["openid"] for o in state.outbound)
    assert len(per_user) == n and set(per_user.values()) == {1}  # every message exactly once
    # The four sent-but-unrecorded rows were sent again and answered by client_msg_id dedupe.
    assert len(state.calls_to("message/template/send")) == n + concurrency


async def test_a_stalled_process_loses_its_rows_and_does_not_send_them(db, db_url, session, api, state, clock):
    """Process A stalls past its lease; B takes the rows over; A then skips them."""
    n = 12
    for i in range(n):
        state.set_subscribed(f"o_stall_{i:02d}", True)
        await add_row(db, f"o_stall_{i:02d}", template=notice(), key=f"stall-{i}")
    b_db = Database(db_url)
    a_client, b_client = make_client(session, api), make_client(session, api)
    a = deliverer(db, a_client, clock, concurrency=1, lease_seconds=30, owner="A")
    b = deliverer(b_db, b_client, clock, owner="B")
    real_send = a_client.send_template
    b_stats = []

    async def stalling_send(*args, **kw):
        msgid = await real_send(*args, **kw)
        if not b_stats:
            clock.advance(31)  # A is frozen for longer than its lease ...
            b_stats.append(await b.run_once())  # ... and B delivers what A held
        return msgid

    a_client.send_template = stalling_send
    try:
        a_stats = await a.run_once()
    finally:
        await b_db.dispose()
    assert a_stats.lost_claims >= n - 1 and b_stats[0].sent >= n - 1
    per_user = Counter(o["openid"] for o in state.outbound)
    assert len(per_user) == n and set(per_user.values()) == {1}
    assert all(x.status == "sent" for x in (await rows(db)).values())


async def test_two_processes_on_one_database_deliver_every_row_once(db, db_url, session, api, state, clock):
    n = 240
    for i in range(n):
        openid = f"o_two_{i:03d}"
        if i % 2:  # half by template, half by customer service (which WeChat does not dedupe)
            state.set_subscribed(openid, True)
            await add_row(db, openid, template=notice(), key=f"two-{i}")
        else:
            state.record_user_action(openid, "message")
            await add_user(db, openid, interaction=utcnow())
            await add_row(db, openid, text=f"第{i}号考生的通知", key=f"two-{i}")
    other_db = Database(db_url)
    try:
        one = deliverer(db, make_client(session, api), clock, batch_size=10, concurrency=4, owner="one")
        two = deliverer(other_db, make_client(session, api), clock, batch_size=10, concurrency=4, owner="two")
        s1, s2 = await asyncio.gather(one.run_once(), two.run_once())
    finally:
        await other_db.dispose()
    assert s1.sent + s2.sent == n and s1.claimed + s2.claimed == n
    per_user = Counter(o["openid"] for o in state.outbound)
    assert len(per_user) == n and set(per_user.values()) == {1}
    assert len(state.calls_to("message/custom/send")) == n // 2  # no customer-service message sent twice
    r = await rows(db)
    assert all(x.status == "sent" for x in r.values())
    assert {x.claimed_by for x in r.values()} == {"one", "two"}  # both did part of the work


# --- TEMPLATESENDJOBFINISH --------------------------------------------------------------------


async def test_template_send_job_finish_updates_the_delivery_state(db, client, state, clock):
    for openid in ("o_ok", "o_blocked"):
        state.set_subscribed(openid, True)
    state.template_blocked.add("o_blocked")
    finished: list[tuple[str, int, str]] = []

    async def hook(openid: str, msgid: int, status: str) -> None:
        finished.append((openid, msgid, status))

    state.on_template_sent = hook
    ok = await add_row(db, "o_ok", template=notice())
    blocked = await add_row(db, "o_blocked", template=notice())
    await deliverer(db, client, clock).run_once()
    await emulator_idle(state)
    assert sorted(s for _, _, s in finished) == ["failed:user block", "success"]
    for _, msgid, status in finished:
        assert await record_template_finish(db, str(msgid), status)
    assert not await record_template_finish(db, "123", "success")  # not one of ours
    r = await rows(db)
    assert (r[ok].status, r[ok].delivery_status) == ("sent", "success")
    assert (r[blocked].status, r[blocked].delivery_status) == ("failed", "failed:user block")
    assert r[blocked].last_error == "template user block"
