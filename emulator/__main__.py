"""python -m emulator: run the WeChat emulator (API for the bot + phone chat page).

Settings default to the bot's environment variables (WECHAT_TOKEN, WECHAT_APP_ID,
WECHAT_APP_SECRET, WECHAT_AES_KEY, SMS_API_KEY), so the emulator and the bot agree without
repeating them.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from aiohttp import web

from bot import logsafe
from bot.config import Settings

from .api import DEFAULT_APP_SECRET
from .app import create_emulator_app
from .pay import PayState, write_pay_env
from .server import MODES
from .sms import sms_state


def parse_args(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> argparse.Namespace:
    env = os.environ if environ is None else environ
    defaults = Settings()
    p = argparse.ArgumentParser(
        prog="python -m emulator",
        description="Emulate WeChat for the bot: its API (/cgi-bin/...) and a phone chat page (/).",
    )
    p.add_argument("--bot-url", default=env.get("EMULATOR_BOT_URL", "http://127.0.0.1:8080/wechat"),
                   help="the bot's WeChat URL (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8081, help="port to listen on (default: %(default)s)")
    p.add_argument("--token", default=env.get("WECHAT_TOKEN") or defaults.wechat_token,
                   help="the Token configured for the URL (env WECHAT_TOKEN)")
    p.add_argument("--app-id", default=env.get("WECHAT_APP_ID") or defaults.wechat_app_id,
                   help="the AppID (env WECHAT_APP_ID)")
    p.add_argument("--app-secret", default=env.get("WECHAT_APP_SECRET") or DEFAULT_APP_SECRET,
                   help="the AppSecret the API accepts (env WECHAT_APP_SECRET)")
    p.add_argument("--aes-key", default=env.get("WECHAT_AES_KEY") or None,
                   help="the EncodingAESKey, 43 characters (env WECHAT_AES_KEY); needed by compat and safe")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="message encryption: plain, compat or safe (default: safe with an AES key, else plain)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds WeChat waits for an answer (default: 5)")
    p.add_argument("--attempts", type=int, default=3, help="attempts per message (default: 3)")
    p.add_argument("--sms-api-key", default=env.get("SMS_API_KEY") or "",
                   help="the API key the SMS gateway requires (env SMS_API_KEY; default: none required)")
    p.add_argument("--pay-dir", default=None,
                   help="also emulate WeChat Pay: make its keys and write them, with the service's WECHATPAY_*"
                        " settings (wechatpay.env), to this directory")
    p.add_argument("--pay-time-scale", type=float, default=1.0,
                   help="WeChat Pay's notification repeat schedule multiplied by this (default: 1, real time)")
    args = p.parse_args(argv)
    if args.mode is None:
        args.mode = "safe" if args.aes_key else "plain"
    if args.mode != "plain" and not args.aes_key:
        p.error(f"--mode {args.mode} needs --aes-key (or WECHAT_AES_KEY)")
    if args.aes_key and len(args.aes_key) != 43:
        p.error(f"--aes-key: an EncodingAESKey is 43 characters, got {len(args.aes_key)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logsafe.install("INFO")  # no access_token, signature or openid in the emulator's log either
    pay = None
    if args.pay_dir:
        pay = PayState(appid=args.app_id, time_scale=args.pay_time_scale)
        env_file = write_pay_env(pay, args.pay_dir, f"http://{args.host}:{args.port}")
        print(f"WeChat Pay: merchant {pay.mchid}; the service's settings are in {env_file}", flush=True)
    app = create_emulator_app(
        bot_url=args.bot_url,
        token=args.token,
        app_id=args.app_id,
        app_secret=args.app_secret,
        aes_key=args.aes_key,
        mode=args.mode,
        timeout=args.timeout,
        attempts=args.attempts,
        pay=pay,
    )
    sms_state(app).api_key = args.sms_api_key or None
    print(
        f"WeChat emulator: chat page http://{args.host}:{args.port}/ , API http://{args.host}:{args.port}/cgi-bin/ ,"
        f" SMS gateway http://{args.host}:{args.port}/sms/send ;"
        f" posting {args.mode} messages to {args.bot_url}",
        flush=True,
    )
    web.run_app(app, host=args.host, port=args.port, print=None, shutdown_timeout=2.0,
                access_log_class=logsafe.SafeAccessLogger)
    return 0


if __name__ == "__main__":
    sys.exit(main())
