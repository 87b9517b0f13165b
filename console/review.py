"""Review pages: the queues, one application with its evidence photos, decisions (one or many), revealing an ID."""
from __future__ import annotations

import datetime as dt
import logging
from urllib.parse import urlencode

from aiohttp import web
from aiohttp_session import get_session

from console.core import client_ip, config, db, flash, me, page_number, redirect, render
from storage import applications as apps
from storage import degree, queries, review_queue, staff, thesis
from storage import graduation_rules as gr
from storage.accounts import id_number_of
from storage.graduation import GraduationDetails
from storage.identifiers import mask_id_number
from storage.models_applications import ENTRY_KINDS, STATUS_LABELS
from storage.photos import PhotoMissing
from storage.staff import StaffInfo, can_decide
from storage.vocab import SCORE_KINDS

log = logging.getLogger("zikao.console")

ENTRY_WHEN = {"theory": "通过时间", "exemption": "办理免考时间", "transfer": "办理转入时间"}
ACTION_WORDS = {"create": "创建", "save": "保存", "submit": "提交", "approve": "审核通过", "reject": "审核不通过"}


async def _denied(request: web.Request) -> web.Response:
    return await render(request, "denied.html", {"why": "你没有审核这类申请的权限。"}, status=403)


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


async def queue(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    if not can_decide(me(request), kind):
        return await _denied(request)
    # The filters live in the session, not the URL: a name or 准考证号 typed here never reaches an
    # access log, a proxy or the browser's history. Only the status (and the page) are in the URL.
    session = await get_session(request)
    saved = (session.get("queue_filters") or {}).get(kind, {})
    status = request.query.get("status", "submitted")
    f = review_queue.QueueFilter(
        kind=kind, status="" if status == "all" else status, sitting=saved.get("sitting", ""),
        major=saved.get("major", ""), submitted_from=_date(saved.get("from", "")),
        submitted_to=_date(saved.get("to", "")), who=saved.get("who", ""),
    )
    problems = review_queue.filter_problems(f)
    page = await review_queue.search(db(request), f if not problems else review_queue.QueueFilter(kind),
                                     page=page_number(request))
    params = {"status": status}
    return await render(request, "queue.html", {
        "kind": kind, "status": status, "f": f, "problems": problems, "page": page, "statuses": STATUS_LABELS,
        "sittings": await review_queue.sittings_in_windows(db(request)),
        "query": params, "page_link": lambda n: "?" + urlencode({**params, "page": n}),
        "reasons": await staff.reason_templates(db(request), kind),
    })


async def queue_filter(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    if not can_decide(me(request), kind):
        return await _denied(request)
    form = await request.post()
    session = await get_session(request)
    filters = dict(session.get("queue_filters") or {})
    if form.get("clear"):
        filters.pop(kind, None)
    else:
        filters[kind] = {k: str(form.get(k, "")).strip()[:32] for k in ("sitting", "major", "from", "to", "who")}
    session["queue_filters"] = filters
    status = str(form.get("status", "submitted"))
    return redirect(f"/console/queue/{kind}?" + urlencode({"status": status if status in STATUS_LABELS or status == "all" else "submitted"}))


async def _view_context(request: web.Request, app_id: int, reveal: bool = False) -> dict | None:
    try:
        v = await review_queue.application_view(db(request), app_id)
    except apps.ApplicationNotFound:
        raise web.HTTPNotFound(text="申请不存在") from None
    if not can_decide(me(request), v.data.kind):
        return None
    id_number = await id_number_of(db(request), v.data.candidate_id)
    sheet = await queries.all_scores(db(request), v.data.candidate_id)
    return {
        "v": v, "d": v.data, "id_shown": id_number if reveal else mask_id_number(id_number), "revealed": reveal,
        "sheet": sheet, "entry_kinds": ENTRY_KINDS, "entry_when": ENTRY_WHEN, "month_label": apps.month_label,
        "statuses": STATUS_LABELS, "action_words": ACTION_WORDS, "score_kinds": SCORE_KINDS,
        "reasons": await staff.reason_templates(db(request), v.data.kind), "max_reason": apps.MAX_REASON,
        "degree": await degree.review_view(db(request), v.data) if v.data.kind == "degree" else None,
        "grad": _graduation_view(v.data),
    }


def _graduation_view(d: apps.ApplicationData) -> dict | None:
    """What the 申请毕业 part of the page shows (storage/graduation.py), or None for other kinds."""
    if d.kind != "graduation":
        return None
    g = GraduationDetails.from_dict(d.details)
    diploma, companion = g.prior()
    return {"g": g, "diploma": diploma, "companion": companion, "companion_name":
            gr.COMPANION_NAMES.get(companion.kind, "") if companion else "", "chars": gr.text_length(g.self_assessment),
            "report": companion is not None and companion.kind == gr.VERIFICATION_REPORT}


async def application(request: web.Request) -> web.Response:
    ctx = await _view_context(request, int(request.match_info["id"]))
    if ctx is None:
        return await _denied(request)
    return await render(request, "application.html", ctx)


async def reveal(request: web.Request) -> web.Response:
    """The full ID number, shown once on this page and recorded in the audit log."""
    app_id = int(request.match_info["id"])
    ctx = await _view_context(request, app_id, reveal=True)
    if ctx is None:
        return await _denied(request)
    await staff.audit(db(request), staff=me(request), action="reveal_id", target=f"application:{app_id}",
                      summary=f"查看考生 {ctx['v'].candidate_name} 的完整证件号码", ip=client_ip(request))
    return await render(request, "application.html", ctx)


def _decision_audit(s: StaffInfo, app_id: int, before: apps.ApplicationData, after: apps.ApplicationData) -> dict:
    return dict(staff=s, action=after.status == "approved" and "approve" or "reject", target=f"application:{app_id}",
                summary=f"{apps.kind_name(after.kind)} #{app_id} {after.status_label}"
                        + (f"：{after.reason}" if after.reason else ""),
                before={"status": before.status, "version": before.version},
                after={"status": after.status, "reason": after.reason, "version": after.version})


async def decide(request: web.Request) -> web.Response:
    app_id = int(request.match_info["id"])
    s = me(request)
    session = await get_session(request)
    try:
        before = await apps.load_application(db(request), app_id)
    except apps.ApplicationNotFound:
        raise web.HTTPNotFound(text="申请不存在") from None
    if not can_decide(s, before.kind):
        return await _denied(request)
    form = await request.post()
    action = form.get("action")
    try:
        version = int(form.get("version", ""))
    except ValueError:
        version = None
    try:
        if action == "approve":
            advisor = thesis.advisor_of(str(form.get("advisor", "")), str(form.get("advisor_contact", "")))
            done = await apps.approve(db(request), app_id, by=s.label, version=version, advisor=advisor)
        elif action == "reject":
            reason = str(form.get("reason", "")).strip() or str(form.get("template", "")).strip()
            done = await apps.reject(db(request), app_id, reason=reason, by=s.label, version=version)
        else:
            raise web.HTTPBadRequest(text="unknown action")
    except thesis.AdvisorError as e:
        flash(session, e.message, "error")
        return redirect(f"/console/applications/{app_id}")
    except apps.ApplicationError as e:
        message = await review_queue.already_decided_text(db(request), app_id) or e.message
        flash(session, message, "error")
        return redirect(f"/console/applications/{app_id}")
    await staff.audit(db(request), ip=client_ip(request), **_decision_audit(s, app_id, before, done.application))
    told = "已通知考生" if done.pushes else "考生未绑定或未关注，未发推送"
    flash(session, f"申请 #{app_id} {done.application.status_label}，{told}。")
    # On to the next one waiting (thousands a week are decided one after another), or back to the queue.
    following = await review_queue.next_pending(db(request), before.kind, after=app_id)
    return redirect(f"/console/applications/{following}" if following else f"/console/queue/{before.kind}")


async def bulk_approve(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    s = me(request)
    if not can_decide(s, kind):
        return await _denied(request)
    form = await request.post()
    chosen = []
    for value in form.getall("pick", []):
        app_id, _, version = str(value).partition(":")
        if app_id.isdigit():
            chosen.append((int(app_id), int(version) if version.isdigit() else None))
    session = await get_session(request)
    if not chosen:
        flash(session, "请先勾选要审核通过的申请。", "error")
        return redirect(f"/console/queue/{kind}")
    before = {i: v for i, v in chosen}
    outcomes = await review_queue.approve_many(db(request), chosen, by=s.label, allowed_kinds=[kind])
    for o in outcomes:
        if o.ok:
            await staff.audit(db(request), staff=s, action="approve", target=f"application:{o.id}",
                              summary=f"{apps.kind_name(kind)} #{o.id} 审核通过（批量）",
                              before={"status": "submitted", "version": before[o.id]}, after={"status": "approved"},
                              ip=client_ip(request))
    done = sum(o.ok for o in outcomes)
    flash(session, f"批量审核通过 {done} 份。")
    for o in outcomes:
        if not o.ok:
            flash(session, f"#{o.id}：{o.message}", "error")
    return redirect(f"/console/queue/{kind}")


async def photo(request: web.Request) -> web.StreamResponse:
    """An evidence photo, for staff who decide a business it is evidence in; never cached."""
    row = await review_queue.photo_for_kinds(db(request), int(request.match_info["id"]), me(request).kinds)
    if row is None:
        raise web.HTTPNotFound(text="照片不存在")
    try:
        data = await config(request).photo_store.get(row.storage_key)
    except PhotoMissing:
        raise web.HTTPNotFound(text="照片文件缺失")
    return web.Response(body=data, content_type=row.content_type,
                        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/queue/{kind}", queue, name="queue")
    router.add_post("/queue/{kind}/approve", bulk_approve, name="bulk_approve")
    router.add_post("/queue/{kind}/filter", queue_filter, name="queue_filter")
    router.add_get("/applications/{id:\\d+}", application, name="application")
    router.add_post("/applications/{id:\\d+}/decide", decide, name="decide")
    router.add_post("/applications/{id:\\d+}/reveal", reveal, name="reveal")
    router.add_get("/photos/{id:\\d+}", photo, name="photo")
