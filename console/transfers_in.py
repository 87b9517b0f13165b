"""外省转入 (admins): the office's records — list, one record, moving its status and 现场确认 slot,
marking each course 认定 / 不认定.

Every change goes through storage.transfers (`set_status`, `set_course`), the path of
`zikao-bot transfer-in status` and the importer: the same checks, the candidate's push and the
audit entry in the transaction of the change.
"""
from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web
from aiohttp_session import get_session

from console.core import (
    client_ip, db, flash, input_time, me, page_number, parse_local, redirect, render, require_admin,
)
from storage import staff
from storage import transfers as tr
from storage.accounts import id_number_of
from storage.identifiers import mask_id_number
from storage.models_transfers import TRANSFER_IN_STATUSES
from storage.review_queue import QueuePage

PER_PAGE = 50
VERDICTS = {"accept": True, "reject": False, "undecided": None}  # the course form's choices


def _path(reference: str) -> str:
    return f"/console/transfers-in/{reference}"


@require_admin
async def transfer_list(request: web.Request) -> web.Response:
    # As in the queues, the name or 准考证号 searched for lives in the session, never in the URL.
    session = await get_session(request)
    who = str(session.get("transfer_in_who", ""))
    status = request.query.get("status", "")
    status = status if status in TRANSFER_IN_STATUSES else ""
    page = page_number(request)
    rows, total = await tr.search_transfers_in(db(request), status=status, who=who, page=page, per_page=PER_PAGE)
    params = {"status": status} if status else {}
    return await render(request, "transfers_in.html", {
        "page": QueuePage(tuple(rows), total, page, PER_PAGE), "status": status, "who": who,
        "statuses": TRANSFER_IN_STATUSES, "page_link": lambda n: "?" + urlencode({**params, "page": n}),
    })


@require_admin
async def transfer_filter(request: web.Request) -> web.Response:
    form = await request.post()
    session = await get_session(request)
    session["transfer_in_who"] = "" if form.get("clear") else str(form.get("who", "")).strip()[:32]
    status = str(form.get("status", ""))
    query = urlencode({"status": status}) if status in TRANSFER_IN_STATUSES else ""
    return redirect("/console/transfers-in" + (f"?{query}" if query else ""))


async def _record(request: web.Request) -> tr.TransferInView:
    found = await tr.list_transfers_in(db(request), reference=request.match_info["id"], limit=1)
    if not found:
        raise web.HTTPNotFound(text="转入记录不存在")
    return found[0]


async def _page(request: web.Request, t: tr.TransferInView, *, form: dict | None = None, error: str = "",
                status: int = 200) -> web.Response:
    history, _ = await staff.search_audit(db(request), staff.AuditQuery(text=f"transfer_in:{t.reference}"), limit=200)
    values = form or {"status": t.status, "reason": t.reason, "confirm_at": input_time(t.confirm_at),
                      "confirm_until": input_time(t.confirm_ends_at), "place": t.confirm_place,
                      "bring": t.confirm_bring}
    return await render(request, "transfer_in.html", {
        "t": t, "id_masked": mask_id_number(await id_number_of(db(request), t.candidate_id)),
        "statuses": TRANSFER_IN_STATUSES, "v": values, "error": error, "history": history,
        "month_text": tr.month_text, "max_note": tr.MAX_COURSE_NOTE,
    }, status=status)


@require_admin
async def transfer_page(request: web.Request) -> web.Response:
    return await _page(request, await _record(request))


def _audit_hook(request: web.Request, action: str, reference: str, summary: str):
    s = me(request)

    def hook(session, before: dict, after: dict) -> None:
        staff.add_audit(session, staff=s, action=action, target=f"transfer_in:{reference}", summary=summary,
                        before=before, after=after, ip=client_ip(request))

    return hook


@require_admin
async def transfer_status(request: web.Request) -> web.Response:
    t = await _record(request)
    form = await request.post()
    values = {k: str(form.get(k, "")) for k in ("status", "reason", "confirm_at", "confirm_until", "place", "bring")}
    new = values["status"]
    if new not in TRANSFER_IN_STATUSES:
        return await _page(request, t, form=values, error="请选择新的状态。", status=400)
    try:
        at, until = _time(values["confirm_at"]), _time(values["confirm_until"])
    except ValueError as e:
        return await _page(request, t, form=values, error=str(e), status=400)
    summary = f"外省转入 {t.reference} {t.status_label} → {tr.status_label(new)}"
    try:
        done = await tr.set_status(
            db(request), t.reference, new, reason=values["reason"], confirm_at=at, confirm_ends_at=until,
            place=values["place"], bring=values["bring"].replace("\r\n", "\n"),
            audit=_audit_hook(request, "transfer_in_status", t.reference, summary))
    except tr.TransferError as e:
        return await _page(request, t, form=values, error=e.message, status=400)
    told = f"已通知考生（{done.pushes} 条推送待发送）" if done.pushes else "状态未变或考生未绑定公众号，没有新的推送"
    flash(await get_session(request), f"外省转入 {t.reference}：{done.transfer.status_label}。{told}。")
    return redirect(_path(t.reference))


def _time(text: str):
    """A datetime-local field (Beijing time); empty: unchanged."""
    try:
        return parse_local(text)
    except web.HTTPBadRequest:
        raise ValueError(f"时间“{text}”格式不对，应为 2026-12-03 09:00") from None


@require_admin
async def transfer_course(request: web.Request) -> web.Response:
    t = await _record(request)
    form = await request.post()
    code, verdict, note = str(form.get("course", "")), str(form.get("verdict", "")), str(form.get("note", ""))
    if verdict not in VERDICTS or code not in {c.course_code for c in t.courses}:
        return await _page(request, t, error="请选择课程和认定结果。", status=400)
    label = {True: "认定", False: "不认定", None: "待审核"}[VERDICTS[verdict]]
    try:
        await tr.set_course(db(request), t.reference, code, VERDICTS[verdict], note,
                            audit=_audit_hook(request, "transfer_in_course", t.reference,
                                              f"外省转入 {t.reference} 课程 {code} {label}"))
    except tr.TransferError as e:
        return await _page(request, t, error=f"课程 {code}：{e.message}", status=400)
    flash(await get_session(request), f"课程 {code}：{label}。")
    return redirect(_path(t.reference))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/transfers-in", transfer_list, name="transfers_in")
    router.add_post("/transfers-in/filter", transfer_filter, name="transfers_in_filter")
    router.add_get("/transfers-in/{id:[A-Za-z0-9_-]+}", transfer_page, name="transfer_in")
    router.add_post("/transfers-in/{id:[A-Za-z0-9_-]+}/status", transfer_status, name="transfer_in_status")
    router.add_post("/transfers-in/{id:[A-Za-z0-9_-]+}/course", transfer_course, name="transfer_in_course")
