"""The `zikao-bot` console script: serve, demo, migrate, import, notice."""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from aiohttp import web

from bot import faq_cli, review_cli, staff_cli, transfer_cli
from bot.config import LOCAL_CONFIG_FILE, ConfigError, Settings, command_settings, write_env_file

DEMO_ENV = {
    "WECHAT_TOKEN": "zikaodemo",
    "WECHAT_APP_ID": "wxd3m0000000000001",
    "WECHAT_APP_SECRET": "demo-app-secret",
    # A fixed demo key: the demo runs in safe (encrypted) mode, as a production account should.
    "WECHAT_AES_KEY": "ZGVtby1rZXktZm9yLXppa2FvLWJvdC0zMi1ieXRlcyE",
    # No DATABASE_URL: the demo uses the default database, so that every `zikao-bot` command
    # run afterwards in the same directory (review list, notice list ...) sees the demo's data
    # (cmd_demo writes var/zikao.env with ZIKAO_MODE=demo for those commands).
    # The demo runs with the built-in demo SECRET_KEY (storage/keys.py); production must set one.
    "ZIKAO_MODE": "demo",
    # The emulator's registered templates.
    "TEMPLATE_REVIEW_RESULT": "TM_REVIEW_RESULT",
    "TEMPLATE_EXAM_NOTICE": "TM_EXAM_NOTICE",
    "TEMPLATE_SCORE_RELEASE": "TM_SCORE_RELEASE",
    "TEMPLATE_BUSINESS_REMINDER": "TM_BUSINESS_REMINDER",
}


def _setup_logging(level: str, fmt: str = "text") -> None:
    from bot.logs import setup_logging

    setup_logging(level, fmt)


