"""The whole emulator as one aiohttp app: WeChat's API for the bot, and the phone chat page.

`create_emulator_app` composes the API (`emulator.api.add_api_routes`: /cgi-bin/... and the
control API under /_emu/) with the chat page (`emulator.chat.add_chat_routes`: "/" and
/_emu/chat/...) and the SMS gateway (`emulator.sms.add_sms_routes`: /sms/send and /_emu/sms).
WeChat's web authorisation for H5 pages (`emulator.oauth`) answers the links the chat page
opens in its web view. The chat page posts to the bot through `emulator.server.WeChatServer`, and template messages
the API delivers are reported to the bot as TEMPLATESENDJOBFINISH events.

`start_emulator` runs it on a port inside the caller's event loop (the `zikao-bot demo` command
runs the bot and the emulator side by side).
"""
from __future__ import annotations

from typing import Any, Optional

from aiohttp import web

from bot.logsafe import SafeAccessLogger

from .api import EmulatorState, add_api_routes
from .oauth import add_oauth_routes
from .pay import PayState, add_pay_routes
from .chat import ACCOUNT_NAME, DEMO_OPENID, HUB_KEY, ChatHub, add_chat_routes
from .server import MODES, WeChatServer
from .sms import SmsState, add_sms_routes

SERVER_KEY = web.AppKey("emulator_wechat_server", WeChatServer)
MAX_REQUEST_BYTES = 11 * 1024 * 1024  # a 10 MB photo plus the form around it


def create_emulator_app(
    *,
    bot_url: str,
    token: str,
    app_id: str,
    app_secret: str,
    aes_key: Optional[str],
    mode: str,
    state: Optional[EmulatorState] = None,
    timeout: float = 5.0,
    attempts: int = 3,
    account_name: str = ACCOUNT_NAME,
    default_openid: str = DEMO_OPENID,
    pay: Optional[PayState] = None,
) -> web.Application:
    """The emulator app. `mode` is plain, compat or safe; compat and safe need `aes_key`.
    `pay`: also serve WeChat Pay (emulator/pay.py) with that state and its keys."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if state is None:
        state = EmulatorState(app_id, app_secret)
    server = WeChatServer(bot_url, token, app_id, aes_key=aes_key or None, mode=mode, timeout=timeout, attempts=attempts)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    add_api_routes(app, state)
    app[SERVER_KEY] = server
    hub = add_chat_routes(app, state, server, account_name=account_name, default_openid=default_openid)
    # --- the SMS gateway (emulator/sms.py): POST /sms/send, /_emu/sms; the page's 短信 panel
    sms = add_sms_routes(app, SmsState(state))
    sms.listeners.append(lambda record: hub.broadcast("sms", record))
    # --- WeChat Pay (emulator/pay.py): /v3/pay/transactions/..., the cashier page, notifications
    if pay is not None:
        add_pay_routes(app, pay)
    # ---
    # --- web authorisation (emulator/oauth.py): /connect/oauth2/authorize, /sns/oauth2/access_token
    add_oauth_routes(app, state)
    # ---
    return app


def chat_hub(app: web.Application) -> ChatHub:
    """The chat page's hub of an emulator app (history per openid, live subscribers)."""
    return app[HUB_KEY]


# What cleanup waits for open requests at most; the chat streams are closed first, so a clean
# stop never waits this long (tests/test_chat_page.py checks it with room to spare under load).
SHUTDOWN_GRACE_SECONDS = 10.0


async def start_emulator(host: str = "127.0.0.1", port: int = 8081, **kw: Any) -> tuple[web.AppRunner, EmulatorState]:
    """Serve the emulator on host:port in the running event loop; `kw` as `create_emulator_app`.

    Returns the runner (``await runner.cleanup()`` stops it; ``runner.addresses`` gives the port
    actually bound when `port` is 0) and the `EmulatorState` (a new one unless given as `state`).
    """
    state = kw.pop("state", None)
    if state is None:
        state = EmulatorState(kw["app_id"], kw["app_secret"])
    app = create_emulator_app(state=state, **kw)
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_GRACE_SECONDS, access_log_class=SafeAccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, state
