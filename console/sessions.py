"""aiohttp-session storage for the console, kept in the service's database (storage.staff).

aiohttp-session ships cookie, Redis and Memcached storages. The console needs sessions that every
process of the service sees, that an admin can end (deactivating an account or changing its
password deletes its rows), and that work without Redis (optional in this project): so this small
AbstractStorage keeps them in the database. The cookie holds a random token; the table holds only
its sha256, so a copy of the database opens no session.
"""
from __future__ import annotations

import datetime as dt
import secrets
from typing import Callable

from aiohttp import web
from aiohttp_session import AbstractStorage, Session

from storage import staff
from storage.db import Database

COOKIE = "zikao_console"


class DatabaseStorage(AbstractStorage):
    def __init__(self, db: Callable[[web.Request], Database], *, idle: dt.timedelta) -> None:
        # HttpOnly: scripts never read it; SameSite=Strict: no other site's page sends it.
        super().__init__(cookie_name=COOKIE, max_age=int(idle.total_seconds()), path="/console/",
                         httponly=True, samesite="Strict")
        self._db = db
        self._idle = idle

    async def load_session(self, request: web.Request) -> Session:
        token = self.load_cookie(request)
        if token:
            data = await staff.load_session_data(self._db(request), token)
            if data is not None:
                return Session(token, data=data, new=False, max_age=self.max_age)
        return Session(None, data=None, new=True, max_age=self.max_age)

    async def save_session(self, request: web.Request, response: web.StreamResponse, session: Session) -> None:
        db = self._db(request)
        # Secure when the browser came over HTTPS (directly or through the office's proxy).
        secure = request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
        token = session.identity
        if session.empty:
            if token:
                await staff.drop_session(db, str(token))
            self._cookie(response, "", session, secure)
            return
        if token is None:
            token = secrets.token_urlsafe(32)
        await staff.save_session_data(db, str(token), self._get_session_data(session), self._idle)
        self._cookie(response, str(token), session, secure)

    def _cookie(self, response: web.StreamResponse, value: str, session: Session, secure: bool) -> None:
        # No await between setting the flag and writing the cookie: requests cannot interleave here.
        self._cookie_params["secure"] = secure or None
        self.save_cookie(response, value, max_age=session.max_age)
