"""Evidence photos: what is accepted, how it is normalised, and how it is stored once."""
from __future__ import annotations

import io
import os
import random
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat
from sqlalchemy import func, select

from storage import photos
from storage.db import Database
from storage.models_applications import Photo
from storage.photos import LocalPhotoStore, PhotoMissing, PhotoRejected, process_photo, save_photo


# --- image makers ------------------------------------------------------------------------------------


def document(w: int, h: int, *, noise: float = 0.0, mode: str = "RGB", seed: int = 1) -> Image.Image:
    """Something like a photographed certificate: dark word-sized blocks in lines on light paper."""
    rnd = random.Random(seed)
    im = Image.new("RGB", (w, h), (245, 243, 238))
    d = ImageDraw.Draw(im)
    line = max(12, h // 40)
    for y in range(line, h - line, line * 2):
        x = line
        while x < w - 4 * line:
            word = rnd.randint(line, 4 * line)
            d.rectangle([x, y, x + word, y + line], fill=(25, 25, 30))
            x += word + rnd.randint(line // 2, line)
    if noise:
        grain = Image.effect_noise((w, h), 80).convert("RGB")
        im = Image.blend(im, grain, noise)
    return im.convert(mode) if mode != "RGB" else im


def encode(im: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims to be width x height (how a decompression bomb starts)."""
    data = encode(Image.new("1", (1, 1)), "PNG")
    ihdr = bytearray(data[8:33])  # length, 'IHDR', 13 bytes of data, CRC
    ihdr[8:16] = struct.pack(">II", width, height)
    ihdr[21:25] = struct.pack(">I", zlib.crc32(bytes(ihdr[4:21])))
    return data[:8] + bytes(ihdr) + data[33:]


def rejected(data: bytes) -> str:
    with pytest.raises(PhotoRejected) as e:
        process_photo(data)
    return e.value.reason


# --- accepted photos ---------------------------------------------------------------------------------


def test_a_plain_jpeg_is_kept_at_its_size_and_not_called_compressed() -> None:
    p = process_photo(encode(document(1600, 1200), quality=90))
    assert (p.content_type, p.width, p.height) == ("image/jpeg", 1600, 1200)
    assert not p.compressed and not p.rotated
    assert p.size <= photos.MAX_STORED_BYTES
    assert Image.open(io.BytesIO(p.data)).format == "JPEG"


def test_exif_orientation_is_applied_so_text_is_upright() -> None:
    im = document(1200, 800)
    ImageDraw.Draw(im).rectangle([0, 0, 99, 99], fill=(220, 0, 0))  # a mark in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: display rotated 90° clockwise
    p = process_photo(encode(im, exif=exif.tobytes(), quality=92))
    assert p.rotated
    assert (p.width, p.height) == (800, 1200)
    out = Image.open(io.BytesIO(p.data)).convert("RGB")
    r, g, b = out.getpixel((800 - 50, 50))  # turned clockwise, the top-left corner is now top-right
    assert r > 150 and g < 80 and b < 80
    assert out.getpixel((50, 50))[0] < 150 or out.getpixel((50, 50))[1] > 150
    # The stored file has no EXIF left to rotate it a second time.
    assert 0x0112 not in Image.open(io.BytesIO(p.data)).getexif()


def test_exif_metadata_such_as_gps_is_not_stored() -> None:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (31.0, 14.0, 0.0)}
    p = process_photo(encode(document(1200, 900), exif=exif.tobytes()))
    assert len(Image.open(io.BytesIO(p.data)).getexif()) == 0


def test_oversized_jpeg_is_compressed_to_at_most_1_mb_and_stays_legible() -> None:
    im = document(3000, 2250, noise=0.35)
    data = encode(im, quality=97)
    assert len(data) > photos.MAX_STORED_BYTES
    p = process_photo(data)
    assert p.compressed
    assert p.size <= photos.MAX_STORED_BYTES
    assert p.content_type == "image/jpeg"
    assert min(p.width, p.height) >= photos.MIN_SHORT_SIDE
    assert abs(p.width / p.height - 3000 / 2250) < 0.01
    # Legible: at a common size, the result still looks like the original.
    before = im.convert("L").resize((300, 225))
    after = Image.open(io.BytesIO(p.data)).convert("L").resize((300, 225))
    assert ImageStat.Stat(ImageChops.difference(before, after)).mean[0] < 12


def test_oversized_png_becomes_a_jpeg_of_at_most_1_mb() -> None:
    data = encode(document(1800, 1400, noise=0.5), "PNG")
    assert len(data) > photos.MAX_STORED_BYTES
    p = process_photo(data)
    assert p.compressed and p.content_type == "image/jpeg" and p.size <= photos.MAX_STORED_BYTES


def test_very_large_photo_is_decoded_small_and_reported_compressed() -> None:
    data = encode(document(7000, 5250), quality=75)
    assert len(data) <= photos.MAX_DOWNLOAD_BYTES
    p = process_photo(data)
    assert max(p.width, p.height) <= photos.WORK_LONG_SIDE
    assert p.compressed and p.size <= photos.MAX_STORED_BYTES


def test_png_is_accepted_and_stays_png() -> None:
    p = process_photo(encode(document(1200, 900), "PNG"))
    assert (p.content_type, p.width, p.height, p.extension) == ("image/png", 1200, 900, "png")
    assert p.data.startswith(b"\x89PNG") and not p.compressed


def test_transparent_png_is_put_on_white_paper() -> None:
    im = Image.new("RGBA", (1000, 800), (0, 0, 0, 0))
    im.paste(document(600, 400), (200, 200))
    p = process_photo(encode(im, "PNG"))
    out = Image.open(io.BytesIO(p.data)).convert("RGB")
    assert out.getpixel((10, 10)) == (255, 255, 255)


@pytest.mark.parametrize("mode, fmt", [("CMYK", "JPEG"), ("L", "JPEG"), ("P", "PNG"), ("1", "PNG"), ("I;16", "PNG")])
def test_other_colour_modes_are_accepted_and_keep_their_contrast(mode: str, fmt: str) -> None:
    im = document(1200, 900)
    if mode == "I;16":  # a 16-bit greyscale scan uses the whole 0..65535 range
        im = im.convert("L").point(lambda v: v * 256, "I").convert("I;16")
    else:
        im = im.convert(mode)
    p = process_photo(encode(im, fmt))
    lo, hi = Image.open(io.BytesIO(p.data)).convert("L").getextrema()
    assert lo < 60 and hi > 200


def test_processing_is_deterministic_so_duplicates_have_one_hash() -> None:
    data = encode(document(1400, 1000))
    assert process_photo(data).sha256 == process_photo(data).sha256


def test_short_side_of_exactly_600_is_enough() -> None:
    p = process_photo(encode(document(900, 600)))
    assert (p.width, p.height) == (900, 600)


async def test_processing_runs_off_the_event_loop() -> None:
    p = await photos.process_photo_async(encode(document(1000, 800)))
    assert p.width == 1000


# --- refused photos ----------------------------------------------------------------------------------


def test_tiny_image_is_refused_as_unreadable() -> None:
    reason = rejected(encode(document(500, 400)))
    assert "太小" in reason and "500×400" in reason


def test_tiny_side_is_judged_after_rotation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 8
    reason = rejected(encode(document(1200, 500), exif=exif.tobytes()))
    assert "500×1200" in reason


@pytest.mark.parametrize("image", [
    Image.new("RGB", (1600, 1200), (255, 255, 255)),
    Image.new("RGB", (1600, 1200), (0, 0, 0)),
    # A white wall with sensor noise: varied pixels, nothing to read.
    Image.merge("RGB", [Image.effect_noise((1600, 1200), 6).point(lambda v: min(255, v + 120))] * 3),
], ids=["white", "black", "noisy-wall"])
def test_nearly_blank_image_is_refused(image: Image.Image) -> None:
    assert rejected(encode(image)) == photos.BLANK


def test_a_sparse_page_is_not_taken_for_blank() -> None:
    im = Image.new("RGB", (1600, 1200), (250, 250, 250))
    d = ImageDraw.Draw(im)
    for y in (200, 260, 320, 900):  # a few lines of text only
        d.rectangle([200, y, 1300, y + 24], fill=(30, 30, 30))
    assert ImageStat.Stat(im.convert("L")).stddev[0] > 0
    process_photo(encode(im))


@pytest.mark.parametrize("data", [
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
    "这是一段文字，不是照片。".encode("utf-8") * 20,
    b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 50,
], ids=["pdf", "text", "jpeg-magic-only"])
def test_non_image_is_refused_whatever_it_is_called(data: bytes) -> None:
    assert rejected(data) in (photos.NOT_IMAGE, photos.DAMAGED)


def test_a_pdf_named_jpg_is_not_an_image() -> None:
    assert rejected(b"%PDF-1.7\n" + b"0" * 4000) == photos.NOT_IMAGE


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_image_formats_are_refused_as_wrong_format(fmt: str) -> None:
    assert rejected(encode(document(1000, 800), fmt)) == photos.WRONG_FORMAT


def test_truncated_jpeg_is_refused_as_damaged() -> None:
    data = encode(document(1600, 1200), quality=90)
    assert rejected(data[: len(data) // 2]) == photos.DAMAGED


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # 30000 x 30000 is over twice Pillow's limit: Pillow itself raises DecompressionBombError.
    assert rejected(png_header_only(30000, 30000)) == photos.BOMB


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_image_just_over_the_pixel_limit_is_refused_too() -> None:
    # Between one and two times the limit Pillow only warns; this module refuses.
    assert 10000 * 9000 > photos.MAX_PIXELS
    assert rejected(png_header_only(10000, 9000)) == photos.BOMB


def png_header(width: int, height: int, *, bit_depth: int, colour_type: int) -> bytes:
    """A PNG that claims width x height pixels of the given kind and holds (almost) none."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def no_decoding(monkeypatch):
    """Any decoding of pixels fails the test: refusals must come from the header alone."""
    from PIL import ImageFile

    def load(self):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.parametrize("width, height, bit_depth, colour_type", [
    (9400, 9400, 8, 6),    # RGBA: 350 MB of pixels from a file of about 1 MB (the case)
    (6000, 6000, 16, 0),   # 16-bit grey: 72 MB decoded, more once converted
    (5000, 4000, 8, 2),    # RGB, held in 32 bits: 80 MB
])
def test_photo_whose_pixels_would_exceed_the_memory_limit_is_refused_from_its_header(
        no_decoding, width, height, bit_depth, colour_type) -> None:
    assert width * height <= photos.MAX_PIXELS  # under Pillow's bomb limit: only the new check stops it
    reason = rejected(png_header(width, height, bit_depth=bit_depth, colour_type=colour_type))
    assert reason == photos.TOO_MANY_PIXELS.format(w=width, h=height)
    assert "太大" in reason and f"{width}×{height}" in reason


def test_photo_just_under_the_memory_limit_is_accepted() -> None:
    w, h = 4096, photos.MAX_DECODE_BYTES // (4096 * 4)
    p = process_photo(encode(document(w, h, mode="RGBA"), "PNG"))
    assert (p.width, p.height) == (w, h)


def test_large_jpeg_is_decoded_reduced_to_fit_the_memory_limit(monkeypatch) -> None:
    """A 48-megapixel JPEG would take 192 MB decoded in full: it is decoded at half size."""
    from PIL import JpegImagePlugin

    drafts = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        drafts.append(size)
        return real_draft(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    data = encode(document(8000, 6000), quality=60)
    p = process_photo(data)
    assert drafts == [(4000, 3000)] and (p.width, p.height) == (4000, 3000)
    assert 8000 * 6000 * 4 > photos.MAX_DECODE_BYTES >= 4000 * 3000 * 4


async def test_photos_are_decoded_in_a_small_pool_at_most_two_at_once(monkeypatch) -> None:
    import threading
    import time as _time

    running, peak, names, lock = 0, 0, set(), threading.Lock()

    def slow(data: bytes):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            names.add(threading.current_thread().name)
        _time.sleep(0.05)
        with lock:
            running -= 1
        return data

    monkeypatch.setattr(photos, "process_photo", slow)
    import asyncio

    assert await asyncio.gather(*(photos.process_photo_async(bytes([i])) for i in range(6))) == [bytes([i]) for i in range(6)]
    assert peak == photos.DECODE_WORKERS == 2
    assert all(n.startswith("photo-decode") for n in names)


def test_download_over_10_mb_is_refused() -> None:
    assert rejected(b"\xff\xd8\xff\xe0" + os.urandom(photos.MAX_DOWNLOAD_BYTES)) == photos.TOO_LARGE


def test_empty_download_is_refused() -> None:
    assert rejected(b"") == photos.EMPTY


def test_reasons_are_short_chinese_sentences() -> None:
    for reason in (photos.TOO_LARGE, photos.NOT_IMAGE, photos.WRONG_FORMAT, photos.DAMAGED, photos.BOMB,
                   photos.TOO_MANY_PIXELS.format(w=9400, h=9400),
                   photos.BLANK, photos.TOO_SMALL.format(w=1, h=1), photos.UNREADABLE_AT_1MB, photos.EMPTY):
        assert len(reason) <= 60 and reason.endswith("。")


# --- storage -----------------------------------------------------------------------------------------


async def test_local_store_round_trip_and_missing_file(tmp_path: Path) -> None:
    store = LocalPhotoStore(tmp_path / "photos")
    key = photos.photo_key("ab" * 32, "image/jpeg")
    assert key == f"ab/{'ab' * 32}.jpg"
    assert not await store.exists(key)
    await store.put(key, b"bytes")
    assert await store.exists(key) and await store.get(key) == b"bytes"
    assert store.locate(key) == str((tmp_path / "photos" / key).resolve())
    assert not [p for p in (tmp_path / "photos" / "ab").iterdir() if p.name.startswith(".tmp")]
    with pytest.raises(PhotoMissing):
        await store.get(photos.photo_key("cd" * 32, "image/png"))


@pytest.mark.parametrize("key", ["../etc/passwd", "/etc/passwd", "a/../../b", "", "a\\b"])
async def test_local_store_refuses_keys_outside_its_directory(tmp_path: Path, key: str) -> None:
    store = LocalPhotoStore(tmp_path)
    with pytest.raises(ValueError):
        await store.put(key, b"x")


def test_default_store_lives_under_the_media_dir(tmp_path: Path) -> None:
    assert LocalPhotoStore.under_media_dir(tmp_path).directory == tmp_path / "photos"


async def test_duplicate_upload_is_recognised_and_stored_once(db: Database, tmp_path: Path) -> None:
    store = LocalPhotoStore(tmp_path / "photos")
    data = encode(document(1300, 1000))
    first = await save_photo(db, store, process_photo(data))
    second = await save_photo(db, store, process_photo(data))
    assert not first.duplicate and second.duplicate
    assert first.id == second.id
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Photo)) == 1
    files = [p for p in (tmp_path / "photos").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].read_bytes() == process_photo(data).data
    row = first.photo
    assert (row.width, row.height, row.content_type, row.size) == (1300, 1000, "image/jpeg", len(files[0].read_bytes()))
    assert row.storage_key == photos.photo_key(row.sha256, "image/jpeg")
    other = await save_photo(db, store, process_photo(encode(document(1300, 1000, seed=2))))
    assert not other.duplicate and other.id != first.id


async def test_saving_again_restores_a_lost_file(db: Database, tmp_path: Path) -> None:
    store = LocalPhotoStore(tmp_path / "photos")
    processed = process_photo(encode(document(1000, 700)))
    saved = await save_photo(db, store, processed)
    Path(store.locate(saved.photo.storage_key)).unlink()
    again = await save_photo(db, store, processed)
    assert again.duplicate
    photo, data = await photos.read_photo(db, store, saved.id)
    assert data == processed.data and photo.sha256 == processed.sha256
