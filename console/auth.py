"""Signing in and out, and the staff member's own account (password, TOTP second factor)."""
from __future__ import annotations

import logging

from aiohttp import web
from aiohttp_session import get_session, new_session

from console.core import client_ip, config, db, flash, me, redirect, render, safe_next
from storage import review_queue, staff
from storage.models import utcnow

log = logging.getLogger("zikao.console")


async def login_page(request: web.Request) -> web.Response:
    session = await get_session(request)
    if session.get("staff_id"):
        # Already signed in (and the guard did not run for this page): on to the console.
        return redirect(safe_next(request.query.get("next")))
    return await render(request, "login.html", {"next": safe_next(request.query.get("next")), "username": "",
                                                 "error": "", "ask_code": False})


async def login_post(request: web.Request) -> web.Response:
    form = await request.post()
    username = str(form.get("username", "")).strip().lower()[:64]
    password = str(form.get("password", ""))
    code = str(form.get("code", "")).strip()
    target = safe_next(str(form.get("next", "")))
    result = await staff.authenticate(db(request), username, password, code or None)
    ip = client_ip(request)
    if result.staff is None:
        if result.locked_now:
            await staff.audit(db(request), staff=None, username=username, action="locked", target=f"staff:{username}",
                              summary="连续登录失败，账号锁定", ip=ip)
            log.warning("console: account %s locked after repeated failed sign-ins", username)
        elif not result.need_code or code:
            await staff.audit(db(request), staff=None, username=username, action="login_failed",
                              target=f"staff:{username}", summary=result.message, ip=ip)
            log.info("console: failed sign-in for %s", username)
        return await render(request, "login.html", {"next": target, "username": username, "error": result.message,
                                                     "ask_code": result.need_code}, status=401)
    # A new session (new token) at sign-in: a token planted before cannot be taken over.
    old = await get_session(request)
    old.invalidate()
    session = await new_session(request)
    now = utcnow().timestamp()
    session.update({"staff_id": result.staff.id, "gen": result.staff.generation, "login_at": now, "seen": now})
    await staff.audit(db(request), staff=result.staff, action="login", target=f"staff:{result.staff.username}", ip=ip)
    log.info("console: %s signed in", result.staff.username)
    return redirect(target)


async def logout(request: web.Request) -> web.Response:
    await staff.audit(db(request), staff=me(request), action="logout", target=f"staff:{me(request).username}",
                      ip=client_ip(request))
    session = await get_session(request)
    session.invalidate()
    return redirect("/console/login")


async def home(request: web.Request) -> web.Response:
    from storage import feedback

    s = me(request)
    counts = await review_queue.counts(db(request), s.kinds)
    unhandled = await feedback.unhandled_count(db(request)) if s.is_admin else None
    return await render(request, "home.html", {"counts": counts, "unhandled": unhandled})


async def account_page(request: web.Request) -> web.Response:
    session = await get_session(request)
    secret = session.get("totp_setup")
    return await render(request, "account.html", {
        "secret": secret, "uri": staff.totp_uri(secret, me(request).username) if secret else "",
        "idle_minutes": int(config(request).idle.total_seconds() // 60),
    })


async def account_post(request: web.Request) -> web.Response:
    form = await request.post()
    session = await get_session(request)
    s = me(request)
    what = form.get("what")
    try:
        if what == "password":
            current = str(form.get("current", ""))
            if not await staff.password_matches(db(request), s.id, current):
                raise staff.StaffError("当前密码不对。")
            if form.get("new") != form.get("again"):
                raise staff.StaffError("两次输入的新密码不一致。")
            await staff.set_password(db(request), s.id, str(form.get("new", "")))
            await staff.audit(db(request), staff=s, action="staff_password", target=f"staff:{s.username}",
                              summary="本人修改密码", ip=client_ip(request))
            session.invalidate()
            new = await new_session(request)
            flash(new, "密码已修改，请用新密码重新登录。")
            return redirect("/console/login")
        if what == "totp_start":
            session["totp_setup"] = staff.new_totp_secret()
        elif what == "totp_confirm":
            await staff.set_totp(db(request), s.id, session.get("totp_setup"), str(form.get("code", "")))
            session.pop("totp_setup", None)
            await staff.audit(db(request), staff=s, action="totp_on", target=f"staff:{s.username}", ip=client_ip(request))
            flash(session, "两步验证已开启：以后登录时还要输入验证器App上的6位验证码。")
        elif what == "totp_off":
            await staff.set_totp(db(request), s.id, None)
            await staff.audit(db(request), staff=s, action="totp_off", target=f"staff:{s.username}", ip=client_ip(request))
            flash(session, "两步验证已关闭。")
    except staff.StaffError as e:
        flash(session, e.message, "error")
    return redirect("/console/account")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/login", login_page, name="login")
    router.add_post("/login", login_post, name="login_post")
    router.add_post("/logout", logout, name="logout")
    router.add_get("/", home, name="home")
    router.add_get("/account", account_page, name="account")
    router.add_post("/account", account_post, name="account_post")
