"""Demo staff accounts and applications for the console, so `make demo` has something to review.

The accounts (demo only: their passwords are printed by `zikao-bot demo` and in README):
kaoban (管理员: every application kind — 免考, 补登, 论文, 毕业, 学位, 转出 — so that each flow tried in
`zikao-bot demo --windows-now` can be decided in the console), mianshen (审核员, 申请免考),
bushen (审核员, 成绩补登). An account already in the database keeps its kinds.
Two demo candidates have a 申请免考 waiting (待审核), each with photos drawn here. Loading again
adds nothing.
"""
from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw
from sqlalchemy import select

from storage import applications as apps
from storage import staff
from storage.db import Database
from storage.models import AdmissionNumber, Candidate
from storage.photos import PhotoStore, process_photo, save_photo

DEMO_STAFF = (
    # username, name, role, kinds, password
    ("kaoban", "王主任", "admin", ("exemption", "backfill", "thesis", "graduation", "degree", "transfer_out"),
     "Demo-Office-2026"),
    ("mianshen", "张老师", "reviewer", ("exemption",), "Demo-Exempt-2026"),
    ("bushen", "李老师", "reviewer", ("backfill",), "Demo-Backfill-2026"),
)
# (candidate name, 准考证号, major) of the demo applications.
DEMO_APPLICANTS = (("李娜", "012323100842", "120402"), ("张伟", "012323200117", "020301K"))


def certificate_photo(seed: int, width: int = 1400, height: int = 1000) -> bytes:
    """A photographed certificate, roughly: a framed page of text lines and a red seal."""
    rnd = random.Random(seed)
    im = Image.new("RGB", (width, height), (236, 232, 222))
    d = ImageDraw.Draw(im)
    d.rectangle([40, 40, width - 40, height - 40], outline=(150, 40, 30), width=10)
    d.rectangle([width // 3, 90, 2 * width // 3, 140], fill=(60, 40, 35))  # the title
    for y in range(200, height - 160, 48):
        x = 110
        while x < width - 260:
            word = rnd.randint(30, 130)
            d.rectangle([x, y, x + word, y + 20], fill=(35, 35, 40))
            x += word + rnd.randint(14, 28)
    d.ellipse([width - 330, height - 330, width - 130, height - 130], outline=(200, 30, 30), width=12)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=88)
    return buf.getvalue()


async def load_demo_staff(db: Database) -> list[str]:
    """The demo accounts that were missing, now created."""
    existing = {p.username for p in await staff.list_staff(db)}
    made = []
    for username, name, role, kinds, password in DEMO_STAFF:
        if username not in existing:
            await staff.add_staff(db, username=username, display_name=name, password=password, role=role, kinds=kinds)
            made.append(username)
    return made


async def load_demo_applications(db: Database, store: PhotoStore) -> int:
    """A pending 申请免考 for each demo applicant who has no application yet (needs the window open)."""
    made = 0
    for seed, (name, admission, major) in enumerate(DEMO_APPLICANTS, 1):
        async with db.session() as s:
            candidate_id = await s.scalar(
                select(Candidate.id).join(AdmissionNumber, AdmissionNumber.candidate_id == Candidate.id)
                .where(AdmissionNumber.number == admission, Candidate.name == name))
        if candidate_id is None or await apps.list_applications(db, candidate_id=candidate_id):
            continue
        if not (await apps.business_window(db, "exemption")).is_open:
            return made
        eligible = [c for c in await apps.exemption_courses(db, candidate_id, major) if c.eligible]
        if not eligible:
            continue
        photos = [await save_photo(db, store, process_photo(certificate_photo(seed * 10 + n))) for n in range(2)]
        draft = await apps.open_draft(db, kind="exemption", candidate_id=candidate_id, openid=f"o_demo_{seed}",
                                      admission_number=admission, major_code=major)
        draft.items = [apps.ItemData(eligible[0].code, evidences=[apps.EvidenceData(
            "cet4", f"CET4-2019-{seed:06d}", "2019-06", "上海市", photo_ids=[p.id for p in photos])])]
        await apps.submit(db, await apps.save_draft(db, draft))
        made += 1
    return made
