"""`zikao-bot transfer-in` and `zikao-bot transfer-out`: the office follows 外省转入 records and sets
the rules of 本市转出 (the console's 外省转入 pages do the same through the same functions).

`transfer-in status` changes a record the same way an import does (storage.transfers): the
transition is checked and the candidate's push is written in the transaction of the change.
本市转出 applications themselves are decided with `zikao-bot review`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from bot.config import Settings, command_settings

T = TypeVar("T")


class BadInput(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def register(subparsers: Any) -> None:
    """Add `transfer-in list|show|status` and `transfer-out rules` to the `zikao-bot` parser."""
    tin = subparsers.add_parser("transfer-in", help="外省转入 records: list, show, change status / 现场确认")
    isub = tin.add_subparsers(dest="transfer_command", required=True)
    ls = isub.add_parser("list", help="records, newest first")
    ls.add_argument("--status", help="pending/待审核, reviewing/审核中, confirming/待现场确认, completed/已完成, rejected/未通过")
    ls.add_argument("--limit", type=int, default=100)
    sh = isub.add_parser("show", help="one record with its courses")
    sh.add_argument("reference", help="转入编号")
    st = isub.add_parser("status", help="move a record (the candidate is notified); set the 现场确认 slot")
    st.add_argument("reference", help="转入编号")
    st.add_argument("status", help="审核中, 待现场确认, 已完成, 未通过 ... (or the English code)")
    st.add_argument("--reason", help="why 未通过 (the candidate reads it)")
    st.add_argument("--confirm-at", help="现场确认 start, Shanghai time: '2026-12-03 09:00'")
    st.add_argument("--confirm-until", help="现场确认 end, Shanghai time")
    st.add_argument("--place", help="现场确认地点")
    st.add_argument("--bring", help="what to bring (需携带材料)")
    tin.set_defaults(func=_command)

    tout = subparsers.add_parser("transfer-out", help="本市转出: which results may be transferred out")
    osub = tout.add_subparsers(dest="transfer_command", required=True)
    rules = osub.add_parser("rules", help="print the rules; --set FILE.json to change them, --reset for the shipped ones")
    rules.add_argument("--set", dest="rules_file", help="a JSON file (see docs/transfers.md)")
    rules.add_argument("--reset", action="store_true")
    tout.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    return run(args, command_settings(getattr(args, "config", None)))


def _with_db(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
    from bot.review_cli import _with_db as with_db

    return with_db(settings, fn)


def _status(text: str) -> str:
    from storage.models_transfers import TRANSFER_IN_STATUSES

    t = (text or "").strip()
    for code, label in TRANSFER_IN_STATUSES.items():
        if t in (code, label):
            return code
    raise BadInput(f"状态“{t}”不对，应为 {'、'.join(TRANSFER_IN_STATUSES.values())}")


def _time(text: str | None):
    from storage.importer import Bad, parse_datetime

    if text is None:
        return None
    try:
        return parse_datetime(text)
    except Bad as exc:
        raise BadInput(str(exc)) from None


def run(args: argparse.Namespace, settings: Settings) -> int:
    """0 done, 1 refused (transition, missing reason or slot), 2 bad input or unknown record."""
    from storage import transfers as tr

    cmd = f"{args.command} {args.transfer_command}"
    try:
        if args.transfer_command == "list":
            status = _status(args.status) if args.status else None
            print(_with_db(settings, lambda db: _list(db, status, args.limit)))
        elif args.transfer_command == "show":
            print(_with_db(settings, lambda db: _show(db, args.reference)))
        elif args.transfer_command == "status":
            status = _status(args.status)
            at, until = _time(args.confirm_at), _time(args.confirm_until)
            print(_with_db(settings, lambda db: _set(db, args, status, at, until)))
        else:  # rules
            print(_with_db(settings, lambda db: _rules(db, args.rules_file, args.reset)))
    except BadInput as e:
        print(f"zikao-bot {cmd}: {e.message}", file=sys.stderr)
        return 2
    except tr.TransferError as e:
        print(f"zikao-bot {cmd}: {e.message}", file=sys.stderr)
        return 2 if "不存在" in e.message else 1
    return 0


def _when(t) -> str:
    from storage.notices import local

    return local(t) if t else "-"


async def _list(db, status: str | None, limit: int) -> str:
    from bot.review_cli import _table
    from storage import transfers as tr

    found = await tr.list_transfers_in(db, status=status, limit=limit)
    if not found:
        return "没有外省转入记录。"
    rows = [("转入编号", "状态", "准考证号", "来源省", "转入专业", "课程", "现场确认")]
    for t in found:
        accepted = sum(1 for c in t.courses if c.accepted)
        rows.append((t.reference, t.status_label, t.admission_number, t.from_province, t.major_name,
                     f"{accepted}/{len(t.courses)} 认定", _when(t.confirm_at)))
    return "\n".join(_table(rows) + [f"共 {len(found)} 条。用 zikao-bot transfer-in show 转入编号 查看详情。"])


async def _show(db, reference: str) -> str:
    from storage import transfers as tr

    found = await tr.list_transfers_in(db, reference=reference)
    if not found:
        raise BadInput(f"转入编号 {reference} 不存在。")
    t = found[0]
    lines = [f"外省转入 {t.reference}  {t.status_label}",
             f"准考证号 {t.admission_number}  转入专业 {t.major_code} {t.major_name}",
             f"来源省 {t.from_province}  来源准考证号 {t.from_admission_number}  申请日期 {t.applied_on or '-'}"]
    if t.reason:
        lines.append(f"未通过原因 {t.reason}")
    if t.confirm_at:
        lines.append(f"现场确认 {_when(t.confirm_at)}{' 至 ' + _when(t.confirm_ends_at) if t.confirm_ends_at else ''}"
                     f"  地点 {t.confirm_place or '-'}")
        lines.append(f"携带材料 {t.confirm_bring or '-'}")
    for c in t.courses:
        verdict = {True: "认定", False: f"不认定（{c.note}）", None: "待定"}[c.accepted]
        score = c.score if c.score is not None else (c.grade or "-")
        lines.append(f"  {c.course_code} {c.course_name}  原课程 {c.source_name or '-'}  成绩 {score}  "
                     f"通过 {tr.month_text(c.passed_on)}  {verdict}")
    return "\n".join(lines)


async def _set(db, args: argparse.Namespace, status: str, at, until) -> str:
    from storage import transfers as tr

    done = await tr.set_status(db, args.reference, status, reason=args.reason, confirm_at=at, confirm_ends_at=until,
                               place=args.place, bring=args.bring)
    t = done.transfer
    tail = f"已通知考生（{done.pushes} 条推送待发送）。" if done.pushes else "状态未变或考生未绑定公众号，没有新的推送。"
    return f"外省转入 {t.reference}：{t.status_label}。{tail}"


async def _rules(db, path: str | None, reset: bool) -> str:
    from storage import transfers as tr

    if reset:
        await tr.save_rules(db, tr.TransferOutRules())
    elif path:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("the file must hold a JSON object")
            rules = tr.TransferOutRules.from_dict(data)
        except (OSError, ValueError) as exc:
            raise BadInput(f"{path}: {exc}") from None
        await tr.save_rules(db, rules)
    rules = await tr.transfer_out_rules(db)
    return json.dumps(rules.to_dict(), ensure_ascii=False, indent=2)

