"""Settings: defaults, the optional file, and one-line reasons for bad values."""
import subprocess
import sys

import pytest

from bot.config import REAL_WECHAT_API, ConfigError, load_settings

GOOD_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def test_defaults_talk_to_real_wechat_and_sqlite():
    s = load_settings({})
    assert s.wechat_api_base == REAL_WECHAT_API
    assert s.database_url.startswith("sqlite:///")
    assert not s.safe_mode and s.port == 8080


def test_environment_wins_over_file(tmp_path):
    f = tmp_path / "zikao.env"
    f.write_text("# comment\nWECHAT_TOKEN=fromfile\nPORT=9000\n", encoding="utf-8")
    s = load_settings({"ZIKAO_CONFIG": str(f), "PORT": "9100"})
    assert s.wechat_token == "fromfile" and s.port == 9100


@pytest.mark.parametrize("env, fragment", [
    ({"PORT": "eighty"}, "PORT"),
    ({"PORT": "70000"}, "PORT"),
    ({"WECHAT_AES_KEY": "short"}, "WECHAT_AES_KEY"),
    ({"WECHAT_AES_KEY": "!" * 43}, "WECHAT_AES_KEY"),
    ({"WECHAT_AES_KEY_PREVIOUS": GOOD_KEY}, "WECHAT_AES_KEY_PREVIOUS"),
    ({"WECHAT_TOKEN": "a b"}, "WECHAT_TOKEN"),
    ({"WECHAT_APP_ID": "appid"}, "WECHAT_APP_ID"),
    ({"WECHAT_API_BASE": "api.weixin.qq.com"}, "WECHAT_API_BASE"),
    ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
    ({"REDIS_URL": "http://x"}, "REDIS_URL"),
    ({"ZIKAO_CONFIG": "/nonexistent/zikao.env"}, "ZIKAO_CONFIG"),
])
def test_bad_values_name_the_variable(env, fragment):
    with pytest.raises(ConfigError) as e:
        load_settings(env)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_rotation_keys_current_first():
    prev = "A" * 42 + "A"
    s = load_settings({"WECHAT_AES_KEY": GOOD_KEY, "WECHAT_AES_KEY_PREVIOUS": prev})
    assert len(s.aes_keys) == 2 and s.safe_mode


def test_describe_hides_secrets():
    s = load_settings({"WECHAT_APP_SECRET": "topsecret", "DATABASE_URL": "postgresql://u:pw@h/db"})
    d = s.describe()
    assert "topsecret" not in str(d) and "pw" not in d["database_url"]


def test_bad_value_stops_startup_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "serve"], env={"PORT": "x", "PATH": ""},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "PORT" in proc.stderr
