"""The staff console over HTTP: sign-in and its protections, review queues and decisions, the audit log,
notices, windows, import, 反馈建议 and FAQ — on SQLite and PostgreSQL."""
from __future__ import annotations

import logging
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import func, select

from bot.config import Settings
from storage import applications as apps
from storage import models as m
from storage import staff
from storage.db import Database
from storage.models_staff import AuditEntry, StaffSession
from tests.console_fixtures import (
    ADMIN, BACKFILL_REVIEWER, EXEMPTION_REVIEWER, PASSWORD, Staffer, add_people, console_app,
)
from tests.test_review_cli import pending_application


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, media_dir=str(tmp_path / "media"))


@pytest.fixture
async def world(db: Database, settings: Settings):
    people = await add_people(db)
    application = await pending_application(db, settings)
    return people, application


@pytest.fixture
async def browser(aiohttp_client, db: Database, settings: Settings, tmp_path: Path):
    client = await aiohttp_client(console_app(db, settings, tmp_path))

    async def new() -> Staffer:
        # Each staff member has their own cookies: a fresh client session on the same server.
        from aiohttp import ClientSession, CookieJar

        session = ClientSession(base_url=str(client.make_url("/")), cookie_jar=CookieJar(unsafe=True))
        sessions.append(session)
        return Staffer(session)

    sessions: list = []
    yield new
    for s in sessions:
        await s.close()


async def audit_rows(db: Database, action: str | None = None) -> list[AuditEntry]:
    async with db.session() as s:
        q = select(AuditEntry).order_by(AuditEntry.id)
        if action:
            q = q.where(AuditEntry.action == action)
        return list((await s.execute(q)).scalars())


# --- Access ------------------------------------------------------------------------------------------