def _settings(args: argparse.Namespace, overrides: dict[str, str] | None = None) -> Settings:
    return command_settings(getattr(args, "config", None), overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.app import create_app

    settings = _settings(args)
    _setup_logging(settings.log_level, settings.log_format)
    from bot.logsafe import SafeAccessLogger

    # --reuse-port: several processes listen on one port (SO_REUSEPORT) and the kernel spreads the
    # connections over them; deploy/ runs N of them (docs/deploy.md).
    web.run_app(create_app(settings, freeze_gc=True), host=settings.host, port=settings.port, print=None,
                access_log_class=SafeAccessLogger, reuse_port=args.reuse_port or None)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from storage.migrate import upgrade

    settings = _settings(args)
    upgrade(settings.database_url)
    print("database is at the latest schema")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from storage.db import Database
    from storage.importer import import_directory
    from storage.migrate import upgrade

    settings = _settings(args)
    if not Path(args.dir).is_dir():
        print(f"zikao-bot import: not a directory: {args.dir}", file=sys.stderr)
        return 2
    upgrade(settings.database_url)

    async def run():
        db = Database(settings.database_url)
        try:
            return await import_directory(db, args.dir)
        finally:
            await db.dispose()

    report = asyncio.run(run())
    print(report.format())
    return 0 if report.ok else 1


async def _with_db_async(settings: Settings, fn):
    from storage.db import Database

    db = Database(settings.database_url)
    try:
        return await fn(db)
    finally:
        await db.dispose()


def _with_db(settings: Settings, fn):
    """Run `fn(db)` on a migrated database and dispose of the engine."""
    from storage.migrate import upgrade

    upgrade(settings.database_url)
    return asyncio.run(_with_db_async(settings, fn))


def cmd_notice_publish(args: argparse.Namespace) -> int:
    import getpass

    from storage import notices

    settings = _settings(args)
    try:
        if (args.body is None) == (args.body_file is None):
            raise notices.NoticeError("正文请用 --body 或 --body-file 给出，二者选一")
        body = args.body if args.body is not None else notices.read_body_file(args.body_file)
        notices.check_text(args.title, body, args.category)
        audience = notices.parse_audience(args.audience)
        publish_at = notices.parse_publish_at(args.at)
        try:
            user = getpass.getuser()
        except Exception:  # no user name in a container: not worth failing for
            user = ""
        published = _with_db(settings, lambda db: notices.publish(
            db, title=args.title, body=body, publish_at=publish_at, audience=audience, category=args.category,
            push=not args.no_push, created_by=f"cli:{user}" if user else "cli",
        ))
    except notices.NoticeError as e:
        print(f"zikao-bot notice publish: {e}", file=sys.stderr)
        return 2
    print(notices.format_published(published))
    return 0


def cmd_notice_list(args: argparse.Namespace) -> int:
    from storage import notices

    settings = _settings(args)

    async def run(db):
        items = await notices.list_notices(db, args.limit)
        return items, await notices.progress_of(db, [n.id for n in items])

    items, progress = _with_db(settings, run)
    print(notices.format_list(items, progress))
    return 0


def cmd_notice_status(args: argparse.Namespace) -> int:
    from storage import notices

    settings = _settings(args)

    async def run(db):
        if args.id is None:
            items = [n for n in await notices.list_notices(db, 20) if n.fanned_out_at is not None or n.push]
            return items, await notices.progress_of(db, [n.id for n in items])
        notice = await notices.get_notice(db, args.id)
        return [notice], await notices.progress_of(db, [notice.id])

    try:
        items, progress = _with_db(settings, run)
    except notices.NoticeError as e:
        print(f"zikao-bot notice status: {e}", file=sys.stderr)
        return 2
    if args.id is None:
        print(notices.format_list(items, progress))
    else:
        print(notices.format_status(items[0], progress[items[0].id]))
    return 0


def cmd_audit_list(args: argparse.Namespace) -> int:
    from storage import accounts
    from storage.outbox import shanghai_time

    settings = _settings(args)
    if args.event and args.event not in accounts.AUDIT_EVENTS:
        print(f"zikao-bot audit list: --event is one of {', '.join(accounts.AUDIT_EVENTS)}", file=sys.stderr)
        return 2
    entries = _with_db(settings, lambda db: accounts.audit_events(
        db, limit=args.limit, event=args.event, id_number=args.id_number))
    if not entries:
        print("no account events")
    for e in entries:
        detail = " ".join(f"{k}={v}" for k, v in sorted(e.detail.items()))
        print(f"{shanghai_time(e.at)}  {e.event:<15} {e.subject or '-':<20} openid#{e.openid_tag or '-':<16} {detail}".rstrip())
    return 0


async def sync_menu(settings: Settings) -> dict:
    """Push dialogs/menu.py to WeChat (WECHAT_API_BASE) and return what WeChat then holds."""
    import aiohttp

    from bot.token_store import MemoryTokenStore
    from bot.wechat_client import WeChatClient
    from dialogs.menu import check_menu, wechat_menu

    menu = wechat_menu()
    problems = check_menu(menu)
    if problems:
        raise ValueError("; ".join(problems))
    async with aiohttp.ClientSession() as session:
        client = WeChatClient(session, api_base=settings.wechat_api_base, app_id=settings.wechat_app_id,
                              app_secret=settings.wechat_app_secret, token_store=MemoryTokenStore(),
                              timeout=settings.api_timeout_seconds)
        await client.create_menu(menu)
        return await client.get_menu() or {}


def cmd_menu(args: argparse.Namespace) -> int:
    import json

    from bot.wechat_client import WeChatAPIError
    from dialogs.menu import check_menu, menu_text, wechat_menu

    if args.menu_command == "show":
        print(menu_text())
        print(json.dumps(wechat_menu(), ensure_ascii=False, indent=2))
        problems = check_menu(wechat_menu())
        for p in problems:
            print(f"problem: {p}", file=sys.stderr)
        return 1 if problems else 0
    settings = _settings(args)
    _setup_logging(settings.log_level, settings.log_format)
    try:
        held = asyncio.run(sync_menu(settings))
    except (WeChatAPIError, ValueError, OSError) as e:
        print(f"zikao-bot menu sync: {e}", file=sys.stderr)
        return 1
    buttons = held.get("menu", held).get("button", [])
    print(f"menu synced to {settings.wechat_api_base}: " + ", ".join(
        f"{b['name']}({len(b.get('sub_button', []))})" for b in buttons))
    return 0


async def _open_fee_window(db) -> None:
    """A payment period open from now for a week (the demo's own one opens in 30 days)."""
    import datetime as dt

    from storage.importer import ImportReport, RawTable, import_tables

    sh = dt.timezone(dt.timedelta(hours=8))
    now = dt.datetime.now(sh)
    row = {"kind": "graduation_fee", "title": "毕业审定费缴费（演示，现在开放）",
           "opens_at": (now - dt.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M"),
           "closes_at": (now + dt.timedelta(days=7)).strftime("%Y-%m-%d %H:%M")}
    report = await import_tables(db, {"business_windows.csv": RawTable.from_records("business_windows.csv", [row])},
                                 ImportReport("demo --pay-now"))
    if not report.committed:
        raise SystemExit(report.format())


def cmd_backup(args: argparse.Namespace) -> int:
    from storage.backup import backup

    def run(settings: Settings) -> str:
        m = backup(settings.database_url, settings.media_dir, args.dir)
        return f"backup in {args.dir}: {m.backend} database at revision {m.revision}, {m.media_files} media files"

    return _backup_command("backup", args, run)


def cmd_restore(args: argparse.Namespace) -> int:
    from storage.backup import restore

    def run(settings: Settings) -> str:
        m = restore(args.dir, settings.database_url, settings.media_dir, force=args.force)
        return (f"restored {args.dir} (taken {m.created_at}): {m.backend} database, {m.media_files} media files; "
                "schema migrated to the latest")

    return _backup_command("restore", args, run)


def _backup_command(name: str, args: argparse.Namespace, run) -> int:
    from storage.backup import BackupError

    try:
        print(run(_settings(args)))
    except BackupError as e:
        print(f"zikao-bot {name}: {e}", file=sys.stderr)
        return 1
    return 0


def demo_settings(args: argparse.Namespace) -> Settings:
    """The demo's settings: DEMO_ENV under the environment, pointed at the demo's emulator."""
    emulator_url = f"http://{args.host}:{args.emulator_port}"
    overrides = dict(DEMO_ENV, WECHAT_API_BASE=emulator_url, SMS_API_BASE=emulator_url, HOST=args.host,
                     PORT=str(args.port), WECHAT_OAUTH_BASE=emulator_url)
    overrides["WECHAT_MODE"] = args.mode
    if args.mode == "plain":
        overrides["WECHAT_AES_KEY"] = ""
    # WeChat Pay: the emulator makes merchant and platform keys; the service reads them (docs/payments.md).
    from emulator.pay import PayState

    args.pay_state = PayState(appid=overrides["WECHAT_APP_ID"])
    overrides.update(args.pay_state.write_service_files("var/wechatpay"), WECHATPAY_API_BASE=emulator_url)
    # The commands run afterwards in this directory (review list, menu sync ...) read the demo's
    # settings from var/zikao.env (bot/config.py's local settings file): same data, same key.
    write_env_file(LOCAL_CONFIG_FILE, {k: v for k, v in overrides.items() if k not in ("HOST", "PORT")})
    return _settings(args, overrides)


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.app import create_app
    from emulator.app import start_emulator
    from storage.demo import load_demo
    from storage.demo_console import DEMO_STAFF, load_demo_applications, load_demo_staff
    from storage.migrate import upgrade
    from storage.photos import LocalPhotoStore

    emulator_url = f"http://{args.host}:{args.emulator_port}"
    settings = demo_settings(args)
    pay = args.pay_state
    _setup_logging(settings.log_level, settings.log_format)
    upgrade(settings.database_url)

    async def load(db) -> None:
        await load_demo(db, windows_now=args.windows_now)
        await load_demo_staff(db)
        await load_demo_applications(db, LocalPhotoStore.under_media_dir(settings.media_dir))
        if args.pay_now:
            await _open_fee_window(db)

    async def main() -> None:
        await _with_db_async(settings, load)
        from bot.logsafe import SafeAccessLogger

        bot_runner = web.AppRunner(create_app(settings), access_log_class=SafeAccessLogger)
        await bot_runner.setup()
        await web.TCPSite(bot_runner, settings.host, settings.port).start()
        bot_url = f"http://{settings.host}:{settings.port}/wechat"
        emu_runner, _state = await start_emulator(
            args.host, args.emulator_port, bot_url=bot_url, token=settings.wechat_token,
            app_id=settings.wechat_app_id, app_secret=settings.wechat_app_secret,
            aes_key=settings.wechat_aes_key or None, mode=args.mode, pay=pay,
        )
        await sync_menu(settings)
        print(f"\n  zikao-bot  {bot_url}   (WeChat posts here)")
        print(f"  chat page  {emulator_url}/   (open this in a browser)")
        print(f"  console    http://{settings.host}:{settings.port}/console/   (demo staff: "
              + ", ".join(f"{u} / {p}" for u, _, _, _, p in DEMO_STAFF) + ")")
        print(f"  database   {settings.describe()['database_url']}\n  Ctrl-C stops.\n", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await emu_runner.cleanup()
            await bot_runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zikao-bot", description="上海自考 WeChat service account")
    p.add_argument("--config", help="KEY=VALUE settings file (environment variables win)")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the service (HOST, PORT from the environment)")
    serve.add_argument("--reuse-port", action="store_true",
                       help="share HOST:PORT with other zikao-bot processes (SO_REUSEPORT; see deploy/)")
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="bring the database to the latest schema").set_defaults(func=cmd_migrate)
    imp = sub.add_parser("import", help="import CSV files from a directory (see docs/import.md)")
    imp.add_argument("dir")
    imp.set_defaults(func=cmd_import)
    notice = sub.add_parser("notice", help="publish exam notices (站内消息) and follow their pushes")
    nsub = notice.add_subparsers(dest="notice_command", required=True)
    pub = nsub.add_parser("publish", help="publish a notice; pushed to its audience at its publish time")
    pub.add_argument("--title", required=True, help="title (at most 128 characters)")
    pub.add_argument("--body", help="the text")
    pub.add_argument("--body-file", help="read the text from a file (UTF-8 or GBK)")
    pub.add_argument("--at", help='publish time, Beijing time, e.g. "2026-12-01 09:00" (default: now)')
    pub.add_argument("--audience", default="all", help="all (default), major:CODE (e.g. major:020301K) or sitting:YYYYMM")
    pub.add_argument("--category", default="站内消息", choices=["站内消息", "新闻通知"])
    pub.add_argument("--no-push", action="store_true", help="show in 站内消息 only, push to nobody")
    pub.set_defaults(func=cmd_notice_publish)
    lst = nsub.add_parser("list", help="the latest notices with their push state")
    lst.add_argument("--limit", type=int, default=50)
    lst.set_defaults(func=cmd_notice_list)
    st = nsub.add_parser("status", help="push progress of one notice (or of the latest ones)")
    st.add_argument("id", nargs="?", type=int)
    st.set_defaults(func=cmd_notice_status)
    audit = sub.add_parser("audit", help="the audit log of account events (binding, passwords, contacts, lockouts)")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    al = asub.add_parser("list", help="the newest account events first (ID numbers masked, openids as tags)")
    al.add_argument("--limit", type=int, default=50)
    al.add_argument("--event", help="only this event: bind, unbind, bind_moved, password_change, contact_change, lockout")
    al.add_argument("--id-number", help="only this candidate's events (looked up by the blind index)")
    al.set_defaults(func=cmd_audit_list)
    bk = sub.add_parser("backup", help="copy the database and MEDIA_DIR into a new directory (docs/deploy.md)")
    bk.add_argument("dir")
    bk.set_defaults(func=cmd_backup)
    rs = sub.add_parser("restore", help="put a backup back: database and MEDIA_DIR (stop the service first)")
    rs.add_argument("dir")
    rs.add_argument("--force", action="store_true", help="replace a database that already holds candidates")
    rs.set_defaults(func=cmd_restore)
    review_cli.register(sub)
    staff_cli.register(sub)
    transfer_cli.register(sub)
    faq_cli.register(sub)
    menu = sub.add_parser("menu", help="the custom menu (dialogs/menu.py)")
    msub = menu.add_subparsers(dest="menu_command", required=True)
    msub.add_parser("sync", help="push the menu to WeChat (WECHAT_API_BASE)").set_defaults(func=cmd_menu)
    msub.add_parser("show", help="print the menu and check it against WeChat's limits").set_defaults(func=cmd_menu)
    demo = sub.add_parser("demo", help="demo data + the service + the WeChat emulator and its chat page")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--emulator-port", type=int, default=8081)
    demo.add_argument("--mode", choices=["safe", "compat", "plain"], default="safe")
    demo.add_argument("--pay-now", action="store_true",
                      help="open a 毕业审定费 payment period now, to try WeChat Pay (docs/payments.md)")
    demo.add_argument("--windows-now", action="store_true",
                      help="open every application window (免考, 补登, 论文, 毕业, 学位, 转出) now for a week")
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"zikao-bot: configuration error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
