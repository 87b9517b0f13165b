"""Staff accounts and reason templates, for the office admin."""
from __future__ import annotations

from aiohttp import web
from aiohttp_session import get_session

from console.core import client_ip, db, flash, me, redirect, render, require_admin
from storage import staff
from storage.staff import ROLE_LABELS, kind_label, known_kinds


@require_admin
async def staff_list(request: web.Request) -> web.Response:
    from storage.models import utcnow

    return await render(request, "staff.html", {"people": await staff.list_staff(db(request)), "now": utcnow(),
                                                "roles": ROLE_LABELS})


def _kinds_context() -> list[tuple[str, str]]:
    return [(k, kind_label(k)) for k in known_kinds()]


@require_admin
async def staff_form(request: web.Request) -> web.Response:
    staff_id = request.match_info.get("id")
    person = await staff.get_staff(db(request), int(staff_id)) if staff_id else None
    return await render(request, "staff_form.html", {"p": person, "kinds": _kinds_context(), "roles": ROLE_LABELS,
                                                     "error": ""})


@require_admin
async def staff_save(request: web.Request) -> web.Response:
    staff_id = request.match_info.get("id")
    form = await request.post()
    s = me(request)
    session = await get_session(request)
    kinds = [str(k) for k in form.getall("kinds", [])]
    try:
        if staff_id is None:
            person = await staff.add_staff(db(request), username=str(form.get("username", "")),
                                           display_name=str(form.get("display_name", "")),
                                           password=str(form.get("password", "")), role=str(form.get("role", "")),
                                           kinds=kinds)
            await staff.audit(db(request), staff=s, action="staff_add", target=f"staff:{person.username}",
                              after={"username": person.username, "role": person.role, "kinds": list(person.kinds)},
                              ip=client_ip(request))
            flash(session, f"已新建账号 {person.username}。")
            return redirect("/console/staff")
        sid = int(staff_id)
        do = form.get("do")
        if do == "password":
            await staff.set_password(db(request), sid, str(form.get("password", "")))
            await staff.audit(db(request), staff=s, action="staff_password", target=f"staff:{sid}",
                              summary="管理员重设密码", ip=client_ip(request))
            flash(session, "密码已重设，该账号的登录都已退出。")
        elif do == "unlock":
            await staff.unlock(db(request), sid)
            await staff.audit(db(request), staff=s, action="staff_unlock", target=f"staff:{sid}", ip=client_ip(request))
            flash(session, "账号已解锁。")
        else:
            if sid == s.id and (form.get("role") != "admin" or form.get("active") != "on"):
                raise staff.StaffError("不能取消自己的管理员身份或停用自己的账号。")
            before, after = await staff.update_staff(
                db(request), sid, display_name=str(form.get("display_name", "")), role=str(form.get("role", "")),
                kinds=kinds, active=form.get("active") == "on")
            await staff.audit(db(request), staff=s, action="staff_edit", target=f"staff:{after['username']}",
                              before=before, after=after, ip=client_ip(request))
            flash(session, "已保存。")
        return redirect(f"/console/staff/{sid}")
    except staff.StaffError as e:
        person = await staff.get_staff(db(request), int(staff_id)) if staff_id else None
        return await render(request, "staff_form.html", {"p": person, "kinds": _kinds_context(), "roles": ROLE_LABELS,
                                                         "error": e.message}, status=400)


@require_admin
async def reasons(request: web.Request) -> web.Response:
    return await render(request, "reasons.html", {"items": await staff.reason_templates(db(request), include_inactive=True),
                                                  "kinds": _kinds_context()})


@require_admin
async def reasons_save(request: web.Request) -> web.Response:
    form = await request.post()
    session = await get_session(request)
    rid = form.get("id")
    try:
        position = int(form.get("position") or 100)
    except ValueError:
        position = 100
    try:
        before, after = await staff.save_reason_template(
            db(request), text=str(form.get("text", "")), kind=str(form.get("kind", "")) or None,
            reason_id=int(rid) if rid else None, active=form.get("active", "on") == "on", position=position)
        await staff.audit(db(request), staff=me(request), action="reason_edit" if before else "reason_add",
                          target=f"reason:{after['id']}", before=before, after=after, ip=client_ip(request))
        flash(session, "原因模板已保存。")
    except staff.StaffError as e:
        flash(session, e.message, "error")
    return redirect("/console/reasons")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/staff", staff_list, name="staff")
    router.add_get("/staff/new", staff_form, name="staff_new")
    router.add_post("/staff/new", staff_save, name="staff_create")
    router.add_get("/staff/{id:\\d+}", staff_form, name="staff_edit")
    router.add_post("/staff/{id:\\d+}", staff_save, name="staff_update")
    router.add_get("/reasons", reasons, name="reasons")
    router.add_post("/reasons", reasons_save, name="reasons_save")
