"""凭证样例: the sample pictures, uploaded once through the media API and reused while WeChat keeps them."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from dialogs import queries as dq
from storage import models as m
from storage.db import Database

NOW = dt.datetime(2026, 3, 10, 6, 30, tzinfo=dt.timezone.utc)


class FakeUploader:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[int, str]] = []
        self.fail = fail

    async def __call__(self, data: bytes, filename: str) -> str:
        if self.fail:
            raise RuntimeError("media/upload refused")
        self.calls.append((len(data), filename))
        return f"MEDIA_{len(self.calls)}_{filename}"


def test_menu_lists_every_evidence_type_and_the_photo_rules() -> None:
    text = dq.samples_menu().text
    for i, name in enumerate(["PETS3 合格证书", "PETS3 成绩通知单", "CET4 合格证书", "PETS2 证书",
                              "教育部学历证书电子注册备案表", "中国高等教育学历认证报告"], 1):
        assert f"{i}. {name}" in text
    assert "JPG 或 PNG 格式，每张不超过 1MB" in text and "文字方向朝上" in text and "清晰" in text


@pytest.mark.parametrize("sample", dq.SAMPLES, ids=lambda s: s.slug)
def test_each_sample_picture_is_a_small_png_marked_as_a_sample(sample: dq.Sample) -> None:
    path = dq.sample_path(sample)
    assert path.stat().st_size <= 200 * 1024  # far below WeChat's limits and quick to upload
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] >= 600
        # The red of the 样例 marks is there (not a blank page).
        rgb = img.convert("RGB")
        reds = sum(1 for r, g, b in rgb.get_flattened_data() if r > 180 and g < 80 and b < 80)
        assert reds > 500


async def test_a_sample_is_uploaded_once_and_its_media_id_reused(db: Database) -> None:
    up = FakeUploader()
    media = dq.SampleMedia(db, up)
    first = await dq.sample(5, media, now=NOW)
    again = await dq.sample(5, media, now=NOW + dt.timedelta(hours=1))
    assert first.image_media_id == again.image_media_id == "MEDIA_1_degree_registration_form.png"
    assert up.calls == [(dq.sample_path(dq.SAMPLES[4]).stat().st_size, "degree_registration_form.png")]
    assert first.text.startswith("【样例】教育部学历证书电子注册备案表\n在线验证码为 12 位数字")
    assert "每张不超过 1MB" in first.text
    # Another process finds the id in key_values and does not upload again.
    other = dq.SampleMedia(db, up)
    assert (await dq.sample(5, other, now=NOW + dt.timedelta(days=2))).image_media_id == first.image_media_id
    assert len(up.calls) == 1
    async with db.session() as s:
        row = await s.get(m.KeyValue, "samples.media.degree_registration_form")
    assert row.value["expires_at"] == (NOW + dt.timedelta(days=3)).isoformat()


async def test_a_sample_is_uploaded_again_before_wechat_forgets_it(db: Database) -> None:
    up = FakeUploader()
    media = dq.SampleMedia(db, up)
    await dq.sample(1, media, now=NOW)
    # Temporary media lasts 3 days: within the last hours before that, a fresh upload.
    late = await dq.sample(1, media, now=NOW + dt.timedelta(days=2, hours=20))
    assert late.image_media_id == "MEDIA_2_pets3_certificate.png" and len(up.calls) == 2


async def test_a_changed_picture_is_uploaded_again(db: Database, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "samples"
    shutil.copytree(dq.SAMPLES_DIR, folder)
    monkeypatch.setattr(dq, "SAMPLES_DIR", folder)
    up = FakeUploader()
    await dq.sample(2, dq.SampleMedia(db, up), now=NOW)
    with Image.open(folder / "pets3_score_report.png") as img:
        img.rotate(180).save(folder / "pets3_score_report.png")
    await dq.sample(2, dq.SampleMedia(db, up), now=NOW)
    assert len(up.calls) == 2


async def test_failed_upload_still_answers_with_the_checklist(db: Database) -> None:
    reply = await dq.sample(3, dq.SampleMedia(db, FakeUploader(fail=True)), now=NOW)
    assert reply.image_media_id is None
    assert reply.text.startswith("【样例】CET4 合格证书") and "样例图片暂时发送失败" in reply.text
    async with db.session() as s:
        assert (await s.scalars(select(m.KeyValue))).all() == []


async def test_a_number_out_of_range_points_back_to_the_list(db: Database) -> None:
    up = FakeUploader()
    for n in (0, 7):
        reply = await dq.sample(n, dq.SampleMedia(db, up), now=NOW)
        assert reply.image_media_id is None and "请回复 1-6 之间的序号" in reply.text
    assert up.calls == []
