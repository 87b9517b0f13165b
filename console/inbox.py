"""反馈建议 inbox: list, read, reply (pushed to the candidate in WeChat), mark handled."""
from __future__ import annotations

from aiohttp import web
from aiohttp_session import get_session

from console.core import client_ip, db, flash, me, page_number, redirect, render, require_admin
from storage import feedback, staff

PER_PAGE = 50
FILTERS = {"open": ("未处理", False), "done": ("已处理", True), "all": ("全部", None)}


@require_admin
async def inbox(request: web.Request) -> web.Response:
    which = request.query.get("show", "open")
    if which not in FILTERS:
        which = "open"
    page = page_number(request)
    items, total = await feedback.inbox(db(request), handled=FILTERS[which][1], offset=(page - 1) * PER_PAGE,
                                        limit=PER_PAGE)
    return await render(request, "inbox.html", {"items": items, "total": total, "which": which, "filters": FILTERS,
                                                "page": page, "pages": max(1, -(-total // PER_PAGE))})


@require_admin
async def item(request: web.Request) -> web.Response:
    try:
        it = await feedback.get(db(request), int(request.match_info["id"]))
    except feedback.FeedbackError as e:
        raise web.HTTPNotFound(text=e.message) from None
    return await render(request, "feedback.html", {"it": it, "max_reply": feedback.REPLY_MAX})


@require_admin
async def act(request: web.Request) -> web.Response:
    fid = int(request.match_info["id"])
    form = await request.post()
    s = me(request)
    session = await get_session(request)

    def audit(action):
        def add(sess, before, after):
            staff.add_audit(sess, staff=s, action=action, target=f"feedback:{fid}", before=before, after=after,
                            summary=f"反馈 #{fid}", ip=client_ip(request))
        return add

    try:
        if form.get("do") == "reply":
            await feedback.reply(db(request), fid, str(form.get("reply", "")), by=s.label, audit=audit("feedback_reply"))
            flash(session, "回复已保存并发送给考生（考生不在48小时互动期内时，会在其下次发消息后送达）。")
        else:
            handled = form.get("do") == "handled"
            await feedback.set_handled(db(request), fid, handled, by=s.label, audit=audit("feedback_handled"))
            flash(session, "已标记为已处理。" if handled else "已标记为未处理。")
    except feedback.FeedbackError as e:
        flash(session, e.message, "error")
    return redirect(f"/console/feedback/{fid}")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/feedback", inbox, name="feedback")
    router.add_get("/feedback/{id:\\d+}", item, name="feedback_item")
    router.add_post("/feedback/{id:\\d+}", act, name="feedback_act")
