"""Load generator: drives the bot through the real WeChat protocol and prints msg/s and latency.

    python -m bench.loadgen --spawn --users 2000 --duration 10            # start a bot, flat out
    python -m bench.loadgen --spawn --rate 1000 --duration 10             # open loop at 1,000 msg/s
    python -m bench.loadgen --url http://127.0.0.1:8080/wechat --token T  # an already running bot
    python -m bench.loadgen --spawn --database-url postgresql://postgres@127.0.0.1/test
    python -m bench.loadgen --spawn --scenario scores --users 2000           # bound users asking "成绩"

Every message is signed (and, with --aes-key, encrypted) as WeChat does it, from N distinct
users with unique MsgIds. With --spawn the bot runs pinned to core 0 and the generator to core 1
(as in shared/PERFORMANCE.md). No figure here is asserted by a test.

`--scenario scores --candidates 100000` seeds the spawned bot's database with the demo plans and
that many bound candidates with results (bench/results_day.py: bulk inserts, ~15 s) and sends
"成绩", the results-day hot path: each candidate at most twice, in random order. First the
*cold* phase (each message from a candidate who has not asked yet: their data is not in the
bot's memory), then the *warm* phase (the same candidates again, each once more); both are
printed. Every reply must carry that candidate's real new results (course and score, as seeded),
else it counts as `unexpected_reply` (plaintext mode only). bench/results_day.py runs the whole
table of docs/performance.md in one go.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import aiohttp

from bot.crypto import signature

TOKEN = "benchtoken"
APP_ID = "wxbench0000000001"


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    sent: int = 0  # messages started
    errors: Counter = field(default_factory=Counter)
    started: float = 0.0
    ended: float = 0.0

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        n = len(lat)
        elapsed = max(self.ended - self.started, 1e-9)

        def pct(p: float) -> float:
            return round(lat[min(n - 1, int(p * n))] * 1000, 2) if n else 0.0

        bad_replies = sum(self.errors.get(k, 0) for k in ("bad_status", "bad_body", "unexpected_reply"))
        unanswered = sum(self.errors.values()) - bad_replies
        return {
            "sent": n + unanswered,
            "ok": n - bad_replies,
            "errors": dict(self.errors),
            "seconds": round(elapsed, 2),
            "msg_per_s": round(n / elapsed, 1),
            "mean_ms": round(statistics.fmean(lat) * 1000, 2) if n else 0.0,
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "max_ms": round(lat[-1] * 1000, 2) if n else 0.0,
        }


class Traffic:
    """Builds signed (optionally encrypted) text messages from many users, MsgIds never repeated."""

    def __init__(self, token: str, users: int, text: str, aes_key: str | None, app_id: str,
                 expect: str | None = None) -> None:
        self.token, self.users, self.text = token, users, text
        # Bytes every reply must contain (plaintext mode only: encrypted replies are opaque here).
        self.expect = (expect.encode(),) if expect and not aes_key else ()
        self.plaintext = not aes_key
        self.base = random.randrange(10**15, 10**16)
        self.crypto = None
        if aes_key:
            from wechatpy.crypto import WeChatCrypto  # an independent implementation of the scheme

            self.crypto = WeChatCrypto(token, aes_key, app_id)

    def openid(self, i: int) -> str:
        return f"o_bench_{i % self.users:06d}"

    def expected(self, i: int) -> tuple[bytes, ...]:
        """What the reply to message i must contain."""
        return self.expect

    def message(self, i: int) -> tuple[dict, str]:
        openid = self.openid(i)
        # A fresh timestamp and a nonce never used before: the bot refuses replays (bot/freshness.py).
        ts, nonce = str(int(time.time())), str(self.base + i)
        xml = (f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
               f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
               f"<Content><![CDATA[{self.text}]]></Content><MsgId>{self.base + i}</MsgId></xml>")
        params = {"timestamp": ts, "nonce": nonce, "signature": signature(self.token, ts, nonce)}
        if self.crypto is not None:
            from bot.wire import parse_xml

            env = parse_xml(self.crypto.encrypt_message(xml, nonce, ts))
            params.update(encrypt_type="aes", msg_signature=env["MsgSignature"], openid=openid)
            xml = f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><Encrypt><![CDATA[{env['Encrypt']}]]></Encrypt></xml>"
        return params, xml


class ScoresTraffic(Traffic):
    """"成绩" from seeded candidates: each asks at most twice, in random order.

    `expected` (openid -> strings of the reply) comes from bench.results_day.seed. The first
    `warmup` candidates of a random order serve the warm-up; `cold()` hands out the next
    candidates nobody has asked for yet, `warm()` the ones the last cold phase asked.
    """

    def __init__(self, token: str, expected: dict[str, list[str]], aes_key: str | None, app_id: str,
                 *, warmup: int = 500, rng: random.Random | None = None) -> None:
        super().__init__(token, len(expected), "成绩", aes_key, app_id)
        self.people = list(expected)
        (rng or random.Random(1)).shuffle(self.people)
        self.wanted = {o: tuple(x.encode() for x in want) for o, want in expected.items()}
        self.fresh = min(warmup, len(self.people) // 10)  # the next candidate nobody asked yet
        self.start, self.phase = 0, "warmup"

    def openid(self, i: int) -> str:
        return self.people[self.start + i]

    def expected(self, i: int) -> tuple[bytes, ...]:
        return self.wanted[self.openid(i)] if self.plaintext else ()

    def warmup(self) -> int:
        """Messages of the warm-up (candidates set aside for it, each asking repeatedly)."""
        self.phase, self.start = "warmup", 0
        self.base += 10**9
        return self.fresh

    def cold(self) -> int:
        """Start a cold phase; returns how many fresh candidates are left."""
        self.phase, self.start = "cold", self.fresh
        self.base += 10**9
        return len(self.people) - self.fresh

    def asked(self, n: int) -> None:
        """The cold phase sent n messages: those candidates are no longer fresh."""
        self.fresh = self.start + n

    def warm(self) -> int:
        """Start a warm phase over the last cold phase's candidates; returns how many."""
        self.phase = "warm"
        self.base += 10**9
        return self.fresh - self.start


