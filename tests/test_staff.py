"""Staff accounts as plain rules and through `zikao-bot staff`; the console's FAQ edit as text; demo accounts."""
from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import pyotp
import pytest
import yaml

from bot import staff_cli
from console.faq_views import entry_yaml, replace_entry
from storage import review_queue, staff
from storage.db import Database
from storage.windows import WindowForm, window_problems

NOW = dt.datetime(2026, 11, 29, 2, 0, tzinfo=dt.timezone.utc)


def test_passwords_must_be_long_and_not_contain_the_username() -> None:
    assert staff.password_problem("short") == "密码至少10位。"
    assert staff.password_problem("zhang-2026-abc", "zhang") == "密码不能包含用户名。"
    assert staff.password_problem("aaaaaaaaaaaa") == "密码太简单了。"
    assert staff.password_problem("Kaoban-2026-secret", "zhang") is None


def test_usernames_are_short_lower_case_words() -> None:
    assert staff.username_problem("zhang.l") is None
    for bad in ("Zhang", "1zhang", "z", "张老师", "a" * 40, "zh ang"):
        assert staff.username_problem(bad), bad


def test_the_fifth_failure_in_a_row_locks_for_fifteen_minutes() -> None:
    assert staff.lockout_after(staff.MAX_FAILURES - 1, NOW) is None
    assert staff.lockout_after(staff.MAX_FAILURES, NOW) == NOW + dt.timedelta(minutes=15)


def test_a_reviewer_decides_only_the_kinds_given_and_kinds_come_from_the_schema() -> None:
    from storage.models_applications import APPLICATION_KINDS

    assert staff.known_kinds() == APPLICATION_KINDS
    assert staff.check_kinds(["申请免考", "backfill", "backfill"]) == ["exemption", "backfill"]
    with pytest.raises(staff.StaffError, match="不存在"):
        staff.check_kinds(["打麻将"])
    info = staff.StaffInfo(1, "bu", "李老师", "reviewer", ("backfill",), True, False, None, None, 0)
    assert staff.can_decide(info, "backfill") and not staff.can_decide(info, "exemption")
    assert not staff.can_decide(info.__class__(**{**info.__dict__, "active": False}), "backfill")


def test_totp_codes_are_checked_with_one_step_of_slack() -> None:
    secret = staff.new_totp_secret()
    totp = pyotp.TOTP(secret)
    assert staff.totp_ok(secret, totp.at(NOW), NOW)
    assert staff.totp_ok(secret, totp.at(NOW - dt.timedelta(seconds=30)), NOW)
    assert not staff.totp_ok(secret, totp.at(NOW - dt.timedelta(minutes=5)), NOW)
    assert not staff.totp_ok(secret, "abcdef", NOW)


def test_window_and_queue_filters_say_what_is_wrong() -> None:
    f = WindowForm("nope", " ", NOW, NOW - dt.timedelta(hours=1), "2026-13", "")
    assert window_problems(f) == ["请选择业务。", "请填写标题。", "结束时间必须晚于开始时间。",
                                  "考次格式不对，应为年月，如 202610。"]
    assert window_problems(WindowForm("exemption", "免考", NOW, NOW + dt.timedelta(days=3))) == []
    bad = review_queue.QueueFilter("exemption", status="nope", submitted_from=dt.date(2026, 2, 1),
                                   submitted_to=dt.date(2026, 1, 1))
    assert review_queue.filter_problems(bad) == ["状态不对。", "提交日期的开始晚于结束。"]


def test_an_faq_entry_is_replaced_alone_and_reads_back_the_same() -> None:
    text = ("# comment on top\nversion: 1\nentries:\n\n# ---- group\n\n"
            "- id: first\n  topic: 甲\n  questions:\n    - 问一\n    - 问二\n  answer: 旧的回答\n  source: 手册\n\n"
            "# ---- next group\n\n"
            "- id: second\n  questions:\n    - 问三\n    - 问四\n  answer: 第二条\n  source: 手册\n")
    new = {"id": "first", "topic": "甲", "questions": ["问一", "问: 二 #号"], "answer": "第一行\n第二行：有冒号",
           "action": "flow:bind", "source": "操作手册 十"}
    out = replace_entry(text, "first", new)
    assert out.startswith("# comment on top\nversion: 1\nentries:\n\n# ---- group\n\n- id: first\n")
    assert "# ---- next group" in out and "- id: second" in out and "旧的回答" not in out
    data = yaml.safe_load(out)
    assert data["entries"][0] == new and data["entries"][1]["id"] == "second"
    assert entry_yaml(new)[4] == "    - '问: 二 #号'"
    with pytest.raises(KeyError):
        replace_entry(text, "third", new)


def test_an_faq_entry_is_edited_as_written_placeholders_and_matching_fields_kept() -> None:
    from console.faq_views import _as_dict
    from dialogs.faq.index import DEFAULT_KB, parse_entries
    contacts = next(e for e in parse_entries(DEFAULT_KB) if e.id == "contacts")
    d = _as_dict(contacts)
    assert "{phone}" in d["answer"] and "400-0960-990" in contacts.answer  # the rule stays quoted from code
    old = next(e for e in parse_entries(DEFAULT_KB) if e.id == "backfill-old-exemption")
    lines = entry_yaml(_as_dict(old))
    assert "  business: 补登" in lines and "  also: [免考]" in lines and "  aspect: 条件" in lines


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="zikao-bot")
    p.add_argument("--config")
    sub = p.add_subparsers(dest="command", required=True)
    staff_cli.register(sub)
    return p.parse_args(["staff", *argv])


async def test_staff_command_creates_the_first_admin_without_echoing_the_password(
        db_url: str, db: Database, monkeypatch, capsys) -> None:
    import asyncio

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv(staff_cli.PASSWORD_ENV, "First-Admin-2026")
    code = await asyncio.to_thread(staff_cli._command, _args("add", "wangzr", "--name", "王主任", "--role", "admin",
                                                             "--kinds", "exemption,成绩补登"))
    out = capsys.readouterr()
    assert code == 0 and "已创建 wangzr（王主任，管理员，审核业务：申请免考、成绩补登）" in out.out
    assert "First-Admin-2026" not in out.out + out.err
    result = await staff.authenticate(db, "wangzr", "First-Admin-2026")
    assert result.staff is not None and result.staff.kinds == ("exemption", "backfill")
    code = await asyncio.to_thread(staff_cli._command, _args("add", "wangzr", "--name", "又一个"))
    assert code == 1 and "已存在" in capsys.readouterr().err
    assert await asyncio.to_thread(staff_cli._command, _args("disable", "wangzr")) == 0
    assert (await staff.authenticate(db, "wangzr", "First-Admin-2026")).staff is None
    assert await asyncio.to_thread(staff_cli._command, _args("list")) == 0
    assert "wangzr" in capsys.readouterr().out


async def test_demo_accounts_and_applications_load_once(sqlite_db: Database, tmp_path: Path) -> None:
    from storage import applications as apps
    from storage.demo import load_demo
    from storage.demo_console import load_demo_applications, load_demo_staff
    from storage.photos import LocalPhotoStore

    await load_demo(sqlite_db)
    store = LocalPhotoStore(tmp_path / "photos")
    assert await load_demo_staff(sqlite_db) == ["kaoban", "mianshen", "bushen"]
    assert await load_demo_applications(sqlite_db, store) == 2
    assert await load_demo_staff(sqlite_db) == [] and await load_demo_applications(sqlite_db, store) == 0
    pending = await apps.list_applications(sqlite_db, status="submitted")
    assert len(pending) == 2 and all(d.photo_count() == 2 for d in pending)
