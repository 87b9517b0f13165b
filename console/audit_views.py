"""The audit log: search it, page through it, export it as CSV (admins only)."""
from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from aiohttp import web

from console.core import SHANGHAI, db, local, page_number, render, require_admin
from storage import staff

PER_PAGE = 100
EXPORT_MAX = 100_000


def _query(request: web.Request) -> staff.AuditQuery:
    q = request.query

    def day(name: str, plus: int = 0):
        try:
            d = dt.date.fromisoformat(q.get(name, ""))
        except ValueError:
            return None
        return dt.datetime.combine(d + dt.timedelta(days=plus), dt.time(), SHANGHAI)

    action = q.get("action", "")
    return staff.AuditQuery(text=q.get("q", "").strip()[:64], action=action if action in staff.AUDIT_ACTIONS else "",
                            since=day("from"), until=day("to", 1))


@require_admin
async def audit_page(request: web.Request) -> web.Response:
    page = page_number(request)
    rows, total = await staff.search_audit(db(request), _query(request), offset=(page - 1) * PER_PAGE, limit=PER_PAGE)
    params = {k: v for k, v in request.query.items() if k != "page" and v}
    return await render(request, "audit.html", {
        "rows": rows, "total": total, "page": page, "pages": max(1, -(-total // PER_PAGE)), "q": request.query,
        "actions": staff.AUDIT_ACTIONS, "export": "/console/audit.csv?" + urlencode(params),
        "page_link": lambda n: "?" + urlencode({**params, "page": n}),
    })


@require_admin
async def audit_csv(request: web.Request) -> web.Response:
    rows, _ = await staff.search_audit(db(request), _query(request), limit=EXPORT_MAX)
    stamp = dt.datetime.now(SHANGHAI).strftime("%Y%m%d-%H%M")
    return web.Response(body=staff.audit_csv(rows, local).encode("utf-8"), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.csv"',
                                 "Cache-Control": "no-store"})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/audit", audit_page, name="audit")
    router.add_get("/audit.csv", audit_csv, name="audit_csv")
