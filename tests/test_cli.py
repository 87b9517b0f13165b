"""The `zikao-bot` command as a user runs it: demo, import, migrate."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from dialogs import welcome

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "bot.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "DATABASE_URL", "ZIKAO_"))}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path}/cli.sqlite3", ZIKAO_MODE="test", **extra)
    return env


def post_json(url: str, payload: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=15) as r:
        return json.loads(r.read())


def test_demo_serves_the_chat_page_and_answers(tmp_path):
    port, emu_port = free_port(), free_port()
    proc = subprocess.Popen(CLI + ["demo", "--port", str(port), "--emulator-port", str(emu_port)],
                            env=env_for(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "chat page" in line or proc.poll() is not None:
                break
        assert any(f"http://127.0.0.1:{emu_port}/" in l for l in lines), "".join(lines)
        assert any(f"http://127.0.0.1:{port}/wechat" in l for l in lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{emu_port}/", timeout=10) as r:
            assert r.status == 200 and "<html" in r.read().decode().lower()
        base = f"http://127.0.0.1:{emu_port}/_emu/chat"
        answer = post_json(f"{base}/subscribe", {"openid": "o_cli_demo", "subscribed": True})
        assert any(e.get("content", "").startswith(welcome.WELCOME) for e in answer["entries"])
        answer = post_json(f"{base}/text", {"openid": "o_cli_demo", "text": "帮助"})
        assert any(e.get("content", "").startswith(welcome.HELP) for e in answer["entries"])
        assert all(d["ok"] for d in answer["deliveries"])  # signed, encrypted, decrypted end to end
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    assert proc.returncode == 0


def test_import_reports_and_is_idempotent(tmp_path):
    env = env_for(tmp_path)
    first = subprocess.run(CLI + ["import", str(ROOT / "docs/examples")], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    again = subprocess.run(CLI + ["import", str(ROOT / "docs/examples")], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0

    def counts(out: str) -> dict[str, list[int]]:
        # "scores.csv   UTF-8   7   7   0   0": rows, inserted, updated, unchanged
        return {p[0]: [int(x) for x in p[-4:]] for p in (l.split() for l in out.splitlines())
                if p and p[0] == "scores.csv"}

    assert counts(first.stdout)["scores.csv"][1] > 0
    rows, inserted, updated, unchanged = counts(again.stdout)["scores.csv"]
    assert (inserted, updated, unchanged) == (0, 0, rows)


def test_import_with_a_bad_row_imports_nothing_and_names_the_line(tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(ROOT / "docs/examples", bad)
    rows = (bad / "courses.csv").read_text(encoding="utf-8-sig").splitlines()
    rows.append("1234,不存在的课程,理论")
    (bad / "courses.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    proc = subprocess.run(CLI + ["import", str(bad)], env=env_for(tmp_path), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "courses.csv" in proc.stdout and str(len(rows)) in proc.stdout


def test_import_of_a_missing_directory_says_so(tmp_path):
    proc = subprocess.run(CLI + ["import", str(tmp_path / "nope")], env=env_for(tmp_path), cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not a directory" in proc.stderr


def test_migrate_twice_is_harmless(tmp_path):
    for _ in range(2):
        proc = subprocess.run(CLI + ["migrate"], env=env_for(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
