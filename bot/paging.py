"""Split long replies into pages under WeChat's ~2048-byte text limit, at line boundaries."""
from __future__ import annotations

TEXT_LIMIT_BYTES = 2048
NEXT_PAGE_WORDS = frozenset({"下一页", "下页", "继续看", "更多"})
# Room kept on every page for the footer below.
FOOTER_RESERVE = 80


def footer(page: int, total: int) -> str:
    if page < total:
        return f"\n（第{page}/{total}页，回复“下一页”继续）"
    return f"\n（第{page}/{total}页，完）"


def _utf8_len(s: str) -> int:
    return len(s.encode("utf-8"))


def _split_line(line: str, limit: int) -> list[str]:
    """A single line longer than a page is cut by characters, never inside a character."""
    out, cur = [], ""
    for ch in line:
        if _utf8_len(cur + ch) > limit:
            out.append(cur)
            cur = ""
        cur += ch
    out.append(cur)
    return out


def paginate(text: str, limit: int = TEXT_LIMIT_BYTES) -> list[str]:
    """Pages whose UTF-8 size, footer included, stays within `limit`; one page if it fits."""
    if _utf8_len(text) <= limit:
        return [text]
    body_limit = limit - FOOTER_RESERVE
    pages: list[str] = []
    cur: list[str] = []
    size = 0
    for raw in text.split("\n"):
        for line in _split_line(raw, body_limit) if _utf8_len(raw) > body_limit else [raw]:
            add = _utf8_len(line) + (1 if cur else 0)
            if cur and size + add > body_limit:
                pages.append("\n".join(cur))
                cur, size = [], 0
                add = _utf8_len(line)
            cur.append(line)
            size += add
    if cur:
        pages.append("\n".join(cur))
    total = len(pages)
    return [p.rstrip("\n") + footer(i, total) for i, p in enumerate(pages, 1)]
