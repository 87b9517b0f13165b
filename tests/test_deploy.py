"""deploy/: the files an operator installs are valid for the tools that read them.

nginx and systemd check their own syntax (`nginx -t`, `systemd-analyze verify`); each check runs
where the tool is installed and is skipped where it is not. The example environment file must
load as the service's settings once its placeholders are filled in.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bot.config import load_settings, read_env_file

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def test_the_example_environment_file_configures_the_service():
    values = read_env_file(DEPLOY / "zikao.env.example")
    values.update(WECHAT_APP_SECRET="s", WECHAT_TOKEN="zikaoprod2026",
                  WECHAT_AES_KEY="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
                  TENCENT_SMS_SECRET_ID="AKIDx", TENCENT_SMS_SECRET_KEY="k", TENCENT_SMS_SDK_APP_ID="1400000001",
                  TENCENT_SMS_TEMPLATE_ID="1000001")
    settings = load_settings(values)
    assert settings.database_url.startswith("postgresql://") and settings.redis_url
    assert settings.log_format == "json" and settings.sms_provider == "tencent"
    assert settings.host == "127.0.0.1" and settings.port == 8080


@pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("openssl") is None,
                    reason="nginx (and openssl) not installed")
def test_the_nginx_site_is_valid(tmp_path):
    site = (DEPLOY / "nginx" / "zikao-bot.conf").read_text()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=zikao.example.cn",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    site = site.replace("/etc/letsencrypt/live/zikao.example.cn/fullchain.pem", str(tmp_path / "cert.pem"))
    site = site.replace("/etc/letsencrypt/live/zikao.example.cn/privkey.pem", str(tmp_path / "key.pem"))
    site = site.replace("/var/log/nginx/", f"{tmp_path}/")
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path};\n include {tmp_path}/site.conf;\n}}\n")
    done = subprocess.run(["nginx", "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for location in ("location = /wechat", "location /console/", "location = /healthz", "location = /metrics"):
        assert location in site


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_units_are_valid(tmp_path):
    units = []
    for unit in sorted((DEPLOY / "systemd").iterdir()):
        # The command must exist for `verify`: any executable stands in for the installed one.
        text = unit.read_text().replace("/opt/zikao-bot/.venv/bin/zikao-bot", shutil.which("true") or "/bin/true")
        target = tmp_path / unit.name
        target.write_text(text)
        units.append(str(target))
    done = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True,
                          env={"SYSTEMD_LOG_LEVEL": "warning", "PATH": "/usr/bin:/bin"})
    problems = [line for line in done.stderr.splitlines() if "zikao-bot" in line]
    assert problems == [], done.stderr
