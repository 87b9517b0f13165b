"""`zikao-bot transfer-in list|show|status` and `zikao-bot transfer-out rules`."""
from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest

from bot import transfer_cli
from bot.config import Settings
from storage import transfers as tr
from storage.db import Database
from storage.importer import import_directory
from tests.test_import import EXAMPLES
from tests.test_transfers import bind, pushes


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zikao-bot")
    sub = p.add_subparsers(dest="command", required=True)
    transfer_cli.register(sub)
    return p


async def cli(settings: Settings, capsys, *argv: str) -> tuple[int, str, str]:
    args = parser().parse_args(list(argv))
    code = await asyncio.to_thread(transfer_cli.run, args, settings)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, media_dir=str(tmp_path / "media"))


async def test_list_and_show_a_record_with_its_courses(db: Database, settings: Settings, capsys) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    code, out, _ = await cli(settings, capsys, "transfer-in", "list", "--status", "待现场确认")
    assert code == 0 and "ZR2024000017" in out and "2/3 认定" in out
    code, out, _ = await cli(settings, capsys, "transfer-in", "show", "ZR2024000017")
    assert code == 0 and "来源省 江苏省" in out and "不认定（课程内容与本市考试计划不一致，不予认定）" in out
    code, _, err = await cli(settings, capsys, "transfer-in", "show", "ZR404")
    assert code == 2 and "不存在" in err


async def test_status_moves_the_record_and_queues_the_push(db: Database, settings: Settings, capsys) -> None:
    assert (await import_directory(db, EXAMPLES)).ok
    await bind(db)
    code, out, _ = await cli(settings, capsys, "transfer-in", "status", "ZR2024000017", "待现场确认",
                             "--confirm-at", "2024-11-28 13:30", "--place", "徐汇区漕溪北路 331 号")
    assert code == 0 and "已通知考生（1 条推送待发送）" in out
    assert "2024年11月28日 13:30" in (await pushes(db))[-1].payload["text"]
    code, _, err = await cli(settings, capsys, "transfer-in", "status", "ZR2024000017", "审核中")
    assert code == 1 and "不能从“待现场确认”退回“审核中”" in err
    code, _, err = await cli(settings, capsys, "transfer-in", "status", "ZR2024000017", "未通过")
    assert code == 1 and "须填写原因" in err
    code, _, err = await cli(settings, capsys, "transfer-in", "status", "ZR2024000017", "作废")
    assert code == 2 and "状态“作废”不对" in err
    code, _, err = await cli(settings, capsys, "transfer-in", "status", "ZR2024000017", "待现场确认",
                             "--confirm-at", "明天上午")
    assert code == 2 and "格式不对" in err
    assert len(await pushes(db)) == 1


async def test_rules_are_printed_set_from_a_file_and_reset(db: Database, settings: Settings, capsys,
                                                        tmp_path: Path) -> None:
    code, out, _ = await cli(settings, capsys, "transfer-out", "rules")
    assert code == 0 and json.loads(out) == tr.TransferOutRules().to_dict()
    good = tmp_path / "rules.json"
    good.write_text(json.dumps({"exclude_course_kinds": {"实践": "实践课程成绩不能转出"}}, ensure_ascii=False), "utf-8")
    code, out, _ = await cli(settings, capsys, "transfer-out", "rules", "--set", str(good))
    assert code == 0 and json.loads(out)["exclude_course_kinds"] == {"实践": "实践课程成绩不能转出"}
    assert (await tr.transfer_out_rules(db)).exclude_course_kinds == {"实践": "实践课程成绩不能转出"}
    bad = tmp_path / "bad.json"
    bad.write_text('{"exclude_courses": {"15": "x"}}', "utf-8")
    code, _, err = await cli(settings, capsys, "transfer-out", "rules", "--set", str(bad))
    assert code == 2 and "5-digit" in err
    code, out, _ = await cli(settings, capsys, "transfer-out", "rules", "--reset")
    assert code == 0 and json.loads(out) == tr.TransferOutRules().to_dict()
