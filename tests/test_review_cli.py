"""`zikao-bot review list|show|approve|reject`: staff decide applications from the command line."""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import review_cli
from bot.config import Settings
from storage import applications as apps
from storage import models as m
from storage.db import Database
from storage.models_applications import Photo
from storage.photos import LocalPhotoStore, process_photo, save_photo
from tests.test_applications import OPENID, ZHAO_ADMISSION, evidence, exemption_draft, world
from tests.test_outbox import ZHAO
from tests.test_photos import document, encode

ROOT = Path(__file__).resolve().parents[1]
ZHAO_MOBILE = "13764219053"  # docs/examples


def parser() -> argparse.ArgumentParser:
    """Like bot.cli.build_parser, with the review command registered as the lead wires it."""
    p = argparse.ArgumentParser(prog="zikao-bot")
    p.add_argument("--config")
    sub = p.add_subparsers(dest="command", required=True)
    review_cli.register(sub)
    return p


async def cli(settings: Settings, capsys, *argv: str) -> tuple[int, str, str]:
    """Run `zikao-bot review ...` as the console script would, off the test's event loop."""
    args = parser().parse_args(["review", *argv])
    code = await asyncio.to_thread(review_cli.run, args, settings)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, media_dir=str(tmp_path / "media"))


async def pending_application(db: Database, settings: Settings) -> apps.ApplicationData:
    """赵敏 applies for 00320 with a CET-4 report of two real photos, stored where the service keeps them."""
    w = await world(db)
    store = LocalPhotoStore.under_media_dir(settings.media_dir)
    first = await save_photo(db, store, process_photo(encode(document(1300, 1000))))
    second = await save_photo(db, store, process_photo(encode(document(900, 1200, seed=5), "PNG")))
    draft = await exemption_draft(db, w, {"00320": [evidence(photo_ids=[first.id, second.id])]})
    return await apps.submit(db, draft)


