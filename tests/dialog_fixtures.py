"""Shared pieces of the dialog tests: a candidate to bind, an SMS inbox, a router."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from dialogs import binding
from dialogs.router import Router
from dialogs.services import Services, SmsError
from storage.db import Database
from storage.models import AdmissionNumber, Candidate, utcnow
from storage.passwords import hash_initial_password

ID_NUMBER = "310101199001011234"  # valid check digit; initial password 011234
PASSWORD = "011234"
ADMISSION = ("011520100001", "011520100002")
MOBILE = "13812345678"
ID_OTHER = "310115198506120042"
NAME = "王小明"
NEW_PASSWORD = "Zikao2026ok"
PAGE_BASE = "https://zikao.example.cn/h5/"


@dataclass
class Inbox:
    """An SMS gateway double: keeps what was sent, can be told to fail."""

    sent: list[tuple[str, str]] = field(default_factory=list)
    fail: bool = False

    async def send(self, mobile: str, text: str) -> None:
        if self.fail:
            raise SmsError("gateway refused")
        self.sent.append((mobile, text))

    def last_code(self) -> str:
        m = re.search(r"\d{6}", self.sent[-1][1])
        assert m, self.sent[-1]
        return m.group(0)


async def add_candidate(db: Database, *, id_number: str = ID_NUMBER, name: str = "王小明", mobile: str | None = MOBILE,
                        verified: bool = False, numbers: tuple[str, ...] = ADMISSION) -> int:
    async with db.session() as s, s.begin():
        c = Candidate(id_number=id_number, name=name, password_hash=hash_initial_password(id_number), mobile=mobile,
                      mobile_verified_at=utcnow() if verified else None, email="wxm@example.com",
                      mailing_address="上海市黄浦区南京东路1号", postcode="200001")
        s.add(c)
        await s.flush()
        for i, n in enumerate(numbers):
            s.add(AdmissionNumber(number=n, candidate_id=c.id, registered_on=dt.date(2015 + i, 3, 1)))
        return c.id


def make_services(inbox: Inbox | None = None) -> Services:
    return Services(sms=inbox if inbox is not None else Inbox(), web_page=lambda page: PAGE_BASE + page)


def make_router(db: Database, inbox: Inbox | None = None, **kw) -> Router:
    return Router(db, services=make_services(inbox), **kw)


async def bind_on_page(db: Database, openid: str, inbox: Inbox | None = None, *, id_number: str = ID_NUMBER,
                       password: str = PASSWORD, name: str = NAME, admission: str = ADMISSION[0],
                       mobile: str = MOBILE, new_password: str = NEW_PASSWORD) -> binding.Outcome:
    """Bind `openid` the way the H5 page does (dialogs/binding.py), through every stage the
    candidate meets; returns the last outcome (stage "done" when bound)."""
    inbox = inbox if inbox is not None else Inbox()
    services = make_services(inbox)
    out = await binding.submit_credentials(db, services, openid, id_number, password)
    if out.state.stage == "identity":
        out = await binding.submit_identity(db, services, openid, out.state, name, admission, mobile)
    if out.state.stage == "code":
        out = await binding.submit_code(db, openid, out.state, inbox.last_code())
    if out.state.stage == "new_password":
        out = await binding.submit_new_password(db, openid, out.state, new_password, new_password)
    return out


ZHANG = "310115199203154215"  # demo candidate with two majors (020301K, 690206) and two admission numbers


async def demo_router_bound(db: Database, openid: str) -> Router:
    """The demo data set loaded and its candidate 张 (two majors) bound to `openid` by the 绑定 flow."""
    from sqlalchemy import update

    from storage.demo import load_demo

    await load_demo(db)
    async with db.session() as s, s.begin():
        await s.execute(update(Candidate).values(mobile_verified_at=utcnow()))
    out = await bind_on_page(db, openid, id_number=ZHANG, password=ZHANG[-6:])
    assert out.state.stage == "done", out
    return make_router(db)
