"""Memory of photo decoding: what concurrent near-limit photos add to the process's RSS.

    python -m bench.photos                 # four near-limit photos at once, then the 9400×9400 PNG
    python -m bench.photos --copies 8      # eight at once

The photos are as large as storage/photos.py accepts (MAX_DECODE_BYTES): a 4096×3072 RGBA PNG,
a 4096×3072 RGB PNG, a 16-bit grey PNG of 25 megapixels and a 48-megapixel JPEG (decoded at
half size). They go through `process_photo_async` together, as when several candidates send
photos at the same moment. RSS is sampled every 5 ms by a thread (and the kernel's high-water
mark VmHWM, reset before each run, is read too). Then a real 9400×9400 RGBA PNG (about 1 MB,
the issue's example) is sent: it must be refused without its pixels being decoded.

Prints JSON: baseline RSS, peak RSS added, RSS added after the run, seconds, outcomes.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import struct
import threading
import time
import zlib

from PIL import Image

from storage import photos
from tests.test_photos import document, encode  # the suite's certificate-like test images


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_hwm() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class Sampler:
    def __init__(self) -> None:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.005)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def near_limit_photos() -> list[tuple[str, bytes]]:
    limit = photos.MAX_DECODE_BYTES
    w, h = 4096, 3072  # 4 bytes per pixel: exactly the limit
    assert w * h * 4 <= limit
    doc = document(w, h, mode="L", seed=1)
    rgba = Image.merge("RGBA", (doc, doc, doc, Image.new("L", (w, h), 255)))
    out = [("RGBA PNG 4096×3072", encode(rgba, "PNG", compress_level=1))]
    del rgba
    out.append(("RGB PNG 4096×3072", encode(Image.merge("RGB", (doc, doc, doc)), "PNG", compress_level=1)))
    gw, gh = 5792, 4344  # 2 bytes per pixel: just under the limit
    assert gw * gh * 2 <= limit
    grey = document(gw, gh, mode="L", seed=2).point(lambda v: v * 257, "I").convert("I;16")
    out.append(("16-bit grey PNG 5792×4344", encode(grey, "PNG", compress_level=1)))
    del grey
    jw, jh = 8000, 6000
    big = document(jw, jh, seed=3)
    out.append(("JPEG 8000×6000", encode(big, "JPEG", quality=80)))
    return out


def huge_png(w: int = 9400, h: int = 9400) -> bytes:
    """A valid w×h RGBA PNG written row by row (never held decoded here): about 1 MB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(9)
    row = b"\x00" + bytes(w * 4)
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


async def run(items: list[tuple[str, bytes]]) -> dict:
    gc.collect()
    photos._release_memory()
    base = rss_mb()
    reset_hwm()
    started = time.perf_counter()
    with Sampler() as sampler:
        results = await asyncio.gather(*(photos.process_photo_async(data) for _, data in items),
                                       return_exceptions=True)
    elapsed = time.perf_counter() - started
    peak = max(sampler.peak, hwm_mb())
    gc.collect()
    after = rss_mb()
    outcomes = []
    for (name, _), r in zip(items, results):
        if isinstance(r, photos.PhotoRejected):
            outcomes.append(f"{name}: refused ({r.reason})")
        elif isinstance(r, BaseException):
            outcomes.append(f"{name}: error {type(r).__name__}: {r}")
        else:
            outcomes.append(f"{name}: stored {r.width}×{r.height} {r.content_type} {r.size // 1024} KB")
    return {"baseline_rss_mb": round(base, 1), "peak_added_mb": round(peak - base, 1),
            "after_added_mb": round(after - base, 1), "seconds": round(elapsed, 2), "outcomes": outcomes}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--copies", type=int, default=4, help="photos processed at once (default 4)")
    args = p.parse_args()
    inputs = near_limit_photos()
    items = [inputs[i % len(inputs)] for i in range(args.copies)]
    bomb = huge_png()
    gc.collect()
    report = {
        "decode_workers": photos.DECODE_WORKERS,
        "max_decode_mb": photos.MAX_DECODE_BYTES / 2**20,
        "sizes_kb": {name: len(data) // 1024 for name, data in inputs},
        "near_limit_at_once": asyncio.run(run(items)),
        "png_9400x9400_rgba": dict(asyncio.run(run([("RGBA PNG 9400×9400", bomb)])), file_kb=len(bomb) // 1024),
    }
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
