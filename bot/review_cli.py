"""`zikao-bot review`: staff list, inspect and decide applications (申请免考, 成绩补登 ...).

The same decisions as the staff console (console/), from a shell. Output is Chinese for the staff
member at the terminal; ID numbers and mobiles are masked, as everywhere a person reads them.
A decision writes the candidate's push in its own transaction (storage.applications).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar

from bot.config import Settings, command_settings

if TYPE_CHECKING:
    from storage.applications import ApplicationData
    from storage.photos import PhotoStore

# The storage modules (SQLAlchemy models, Pillow) are imported when a review command runs:
# registering the command keeps `zikao-bot --help` and the other commands quick to start.

T = TypeVar("T")


class BadInput(ValueError):
    """A filter the command does not know (exit status 2, like an argparse error)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


ACTION_WORDS = {"create": "创建", "save": "保存", "submit": "提交", "approve": "审核通过", "reject": "审核不通过"}


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `review list|show|approve|reject` to the `zikao-bot` parser."""
    rv = subparsers.add_parser("review", help="list, show and decide applications (申请免考, 成绩补登 ...)")
    rsub = rv.add_subparsers(dest="review_command", required=True)
    ls = rsub.add_parser("list", help="applications, newest first (default: 待审核 only)")
    ls.add_argument("--status", default="submitted",
                    help="submitted/待审核 (default), approved/审核通过, rejected/未通过, draft/草稿 or all")
    ls.add_argument("--kind", help="exemption/申请免考, backfill/成绩补登 ... (default: every kind)")
    ls.add_argument("--limit", type=int, default=100)
    sh = rsub.add_parser("show", help="one application: candidate, courses, evidences, photo files, history")
    sh.add_argument("id", type=int)
    ap = rsub.add_parser("approve", help="审核通过: scores recorded, candidate notified")
    ap.add_argument("id", type=int)
    ap.add_argument("--by", required=True, help="who decides (recorded with the decision)")
    ap.add_argument("--version", type=int, help="refuse if the application changed since `show` printed this version")
    ap.add_argument("--advisor", help="论文 only: the 指导教师 assigned (pushed to the candidate with the decision)")
    ap.add_argument("--advisor-contact", help="论文 only: how the candidate contacts the 指导教师 (phone, e-mail ...)")
    ad = rsub.add_parser("advisor", help="论文: name or change the 指导教师 of an approved thesis application (pushed)")
    ad.add_argument("id", type=int)
    ad.add_argument("--advisor", required=True, help="the 指导教师's name")
    ad.add_argument("--advisor-contact", required=True, help="how the candidate contacts them")
    ad.add_argument("--by", required=True, help="who records it")
    rj = rsub.add_parser("reject", help="未通过, with the reason the candidate reads")
    rj.add_argument("id", type=int)
    rj.add_argument("--reason", required=True, help="why (shown to the candidate, at most 500 characters)")
    rj.add_argument("--by", required=True, help="who decides (recorded with the decision)")
    rj.add_argument("--version", type=int, help="refuse if the application changed since `show` printed this version")
    rv.set_defaults(func=_command)
    return rv


def _command(args: argparse.Namespace) -> int:
    # Same settings as every other command (the review shows encrypted ID numbers and mobiles).
    return run(args, command_settings(getattr(args, "config", None)))


def photo_store(settings: Settings) -> PhotoStore:
    """Where the service keeps evidence photos: <MEDIA_DIR>/photos."""
    from storage.photos import LocalPhotoStore

    return LocalPhotoStore.under_media_dir(settings.media_dir)


def _with_db(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
    from storage.db import Database
    from storage.migrate import upgrade

    upgrade(settings.database_url)

    async def go() -> T:
        db = Database(settings.database_url)
        try:
            return await fn(db)
        finally:
            await db.dispose()

    return asyncio.run(go())


def _status_code(text: str) -> list[str] | None:
    from storage.models_applications import STATUS_LABELS

    t = (text or "").strip()
    if t in ("all", "全部"):
        return None
    for code, label in STATUS_LABELS.items():
        if t in (code, label):
            return [code]
    raise BadInput(f"状态“{t}”不对，应为 submitted、approved、rejected、draft 或 all")


def _kind_code(text: str | None) -> str | None:
    from storage import outbox
    from storage.applications import kind_name
    from storage.models_applications import APPLICATION_KINDS

    if text is None:
        return None
    t = text.strip()
    for code in APPLICATION_KINDS:
        if t in (code, kind_name(code), outbox.KIND_KEYWORDS.get(code)):
            return code
    raise BadInput(f"类型“{t}”不对，应为 {'、'.join(APPLICATION_KINDS)}")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one `review` subcommand; 0 done, 1 refused (state, window, version), 2 bad input."""
    from storage import applications as apps
    from storage.thesis import AdvisorError

    cmd = args.review_command
    try:
        if cmd == "list":
            statuses = _status_code(args.status)
            kind = _kind_code(args.kind)
            print(_with_db(settings, lambda db: _list(db, statuses, kind, args.limit)))
        elif cmd == "show":
            print(_with_db(settings, lambda db: _show(db, photo_store(settings), args.id)))
        elif cmd == "approve":
            advisor = _advisor(args)
            print(_with_db(settings, lambda db: _decide(db, args.id, approve=True, by=args.by, reason=None,
                                                        version=args.version, advisor=advisor)))
        elif cmd == "advisor":
            advisor = _advisor(args)
            print(_with_db(settings, lambda db: _assign_advisor(db, args.id, advisor, by=args.by)))
        elif cmd == "reject":
            print(_with_db(settings, lambda db: _decide(db, args.id, approve=False, by=args.by, reason=args.reason,
                                                        version=args.version)))
        else:  # pragma: no cover - argparse allows only the commands above
            raise AssertionError(cmd)
    except (apps.ApplicationNotFound, BadInput) as e:
        print(f"zikao-bot review {cmd}: {e.message}", file=sys.stderr)
        return 2
    except (apps.ApplicationError, AdvisorError) as e:
        print(f"zikao-bot review {cmd}: {e.message}", file=sys.stderr)
        return 1
    return 0


