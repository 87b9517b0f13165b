"""Rules the service itself enforces, quoted in answers as {placeholders} (kb.yaml), so that what the
consultation says and what the flows do can never disagree: change the rule in code, and the answer
follows on the next load.

    answer: 凭证照片须{photo_rule}。     ->  凭证照片须JPG或PNG格式，单张不超过1MB，清晰完整、文字朝上。
"""
from __future__ import annotations

import re
from functools import lru_cache

from storage import applications as apps
from storage import photos
from storage.vocab import WINDOW_KINDS

CONTACT_PHONE = "400-0960-990"
# The manuals' 技术咨询 QQ numbers (操作手册 十一; 使用手册 前言).
CONTACT_QQ = "1638601693、669845594、2082017394、670625194"

# Which business window (storage.vocab.WINDOW_KINDS) a knowledge-base business opens in.
WINDOW_OF_BUSINESS = {
    "免考": "exemption", "补登": "backfill", "论文": "thesis", "毕业": "graduation", "学位": "degree",
    "转出": "transfer_out", "转入": "transfer_in",
}
assert set(WINDOW_OF_BUSINESS.values()) <= set(WINDOW_KINDS)

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def _month(text: str) -> tuple[int, int]:
    y, m = text.split("-")
    return int(y), int(m)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g}MB"


@lru_cache(maxsize=1)
def facts() -> dict[str, str]:
    from dialogs.binding import PASSWORD_RULE  # dialogs.binding pulls in the engine: load it on first use

    ty, tm = _month(apps.THEORY_LATEST_MONTH)
    ly, lm = _month(apps.LEGACY_BEFORE_MONTH)
    return {
        "photo_max": _mb(photos.MAX_STORED_BYTES),
        "photo_rule": f"JPG或PNG格式，单张不超过{_mb(photos.MAX_STORED_BYTES)}，清晰完整、文字朝上",
        "photo_count": str(apps.MAX_PHOTOS_PER_EVIDENCE),
        "theory_latest": f"{ty}年及以前" if tm == 12 else f"{ty}年{tm}月及以前",
        "legacy_before": f"{ly}年以前" if lm == 1 else f"{ly}年{lm}月以前",
        "password_rule": PASSWORD_RULE,
        "phone": CONTACT_PHONE,
        "qq": CONTACT_QQ,
    }


def fill(text: str) -> tuple[str, list[str]]:
    """The text with its {placeholders} filled in, and the names it used that are unknown."""
    known = facts()
    unknown = [name for name in PLACEHOLDER.findall(text) if name not in known]
    return PLACEHOLDER.sub(lambda m: known.get(m.group(1), m.group(0)), text), unknown
