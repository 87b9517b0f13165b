"""The console as an aiohttp sub-application: sessions, the sign-in guard, CSRF, templates, routes."""
from __future__ import annotations

import logging
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import get_session, session_middleware

from console import (
    auth, audit_views, faq_views, imports, inbox, notices, review, staff_views, transfers_in, windows,
)
from console.core import CONFIG, CSRF_FIELD, STAFF, ConsoleConfig, check_csrf, db, local, login_url, signed_in
from console.sessions import DatabaseStorage
from storage.identifiers import mask_mobile
from storage.staff import AUDIT_ACTIONS, kind_label

log = logging.getLogger("zikao.console")

HERE = Path(__file__).resolve().parent
# Open without a session: the sign-in page and the static files (CSS, JS) only.
PUBLIC_ROUTES = frozenset({"login", "login_post"})


@web.middleware
async def guard(request: web.Request, handler):
    """Every request but the public ones needs a signed-in staff member; every POST a CSRF token."""
    route = request.match_info.route
    if isinstance(route.resource, web.StaticResource):
        return await handler(request)
    session = await get_session(request)
    if route.name in PUBLIC_ROUTES:
        if request.method not in ("GET", "HEAD"):
            await check_csrf(request, session)
        return await handler(request)
    staff = await signed_in(request, session)
    if staff is None:
        if session.get("staff_id"):
            session.invalidate()
        raise web.HTTPFound(login_url(request))
    if request.method not in ("GET", "HEAD"):
        await check_csrf(request, session)
    request[STAFF] = staff
    return await handler(request)


# Pages are only ever the console's own: no framing (clickjacking), no script or style from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def create_console(config: ConsoleConfig) -> web.Application:
    """The console, to mount with `app.add_subapp("/console/", create_console(...))`; the service
    sets `app[console.core.DB]` when its database is ready."""
    app = web.Application(middlewares=[
        session_middleware(DatabaseStorage(db, idle=config.idle)),
        guard,
    ])
    app[CONFIG] = config
    app.on_response_prepare.append(_security_headers)
    env = aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined,
    )
    env.filters.update(local=local, kind_label=kind_label, mask_mobile=mask_mobile,
                       action_label=lambda a: AUDIT_ACTIONS.get(a, a))
    env.globals.update(CSRF_FIELD=CSRF_FIELD)
    app.router.add_static("/static/", HERE / "static", name="static")
    for module in (auth, review, notices, windows, imports, inbox, faq_views, staff_views, audit_views, transfers_in):
        module.add_routes(app.router)
    return app


__all__ = ["create_console", "ConsoleConfig", "get_session"]
