"""Business windows (办理时间): list, create, edit opens/closes and 考生须知, per business and sitting."""
from __future__ import annotations

from aiohttp import web
from aiohttp_session import get_session

from console.core import client_ip, db, flash, input_time, me, parse_local, redirect, render, require_admin
from storage import staff
from storage import windows as store
from storage.models import utcnow
from storage.vocab import WINDOW_KINDS


@require_admin
async def window_list(request: web.Request) -> web.Response:
    kind = request.query.get("kind", "")
    items = await store.list_windows(db(request), kind if kind in WINDOW_KINDS else None)
    now = utcnow()
    return await render(request, "windows.html", {"items": [(w, store.window_state(w, now)) for w in items],
                                                  "kinds": WINDOW_KINDS, "kind": kind})


def _empty() -> dict:
    return {"kind": "exemption", "title": "", "sitting": "", "opens_at": "", "closes_at": "", "notice": ""}


@require_admin
async def window_form(request: web.Request) -> web.Response:
    window_id = request.match_info.get("id")
    values = _empty()
    if window_id:
        try:
            w = await store.get_window(db(request), int(window_id))
        except store.WindowError as e:
            raise web.HTTPNotFound(text=e.message) from None
        values = {"kind": w.kind, "title": w.title, "sitting": w.sitting_code or "", "opens_at": input_time(w.opens_at),
                  "closes_at": input_time(w.closes_at), "notice": w.notice or ""}
    return await render(request, "window_form.html", {"v": values, "id": window_id, "kinds": WINDOW_KINDS, "error": ""})


@require_admin
async def window_save(request: web.Request) -> web.Response:
    window_id = request.match_info.get("id")
    form = await request.post()
    values = {k: str(form.get(k, "")) for k in _empty()}
    ctx = {"v": values, "id": window_id, "kinds": WINDOW_KINDS, "error": ""}
    opens, closes = parse_local(values["opens_at"]), parse_local(values["closes_at"])
    if opens is None or closes is None:
        ctx["error"] = "请填写开始时间和结束时间。"
        return await render(request, "window_form.html", ctx, status=400)
    f = store.WindowForm(values["kind"], values["title"], opens, closes, values["sitting"].strip(),
                         values["notice"].replace("\r\n", "\n"))
    s = me(request)

    def audit(session, before, after, wid):
        staff.add_audit(session, staff=s, action="window_edit" if before else "window_create",
                        target=f"window:{wid}", summary=f.title, before=before, after=after, ip=client_ip(request))

    try:
        await store.save_window(db(request), f, int(window_id) if window_id else None, audit=audit)
    except store.WindowError as e:
        ctx["error"] = e.message
        return await render(request, "window_form.html", ctx, status=400)
    flash(await get_session(request), f"已保存：{f.title}")
    return redirect("/console/windows")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/windows", window_list, name="windows")
    router.add_get("/windows/new", window_form, name="window_new")
    router.add_post("/windows/new", window_save, name="window_create")
    router.add_get("/windows/{id:\\d+}", window_form, name="window_edit")
    router.add_post("/windows/{id:\\d+}", window_save, name="window_update")
