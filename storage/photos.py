"""Evidence photos: check and normalise what a candidate sends, and store each photo once.

`process_photo(data)` decides from the bytes (never from a name) whether a download is a usable
JPEG or PNG, turns it upright (EXIF orientation), and brings it to at most 1 MB; it raises
`PhotoRejected` with a short Chinese reason the dialog can show as it is. The result is always
re-encoded by Pillow: the stored file carries no EXIF (no GPS position) and nothing appended
after the image.

Where the bytes live is a `PhotoStore` (put/get/exists); `LocalPhotoStore` keeps them in a
directory (by default `<MEDIA_DIR>/photos`). `save_photo` stores a photo once by its sha256 and
tells whether it was already there.
"""
from __future__ import annotations

import asyncio
import ctypes
import hashlib
import io
import math
import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from PIL import Image, ImageOps, ImageStat, UnidentifiedImageError
from sqlalchemy import select

from storage.db import Database
from storage.models import utcnow
from storage.models_applications import Photo

MAX_DOWNLOAD_BYTES = 10 * 1024 * 1024  # what the download may be; bot.wechat_client stops there too
MAX_STORED_BYTES = 1024 * 1024  # the platform's rule: each photo at most 1 MB
MIN_SHORT_SIDE = 600  # below this a certificate's text cannot be read
# Pillow's own bomb limit (about 89 million pixels). Pillow only warns between one and two
# times the limit; here anything over it is refused.
MAX_PIXELS = 89_478_485
# Larger photos are decoded and kept at this long side: more pixels do not make a certificate
# more legible, they only make the file larger.
WORK_LONG_SIDE = 4096
# The most memory one photo's decoded pixels may take, checked from the header before decoding
# (width × height × bytes per pixel as Pillow holds them; a JPEG counts at the reduced size it is
# decoded at). A 1 MB PNG can claim 9400×9400 RGBA: 350 MB of pixels, and the conversions after
# it several times that. 48 MiB admits a 12-megapixel colour PNG (a 4096×3072 screenshot, a
# 300 dpi A4 scan) and any JPEG within MAX_PIXELS; processing peaks at about twice this.
MAX_DECODE_BYTES = 48 * 1024 * 1024
# Photos are decoded in this many threads at most: concurrent uploads queue instead of each
# holding its pixels in memory at the same time.
DECODE_WORKERS = 2
JPEG_QUALITY = 90  # the first encoding: visually the same as the photo
MIN_JPEG_QUALITY = 50  # below this text gets blurred by block artefacts
# A nearly blank image: almost no contrast once small details are averaged away.
BLANK_STDDEV = 5.0
BLANK_RANGE = 24

TOO_LARGE = "照片文件太大（超过10MB）。发送时请不要勾选“原图”，再发一次。"
EMPTY = "没有收到照片内容，请重新发送。"
NOT_IMAGE = "收到的不是照片。请发送证书或凭证的照片（JPG或PNG格式）。"
WRONG_FORMAT = "只能接收JPG或PNG格式的照片，请换一张照片发送。"
DAMAGED = "照片文件不完整或已损坏，请重新发送。"
BOMB = "照片像素过多，无法处理，请发送普通拍摄的照片。"
TOO_MANY_PIXELS = "照片尺寸太大（{w}×{h}像素），无法处理。请缩小后或另存为JPG格式再发送。"
TOO_SMALL = "照片太小（{w}×{h}像素），看不清内容。请拍清楚后重新发送。"
BLANK = "照片几乎是空白的，看不到内容。请对准凭证重新拍摄。"
UNREADABLE_AT_1MB = "照片内容太多，压缩到1MB以内会看不清。请只拍凭证本身后重新发送。"

