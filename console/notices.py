"""Notices (站内消息 / 新闻通知): compose, preview as the candidate sees it, schedule, publish, follow the pushes."""
from __future__ import annotations

from aiohttp import web
from aiohttp_session import get_session

from console.core import client_ip, db, flash, input_time, me, parse_local, redirect, render, require_admin
from dialogs.queries import notice_detail
from storage import notices as store
from storage import outbox, staff
from storage.models import Major, Notice, utcnow
from storage.queries import NoticeItem


@require_admin
async def notice_list(request: web.Request) -> web.Response:
    items = await store.list_notices(db(request), limit=100)
    progress = await store.progress_of(db(request), [n.id for n in items])
    now = utcnow()
    rows = [{"n": n, "state": store.state(n, progress[n.id], now), "pct": store.percent_done(n, progress[n.id]),
             "audience": store.audience_label(n)} for n in items]
    return await render(request, "notices.html", {"rows": rows})


def _form_values(form) -> dict:
    return {k: str(form.get(k, "")) for k in ("title", "body", "category", "audience", "audience_value", "publish_at")} \
        | {"push": form.get("push") == "on"}


def _audience(values: dict) -> store.Audience:
    kind = values["audience"] or "all"
    return store.parse_audience("all" if kind == "all" else f"{kind}:{values['audience_value']}")


async def _majors(request: web.Request) -> list[tuple[str, str]]:
    from sqlalchemy import select

    async with db(request).session() as s:
        return list((await s.execute(select(Major.code, Major.name).order_by(Major.code))).all())


@require_admin
async def compose(request: web.Request) -> web.Response:
    values = {"title": "", "body": "", "category": "站内消息", "audience": "all", "audience_value": "",
              "publish_at": "", "push": True}
    return await render(request, "notice_form.html", {"v": values, "preview": None, "error": "",
                                                      "categories": store.CATEGORIES, "majors": await _majors(request)})


@require_admin
async def compose_post(request: web.Request) -> web.Response:
    form = await request.post()
    values = _form_values(form)
    ctx = {"v": values, "preview": None, "error": "", "categories": store.CATEGORIES, "majors": await _majors(request)}
    try:
        audience = _audience(values)
        when = parse_local(values["publish_at"])
        title, body = store.check_text(values["title"], values["body"], values["category"])
    except store.NoticeError as e:
        ctx["error"] = str(e)
        return await render(request, "notice_form.html", ctx, status=400)
    if form.get("do") != "publish":
        # What the candidate reads: the push as it arrives, and the notice opened from 站内消息.
        at = when or utcnow()
        draft = Notice(category=values["category"], title=title, body=body, publish_at=at)
        push_text, _ = outbox.notice_texts(draft)
        detail = notice_detail(NoticeItem(0, values["category"], title, body, at, False)).text
        ctx["preview"] = {"push": push_text if values["push"] else None, "detail": detail,
                          "audience": audience.label()}
        return await render(request, "notice_form.html", ctx)
    try:
        published = await store.publish(db(request), title=title, body=body, publish_at=when, audience=audience,
                                        category=values["category"], push=values["push"], created_by=me(request).label)
    except store.NoticeError as e:
        ctx["error"] = str(e)
        return await render(request, "notice_form.html", ctx, status=400)
    n = published.notice
    await staff.audit(db(request), staff=me(request), action="notice_publish", target=f"notice:{n.id}",
                      summary=f"「{n.title}」{published.audience_label}", ip=client_ip(request),
                      after={"title": n.title, "category": n.category, "audience": published.audience_label,
                             "publish_at": n.publish_at.isoformat(), "push": n.push})
    flash(await get_session(request), store.format_published(published).replace("\n", " "))
    return redirect(f"/console/notices/{n.id}")


@require_admin
async def notice_status(request: web.Request) -> web.Response:
    try:
        n = await store.get_notice(db(request), int(request.match_info["id"]))
    except store.NoticeError as e:
        raise web.HTTPNotFound(text=str(e)) from None
    counts = (await store.progress_of(db(request), [n.id]))[n.id]
    state = store.state(n, counts)
    return await render(request, "notice_status.html", {
        "n": n, "counts": counts, "labels": store.STATUS_LABELS, "state": state, "pct": store.percent_done(n, counts),
        "audience": store.audience_label(n), "refresh": state in ("发送中", "待分发"),
    })


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/notices", notice_list, name="notices")
    router.add_get("/notices/new", compose, name="notice_new")
    router.add_post("/notices/new", compose_post, name="notice_new_post")
    router.add_get("/notices/{id:\\d+}", notice_status, name="notice_status")
