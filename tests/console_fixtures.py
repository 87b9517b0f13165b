"""Shared pieces of the console tests: the console mounted as the service mounts it, staff accounts,
a pending 申请免考 with real photos, and a test client that signs in and carries the CSRF token."""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.config import Settings
from console.app import create_console
from console.core import DB as CONSOLE_DB, ConsoleConfig
from dialogs.faq.index import DEFAULT_KB
from storage import staff
from storage.db import Database
from storage.photos import LocalPhotoStore

PASSWORD = "Kaoban-2026-secret"
ADMIN, EXEMPTION_REVIEWER, BACKFILL_REVIEWER = "admin1", "mian", "bu"
CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')


async def add_people(db: Database) -> dict[str, staff.StaffInfo]:
    return {
        ADMIN: await staff.add_staff(db, username=ADMIN, display_name="王主任", password=PASSWORD, role="admin",
                                     kinds=["exemption", "backfill"]),
        EXEMPTION_REVIEWER: await staff.add_staff(db, username=EXEMPTION_REVIEWER, display_name="张老师",
                                                  password=PASSWORD, kinds=["exemption"]),
        BACKFILL_REVIEWER: await staff.add_staff(db, username=BACKFILL_REVIEWER, display_name="李老师",
                                                 password=PASSWORD, kinds=["成绩补登"]),
    }


def console_config(settings: Settings, tmp_path: Path) -> ConsoleConfig:
    kb = tmp_path / "kb.yaml"
    if not kb.exists():
        shutil.copyfile(DEFAULT_KB, kb)
    return ConsoleConfig(photo_store=LocalPhotoStore.under_media_dir(settings.media_dir), faq_kb_file=kb,
                         faq_cache_dir=str(tmp_path / "jieba"))


def console_app(db: Database, settings: Settings, tmp_path: Path) -> web.Application:
    """The console mounted under /console/ as bot.app mounts it, on the test's database."""
    app = web.Application()
    app.add_subapp("/console/", create_console(console_config(settings, tmp_path)))
    app[CONSOLE_DB] = db
    return app


@dataclass
class Staffer:
    """A browser of one staff member: cookies, and the CSRF token of the last page read."""

    client: Any
    csrf: str = ""

    async def get(self, path: str, **kw: Any):
        r = await self.client.get(path, allow_redirects=kw.pop("allow_redirects", True), **kw)
        text = await r.text() if r.content_type.startswith("text/") else ""
        m = CSRF_RE.search(text)
        if m:
            self.csrf = m.group(1)
        r.body_text = text
        return r

    async def post(self, path: str, data: dict | list | None = None, *, csrf: str | None = None, follow: bool = False):
        form = list(data.items()) if isinstance(data, dict) else list(data or [])
        token = self.csrf if csrf is None else csrf
        if token != "-":
            form.insert(0, ("_csrf", token))
        r = await self.client.post(path, data=form, allow_redirects=follow)
        r.body_text = await r.text()
        m = CSRF_RE.search(r.body_text)
        if m:
            self.csrf = m.group(1)
        return r

    async def login(self, username: str, password: str = PASSWORD, code: str = ""):
        await self.get("/console/login")
        return await self.post("/console/login", {"username": username, "password": password, "code": code})