def _advisor(args: argparse.Namespace):
    """The 指导教师 given on the command line (both or neither), or BadInput."""
    from storage.thesis import AdvisorError, advisor_of

    try:
        return advisor_of(getattr(args, "advisor", None), getattr(args, "advisor_contact", None))
    except AdvisorError as e:
        raise BadInput(e.message) from None


async def _assign_advisor(db, app_id: int, advisor, *, by: str) -> str:
    from storage.thesis import assign_advisor

    d, pushes = await assign_advisor(db, app_id, advisor, by=by)
    lines = [f"论文申请 #{app_id}：指导教师 {d.advisor}，联系方式 {d.advisor_contact}。"]
    lines.append(f"已通知考生（{pushes} 条推送待发送）。" if pushes else "指导教师没有变化，或考生没有绑定并关注公众号，未发推送。")
    return "\n".join(lines)


# --- What the staff member reads -----------------------------------------------------------------


def _table(rows: list[tuple[str, ...]], right: set[int] = frozenset()) -> list[str]:
    from storage.importer import _pad, _width

    widths = [max(_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(_pad(c, w, right=i in right) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]


def _when(t) -> str:
    from storage.notices import local

    return local(t) if t else "-"


async def _names(db, data_list: list[ApplicationData]) -> tuple[dict[int, Any], dict[str, str]]:
    """Candidates by id and course names by code, for a list of applications."""
    from sqlalchemy import select

    from storage.models import Candidate, Course

    ids = {d.candidate_id for d in data_list}
    codes = {i.course_code for d in data_list for i in d.items}
    async with db.session() as s:
        candidates = {c.id: c for c in (await s.execute(select(Candidate).where(Candidate.id.in_(ids)))).scalars()} \
            if ids else {}
        courses = dict((await s.execute(select(Course.code, Course.name).where(Course.code.in_(codes)))).all()) \
            if codes else {}
    return candidates, courses


def _courses_cell(d: ApplicationData, courses: dict[str, str]) -> str:
    from storage.models_applications import ENTRY_KINDS

    names = [courses.get(i.course_code, i.course_code) for i in d.items]
    if d.kind == "backfill" and d.items and d.items[0].entry_kind:
        prefix = ENTRY_KINDS.get(d.items[0].entry_kind, "") + "："
    else:
        prefix = ""
    text = prefix + "、".join(names) if names else "-"
    return text if len(text) <= 24 else text[:23] + "…"


async def _list(db, statuses: list[str] | None, kind: str | None, limit: int) -> str:
    from storage import applications as apps
    from storage.models_applications import STATUS_LABELS

    found = await apps.list_applications(db, kind=kind, status=statuses, limit=limit)
    if not found:
        what = "、".join(STATUS_LABELS[s] for s in statuses) if statuses else "任何状态"
        return f"没有{what}的申请。"
    candidates, courses = await _names(db, found)
    rows = [("编号", "类型", "状态", "考生", "准考证号", "课程", "提交时间", "审核")]
    for d in found:
        c = candidates.get(d.candidate_id)
        decided = f"{d.decided_by} {_when(d.decided_at)}" if d.decided_at else "-"
        rows.append((str(d.id), apps.kind_name(d.kind), d.status_label, c.name if c else "-", d.admission_number,
                     _courses_cell(d, courses), _when(d.submitted_at), decided))
    lines = _table(rows, right={0})
    lines.append(f"共 {len(found)} 份。用 zikao-bot review show 编号 查看详情。")
    return "\n".join(lines)


async def _show(db, store: PhotoStore, app_id: int) -> str:
    from storage import applications as apps
    from storage.accounts import id_number_of
    from storage.identifiers import mask_id_number, mask_mobile
    from storage.models_applications import ENTRY_KINDS, STATUS_LABELS
    from storage.review_queue import application_view

    v = await application_view(db, app_id)
    d, courses, types, events, photos, window = v.data, v.course_names, v.type_names, v.events, v.photos, v.window
    lines = [f"申请 #{d.id}  {apps.kind_name(d.kind)}  {d.status_label}  版本 {d.version}"]
    id_number = await id_number_of(db, d.candidate_id)
    lines.append(f"考生 {v.candidate_name}  证件号码 {mask_id_number(id_number)}  手机 {mask_mobile(v.mobile) if v.mobile else '-'}")
    lines.append(f"准考证号 {d.admission_number}  专业 {d.major_code + ' ' + v.major_name if v.major_name else d.major_code or '-'}")
    if window is not None:
        lines.append(f"办理时间 {window.title}（{_when(window.opens_at)} 至 {_when(window.closes_at)}）")
    lines.append(f"创建 {_when(d.created_at)}  提交 {_when(d.submitted_at)}")
    if d.decided_at:
        lines.append(f"审核 {STATUS_LABELS[d.status]}  审核人 {d.decided_by}  时间 {_when(d.decided_at)}")
    if d.reason:
        lines.append(f"原因 {d.reason}")
    if d.kind == "transfer_out":
        lines += _transfer_out_lines(d)
    if d.kind == "thesis":
        lines += _thesis_lines(d)
    if d.kind == "degree":
        lines += await _degree_lines(db, store, d, photos)
    if d.kind == "graduation":
        lines += await _graduation_lines(d, photos, store)
    for n, item in enumerate(d.items, 1):
        lines.append("")
        lines.append(f"课程 {n}：{item.course_code} {courses.get(item.course_code, '')}".rstrip())
        if item.entry_kind:
            fields = [f"补登类型 {ENTRY_KINDS[item.entry_kind]}"]
            when = {"theory": "通过时间", "exemption": "办理免考时间", "transfer": "办理转入时间"}[item.entry_kind]
            fields.append(f"{when} {apps.month_label(item.passed_month)}")
            if item.score is not None or item.grade:
                fields.append(f"成绩 {item.score if item.score is not None else item.grade}")
            if item.from_province:
                fields.append(f"来源省 {item.from_province}")
            if item.from_admission_number:
                fields.append(f"来源准考证号 {item.from_admission_number}")
            lines.append("  " + "  ".join(fields))
            if item.note:
                lines.append(f"  说明 {item.note}")
        for m, e in enumerate(item.evidences, 1):
            lines.append(f"  凭证 {m}：{types.get(e.type_code, e.type_code)}  编号 {e.number or '-'}  "
                         f"获取时间 {apps.month_label(e.obtained_month) if e.obtained_month else '-'}  "
                         f"省份 {e.province or '-'}  备注 {e.note or '-'}")
            lines += await _photo_lines(e.photo_ids, photos, store)
    if events:
        lines.append("")
        lines.append("记录")
        for ev in events:
            change = (f"{STATUS_LABELS.get(ev.from_status, ev.from_status)} -> {STATUS_LABELS.get(ev.to_status, ev.to_status)}"
                      if ev.from_status else STATUS_LABELS.get(ev.to_status, ev.to_status))
            who = "考生" if ev.actor == "candidate" else ev.actor
            extra = f"  原因：{ev.reason}" if ev.reason else ""
            lines.append(f"  {_when(ev.at)}  {ACTION_WORDS.get(ev.action, ev.action)}  {change}  {who}{extra}")
    if d.status == "submitted":
        lines.append("")
        lines.append(f"审核：zikao-bot review approve {d.id} --by 姓名 --version {d.version}"
                     + (" --advisor 指导教师 --advisor-contact 联系方式" if d.kind == "thesis" else ""))
        lines.append(f"      zikao-bot review reject {d.id} --reason 原因 --by 姓名 --version {d.version}")
    return "\n".join(lines)


def _transfer_out_lines(d: ApplicationData) -> list[str]:
    from storage.identifiers import mask_mobile, valid_mobile
    from storage.transfers import TransferOutDetails

    t = TransferOutDetails.from_dict(d.details)
    phone = mask_mobile(t.phone) if valid_mobile(t.phone) else t.phone or "-"
    lines = [f"转入地 {t.province or '-'}  转入准考证号 {t.admission_number or '-'}  转入层次 {t.level or '-'}",
             f"转入专业 {t.major or '-'}  转出原因 {t.reason or '-'}  联系电话 {phone}"]
    if t.reference:
        lines.append(f"转出编号 {t.reference}")
    return lines


def _thesis_lines(d: ApplicationData) -> list[str]:
    from storage.thesis import ThesisDetails

    t = ThesisDetails.from_dict(d.details)
    lines = [f"成绩列表 {'已核对' if t.scores_confirmed else '未核对'}  加考选项 {t.extra_option or '-'}"]
    if t.advisor:
        lines.append(f"指导教师 {t.advisor}  联系方式 {t.advisor_contact}  （{t.advisor_by}）")
    return lines


async def _degree_lines(db, store: PhotoStore, d: ApplicationData, photos: dict) -> list[str]:
    from storage.degree import review_view

    view = await review_view(db, d)
    lines = ["", "个人信息", "  " + "  ".join(f"{label} {value}" for label, value in view.personal)]
    if not view.materials:
        lines.append("  （没有材料）")
    for n, mv in enumerate(view.materials, 1):
        lines.append("")
        need = f"（最低分 {mv.min_score}）" if mv.min_score else ""
        lines.append(f"材料 {n}：{mv.title}  {mv.name}{need}")
        if mv.fields:
            lines.append("  " + "  ".join(f"{k} {v}" for k, v in mv.fields))
        lines += await _photo_lines(mv.photo_ids, photos, store)
    return lines


async def _graduation_lines(d: ApplicationData, photos: dict, store: PhotoStore) -> list[str]:
    """申请毕业: the results confirmed, 加考选项, 情况说明, 自我鉴定, prior education with photo files."""
    from storage import applications as apps
    from storage import graduation_rules as gr
    from storage.graduation import GraduationDetails

    g = GraduationDetails.from_dict(d.details)
    lines = ["", f"合格成绩（{len(g.results)} 门，{sum(r.credits for r in g.results)} 学分）："]
    for r in g.results:
        lines.append("  " + "  ".join(x for x in (f"{r.course_code} {r.course_name}", r.course_kind, r.result or "-",
                                                  f"{r.credits}学分", apps.month_label(r.passed) if r.passed else "",
                                                  r.note, f"准考证号 {r.admission_number}") if x))
    if g.extra_choice:
        lines.append(f"加考选项 {g.extra_choice}")
    for m in g.missing:
        lines.append(f"情况说明（{m['label']}）：{g.explanations.get(m['key'], '-')}")
    lines.append(f"自我鉴定（{gr.text_length(g.self_assessment)} 字）：{g.self_assessment or '-'}")
    if g.fee_order:
        lines.append(f"毕业审定费订单 {g.fee_order}")
    diploma, companion = g.prior()
    if diploma is None:
        return lines
    lines.append(f"前置学历 毕业证书  编号 {diploma.number}  取得时间 {apps.month_label(diploma.graduated)}  省份 {diploma.province}")
    lines += await _photo_lines(diploma.photo_ids, photos, store)
    if companion is not None:
        what = "在线验证码" if companion.kind == gr.REGISTRATION_FORM else "报告编号"
        lines.append(f"前置学历 {gr.COMPANION_NAMES[companion.kind]}  {what} {companion.number}")
        lines += await _photo_lines(companion.photo_ids, photos, store)
    return lines


async def _photo_lines(ids: list[int], photos: dict, store: PhotoStore) -> list[str]:
    """Each photo's file (where the store keeps it), size and pixels, or why it is missing."""
    if not ids:
        return ["    （没有照片）"]
    out = []
    for k, pid in enumerate(ids, 1):
        p = photos.get(pid)
        if p is None:
            out.append(f"    照片 {k}：#{pid} 记录缺失")
            continue
        missing = "" if await store.exists(p.storage_key) else "  （文件缺失）"
        out.append(f"    照片 {k}：{store.locate(p.storage_key)}  {_kb(p.size)}  {p.width}×{p.height}{missing}")
    return out


def _kb(size: int) -> str:
    return f"{size / 1024:.0f} KB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.2f} MB"


async def _decide(db, app_id: int, *, approve: bool, by: str, reason: str | None, version: int | None,
                  advisor=None) -> str:
    from storage import applications as apps

    if approve:
        done = await apps.approve(db, app_id, by=by, version=version, advisor=advisor)
    else:
        done = await apps.reject(db, app_id, reason=reason or "", by=by, version=version)
    d = done.application
    candidates, _ = await _names(db, [d])
    c = candidates.get(d.candidate_id)
    who = f"，{c.name}" if c else ""
    lines = [f"申请 #{d.id}（{apps.kind_name(d.kind)}{who}）{d.status_label}，审核人 {d.decided_by}，{_when(d.decided_at)}。"]
    if approve and d.kind == "transfer_out":
        lines.append(f"转出编号 {d.details.get('reference', '-')}。")
    elif approve and d.kind == "thesis":
        advisor = d.details.get("advisor")
        lines.append(f"预审通过，指导教师 {advisor}。" if advisor else
                     f"预审通过，未指定指导教师（之后用 zikao-bot review advisor {d.id} 或导入 thesis_advisors.csv 分配）。")
    elif approve and d.kind == "graduation":
        lines.append(f"毕业审定费订单 {d.details.get('fee_order', '-')} 已生成（我的订单）。")
    elif approve and d.kind != "degree":  # a degree decision writes no score records
        lines.append(f"写入成绩记录 {done.score_records} 条。")
    if done.pushes:
        lines.append(f"已通知考生（{done.pushes} 条推送待发送）。")
    else:
        lines.append("考生没有绑定并关注公众号，未发推送；考生下次查看申请时可以看到结果。")
    return "\n".join(lines)
