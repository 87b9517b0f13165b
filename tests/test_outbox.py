"""The causes of pushes: review outcomes, score releases, notices' fan-out, window reminders."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from sqlalchemy import event, select, update

from storage import models as m
from storage import outbox
from storage.db import Database
from storage.importer import import_directory
from storage.vocab import WINDOW_KINDS

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
ZHAO = "310105199307074567"  # docs/examples: 012424100318, major 120402
SUN = "310101198801011238"  # docs/examples: 012424100392, major 120402
UTC = dt.timezone.utc
ID_NUMBER = re.compile(r"\d{17}[\dXx]")


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


# --- helpers (also used by the other push tests) ----------------------------------------------------


async def add_candidate(db: Database, id_number: str, name: str = "考生") -> int:
    async with db.session() as s, s.begin():
        c = m.Candidate(id_number=id_number, name=name, password_hash="x")
        s.add(c)
        await s.flush()
        return c.id


async def candidate_id(db: Database, id_number: str) -> int:
    async with db.session() as s:
        return await s.scalar(select(m.Candidate.id).where(m.Candidate.with_id_number(id_number)))


async def add_user(db: Database, openid: str, candidate: int | None, *, subscribed: bool = True,
                   opt_out: bool = False) -> None:
    async with db.session() as s, s.begin():
        s.add(m.WechatUser(openid=openid, candidate_id=candidate, subscribed=subscribed, notices_opt_out=opt_out,
                           bound_at=now() if candidate else None))


async def rows(db: Database, **where) -> list[m.Outbox]:
    async with db.session() as s:
        q = select(m.Outbox).order_by(m.Outbox.openid, m.Outbox.id)
        for k, v in where.items():
            q = q.where(getattr(m.Outbox, k) == v)
        return list((await s.execute(q)).scalars())


def assert_pushable(row: m.Outbox) -> None:
    """The contract with the delivery engine, and what must never be in a push."""
    assert row.status == "pending" and row.kind in outbox.KINDS and len(row.client_msg_id) <= 64
    template = row.payload["template"]
    assert template["kind"] in ("review_result", "exam_notice", "score_release", "business_reminder")
    for value in template["data"].values():
        assert isinstance(value, str) and 0 < len(value) <= 20 and "\n" not in value, value
    text = row.payload["text"] + "".join(template["data"].values())
    assert not ID_NUMBER.search(text), text


# --- pure helpers ---------------------------------------------------------------------------------


def test_client_msg_id_is_deterministic_readable_when_short_and_at_most_64_characters() -> None:
    assert outbox.client_msg_id("review", "A1", 1, "o123") == "review:A1:1:o123"
    long_openid = "o" + "x" * 70
    a = outbox.client_msg_id("notice", 7, long_openid)
    assert a == outbox.client_msg_id("notice", 7, long_openid) and len(a) == 64 and a.startswith("notice:7:")
    assert a != outbox.client_msg_id("notice", 8, long_openid)
    assert outbox.client_msg_id("notice", 7, long_openid + "y") != a


def test_template_values_are_one_line_of_at_most_20_characters() -> None:
    assert outbox.template_value("申请免考") == "申请免考"
    assert outbox.template_value("第一行\n第二行") == "第一行 第二行"
    long = outbox.template_value("2027年上半年上海市高等教育自学考试网上报名提示")
    assert len(long) == 20 and long.endswith("…") and long.startswith("2027年上半年上海市")


def test_long_text_is_cut_to_the_byte_limit_with_an_ellipsis() -> None:
    text = "\n".join(["第%d条：请按时参加考试。" % i for i in range(400)])
    cut = outbox.fit_text(text, 1000)
    assert len(cut.encode()) <= 1000 and cut.endswith("……") and cut.startswith("第0条")
    assert outbox.fit_text("短", 1000) == "短"


# --- review outcomes ------------------------------------------------------------------------------


async def test_review_outcome_is_written_with_the_decision_and_reaches_every_bound_openid(db: Database) -> None:
    cid = await add_candidate(db, ZHAO, "赵敏")
    other = await add_candidate(db, SUN, "孙")
    await add_user(db, "o_phone", cid)
    await add_user(db, "o_tablet", cid, opt_out=True)  # notices off: own review outcomes still arrive
    await add_user(db, "o_gone", cid, subscribed=False)  # unfollowed: WeChat would refuse
    await add_user(db, "o_other", other)
    decided = dt.datetime(2026, 12, 1, 2, 30, tzinfo=UTC)
    async with db.session() as s, s.begin():
        # ... the decision itself would be written here, in the same transaction ...
        written = await outbox.review_outcome(s, candidate_id=cid, business="申请免考", approved=False,
                                              decided_at=decided, application_ref="EX-2026-0001")
    assert written == 2
    got = await rows(db)
    assert [r.openid for r in got] == ["o_phone", "o_tablet"]
    for r in got:
        assert_pushable(r)
        assert r.kind == "review_outcome" and r.priority == 0
        assert r.payload["text"] == "您的申请免考审核结果：未通过。\n回复“免考”查看原因并重新提交。"
        assert r.payload["template"] == {"kind": "review_result", "data": {
            "thing1": "申请免考", "phrase2": "未通过", "time3": "2026年12月01日 10:30", "thing4": "回复“免考”查看原因"}}


async def test_review_outcome_rolled_back_with_its_decision_leaves_nothing(db: Database) -> None:
    cid = await add_candidate(db, ZHAO)
    await add_user(db, "o_phone", cid)
    with pytest.raises(RuntimeError):
        async with db.session() as s, s.begin():
            await outbox.review_outcome(s, candidate_id=cid, business="成绩补登", approved=True,
                                        decided_at=now(), application_ref="BF-1")
            raise RuntimeError("the decision failed to save")
    assert await rows(db) == []


async def test_the_same_decision_twice_pushes_once_and_a_new_decision_pushes_again(db: Database) -> None:
    cid = await add_candidate(db, ZHAO)
    await add_user(db, "o_phone", cid)
    for decision_no, approved in ((1, False), (1, False), (2, True)):
        async with db.session() as s, s.begin():
            await outbox.review_outcome(s, candidate_id=cid, business="成绩补登", approved=approved,
                                        decided_at=now(), application_ref="BF-7", decision_no=decision_no)
    got = await rows(db)
    assert [r.payload["template"]["data"]["phrase2"] for r in got] == ["未通过", "已通过"]
    assert got[1].payload["text"] == "您的成绩补登审核结果：已通过。\n回复“成绩补登”查看详情。"


async def test_enqueue_takes_a_single_row_and_ignores_a_repeat(db: Database) -> None:
    body = outbox.payload("您的申请学位审核结果：已通过。", "review_result", {"thing1": "申请学位"})
    async with db.session() as s, s.begin():
        assert await outbox.enqueue(s, db, openid="o1", kind="review_outcome", payload=body,
                                    client_msg_id="review:D1:1:o1", priority=0)
        assert not await outbox.enqueue(s, "sqlite" if db.is_sqlite else "postgresql", openid="o1",
                                        kind="review_outcome", payload=body, client_msg_id="review:D1:1:o1")
    with pytest.raises(ValueError):
        async with db.session() as s, s.begin():
            await outbox.enqueue(s, openid="o1", kind="reply", payload=body, client_msg_id="x")
    assert len(await rows(db)) == 1


# --- score release through the import -------------------------------------------------------------


def write_scores(directory: Path, lines: list[str], sittings: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "scores.csv").write_text("准考证号,课程代码,考次,成绩\n" + "\n".join(lines) + "\n", "utf-8")
    if sittings is not None:
        (directory / "sittings.csv").write_text("code,name,exam_date,scores_released_at\n" + sittings + "\n", "utf-8")
    return directory


async def test_importing_a_sittings_scores_tells_each_reachable_candidate_once(db: Database, tmp_path: Path) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    zhao, sun = await candidate_id(db, ZHAO), await candidate_id(db, SUN)
    await add_user(db, "o_zhao", zhao)
    await add_user(db, "o_zhao_ipad", zhao)
    await add_user(db, "o_sun", sun, opt_out=True)  # turned notices off
    await add_user(db, "o_stranger", None)  # follows the account, not bound
    directory = write_scores(tmp_path / "s", ["012424100318,00015,202604,88", "012424100318,03708,202604,59",
                                              "012424100392,03708,202604,72"],
                             sittings="202604,2026年04月,2026-04-11,")
    before = now()
    report = await import_directory(db, directory)
    assert report.ok, report.format()
    got = await rows(db)
    assert [r.openid for r in got] == ["o_zhao", "o_zhao_ipad"]
    for r in got:
        assert_pushable(r)
        assert r.kind == "score_release" and r.priority == 5 and "88" not in r.payload["text"]
        assert r.payload["text"] == "2026年04月自学考试成绩已发布。\n回复“成绩”查询您的成绩。"
        assert r.payload["template"]["data"]["thing1"] == "2026年04月自学考试"
    async with db.session() as s:
        released = (await s.get(m.Sitting, "202604")).scores_released_at
    assert released >= before - dt.timedelta(seconds=1)

    again = await import_directory(db, directory)
    assert again.ok and len(await rows(db)) == 2
    # More scores of the same sitting later: only the newly affected candidate hears of it.
    await add_user(db, "o_sun_new", sun)
    later = write_scores(tmp_path / "later", ["012424100392,00015,202604,61"])
    assert (await import_directory(db, later)).ok
    assert [r.openid for r in await rows(db)] == ["o_sun_new", "o_zhao", "o_zhao_ipad"]


async def test_an_old_sitting_is_history_and_a_future_release_time_holds_the_pushes(db: Database, tmp_path: Path) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    await add_user(db, "o_zhao", await candidate_id(db, ZHAO))
    # 202404 was released in 2024 (docs/examples): importing more of its scores tells nobody.
    assert (await import_directory(db, write_scores(tmp_path / "old", ["012424100318,00015,202404,70"]))).ok
    assert await rows(db) == []
    release = (now() + dt.timedelta(days=2)).replace(microsecond=0)
    local = release.astimezone(outbox.SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    directory = write_scores(tmp_path / "new", ["012424100318,00015,202610,70"],
                             sittings=f"202610,2026年10月,2026-10-24,{local}")
    assert (await import_directory(db, directory)).ok
    [row] = await rows(db)
    assert row.due_at == release and row.payload["template"]["data"]["time2"] == outbox.shanghai_time(release)


async def test_score_release_called_directly_skips_opted_out_and_unbound(db: Database) -> None:
    a, b = await add_candidate(db, ZHAO), await add_candidate(db, SUN)
    await add_user(db, "o_a", a)
    await add_user(db, "o_b", b, opt_out=True)
    async with db.session() as s, s.begin():
        s.add(m.Sitting(code="202704", name="2027年04月"))
        await s.flush()
        assert await outbox.score_release(s, "202704", [a, b]) == 1
    assert [r.openid for r in await rows(db)] == ["o_a"]


# --- notices ----------------------------------------------------------------------------------------


async def notice(db: Database, *, audience: str = "all", value: str | None = None, push: bool = True,
                 publish_at: dt.datetime | None = None, title: str = "2027年上半年上海市高等教育自学考试网上报名提示",
                 body: str = "报名时间：2027年2月20日至2月26日。") -> m.Notice:
    async with db.session() as s, s.begin():
        n = m.Notice(title=title, body=body, publish_at=publish_at or now(), audience=audience,
                     audience_value=value, push=push)
        s.add(n)
        await s.flush()
        return n


async def test_notice_fans_out_to_its_audience_in_one_transaction(db: Database) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    zhao, sun = await candidate_id(db, ZHAO), await candidate_id(db, SUN)
    other = await add_candidate(db, "310115199203154215")
    await add_user(db, "o_zhao", zhao)
    await add_user(db, "o_sun", sun)
    await add_user(db, "o_other", other)
    await add_user(db, "o_quiet", other, opt_out=True)
    await add_user(db, "o_unbound", None)
    await add_user(db, "o_left", other, subscribed=False)
    async with db.session() as s, s.begin():  # both have exam records of 202404 (SUN was absent: 缺考)
        s.add(m.CandidateMajor(candidate_id=other, major_code="120402"))
    expected = {
        ("all", None): ["o_other", "o_sun", "o_zhao"],
        ("major", "120402"): ["o_other", "o_sun", "o_zhao"],
        ("sitting", "202404"): ["o_sun", "o_zhao"],
    }
    async with db.session() as s, s.begin():
        s.add(m.Major(code="020301K", name="金融学", level="专升本", required_credits=70))
    expected[("major", "020301K")] = []
    for (audience, value), openids in expected.items():
        n = await notice(db, audience=audience, value=value)
        async with db.session() as s, s.begin():
            n = await s.get(m.Notice, n.id)
            assert await outbox.fan_out_notice(s, n) == len(openids)
        got = await rows(db, notice_id=n.id)
        assert [r.openid for r in got] == openids, (audience, value)
        for r in got:
            assert_pushable(r)
            assert r.kind == "notice" and r.priority == 5
            assert r.payload["text"].startswith("【站内消息】2027年上半年上海市高等教育自学考试网上报名提示\n报名时间")
            assert r.payload["text"].endswith("回复“站内消息”查看全部通知。")
            assert r.payload["template"]["data"]["thing1"] == "2027年上半年上海市高等教育自学考试…"
        async with db.session() as s:
            stored = await s.get(m.Notice, n.id)
            assert stored.fanned_out_at is not None and stored.recipients == len(openids)
            # Fanned out once: a second call adds nothing.
            assert await outbox.fan_out_notice(s, stored) == 0


async def test_a_notice_to_many_is_a_few_statements_not_one_per_recipient(db: Database) -> None:
    cids = []
    async with db.session() as s, s.begin():
        s.add_all([m.Candidate(id=i, id_number=f"T{i:08d}", name="考生", password_hash="x") for i in range(1, 3001)])
        await s.flush()
        s.add_all([m.WechatUser(openid=f"o{i:027d}", candidate_id=i, subscribed=True) for i in range(1, 3001)])
        cids = list(range(1, 3001))
    # Openids too long for the readable client_msg_id take the other path and are still unique.
    await add_user(db, "o" + "L" * 63, cids[0])
    n = await notice(db)
    statements = 0

    def count(*_args) -> None:
        nonlocal statements
        statements += 1

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        async with db.session() as s, s.begin():
            assert await outbox.fan_out_notice(s, await s.get(m.Notice, n.id)) == 3001
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert statements < 10, statements
    progress = await outbox.notice_progress(db, n.id)
    assert progress == {"pending": 3001, "claimed": 0, "sent": 0, "failed": 0, "waiting": 0}
    long = [r for r in await rows(db) if r.openid.startswith("oLLL")]
    assert len(long) == 1 and len(long[0].client_msg_id) == 64


async def test_notice_progress_counts_rows_by_status(db: Database) -> None:
    cid = await add_candidate(db, ZHAO)
    for i in range(5):
        await add_user(db, f"o{i}", cid)
    n = await notice(db)
    async with db.session() as s, s.begin():
        await outbox.fan_out_notice(s, await s.get(m.Notice, n.id))
    async with db.session() as s, s.begin():
        ids = list((await s.execute(select(m.Outbox.id).order_by(m.Outbox.id))).scalars())
        for status, row_ids in (("sent", ids[:2]), ("failed", ids[2:3]), ("claimed", ids[3:4])):
            await s.execute(update(m.Outbox).where(m.Outbox.id.in_(row_ids)).values(status=status))
    assert await outbox.notice_progress(db, n.id) == {"pending": 1, "claimed": 1, "sent": 2, "failed": 1, "waiting": 0}


async def test_due_notices_fan_out_once_and_scheduled_ones_wait(db: Database) -> None:
    cid = await add_candidate(db, ZHAO)
    await add_user(db, "o1", cid)
    t = now()
    due = await notice(db, publish_at=t - dt.timedelta(minutes=1))
    later = await notice(db, publish_at=t + dt.timedelta(hours=1))
    silent = await notice(db, publish_at=t - dt.timedelta(minutes=1), push=False)
    assert await outbox.fan_out_due_notices(db, t) == {due.id: 1}
    assert await outbox.fan_out_due_notices(db, t) == {}
    assert await outbox.fan_out_due_notices(db, t + dt.timedelta(hours=2)) == {later.id: 1}
    assert [r.notice_id for r in await rows(db)] == [due.id, later.id]
    async with db.session() as s:
        assert (await s.get(m.Notice, silent.id)).fanned_out_at is None


# --- business-window reminders -----------------------------------------------------------------------


async def window(db: Database, kind: str, opens: dt.datetime, closes: dt.datetime, title: str | None = None) -> int:
    async with db.session() as s, s.begin():
        w = m.BusinessWindow(kind=kind, title=title or f"2027年上半年{WINDOW_KINDS[kind]}", opens_at=opens, closes_at=closes)
        s.add(w)
        await s.flush()
        return w.id


async def draft(db: Database, openid: str, flow: str) -> None:
    async with db.session() as s, s.begin():
        s.add(m.DialogState(openid=openid, flow=flow, step="evidence", data={}))


async def test_an_opening_window_is_announced_once_to_everyone_reachable(db: Database) -> None:
    cid = await add_candidate(db, ZHAO)
    await add_user(db, "o1", cid)
    await add_user(db, "o2", cid, opt_out=True)
    t = dt.datetime(2027, 3, 1, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    ex = await window(db, "exemption", t + dt.timedelta(minutes=3), t + dt.timedelta(days=10))
    await window(db, "backfill", t - dt.timedelta(days=20), t + dt.timedelta(days=10))  # opened long ago
    first = await outbox.window_reminders(db, t)
    assert first.opened == {}  # not open yet
    second = await outbox.window_reminders(db, t + dt.timedelta(minutes=5))
    assert second.opened == {ex: 1}
    assert (await outbox.window_reminders(db, t + dt.timedelta(minutes=10))).opened == {}
    [row] = await rows(db)
    assert_pushable(row)
    assert row.openid == "o1" and row.kind == "reminder"
    assert row.payload["text"] == "2027年上半年申请免考现已开始办理，截止时间：2027年03月11日 09:00。\n回复“免考”查看须知并办理。"
    assert row.payload["template"]["data"] == {"thing1": "2027年上半年申请免考", "time2": "2027年03月11日 09:00",
                                               "thing3": "已开始办理，回复“免考”办理"}
    # Even a lost check mark cannot announce it twice: the client_msg_id is per window and follower.
    async with db.session() as s, s.begin():
        await s.execute(m.KeyValue.__table__.delete())
    assert (await outbox.window_reminders(db, t + dt.timedelta(minutes=15))).opened == {ex: 0}
    assert len(await rows(db)) == 1


async def test_a_window_closing_within_a_day_reminds_only_those_with_a_draft(db: Database) -> None:
    cid = await add_candidate(db, ZHAO)
    for openid, opt_out in (("o_draft", False), ("o_nodraft", False), ("o_quiet_draft", True), ("o_other_flow", False)):
        await add_user(db, openid, cid, opt_out=opt_out)
    await draft(db, "o_draft", "graduation")
    await draft(db, "o_quiet_draft", "graduation")
    await draft(db, "o_other_flow", "exemption")
    t = dt.datetime(2027, 3, 1, 8, 0, tzinfo=UTC)
    grad = await window(db, "graduation", t - dt.timedelta(days=10), t + dt.timedelta(hours=30))
    assert (await outbox.window_reminders(db, t)).closing == {}
    run = await outbox.window_reminders(db, t + dt.timedelta(hours=7))
    assert run.closing == {grad: 1}
    assert (await outbox.window_reminders(db, t + dt.timedelta(hours=8))).closing == {grad: 0}
    [row] = await rows(db)
    assert_pushable(row)
    assert row.openid == "o_draft"
    assert row.payload["text"] == "您的毕业申请还没有提交，办理将于2027年03月02日 22:00截止。\n回复“申请毕业”继续填写并提交。"
    assert row.payload["template"]["data"]["thing3"] == "申请未提交，回复“申请毕业”继续"