async def _send(session: aiohttp.ClientSession, url: str, traffic: Traffic, i: int, res: Result) -> None:
    res.sent += 1
    params, body = traffic.message(i)
    expected = traffic.expected(i)
    t0 = time.perf_counter()
    try:
        async with session.post(url, params=params, data=body.encode()) as r:
            payload = await r.read()
            dt_ = time.perf_counter() - t0
            res.latencies.append(dt_)
            if r.status != 200:
                res.errors["bad_status"] += 1
            elif payload != b"success" and not payload.startswith(b"<xml>"):
                res.errors["bad_body"] += 1
            elif any(e not in payload for e in expected):
                res.errors["unexpected_reply"] += 1
    except asyncio.TimeoutError:
        res.errors["timeout"] += 1
    except aiohttp.ClientError as e:
        res.errors[type(e).__name__] += 1


async def run_load(url: str, traffic: Traffic, *, duration: float, rate: float | None,
                   concurrency: int, total: int | None = None) -> Result:
    res = Result()
    timeout = aiohttp.ClientTimeout(total=5.0)  # WeChat gives up after 5 s
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:
        res.started = time.perf_counter()
        deadline = res.started + duration
        if rate:
            # Open loop: messages leave on schedule whether or not earlier ones were answered.
            tasks, i = set(), 0
            while time.perf_counter() < deadline and (total is None or i < total):
                due = res.started + i / rate
                if due > time.perf_counter():
                    await asyncio.sleep(due - time.perf_counter())
                t = asyncio.create_task(_send(session, url, traffic, i, res))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                i += 1
            if tasks:
                await asyncio.wait(tasks)
        else:
            counter = iter(range(total if total is not None else 10**12))

            async def worker() -> None:
                while time.perf_counter() < deadline:
                    i = next(counter, None)
                    if i is None:
                        return
                    await _send(session, url, traffic, i, res)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        res.ended = time.perf_counter()
    return res


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process (Linux), in MB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time a process has used (Linux): per-message CPU is steadier than msg/s
    on a machine shared with other work."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def measured(url: str, traffic: Traffic, *, pid: int | None = None, **kw) -> dict:
    """run_load's summary, with the server's CPU milliseconds per answered message."""
    before = cpu_seconds(pid)
    res = asyncio.run(run_load(url, traffic, **kw))
    after = cpu_seconds(pid)
    out = res.summary()
    if before is not None and after is not None and res.latencies:
        out["server_cpu_ms_per_msg"] = round((after - before) * 1000 / len(res.latencies), 3)
    out["_sent"] = res.sent
    return out


