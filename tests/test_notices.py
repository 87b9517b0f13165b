"""Publishing notices: input checks, immediate and scheduled fan-out, `zikao-bot notice ...`."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from storage import models as m
from storage import notices
from storage.db import Database
from storage.importer import import_directory
from storage.outbox import fan_out_due_notices
from tests.test_outbox import EXAMPLES, ZHAO, add_user, candidate_id, rows

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "bot.cli"]
UTC = dt.timezone.utc


# --- checks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, audience", [
    ("all", notices.Audience("all")),
    (" major:020301k ", notices.Audience("major", "020301K")),
    ("sitting:202604", notices.Audience("sitting", "202604")),
    ("sitting:2026年4月", notices.Audience("sitting", "202604")),
])
def test_audiences_are_parsed(text: str, audience: notices.Audience) -> None:
    assert notices.parse_audience(text) == audience


@pytest.mark.parametrize("text, fragment", [
    ("everyone", "应为 all、major:专业代码 或 sitting:考次"),
    ("major:", "应为 all、major:专业代码 或 sitting:考次"),
    ("major:12345", "专业代码“12345”格式不对"),
    ("sitting:2026", "考次“2026”格式不对"),
])
def test_bad_audiences_say_what_is_expected(text: str, fragment: str) -> None:
    with pytest.raises(notices.NoticeError, match=fragment):
        notices.parse_audience(text)


def test_publish_time_is_beijing_time_and_bad_ones_are_refused() -> None:
    assert notices.parse_publish_at("2026-12-01 09:00") == dt.datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    fixed = dt.datetime(2026, 1, 1, tzinfo=UTC)
    assert notices.parse_publish_at(None, fixed) == fixed
    with pytest.raises(notices.NoticeError, match="格式不对"):
        notices.parse_publish_at("明天上午")
    with pytest.raises(notices.NoticeError, match="不存在"):
        notices.parse_publish_at("2026-02-30 09:00")


@pytest.mark.parametrize("title, body, category, fragment", [
    ("  ", "正文", "站内消息", "标题不能为空"),
    ("长" * 129, "正文", "站内消息", "标题过长（129 字，最多 128 字）"),
    ("两\n行", "正文", "站内消息", "标题不能换行"),
    ("标题", " ", "站内消息", "正文不能为空"),
    ("标题", "正文", "公告", "类别应为 站内消息 或 新闻通知"),
])
def test_bad_text_is_refused_with_one_line(title: str, body: str, category: str, fragment: str) -> None:
    with pytest.raises(notices.NoticeError) as e:
        notices.check_text(title, body, category)
    assert fragment in str(e.value) and "\n" not in str(e.value)


# --- publishing ---------------------------------------------------------------------------------------


async def test_publishing_now_fans_out_in_the_same_transaction(db: Database) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    await add_user(db, "o_zhao", await candidate_id(db, ZHAO))
    published = await notices.publish(db, title="考试日程安排表", body="4月11日上午：理论课程第一场。")
    assert published.recipients == 1 and published.audience_label == "全部考生"
    [row] = await rows(db)
    assert row.notice_id == published.notice.id and row.openid == "o_zhao"
    text = notices.format_published(published)
    assert f"已发布通知 #{published.notice.id}「考试日程安排表」" in text and "共 1 人" in text


async def test_scheduled_notice_waits_for_its_time(db: Database) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    await add_user(db, "o_zhao", await candidate_id(db, ZHAO))
    t = dt.datetime.now(UTC)
    published = await notices.publish(db, title="报名提示", body="……", publish_at=t + dt.timedelta(hours=2),
                                      audience=notices.Audience("major", "120402"), now=t)
    assert published.recipients is None and published.audience_label == "专业 120402 行政管理(专升本)"
    assert await rows(db) == []
    assert "将于" in notices.format_published(published, t)
    assert await fan_out_due_notices(db, t + dt.timedelta(hours=1)) == {}
    assert await fan_out_due_notices(db, t + dt.timedelta(hours=2)) == {published.notice.id: 1}
    status = notices.format_status(await notices.get_notice(db, published.notice.id),
                                   (await notices.progress_of(db, [published.notice.id]))[published.notice.id])
    assert "推送人数 1" in status and "待发送 1" in status and "完成 0.0%" in status


async def test_a_notice_without_push_is_stored_and_never_pushed(db: Database) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    await add_user(db, "o_zhao", await candidate_id(db, ZHAO))
    published = await notices.publish(db, title="新闻", body="……", category="新闻通知", push=False)
    assert published.recipients is None and "不推送" in notices.format_published(published)
    assert await fan_out_due_notices(db) == {}
    assert await rows(db) == []
    async with db.session() as s:
        stored = await s.scalar(select(m.Notice))
    assert stored.category == "新闻通知" and not stored.push


async def test_unknown_major_or_sitting_is_refused_and_nothing_is_stored(db: Database) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    for audience, fragment in ((notices.Audience("major", "020301K"), "专业代码 020301K 不存在"),
                               (notices.Audience("sitting", "209904"), "考次 209904 不存在")):
        with pytest.raises(notices.NoticeError, match=fragment):
            await notices.publish(db, title="t", body="b", audience=audience)
    assert await notices.list_notices(db) == []


# --- the command ---------------------------------------------------------------------------------------


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path}/cli.sqlite3", "LOG_LEVEL": "WARNING",
           "ZIKAO_MODE": "test"}
    return subprocess.run(CLI + list(args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_notice_commands_publish_list_and_report_progress(tmp_path: Path) -> None:
    assert run(tmp_path, "import", str(EXAMPLES)).returncode == 0
    body = tmp_path / "body.txt"
    body.write_bytes("考试时间：2027年4月10日至11日。\n请提前打印准考证。".encode("gbk"))
    now = run(tmp_path, "notice", "publish", "--title", "2027年上半年考试安排", "--body-file", str(body),
              "--audience", "sitting:202410")
    assert now.returncode == 0, now.stderr
    assert "已发布通知 #1「2027年上半年考试安排」（站内消息，考次 2024年10月 的考生）" in now.stdout
    assert "共 0 人" in now.stdout  # nobody has bound WeChat yet
    later = run(tmp_path, "notice", "publish", "--title", "报名提示", "--body", "……", "--at", "2030-12-01 09:00")
    assert later.returncode == 0 and "将于 2030-12-01 09:00（北京时间）" in later.stdout
    listed = run(tmp_path, "notice", "list")
    lines = listed.stdout.splitlines()
    assert listed.returncode == 0 and lines[0].split()[:5] == ["编号", "发布时间", "类别", "对象", "状态"]
    assert lines[1].split()[:3] == ["2", "2030-12-01", "09:00"] and "待发布" in lines[1]
    assert lines[2].split()[0] == "1" and "已完成" in lines[2]
    status = run(tmp_path, "notice", "status", "2")
    assert status.returncode == 0 and "状态 待发布" in status.stdout
    assert "推送人数 0" in run(tmp_path, "notice", "status", "1").stdout


@pytest.mark.parametrize("args, message", [
    (["--title", "t", "--body", "b", "--at", "2026/12/1 25:00"], "不存在"),
    (["--title", "t", "--body", "b", "--at", "下周一"], "格式不对"),
    (["--title", "t", "--body", "b", "--audience", "major:020301K"], "专业代码 020301K 不存在"),
    (["--title", "t", "--body", "b", "--audience", "sitting:209904"], "考次 209904 不存在"),
    (["--title", "", "--body", "b"], "标题不能为空"),
    (["--title", "长" * 129, "--body", "b"], "标题过长"),
    (["--title", "t"], "--body 或 --body-file"),
    (["--title", "t", "--body-file", "/nonexistent/body.txt"], "无法读取正文文件"),
])
def test_bad_publish_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run(tmp_path, "notice", "publish", *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("zikao-bot notice publish: ") and message in proc.stderr
    assert "还没有通知" in run(tmp_path, "notice", "list").stdout


def test_status_of_an_unknown_notice_says_so(tmp_path: Path) -> None:
    proc = run(tmp_path, "notice", "status", "42")
    assert proc.returncode == 2 and proc.stderr.strip() == "zikao-bot notice status: 通知 #42 不存在"