async def test_every_console_url_without_a_session_redirects_to_login(browser, world, tmp_path: Path) -> None:
    from console.app import create_console

    from tests.console_fixtures import console_config

    anon = await browser()
    sub = create_console(console_config(Settings(), tmp_path))
    checked = 0
    for resource in sub.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        if path is None or "directory" in info:
            continue
        path = "/console" + path.format(kind="exemption", id="1", pid="1")
        for route in resource:
            if route.method == "HEAD":
                continue
            r = await (anon.client.get(path, allow_redirects=False) if route.method == "GET"
                       else anon.client.post(path, data={"_csrf": "x"}, allow_redirects=False))
            if route.name in ("login", "login_post"):
                assert r.status in (200, 403), path
                continue
            assert r.status == 302, (route.method, path, r.status)
            assert r.headers["Location"].startswith("/console/login"), path
            checked += 1
    assert checked >= 30
    # an unknown page too, and static files answer without a session
    r = await anon.client.get("/console/nothing-here", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"].startswith("/console/login")
    r = await anon.client.get("/console/static/console.css")
    assert r.status == 200
    # the sign-in page cannot be framed by another site (clickjacking)
    r = await anon.client.get("/console/login")
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"] and r.headers["X-Frame-Options"] == "DENY"


async def test_photos_are_not_reachable_without_a_session(browser, world) -> None:
    _, application = world
    photo_id = application.items[0].evidences[0].photo_ids[0]
    anon = await browser()
    r = await anon.client.get(f"/console/photos/{photo_id}", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"].startswith("/console/login")
    r = await anon.client.get("/console/static/../photos/1", allow_redirects=False)
    assert r.status in (302, 403, 404)
    reviewer = await browser()
    await reviewer.login(EXEMPTION_REVIEWER)
    r = await reviewer.client.get(f"/console/photos/{photo_id}")
    assert r.status == 200 and r.content_type in ("image/jpeg", "image/png")
    assert r.headers["Cache-Control"].startswith("private, no-store")
    assert (await r.read())[:2] in (b"\xff\xd8", b"\x89P")


async def test_session_cookie_is_httponly_samesite_and_expires(browser, world, db: Database) -> None:
    reviewer = await browser()
    r = await reviewer.login(EXEMPTION_REVIEWER)
    assert r.status == 302 and r.headers["Location"] == "/console/"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=1800" in cookie and "Path=/console/" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    async with db.session() as s:
        ids = list((await s.execute(select(StaffSession.id))).scalars())
    assert token not in ids and staff.token_id(token) in ids  # only its hash is stored
    # signing out ends the session on the server, not only in the browser
    home = await reviewer.get("/console/")
    assert home.status == 200
    r = await reviewer.post("/console/logout")
    assert r.status == 302
    reviewer.client.cookie_jar.update_cookies({"zikao_console": token})
    r = await reviewer.client.get("/console/", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"].startswith("/console/login")


async def test_a_form_without_or_with_a_wrong_csrf_token_is_refused(browser, world, db: Database) -> None:
    _, application = world
    reviewer = await browser()
    await reviewer.login(EXEMPTION_REVIEWER)
    await reviewer.get(f"/console/applications/{application.id}")
    path = f"/console/applications/{application.id}/decide"
    for token in ("-", "not-the-token", ""):
        r = await reviewer.post(path, {"action": "approve", "version": application.version}, csrf=token)
        assert r.status == 403 and "表单已过期" in r.body_text
    assert (await apps.load_application(db, application.id)).status == "submitted"
    # the sign-in form is protected too
    anon = await browser()
    await anon.get("/console/login")
    r = await anon.post("/console/login", {"username": ADMIN, "password": PASSWORD}, csrf="forged")
    assert r.status == 403
    # and with the right token the same form works
    r = await reviewer.post(path, {"action": "approve", "version": application.version})
    assert r.status == 302
    assert (await apps.load_application(db, application.id)).status == "approved"


async def test_a_backfill_reviewer_cannot_open_or_decide_an_exemption(browser, world, db: Database) -> None:
    _, application = world
    bu = await browser()
    await bu.login(BACKFILL_REVIEWER)
    home = await bu.get("/console/")
    assert "成绩补登" in home.body_text and "/console/queue/exemption" not in home.body_text
    for path in (f"/console/applications/{application.id}", "/console/queue/exemption"):
        r = await bu.get(path)
        assert r.status == 403 and "没有审核这类申请的权限" in r.body_text
    r = await bu.post(f"/console/applications/{application.id}/decide",
                      {"action": "reject", "reason": "不行", "version": application.version})
    assert r.status == 403
    r = await bu.post("/console/queue/exemption/approve", {"pick": f"{application.id}:{application.version}"})
    assert r.status == 403
    r = await bu.post(f"/console/applications/{application.id}/reveal")
    assert r.status == 403
    photo_id = application.items[0].evidences[0].photo_ids[0]
    assert (await bu.get(f"/console/photos/{photo_id}")).status == 404
    # nor the admin's pages
    assert (await bu.get("/console/audit")).status == 403
    assert (await bu.get("/console/staff")).status == 403
    assert (await apps.load_application(db, application.id)).status == "submitted"
    assert not await audit_rows(db, "reveal_id")


async def test_failed_logins_lock_the_account_until_an_admin_unlocks_it(browser, world, db: Database) -> None:
    people, _ = world
    mallory = await browser()
    for n in range(staff.MAX_FAILURES - 1):
        r = await mallory.login(EXEMPTION_REVIEWER, "wrong-password-1")
        assert r.status == 401 and "用户名或密码不对" in r.body_text
    r = await mallory.login(EXEMPTION_REVIEWER, "wrong-password-1")
    assert r.status == 401 and "账号已锁定" in r.body_text
    # now even the right password is refused
    r = await mallory.login(EXEMPTION_REVIEWER)
    assert r.status == 401 and "账号已锁定" in r.body_text
    failed = await audit_rows(db, "login_failed")
    # the wrong passwords before the lock, then the right one refused while locked
    assert len(failed) == staff.MAX_FAILURES and "账号已锁定" in failed[-1].summary
    assert [a.username for a in await audit_rows(db, "locked")] == [EXEMPTION_REVIEWER]
    # an unknown name reads like a wrong password
    r = await mallory.login("nobody", PASSWORD)
    assert r.status == 401 and "用户名或密码不对" in r.body_text
    admin = await browser()
    await admin.login(ADMIN)
    await admin.get(f"/console/staff/{people[EXEMPTION_REVIEWER].id}")
    r = await admin.post(f"/console/staff/{people[EXEMPTION_REVIEWER].id}", {"do": "unlock"})
    assert r.status == 302
    r = await mallory.login(EXEMPTION_REVIEWER)
    assert r.status == 302 and r.headers["Location"] == "/console/"


async def test_no_password_or_session_token_in_any_log(browser, world, db: Database, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    _, application = world
    reviewer = await browser()
    await reviewer.login(EXEMPTION_REVIEWER, "a-wrong-Password-99")
    r = await reviewer.login(EXEMPTION_REVIEWER)
    token = r.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    await reviewer.get(f"/console/applications/{application.id}")
    await reviewer.post(f"/console/applications/{application.id}/decide",
                        {"action": "reject", "reason": "照片不清晰", "version": application.version})
    await reviewer.post("/console/logout")
    text = caplog.text
    assert "console: mian signed in" in text  # the log does say who signed in
    for secret in (PASSWORD, "a-wrong-Password-99", token, reviewer.csrf):
        assert secret not in text
    for row in await audit_rows(db):
        dumped = f"{row.summary} {row.before} {row.after}"
        assert PASSWORD not in dumped and token not in dumped and "a-wrong-Password-99" not in dumped


async def test_second_factor_is_asked_for_once_turned_on(browser, world, db: Database) -> None:
    people, _ = world
    secret = staff.new_totp_secret()
    await staff.set_totp(db, people[EXEMPTION_REVIEWER].id, secret, pyotp.TOTP(secret).now())
    reviewer = await browser()
    r = await reviewer.login(EXEMPTION_REVIEWER)
    assert r.status == 401 and "6位验证码" in r.body_text
    r = await reviewer.login(EXEMPTION_REVIEWER, code="000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    assert r.status == 401 and "验证码不对" in r.body_text
    r = await reviewer.login(EXEMPTION_REVIEWER, code=pyotp.TOTP(secret).now())
    assert r.status == 302


# --- Reviewing -----------------------------------------------------------------------------------------


async def test_reviewer_sees_queue_counts_and_decides_with_the_push_in_the_same_path(browser, world, db: Database) -> None:
    _, application = world
    async with db.session() as s:
        outbox_before = await s.scalar(select(func.count()).select_from(m.Outbox))
    reviewer = await browser()
    await reviewer.login(EXEMPTION_REVIEWER)
    home = await reviewer.get("/console/")
    assert 'data-status="submitted">1</span>' in home.body_text
    q = await reviewer.get("/console/queue/exemption")
    assert f"/console/applications/{application.id}" in q.body_text and "赵敏" in q.body_text
    # filters: by name, by 准考证号 prefix, by a date range that excludes it
    async def filtered(**values: str) -> str:
        r = await reviewer.post("/console/queue/exemption/filter", {"status": "submitted", **values}, follow=True)
        assert "赵" not in str(r.url) and "0124" not in str(r.url)  # search terms stay out of URLs and logs
        return r.body_text

    assert "赵敏" in await filtered(who="赵")
    assert "赵敏" in await filtered(who="0124")
    assert "没有符合条件的申请" in await filtered(who="钱")
    assert "没有符合条件的申请" in await filtered(**{"from": "2001-01-01", "to": "2001-01-02"})
    assert "赵敏" in await filtered(clear="1")
    page = await reviewer.get(f"/console/applications/{application.id}")
    assert "赵敏" in page.body_text and "00320" in page.body_text and "/console/photos/" in page.body_text
    assert "13764219053" not in page.body_text  # the mobile is masked
    r = await reviewer.post(f"/console/applications/{application.id}/decide",
                            {"action": "reject", "reason": "成绩单照片不清晰，请重新拍摄。", "version": application.version})
    assert r.status == 302 and r.headers["Location"] == "/console/queue/exemption"
    d = await apps.load_application(db, application.id)
    assert (d.status, d.reason, d.decided_by) == ("rejected", "成绩单照片不清晰，请重新拍摄。", "张老师(mian)")
    async with db.session() as s:
        pushes = list((await s.execute(select(m.Outbox).where(m.Outbox.kind == "review_outcome"))).scalars())
        assert await s.scalar(select(func.count()).select_from(m.Outbox)) == outbox_before + 1
    assert len(pushes) == 1 and pushes[0].payload["template"]["data"]["phrase2"] == "未通过"
    [entry] = await audit_rows(db, "reject")
    assert entry.username == EXEMPTION_REVIEWER and entry.target == f"application:{application.id}"
    assert entry.before["status"] == "submitted" and entry.after["status"] == "rejected"


async def test_the_second_of_two_reviewers_is_told_it_was_already_decided(browser, world, db: Database) -> None:
    people, application = world
    first, second = await browser(), await browser()
    await first.login(EXEMPTION_REVIEWER)
    await second.login(ADMIN)
    await first.get(f"/console/applications/{application.id}")
    await second.get(f"/console/applications/{application.id}")
    await first.post(f"/console/applications/{application.id}/decide",
                     {"action": "approve", "version": application.version})
    r = await second.post(f"/console/applications/{application.id}/decide",
                          {"action": "reject", "reason": "证书编号不符", "version": application.version}, follow=True)
    assert "已由 张老师(mian)" in r.body_text and "审核通过" in r.body_text and "你的决定没有保存" in r.body_text
    d = await apps.load_application(db, application.id)
    assert d.status == "approved" and d.reason is None
    assert len(await audit_rows(db, "approve")) == 1 and not await audit_rows(db, "reject")


async def test_bulk_approve_decides_each_selected_row_and_reports_the_refused(browser, world, db: Database) -> None:
    _, application = world
    reviewer = await browser()
    await reviewer.login(EXEMPTION_REVIEWER)
    await reviewer.get("/console/queue/exemption")
    r = await reviewer.post("/console/queue/exemption/approve",
                            [("pick", f"{application.id}:{application.version}"), ("pick", "999999:1")], follow=True)
    assert "批量审核通过 1 份" in r.body_text and "#999999" in r.body_text
    assert (await apps.load_application(db, application.id)).status == "approved"


async def test_revealing_the_full_id_number_is_a_deliberate_audited_click(browser, world, db: Database) -> None:
    _, application = world
    reviewer = await browser()
    await reviewer.login(EXEMPTION_REVIEWER)
    page = await reviewer.get(f"/console/applications/{application.id}")
    full = await _id_number(db, application.candidate_id)
    assert full not in page.body_text and full[:4] + "*" in page.body_text
    shown = await reviewer.post(f"/console/applications/{application.id}/reveal")
    assert full in shown.body_text
    [entry] = await audit_rows(db, "reveal_id")
    assert entry.username == EXEMPTION_REVIEWER and full not in entry.summary


async def _id_number(db: Database, candidate_id: int) -> str:
    from storage.accounts import id_number_of

    return await id_number_of(db, candidate_id)


# --- Admin pages ------------------------------------------------------------------------------------------


async def test_admin_publishes_a_notice_after_a_preview_and_sees_its_progress(browser, world, db: Database) -> None:
    admin = await browser()
    await admin.login(ADMIN)
    await admin.get("/console/notices/new")
    form = {"category": "站内消息", "title": "2026年10月考试准考证打印", "body": "请于10月20日前登录平台打印准考证。",
            "audience": "all", "audience_value": "", "publish_at": "", "push": "on"}
    preview = await admin.post("/console/notices/new", form | {"do": "preview"})
    assert preview.status == 200 and 'id="preview-push"' in preview.body_text and "回复“站内消息”" in preview.body_text
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(m.Notice)) == 0
    r = await admin.post("/console/notices/new", form | {"do": "publish"})
    assert r.status == 302
    status = await admin.get(r.headers["Location"])
    assert "2026年10月考试准考证打印" in status.body_text and 'id="recipients">1<' in status.body_text
    [entry] = await audit_rows(db, "notice_publish")
    assert entry.after["title"] == "2026年10月考试准考证打印"
    bad = await admin.post("/console/notices/new", form | {"audience": "major", "audience_value": "999999", "do": "publish"})
    assert bad.status == 400 and "不存在" in bad.body_text


async def test_admin_creates_and_edits_a_window_with_before_and_after_audited(browser, world, db: Database) -> None:
    admin = await browser()
    await admin.login(ADMIN)
    await admin.get("/console/windows/new")
    form = {"kind": "thesis", "title": "2027年上半年论文", "sitting": "", "opens_at": "2027-01-05T09:00",
            "closes_at": "2027-01-20T17:00", "notice": "一、论文须本人完成。"}
    bad = await admin.post("/console/windows/new", form | {"closes_at": "2027-01-01T09:00"})
    assert bad.status == 400 and "结束时间必须晚于开始时间" in bad.body_text
    assert (await admin.post("/console/windows/new", form)).status == 302
    async with db.session() as s:
        w = await s.scalar(select(m.BusinessWindow).where(m.BusinessWindow.kind == "thesis"))
    assert w.opens_at.isoformat() == "2027-01-05T01:00:00+00:00"  # 09:00 Beijing
    await admin.get(f"/console/windows/{w.id}")
    assert (await admin.post(f"/console/windows/{w.id}", form | {"closes_at": "2027-01-25T17:00"})).status == 302
    [create] = await audit_rows(db, "window_create")
    [edit] = await audit_rows(db, "window_edit")
    assert create.before is None and edit.before["closes_at"].startswith("2027-01-20")
    assert edit.after["closes_at"].startswith("2027-01-25")


async def test_import_shows_line_level_errors_then_commits_a_good_file(browser, world, db: Database) -> None:
    from aiohttp import FormData

    admin = await browser()
    await admin.login(ADMIN)
    await admin.get("/console/import")

    async def upload(name: str, text: str):
        form = FormData()
        form.add_field("_csrf", admin.csrf)
        form.add_field("files", text.encode("utf-8"), filename=name, content_type="text/csv")
        r = await admin.client.post("/console/import", data=form)
        r.body_text = await r.text()
        admin.csrf = __import__("re").search(r'name="_csrf" value="([^"]+)"', r.body_text).group(1)
        return r

    bad = await upload("courses.csv", "code,name,kind\n09001,新课程,理论\n0900X,坏代码,理论\n")
    assert 'id="import-errors"' in bad.body_text and "<td>3</td>" in bad.body_text and "commit-btn" not in bad.body_text
    good = await upload("courses.csv", "code,name,kind\n09001,新课程,理论\n")
    assert "检查通过，尚未导入" in good.body_text
    async with db.session() as s:
        assert await s.get(m.Course, "09001") is None
    done = await admin.post("/console/import/commit")
    assert "导入完成" in done.body_text
    async with db.session() as s:
        assert (await s.get(m.Course, "09001")).name == "新课程"
    assert [a.action for a in await audit_rows(db) if a.action.startswith("import")] == \
        ["import_dry_run", "import_dry_run", "import"]
    # a form posted without its token reads no file
    form = FormData()
    form.add_field("files", b"code,name,kind\n", filename="courses.csv", content_type="text/csv")
    assert (await admin.client.post("/console/import", data=form)).status == 403


async def test_feedback_reply_is_pushed_to_the_candidate_and_marks_it_handled(browser, world, db: Database) -> None:
    from storage.queries import add_feedback

    fid = await add_feedback(db, openid="o_zhao_feedback", candidate_id=None, title="准考证打印",
                             body="打印不出来怎么办？")
    admin = await browser()
    await admin.login(ADMIN)
    inbox = await admin.get("/console/feedback")
    assert "准考证打印" in inbox.body_text
    await admin.get(f"/console/feedback/{fid}")
    r = await admin.post(f"/console/feedback/{fid}", {"do": "reply", "reply": "请换用电脑浏览器打印。"}, follow=True)
    assert "请换用电脑浏览器打印。" in r.body_text and "已处理" in r.body_text
    async with db.session() as s:
        [push] = list((await s.execute(select(m.Outbox).where(m.Outbox.kind == "feedback_reply"))).scalars())
    assert push.openid == "o_zhao_feedback" and "请换用电脑浏览器打印。" in push.payload["text"]
    assert "准考证打印" not in (await admin.get("/console/feedback")).body_text  # no longer unhandled
    assert len(await audit_rows(db, "feedback_reply")) == 1


async def test_audit_log_is_searchable_and_exports_csv(browser, world, db: Database) -> None:
    admin = await browser()
    await admin.login(ADMIN)
    await (await browser()).login(EXEMPTION_REVIEWER, "wrong-password-x")
    await (await browser()).login("=cmd|' /c calc'!a1", "whatever-password")
    page = await admin.get("/console/audit?action=login_failed")
    assert "登录失败" in page.body_text and EXEMPTION_REVIEWER in page.body_text
    assert 'data-action="login"' not in page.body_text
    r = await admin.client.get("/console/audit.csv?q=mian")
    assert r.status == 200 and r.content_type == "text/csv"
    body = (await r.read()).decode("utf-8-sig")
    assert body.splitlines()[0].startswith("编号,时间（北京）,账号,操作") and "mian" in body and "admin1" not in body
    everything = (await (await admin.client.get("/console/audit.csv")).read()).decode("utf-8-sig")
    assert "'=cmd" in everything and ",=cmd" not in everything  # no formula for Excel to run


async def test_admin_manages_staff_and_a_new_kind_is_offered_from_the_schema(browser, world, db: Database) -> None:
    admin = await browser()
    await admin.login(ADMIN)
    form = await admin.get("/console/staff/new")
    for kind in ("exemption", "backfill", "thesis", "graduation", "degree", "transfer_out"):
        assert f'value="{kind}"' in form.body_text
    r = await admin.post("/console/staff/new", [("username", "zhou"), ("display_name", "周老师"),
                                                ("password", "Teacher-Secret-2026"), ("role", "reviewer"),
                                                ("kinds", "graduation")])
    assert r.status == 302
    zhou = await browser()
    await zhou.login("zhou", "Teacher-Secret-2026")
    assert "/console/queue/graduation" in (await zhou.get("/console/")).body_text
    short = await admin.post("/console/staff/new", {"username": "wu", "display_name": "吴", "password": "short",
                                                    "role": "reviewer"})
    assert short.status == 400 and "密码至少10位" in short.body_text
    assert [a.after["username"] for a in await audit_rows(db, "staff_add")] == ["zhou"]


async def test_faq_edit_is_validated_before_it_is_published(browser, world, db: Database, tmp_path: Path) -> None:
    admin = await browser()
    await admin.login(ADMIN)
    page = await admin.get("/console/faq/bind-how")
    assert "怎么绑定考生身份" in page.body_text
    import re

    version = re.search(r'name="version" value="([^"]+)"', page.body_text).group(1)
    form = {"topic": "绑定与密码", "questions": "怎么绑定考生身份\n如何绑定我的考籍账号", "answer": "回复“绑定”，按提示输入证件号码和密码。",
            "action": "flow:bind", "source": "操作手册", "version": version}
    bad = await admin.post("/console/faq/bind-how", form | {"questions": "只有一个问法", "do": "publish"})
    assert bad.status == 400 and "at least two" in bad.body_text
    kb = tmp_path / "kb.yaml"
    before = kb.read_text(encoding="utf-8")
    assert "回复“绑定”，按提示输入证件号码和密码。" not in before
    ok = await admin.post("/console/faq/bind-how", form | {"do": "publish"})
    assert ok.status == 302
    after = kb.read_text(encoding="utf-8")
    assert "回复“绑定”，按提示输入证件号码和密码。" in after and after.startswith(before[:200])  # comments kept
    # What the form does not show (business, aspect) stays as it was: the matcher depends on it.
    from dialogs.faq.index import parse_entries
    saved = next(e for e in parse_entries(kb) if e.id == "bind-how")
    assert (saved.business, saved.aspect) == ("账户", "流程")
    [entry] = await audit_rows(db, "faq_edit")
    assert entry.before["answer"] != entry.after["answer"]
    stale = await admin.post("/console/faq/bind-how", form | {"do": "publish"})
    assert stale.status == 409


async def test_after_a_decision_the_next_waiting_application_opens(browser, world, db: Database) -> None:
    from tests.test_applications import evidence

    _, first = world
    # 赵敏 applies again for another course (the first application is still 待审核).
    draft = await apps.open_draft(db, kind="exemption", candidate_id=first.candidate_id, openid="o_zhao",
                                  admission_number=first.admission_number, major_code="120402")
    draft.items = [apps.ItemData("00051", evidences=[evidence(photo_ids=first.items[0].evidences[0].photo_ids)])]
    second = await apps.submit(db, await apps.save_draft(db, draft))
    reviewer = await browser()
    await reviewer.login(EXEMPTION_REVIEWER)
    await reviewer.get(f"/console/applications/{first.id}")
    r = await reviewer.post(f"/console/applications/{first.id}/decide", {"action": "approve", "version": first.version})
    assert r.headers["Location"] == f"/console/applications/{second.id}"
    page = await reviewer.get(r.headers["Location"])
    assert f"申请 #{first.id} 审核通过" in page.body_text


async def test_sessions_end_when_idle_too_long_or_when_the_account_is_disabled(browser, world, db: Database) -> None:
    import datetime as dt

    from sqlalchemy import update

    people, _ = world
    reviewer = await browser()
    await reviewer.login(EXEMPTION_REVIEWER)
    assert (await reviewer.get("/console/", allow_redirects=False)).status == 200
    # 30 idle minutes later the session row has expired: back to the sign-in page
    async with db.session() as s, s.begin():
        await s.execute(update(StaffSession).values(expires_at=m.utcnow() - dt.timedelta(seconds=1)))
    r = await reviewer.get("/console/", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"].startswith("/console/login")
    # an admin disabling the account ends a live session at once
    await reviewer.login(EXEMPTION_REVIEWER)
    admin = await browser()
    await admin.login(ADMIN)
    await admin.get(f"/console/staff/{people[EXEMPTION_REVIEWER].id}")
    r = await admin.post(f"/console/staff/{people[EXEMPTION_REVIEWER].id}",
                         {"display_name": "张老师", "role": "reviewer", "kinds": "exemption"})  # "active" unticked
    assert r.status == 302
    r = await reviewer.get("/console/", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"].startswith("/console/login")
    assert (await reviewer.login(EXEMPTION_REVIEWER)).status == 401
    [edit] = await audit_rows(db, "staff_edit")
    assert edit.before["active"] is True and edit.after["active"] is False
