"""Long replies are paged under WeChat's 2048-byte limit, never cut."""
from bot.paging import TEXT_LIMIT_BYTES, paginate


def test_short_text_is_one_page_without_footer():
    assert paginate("你好") == ["你好"]


def test_long_text_pages_stay_under_limit_and_keep_every_line():
    lines = [f"{i:03d} 课程名称很长的一门课 成绩 {60 + i % 40}" for i in range(300)]
    pages = paginate("\n".join(lines))
    assert len(pages) > 1
    assert all(len(p.encode()) <= TEXT_LIMIT_BYTES for p in pages)
    assert "下一页" in pages[0] and "完" in pages[-1]
    joined = "\n".join(pages)
    assert all(line in joined for line in lines)


def test_single_huge_line_is_split_by_characters():
    text = "字" * 3000
    pages = paginate(text)
    assert all(len(p.encode()) <= TEXT_LIMIT_BYTES for p in pages)
    assert sum(p.split("\n（第")[0].count("字") for p in pages) == 3000