async def test_list_shows_pending_applications_by_default(db: Database, settings: Settings, capsys) -> None:
    pending = await pending_application(db, settings)
    draft = await apps.open_draft(db, kind="backfill", candidate_id=pending.candidate_id, openid=OPENID,
                                  admission_number=ZHAO_ADMISSION)
    code, out, _ = await cli(settings, capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["编号", "类型", "状态", "考生", "准考证号", "课程", "提交时间", "审核"]
    assert lines[1].split()[:6] == [str(pending.id), "申请免考", "待审核", "赵敏", ZHAO_ADMISSION, "领导科学"]
    assert len(lines) == 3 and "共 1 份" in lines[2]
    code, out, _ = await cli(settings, capsys, "list", "--status", "all")
    assert {l.split()[0] for l in out.splitlines()[1:-1]} == {str(pending.id), str(draft.id)}
    code, out, _ = await cli(settings, capsys, "list", "--status", "草稿", "--kind", "成绩补登")
    assert [l.split()[0] for l in out.splitlines()[1:-1]] == [str(draft.id)]
    code, out, _ = await cli(settings, capsys, "list", "--status", "approved")
    assert (code, out.strip()) == (0, "没有审核通过的申请。")


async def test_list_refuses_an_unknown_filter(db: Database, settings: Settings, capsys) -> None:
    code, _, err = await cli(settings, capsys, "list", "--status", "paid")
    assert code == 2 and "状态“paid”不对" in err
    code, _, err = await cli(settings, capsys, "list", "--kind", "thesis-ish")
    assert code == 2 and "类型“thesis-ish”不对" in err


async def test_show_prints_every_field_with_masked_identifiers_and_photo_files(
        db: Database, settings: Settings, capsys) -> None:
    pending = await pending_application(db, settings)
    code, out, _ = await cli(settings, capsys, "show", str(pending.id))
    assert code == 0
    assert out.splitlines()[0] == f"申请 #{pending.id}  申请免考  待审核  版本 {pending.version}"
    assert "考生 赵敏  证件号码 3101**********4567  手机 137****9053" in out
    assert ZHAO not in out and ZHAO_MOBILE not in out
    assert f"准考证号 {ZHAO_ADMISSION}  专业 120402 行政管理(专升本)" in out
    assert "办理时间 2026年下半年申请免考" in out
    assert "课程 1：00320 领导科学" in out
    assert ("凭证 1：大学英语四级（CET-4）成绩单  编号 CET4-2018-000123  获取时间 2018年6月  省份 上海市  备注 -"
            in out)
    store = LocalPhotoStore.under_media_dir(settings.media_dir)
    async with db.session() as s:
        photos = {p.id: p for p in (await s.execute(select(Photo))).scalars()}
    for n, pid in enumerate(pending.items[0].evidences[0].photo_ids, 1):
        p = photos[pid]
        path = store.locate(p.storage_key)
        assert Path(path).is_file()
        assert f"照片 {n}：{path}  {p.size / 1024:.0f} KB  {p.width}×{p.height}" in out
    assert "1300×1000" in out and "900×1200" in out
    assert "创建" in out and "草稿 -> 待审核" in out
    assert f"zikao-bot review approve {pending.id} --by 姓名 --version {pending.version}" in out


async def test_show_flags_a_missing_photo_file(db: Database, settings: Settings, capsys) -> None:
    pending = await pending_application(db, settings)
    store = LocalPhotoStore.under_media_dir(settings.media_dir)
    for f in Path(store.directory).rglob("*.png"):
        f.unlink()
    code, out, _ = await cli(settings, capsys, "show", str(pending.id))
    assert code == 0 and out.count("（文件缺失）") == 1


async def test_approve_records_who_and_queues_the_push(db: Database, settings: Settings, capsys) -> None:
    pending = await pending_application(db, settings)
    code, out, err = await cli(settings, capsys, "approve", str(pending.id), "--by", "张老师",
                               "--version", str(pending.version))
    assert code == 0, err
    assert f"申请 #{pending.id}（申请免考，赵敏）审核通过，审核人 张老师" in out
    assert "写入成绩记录 1 条" in out and "已通知考生（1 条推送待发送）" in out
    after = await apps.load_application(db, pending.id)
    assert (after.status, after.decided_by) == ("approved", "张老师") and after.decided_at is not None
    async with db.session() as s:
        [push] = (await s.execute(select(m.Outbox))).scalars().all()
        assert push.openid == OPENID and "已通过" in push.payload["text"]


async def test_reject_needs_a_reason_and_records_it(db: Database, settings: Settings, capsys) -> None:
    pending = await pending_application(db, settings)
    with pytest.raises(SystemExit) as e:
        parser().parse_args(["review", "reject", str(pending.id), "--by", "张老师"])
    assert e.value.code == 2
    capsys.readouterr()
    code, out, err = await cli(settings, capsys, "reject", str(pending.id), "--reason", "照片不清晰，请重新拍摄",
                               "--by", "张老师")
    assert code == 0, err
    assert "未通过" in out
    after = await apps.load_application(db, pending.id)
    assert (after.status, after.reason, after.decided_by) == ("rejected", "照片不清晰，请重新拍摄", "张老师")
    code, out, _ = await cli(settings, capsys, "show", str(pending.id))
    assert "原因 照片不清晰，请重新拍摄" in out and "审核不通过  待审核 -> 未通过  张老师  原因：照片不清晰，请重新拍摄" in out


async def test_refused_decisions_exit_non_zero_and_change_nothing(db: Database, settings: Settings, capsys) -> None:
    pending = await pending_application(db, settings)
    code, _, err = await cli(settings, capsys, "approve", str(pending.id), "--by", "张老师",
                             "--version", str(pending.version - 1))
    assert code == 1 and "有了变化" in err
    code, _, err = await cli(settings, capsys, "approve", "999999", "--by", "张老师")
    assert code == 2 and "申请 #999999 不存在" in err
    draft = await apps.open_draft(db, kind="backfill", candidate_id=pending.candidate_id, openid=OPENID,
                                  admission_number=ZHAO_ADMISSION)
    code, _, err = await cli(settings, capsys, "reject", str(draft.id), "--reason", "x", "--by", "张老师")
    assert code == 1 and "草稿" in err
    assert (await apps.load_application(db, pending.id)).status == "submitted"
    async with db.session() as s:
        assert (await s.execute(select(m.Outbox))).first() is None


def test_console_script_path_reads_settings_from_the_environment(tmp_path: Path) -> None:
    # What `zikao-bot review list` does once bot/cli.py registers the command.
    script = ("import argparse, sys\nfrom bot import review_cli\n"
              "p = argparse.ArgumentParser(); p.add_argument('--config')\n"
              "sub = p.add_subparsers(dest='command', required=True); review_cli.register(sub)\n"
              "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "DATABASE_URL", "ZIKAO_"))}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path}/review.sqlite3", PYTHONPATH=str(ROOT), ZIKAO_MODE="test")
    run = subprocess.run([sys.executable, "-c", script, "review", "list"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "没有待审核的申请。"