def run_scores(url: str, traffic: ScoresTraffic, *, duration: float, rate: float | None, concurrency: int,
               warmup: float, pid: int | None = None) -> dict[str, dict]:
    """A cold phase (first questions) then a warm phase (the same candidates again)."""
    if warmup:
        n = traffic.warmup()
        asyncio.run(run_load(url, traffic, duration=warmup, rate=None, concurrency=concurrency, total=n))
    left = traffic.cold()
    if left <= 0:
        raise SystemExit("no fresh candidates left: seed more (--candidates)")
    cold = measured(url, traffic, pid=pid, duration=duration, rate=rate, concurrency=concurrency, total=left)
    traffic.asked(cold.pop("_sent"))
    warm = measured(url, traffic, pid=pid, duration=duration, rate=rate, concurrency=concurrency,
                    total=traffic.warm())
    warm.pop("_sent")
    return {"cold": cold, "warm": warm}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_bot(database_url: str | None, aes_key: str | None, pin: bool,
              prepare: Callable[[str], None] | None = None,
              cold_jieba: bool = False) -> tuple[subprocess.Popen, str, str]:
    """Start `zikao-bot serve` on a fresh database, after `prepare(database_url)` if given;
    returns (process, url, temp dir). `cold_jieba`: an empty jieba cache (start-up's worst case).
    The process's start time (time.monotonic) is `proc.started_at`."""
    tmp = tempfile.mkdtemp(prefix="zikao-bench-")
    port = _free_port()
    env = dict(os.environ, WECHAT_TOKEN=TOKEN, WECHAT_APP_ID=APP_ID, WECHAT_APP_SECRET="bench",
               WECHAT_API_BASE="http://127.0.0.1:9", PORT=str(port), HOST="127.0.0.1", LOG_LEVEL="WARNING",
               DATABASE_URL=database_url or f"sqlite:///{tmp}/bench.sqlite3", WECHAT_AES_KEY=aes_key or "",
               ZIKAO_MODE="demo")  # the demo SECRET_KEY: bench data only
    if cold_jieba:
        env["FAQ_CACHE_DIR"] = f"{tmp}/jieba"
    exe = [sys.executable, "-m", "bot.cli"]
    subprocess.run(exe + ["migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    if prepare is not None:
        prepare(env["DATABASE_URL"])
    cmd = exe + ["serve"]
    if pin and shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", "0"] + cmd
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env)
    proc.started_at = started  # type: ignore[attr-defined]
    wait_for_port(port, proc)
    return proc, f"http://127.0.0.1:{port}/wechat", tmp


def wait_for_port(port: int, proc: subprocess.Popen, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the server did not start")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="the bot's /wechat URL (omit with --spawn)")
    p.add_argument("--spawn", action="store_true", help="start a bot on a fresh database for the run")
    p.add_argument("--database-url", help="with --spawn: the database (default a temporary SQLite file)")
    p.add_argument("--token", default=TOKEN)
    p.add_argument("--app-id", default=APP_ID)
    p.add_argument("--aes-key", help="encrypt as WeChat's safe mode does")
    p.add_argument("--users", type=int, default=2000, help="distinct users of --scenario help")
    p.add_argument("--candidates", type=int, default=100_000,
                   help="--scenario scores: bound candidates seeded (each asks at most twice)")
    p.add_argument("--scenario", choices=("help", "scores"), default="help",
                   help="help: --text from unbound users; scores: bound users with results send 成绩 (needs --spawn)")
    p.add_argument("--text", help="the message text (default 帮助, or 成绩 for --scenario scores)")
    p.add_argument("--expect", help="text every reply must contain (--scenario help)")
    p.add_argument("--rate", type=float, help="messages per second (open loop); default flat out")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--total", type=int, help="stop after this many messages")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of traffic before measuring")
    p.add_argument("--no-pin", action="store_true", help="do not pin bot and generator to separate cores")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    if not args.url and not args.spawn:
        p.error("give --url or --spawn")
    if args.scenario == "scores" and not args.spawn:
        p.error("--scenario scores seeds a fresh database: use it with --spawn")
    scores = args.scenario == "scores"
    text = args.text or ("成绩" if scores else "帮助")
    expected: dict[str, list[str]] = {}
    prepare = None
    if scores:
        from bench.results_day import seed

        def prepare(url: str) -> None:
            started = time.perf_counter()
            expected.update(asyncio.run(seed(url, args.candidates)))
            print(f"seeded {args.candidates} candidates in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    proc = tmp = None
    url = args.url
    if args.spawn:
        proc, url, tmp = spawn_bot(args.database_url, args.aes_key, pin=not args.no_pin, prepare=prepare)
        if not args.no_pin and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {1})
    rss = None
    try:
        if scores:
            traffic = ScoresTraffic(args.token, expected, args.aes_key, args.app_id)
            figures = run_scores(url, traffic, duration=args.duration, rate=args.rate,
                                 concurrency=args.concurrency, warmup=args.warmup, pid=proc.pid if proc else None)
        else:
            traffic = Traffic(args.token, args.users, text, args.aes_key, args.app_id, args.expect)
            if args.warmup:
                asyncio.run(run_load(url, traffic, duration=args.warmup, rate=None, concurrency=args.concurrency))
                traffic.base += 10**9  # fresh MsgIds after the warm-up
            figures = measured(url, traffic, pid=proc.pid if proc else None, duration=args.duration,
                               rate=args.rate, concurrency=args.concurrency, total=args.total)
            figures.pop("_sent")
        if proc is not None:
            rss = rss_mb(proc.pid)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    figures.update(mode="open loop %.0f msg/s" % args.rate if args.rate else f"flat out, {args.concurrency} connections",
                   text=text, scenario=args.scenario, encrypted=bool(args.aes_key), server_rss_mb=rss,
                   database=(args.database_url or "sqlite (temporary file)") if args.spawn else "as configured",
                   **({"candidates": args.candidates} if scores else {"users": args.users}))
    print(json.dumps(figures, ensure_ascii=False, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