# What other formats look like, to tell "wrong format" from "not an image at all" without
# letting Pillow try every decoder it has on untrusted bytes.
_OTHER_IMAGE_MAGIC = (b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x01\x00")
_FTYP_IMAGE = (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif")


class PhotoRejected(ValueError):
    """A download that is not a usable evidence photo; `reason` is for the candidate."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ProcessedPhoto:
    data: bytes
    content_type: str  # image/jpeg or image/png
    width: int
    height: int
    sha256: str
    compressed: bool  # made smaller to fit 1 MB: tell the candidate
    rotated: bool  # turned upright from its EXIF orientation
    original_size: int

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def extension(self) -> str:
        return "png" if self.content_type == "image/png" else "jpg"


def _looks_like_other_image(data: bytes) -> bool:
    head = data[:32]
    if head.startswith(_OTHER_IMAGE_MAGIC):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    return head[4:8] == b"ftyp" and head[8:12] in _FTYP_IMAGE


def _open(data: bytes) -> Image.Image:
    try:
        # Only the JPEG and PNG decoders ever see the bytes.
        im = Image.open(io.BytesIO(data), formats=("JPEG", "PNG"))
    except Image.DecompressionBombError:
        raise PhotoRejected(BOMB) from None
    except UnidentifiedImageError:
        raise PhotoRejected(WRONG_FORMAT if _looks_like_other_image(data) else NOT_IMAGE) from None
    except (OSError, SyntaxError, ValueError):
        raise PhotoRejected(DAMAGED) from None
    if im.format not in ("JPEG", "MPO", "PNG"):  # MPO: a JPEG with extra frames (some cameras)
        raise PhotoRejected(WRONG_FORMAT)
    w, h = im.size
    if w <= 0 or h <= 0:
        raise PhotoRejected(DAMAGED)
    if w * h > MAX_PIXELS:
        raise PhotoRejected(BOMB)
    return im


# Bytes per pixel of Pillow's in-memory storage: 1 for 1/L/P, 2 for 16-bit grey, 4 for every
# other mode (RGB is stored in 32 bits too).
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


def decoded_bytes(im: Image.Image) -> int:
    """Memory the pixels of `im` take once decoded (at its current, possibly drafted, size)."""
    return im.width * im.height * _BYTES_PER_PIXEL.get(im.mode, 4)


def _jpeg_reduction(w: int, h: int, bytes_per_pixel: int) -> int:
    """The JPEG decoder's reduction (1, 2, 4 or 8) for a w×h photo: shrink while the long side
    stays at least WORK_LONG_SIDE, and further while the pixels would exceed MAX_DECODE_BYTES,
    but never below MIN_SHORT_SIDE on the short side."""
    factor = 1
    for f in (2, 4, 8):
        if min(w // f, h // f) < MIN_SHORT_SIDE:
            break
        too_big = (w // factor) * (h // factor) * bytes_per_pixel > MAX_DECODE_BYTES
        if max(w // f, h // f) >= WORK_LONG_SIDE or too_big:
            factor = f
        else:
            break
    return factor


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112) or 1)
    except Exception:  # a broken EXIF block is not worth refusing a photo for
        return 1


def _work_scale(w: int, h: int) -> float:
    """How much to shrink a very large photo while it is decoded (1.0: not at all)."""
    long_side, short_side = max(w, h), min(w, h)
    if long_side <= WORK_LONG_SIDE:
        return 1.0
    return min(1.0, max(WORK_LONG_SIDE / long_side, MIN_SHORT_SIDE / short_side))


def _to_rgb_or_l(im: Image.Image) -> Image.Image:
    """Modes JPEG and PNG can both hold; transparency becomes white paper."""
    if im.mode in ("RGB", "L"):
        return im
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        paper = Image.new("RGB", rgba.size, (255, 255, 255))
        paper.paste(rgba, mask=rgba)  # an RGBA mask: its alpha band, without a copy of it
        return paper
    if im.mode == "1":
        return im.convert("L")
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit grey: scale to 8 bits in 16 bits (no 32-bit copy), then narrow.
        hi = im.getextrema()[1] or 1
        narrow = im.point(lambda v: v * (255 / hi)) if hi > 255 else im
        return narrow.convert("L")
    if im.mode in ("I", "F"):
        # 16-bit grey: scale to 8 bits (a plain convert would clip everything above 255 to white).
        wide = im.convert("I") if im.mode != "F" else im
        hi = wide.getextrema()[1] or 1
        return wide.point(lambda v: v * (255 / hi) if hi > 255 else v).convert("L")
    return im.convert("RGB")


def _is_blank(im: Image.Image) -> bool:
    gray = im.convert("L")
    gray.thumbnail((512, 512), Image.Resampling.BILINEAR)
    lo, hi = gray.getextrema()
    return hi - lo < BLANK_RANGE or ImageStat.Stat(gray).stddev[0] < BLANK_STDDEV


def _encode(im: Image.Image, fmt: str, quality: int = JPEG_QUALITY, icc: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    extra = {"icc_profile": icc} if icc else {}
    if fmt == "PNG":
        im.save(buf, "PNG", compress_level=6, **extra)
    else:
        im.save(buf, "JPEG", quality=quality, optimize=True, progressive=True, **extra)
    return buf.getvalue()


def _fit_jpeg(im: Image.Image, icc: bytes | None) -> tuple[bytes, Image.Image]:
    """JPEG of at most MAX_STORED_BYTES: lower the resolution (never below MIN_SHORT_SIDE on the
    short side), then the quality (never below MIN_JPEG_QUALITY)."""
    w, h = im.size
    min_scale = min(1.0, MIN_SHORT_SIDE / min(w, h))
    scale, quality = 1.0, 85
    current = im
    for _ in range(16):
        data = _encode(current, "JPEG", quality, icc)
        if len(data) <= MAX_STORED_BYTES:
            return data, current
        if scale <= min_scale:
            if quality <= MIN_JPEG_QUALITY:
                break
            quality = max(MIN_JPEG_QUALITY, quality - 10)
            continue
        # Bytes grow about with the pixel count: aim a little under the limit.
        shrink = min(0.95, math.sqrt(MAX_STORED_BYTES / len(data)) * 0.95)
        scale = max(min_scale, scale * shrink)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        current = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    raise PhotoRejected(UNREADABLE_AT_1MB)


def process_photo(data: bytes) -> ProcessedPhoto:
    """Check a downloaded photo and make it fit for storage, or raise PhotoRejected.

    CPU-bound (up to a few hundred ms for a large photo): from async code use
    `process_photo_async`.
    """
    if not data:
        raise PhotoRejected(EMPTY)
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise PhotoRejected(TOO_LARGE)
    im = _open(data)
    source_format = "PNG" if im.format == "PNG" else "JPEG"
    if source_format == "PNG" and decoded_bytes(im) > MAX_DECODE_BYTES:
        # Before anything else: reading a PNG's EXIF (below) already decodes the whole image.
        raise PhotoRejected(TOO_MANY_PIXELS.format(w=im.width, h=im.height))
    orientation = _orientation(im)
    rotated = orientation in range(2, 9)
    # The size rule applies to the photo as sent (upright), before anything here shrinks it.
    sent_w, sent_h = im.size[::-1] if orientation in (5, 6, 7, 8) else im.size
    if min(sent_w, sent_h) < MIN_SHORT_SIDE:
        raise PhotoRejected(TOO_SMALL.format(w=sent_w, h=sent_h))
    scale = _work_scale(*im.size)
    if source_format == "JPEG":
        # Decode at 1/2, 1/4 or 1/8 straight away: a 50-megapixel photo never sits in memory.
        factor = _jpeg_reduction(im.width, im.height, 1 if im.mode == "L" else 4)
        if factor > 1:
            # Pillow picks the largest reduction whose result is at least this size.
            im.draft("RGB", (im.width // factor, im.height // factor))
            scale = min(scale, 1 / factor)
    # Checked on the header (and the drafted size): the pixels are not decoded yet.
    if decoded_bytes(im) > MAX_DECODE_BYTES:
        raise PhotoRejected(TOO_MANY_PIXELS.format(w=sent_w, h=sent_h))
    try:
        im.load()
    except Image.DecompressionBombError:
        raise PhotoRejected(BOMB) from None
    except (OSError, SyntaxError, ValueError, MemoryError):
        raise PhotoRejected(DAMAGED) from None
    # A colour profile only still fits when the colour model is kept (not for CMYK and the like).
    icc = im.info.get("icc_profile") if im.mode in ("RGB", "RGBA", "P", "L", "LA") else None
    if rotated:
        try:
            im = ImageOps.exif_transpose(im) or im  # the stored image is let go here
        except Exception:  # broken EXIF: keep the photo as it is stored
            rotated = False
    try:
        # One full-size copy at a time: the decoded image is dropped once converted.
        pixels = _to_rgb_or_l(im)
    except (OSError, ValueError):
        raise PhotoRejected(DAMAGED) from None
    del im
    if _is_blank(pixels):
        raise PhotoRejected(BLANK)
    shrunk = scale < 1.0
    s = _work_scale(*pixels.size)
    if s < 1.0:
        target = (max(1, round(pixels.width * s)), max(1, round(pixels.height * s)))
        pixels = pixels.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = _encode(pixels, source_format, JPEG_QUALITY, icc)
    content_type = "image/png" if source_format == "PNG" else "image/jpeg"
    compressed = shrunk
    if len(out) > MAX_STORED_BYTES:
        out, pixels = _fit_jpeg(pixels, icc)
        content_type = "image/jpeg"
        compressed = True
    return ProcessedPhoto(
        data=out, content_type=content_type, width=pixels.width, height=pixels.height,
        sha256=hashlib.sha256(out).hexdigest(), compressed=compressed, rotated=rotated,
        original_size=len(data),
    )


_pool: ThreadPoolExecutor | None = None


def _decode_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=DECODE_WORKERS, thread_name_prefix="photo-decode")
    return _pool


async def process_photo_async(data: bytes) -> ProcessedPhoto:
    """`process_photo` in the photo pool (DECODE_WORKERS threads), so the event loop keeps
    answering other candidates and at most DECODE_WORKERS photos are in memory decoded."""
    return await asyncio.get_running_loop().run_in_executor(_decode_pool(), _process_and_trim, data)


def _process_and_trim(data: bytes) -> ProcessedPhoto:
    try:
        return process_photo(data)
    finally:
        _release_memory()


def _release_memory() -> None:
    """Hand freed pixel memory back to the system. Pillow allocates large images in 16 MB blocks;
    once glibc has raised its mmap threshold they come from the heap and stay in the process's
    RSS after being freed. malloc_trim returns them (glibc only; elsewhere nothing to do)."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


# --- Storage -------------------------------------------------------------------------------------


class PhotoMissing(LookupError):
    """The store has no file under that key."""


@runtime_checkable
class PhotoStore(Protocol):
    """Where photo bytes live. Keys are relative paths like 'ab/ab12....jpg' (see `photo_key`)."""

    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def exists(self, key: str) -> bool: ...

    def locate(self, key: str) -> str:
        """Where a person finds the file (a path or a URL), for staff tools."""
        ...


def photo_key(sha256: str, content_type: str) -> str:
    """Content address of a photo: two levels keep a directory from growing too large."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError("not a sha256 hex digest")
    ext = "png" if content_type == "image/png" else "jpg"
    return f"{sha256[:2]}/{sha256}.{ext}"


class LocalPhotoStore:
    """Photos as files under one directory, written atomically (temp file + rename)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @classmethod
    def under_media_dir(cls, media_dir: str | os.PathLike[str]) -> LocalPhotoStore:
        """The default store: `<MEDIA_DIR>/photos`."""
        return cls(Path(media_dir) / "photos")

    def _path(self, key: str) -> Path:
        parts = Path(key).parts
        if not key or Path(key).is_absolute() or any(p in ("..", "") for p in parts) or "\\" in key:
            raise ValueError(f"bad photo key {key!r}")
        return self.directory.joinpath(*parts)

    def locate(self, key: str) -> str:
        return str(self._path(key).resolve())

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def get(self, key: str) -> bytes:
        path = self._path(key)

        def read() -> bytes:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                raise PhotoMissing(key) from None

        return await asyncio.to_thread(read)

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                raise

        await asyncio.to_thread(write)


@dataclass(frozen=True)
class SavedPhoto:
    photo: Photo
    duplicate: bool  # the same photo was stored before (by anyone)

    @property
    def id(self) -> int:
        return self.photo.id


async def save_photo(db: Database, store: PhotoStore, processed: ProcessedPhoto) -> SavedPhoto:
    """Store a processed photo once, by sha256, and return its row.

    The file goes first (content-addressed, so writing it again is harmless), then the row; a
    row whose file went missing gets its file back. Concurrent saves of the same photo end with
    one row (INSERT ... ON CONFLICT DO NOTHING).
    """
    key = photo_key(processed.sha256, processed.content_type)
    if not await store.exists(key):
        await store.put(key, processed.data)
    async with db.session() as s, s.begin():
        ins = db.insert(Photo.__table__).values(
            sha256=processed.sha256, size=processed.size, width=processed.width, height=processed.height,
            content_type=processed.content_type, storage_key=key, created_at=utcnow(),
        ).on_conflict_do_nothing(index_elements=["sha256"]).returning(Photo.__table__.c.id)
        new_id = (await s.execute(ins)).scalar_one_or_none()
        photo = (await s.execute(select(Photo).where(Photo.sha256 == processed.sha256))).scalar_one()
    return SavedPhoto(photo, duplicate=new_id is None)


async def read_photo(db: Database, store: PhotoStore, photo_id: int) -> tuple[Photo, bytes]:
    """A stored photo's row and bytes (PhotoMissing when the row or the file is gone)."""
    async with db.session() as s:
        photo = await s.get(Photo, photo_id)
    if photo is None:
        raise PhotoMissing(f"photo #{photo_id}")
    return photo, await store.get(photo.storage_key)

