"""`zikao-bot staff`: the office's console accounts from the command line (the first admin is made here).

    zikao-bot staff add zhang --name 张老师 --role admin --kinds exemption,backfill   # asks for the password
    zikao-bot staff list
    zikao-bot staff passwd zhang | unlock zhang | disable zhang | enable zhang
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any, Awaitable, Callable, TypeVar

from bot.config import command_settings

T = TypeVar("T")
PASSWORD_ENV = "ZIKAO_STAFF_PASSWORD"  # for scripts: read instead of asking (never a command-line argument)


def register(subparsers: Any) -> argparse.ArgumentParser:
    st = subparsers.add_parser("staff", help="console accounts of the exam office: add, list, passwd, unlock ...")
    ssub = st.add_subparsers(dest="staff_command", required=True)
    add = ssub.add_parser("add", help="create an account (the password is asked for, twice)")
    add.add_argument("username")
    add.add_argument("--name", required=True, help="the person's name, as decisions and the audit log show it")
    add.add_argument("--role", choices=("reviewer", "admin"), default="reviewer")
    add.add_argument("--kinds", default="", help="businesses they decide, comma-separated: exemption,backfill (or 申请免考,成绩补登)")
    ssub.add_parser("list", help="every account with role, businesses, state")
    for name, text in (("passwd", "set a new password (ends the account's sessions, unlocks it)"),
                       ("unlock", "lift a lockout after failed sign-ins"), ("disable", "stop an account signing in"),
                       ("enable", "let a disabled account sign in again")):
        ssub.add_parser(name, help=text).add_argument("username")
    st.set_defaults(func=_command)
    return st


def _password() -> str:
    given = os.environ.get(PASSWORD_ENV)
    if given:
        return given
    first = getpass.getpass("密码（至少10位）: ")
    if getpass.getpass("再输一次: ") != first:
        raise SystemExit("zikao-bot staff: 两次输入的密码不一致")
    return first


def _with_db(args: argparse.Namespace, fn: Callable[[Any], Awaitable[T]]) -> T:
    from bot.review_cli import _with_db as with_migrated_db

    return with_migrated_db(command_settings(getattr(args, "config", None)), fn)


def _command(args: argparse.Namespace) -> int:
    from storage import staff

    cmd = args.staff_command
    try:
        if cmd == "add":
            password = _password()

            async def add(db):
                info = await staff.add_staff(db, username=args.username, display_name=args.name, password=password,
                                             role=args.role, kinds=[k for k in args.kinds.split(",") if k.strip()])
                await staff.audit(db, staff=None, username="cli", action="staff_add", target=f"staff:{info.username}",
                                  summary="命令行创建", after={"username": info.username, "role": info.role,
                                                              "kinds": list(info.kinds)})
                return info

            info = _with_db(args, add)
            kinds = "、".join(staff.kind_label(k) for k in info.kinds) or "无"
            print(f"已创建 {info.username}（{info.display_name}，{info.role_label}，审核业务：{kinds}）。登录：/console/")
        elif cmd == "list":
            from storage.models import utcnow

            now = utcnow()
            for p in _with_db(args, staff.list_staff):
                state = "停用" if not p.active else "锁定" if p.locked(now) else "正常"
                kinds = ",".join(p.kinds) or "-"
                print(f"{p.username:16} {p.display_name:10} {p.role_label:4} {state:3} 两步验证:{'是' if p.totp else '否'}  {kinds}")
        else:
            async def change(db):
                p = await staff.find_staff(db, args.username)
                if cmd == "passwd":
                    await staff.set_password(db, p.id, password)
                    action = "staff_password"
                elif cmd == "unlock":
                    await staff.unlock(db, p.id)
                    action = "staff_unlock"
                else:
                    await staff.update_staff(db, p.id, active=cmd == "enable")
                    action = "staff_edit"
                await staff.audit(db, staff=None, username="cli", action=action, target=f"staff:{p.username}",
                                  summary=f"命令行 {cmd}")

            password = _password() if cmd == "passwd" else ""
            _with_db(args, change)
            print({"passwd": "密码已更新，该账号的登录都已退出。", "unlock": "已解锁。", "disable": "已停用。",
                   "enable": "已启用。"}[cmd])
    except staff.StaffError as e:
        print(f"zikao-bot staff {cmd}: {e.message}", file=sys.stderr)
        return 1
    return 0
