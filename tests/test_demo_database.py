"""After `make demo`, every `zikao-bot` command of the README works on the demo's data with no
extra variable: the demo uses the default database, the one the commands open."""
from __future__ import annotations

import pytest

from bot import cli
from bot.config import load_settings
from storage.demo import load_demo
from storage.migrate import upgrade


@pytest.fixture
def fresh_checkout(tmp_path, monkeypatch):
    """A checkout's directory with nothing configured, as a new operator has it."""
    monkeypatch.chdir(tmp_path)
    for k in ("DATABASE_URL", "ZIKAO_CONFIG", "MEDIA_DIR", "REDIS_URL"):
        monkeypatch.delenv(k, raising=False)
    return tmp_path


def test_demo_and_commands_share_one_database(fresh_checkout, capsys):
    settings = cli.demo_settings(cli.build_parser().parse_args(["demo"]))
    assert settings.database_url == load_settings({}).database_url
    upgrade(settings.database_url)  # what `zikao-bot demo` does before serving
    import asyncio

    asyncio.run(cli._with_db_async(settings, load_demo))
    assert (fresh_checkout / "var" / "zikao.sqlite3").is_file()

    assert cli.main(["notice", "list"]) == 0
    out = capsys.readouterr().out
    assert "上海市高等教育自学考试网上报名提示" in out and "日程安排表" in out  # the demo's two notices
    assert cli.main(["review", "list", "--status", "all"]) == 0
    assert cli.main(["backup", str(fresh_checkout / "backup")]) == 0
    assert "sqlite database" in capsys.readouterr().out


def test_commands_after_the_demo_read_its_settings_file(fresh_checkout):
    """`make demo` leaves var/zikao.env behind, so a later command in the same directory runs with the
    demo's mode (its SECRET_KEY), the emulator's API and the same database, with no variable set."""
    settings = cli.demo_settings(cli.build_parser().parse_args(["demo"]))
    local = cli._settings(cli.build_parser().parse_args(["review", "list"]))
    assert (fresh_checkout / "var" / "zikao.env").is_file()
    assert local.zikao_mode == "demo" and local.wechat_api_base == settings.wechat_api_base
    assert local.database_url == settings.database_url
    # Every command module reads it the same way (they used to load settings each on its own).
    from bot.config import command_settings

    assert command_settings().zikao_mode == "demo"
    # An explicit ZIKAO_CONFIG, even empty, wins over the local file.
    assert load_settings({"ZIKAO_CONFIG": ""}, local_file=True).zikao_mode == "production"
