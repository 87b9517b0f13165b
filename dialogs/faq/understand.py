"""What a question is about, beyond its bag of words: the business it names (免考, 补登, 毕业 ...), the
aspect it asks (材料, 时间, 条件 ...), whether it is a question or a request, and homophone typos.

The vocabulary lives in topics.yaml (businesses, aspects); the question/request split is grammar and
stays here. All of it is plain functions over plain data, tested in tests/test_faq.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional


def _pinyin(text: str, **kw):
    # pypinyin's tables take a quarter of a second to import: loaded with the FAQ index (in the
    # service's warm-up thread), not when the service starts.
    from pypinyin import Style, lazy_pinyin

    return lazy_pinyin(text, style=Style.NORMAL, **kw)


GENERAL = "通用"  # entries of this business fit a question about any business
# Aspects named by the shape of a question (怎么/如何 -> 流程, 是什么/啥意思 -> 是什么); they give way to any
# more specific aspect the question asks.
SHAPE_ASPECTS = frozenset({"流程", "是什么"})


@dataclass(frozen=True)
class Business:
    name: str
    words: frozenset[str]  # canonical tokens (after synonyms) that name it
    refer: bool = False  # outside the manuals: its entries refer the candidate on
    # Words that name it only when no other business is named: 毕业证书 is about 毕业 in "毕业证书编号填什么"
    # but evidence in "用毕业证免考" (a 免考 question).
    weak: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Topics:
    businesses: dict[str, Business]
    aspects: dict[str, re.Pattern[str]]

    def businesses_of(self, tokens: Iterable[str]) -> frozenset[str]:
        """Every business a question's tokens name (a question may name two: "用毕业证免考")."""
        toks = set(tokens)
        strong = frozenset(b.name for b in self.businesses.values() if b.words & toks and b.name != GENERAL)
        if strong:
            return strong
        return frozenset(b.name for b in self.businesses.values() if b.weak & toks and b.name != GENERAL)

    def aspects_of(self, normalized_text: str) -> frozenset[str]:
        found = frozenset(name for name, rx in self.aspects.items() if rx.search(normalized_text))
        # "怎么修改", "怎么交费", "网址是什么": 怎么 / 是什么 only shape the question when a more specific
        # aspect is asked ("流程是啥" keeps both).
        if found - SHAPE_ASPECTS:
            found -= SHAPE_ASPECTS
        return found

    def refers(self, business: Optional[str]) -> bool:
        b = self.businesses.get(business or "")
        return bool(b and b.refer)


def parse_topics(path: Path, read_yaml, strip_lines, normalize, error_cls) -> Topics:
    data = strip_lines(read_yaml(path))
    errors: list[str] = []
    if not isinstance(data, dict) or not isinstance(data.get("businesses"), dict) \
            or not isinstance(data.get("aspects"), dict):
        raise error_cls([f"{path}: expected 'businesses:' and 'aspects:' mappings"])
    businesses: dict[str, Business] = {}
    for name, spec in data["businesses"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("words"), list):
            errors.append(f"{path}: business {name!r}: expected 'words: [...]'")
            continue
        unknown = set(spec) - {"words", "weak_words", "refer"}
        if unknown:
            errors.append(f"{path}: business {name!r}: unknown field(s) {', '.join(sorted(unknown))}")
        weak = spec.get("weak_words") or []
        if not isinstance(weak, list):
            errors.append(f"{path}: business {name!r}: 'weak_words' must be a list")
            weak = []
        businesses[str(name)] = Business(str(name), frozenset(normalize(str(w)) for w in spec["words"]),
                                         bool(spec.get("refer", False)), frozenset(normalize(str(w)) for w in weak))
    if GENERAL not in businesses:
        errors.append(f"{path}: the business {GENERAL!r} (entries that fit every business) is missing")
    aspects: dict[str, re.Pattern[str]] = {}
    for name, patterns in data["aspects"].items():
        if not isinstance(patterns, list) or not patterns:
            errors.append(f"{path}: aspect {name!r}: expected a list of regular expressions")
            continue
        try:
            aspects[str(name)] = re.compile("|".join(f"(?:{p})" for p in patterns))
        except re.error as e:
            errors.append(f"{path}: aspect {name!r}: bad regular expression ({e})")
    if errors:
        raise error_cls(errors)
    return Topics(businesses, aspects)


# --- question or request ---------------------------------------------------------------------

# "怎么…", "在哪…", "…吗", "为什么…": the candidate wants to know something. Such a message is
# answered; the flow or query behind the entry is offered after the answer, never started.
_QUESTION = re.compile(
    r"怎么|怎样|如何|咋|为什么|为啥|干嘛|什么|啥|哪|多久|多长|多少钱|是多少|多少[\s?？。!！]*$|几[天月号年位门个次]|"
    r"能不能|可不可以|可以不|能否|是否|要不要|需不需要|会不会|有没有|是不是|行不行|"
    r"[吗么嘛呢][\s?？。!！]*$|[?？]"
)
# "我想申请免考", "帮我查成绩", "开始毕业申请": a request to do the thing now.
_REQUEST = re.compile(r"^(?:我|请|帮我|麻烦)?(?:想要|想|要|需要|准备|开始|马上|现在)?(?:申请|办理|办|查|查询|查看|看看|看一下|"
                      r"补登|登记|绑定|解绑|修改|改|切换|开始|提交|反馈|投诉)")


def is_question(text: str) -> bool:
    """True for a question ("免考要什么材料", "怎么看站内消息", "能同时毕业两个专业吗"), False for a
    request or a bare keyword ("我想申请免考", "查成绩", "免考")."""
    t = text.strip()
    if not _QUESTION.search(t):
        return False
    # "我要查一下英语二多少分" is a request even with a question word in it; "我想问怎么…" is not.
    if _REQUEST.match(t) and not re.search(r"怎么|怎样|如何|咋|为什么|为啥|吗[\s?？。!！]*$|[?？]|什么时候|哪里|在哪", t):
        return False
    return True


# --- homophone typos ---------------------------------------------------------------------------

_HAN = re.compile(r"[\u4e00-\u9fff]")
_LATIN = re.compile(r"[a-z]")
# A pinyin syllable (letters only, as typed) right before or after Chinese characters.
_LATIN_HAN = re.compile(r"(?<![a-z0-9])([a-z]{1,6})([\u4e00-\u9fff]{1,3})")
_PINYIN_WORD = re.compile(r"(?<![a-z0-9])[a-z]{4,18}(?![a-z0-9])")
_HAN_LATIN = re.compile(r"([\u4e00-\u9fff]{1,3})([a-z]{1,6})(?![a-z0-9])")


# Question and function characters are typed on purpose, never a typo of a domain word: "一年考几次"
# reads kao ji like 考籍, "考几分" is not 考籍分 (wave 5).
_FUNCTION_CHARS = frozenset("几什么吗哪多啥谁怎呢吧了的是不没有在和也都就还要能会可前后上下里中时")


class TypoFolder:
    """Replaces a homophone typo of a domain word by the word: 免烤 -> 免考, 毕叶证 -> 毕业证, 准考正号 ->
    准考证号. Candidates type pinyin on phones, so a wrong character usually has the right sound.

    pypinyin gives each character's toneless reading; a run of characters that reads like a domain
    word, shares at least half of its characters and is not itself a word of jieba's dictionary is
    taken for that word."""

    def __init__(self, words: Iterable[str], known: dict[str, int]) -> None:
        self.by_sound: dict[tuple[str, ...], str] = {}
        self.known = known
        # Shortest first; among words that sound the same, the one jieba knows best (then by code point), so
        # the word a homophone folds to does not depend on the process's string hash seed (it did: 准考证号 or
        # 准考正号, from one start to the next).
        for w in sorted(set(words), key=lambda w: (len(w), -known.get(w, 0), w)):
            if 2 <= len(w) <= 6 and all(_HAN.match(c) for c in w):
                self.by_sound.setdefault(tuple(_pinyin(w)), w)
        self.lengths = sorted({len(k) for k in self.by_sound}, reverse=True)
        # A whole word typed as pinyin ("mima忘了", "mianKao"): the readings run together.
        self.by_spelling = {"".join(k): w for k, w in self.by_sound.items() if len("".join(k)) >= 4}
        self.words = frozenset(self.by_sound.values())

    def _holds_a_word(self, piece: str) -> bool:
        """"免考时" holds 免考 spelt right: the odd character belongs to the next word, not a typo."""
        n = len(piece)
        return any(piece[i:j] in self.words for i in range(n) for j in range(i + 2, n + 1) if j - i < n)

    def _overlaps_a_word(self, text: str, i: int, n: int) -> bool:
        """"办一下免考": 下免 reads like 下面, but its 免 starts 免考, spelt right: a run reaching into a
        domain word written correctly is no typo."""
        longest = self.lengths[0] if self.lengths else 0
        return any(text[j:j + k] in self.words
                   for j in range(i + 1, i + n) for k in range(2, longest + 1) if j + k > i + n)

    def _fold_pinyin(self, text: str) -> str:
        """"mian考" -> 免考, "bu登" -> 补登: one character of a domain word typed as its pinyin, the rest
        as characters (the input method was switched half-way)."""
        def before(m: re.Match) -> str:  # "mian" + "考..."
            latin, han = m.group(1), m.group(2)
            for n in range(min(3, len(han)), 0, -1):
                word = self.by_sound.get((latin, *_pinyin(han[:n])))
                if word is not None and word[1:] == han[:n]:
                    return word + han[n:]
            return m.group(0)

        def after(m: re.Match) -> str:  # "...免" + "kao"
            han, latin = m.group(1), m.group(2)
            for n in range(min(3, len(han)), 0, -1):
                word = self.by_sound.get((*_pinyin(han[-n:]), latin))
                if word is not None and word[:-1] == han[-n:]:
                    return han[:-n] + word
            return m.group(0)

        text = _LATIN_HAN.sub(before, text)
        return _HAN_LATIN.sub(after, text)

    def fold(self, text: str) -> str:
        if not self.by_sound or not _HAN.search(text):
            return text
        if _LATIN.search(text):
            text = _PINYIN_WORD.sub(lambda m: self.by_spelling.get(m.group(0), m.group(0)), text)
            text = self._fold_pinyin(text)
        sounds = _pinyin(text, errors=lambda s: ["?"] * len(s))
        if len(sounds) != len(text):  # defensive: keep the text as it is if readings do not line up
            return text
        out: list[str] = []
        i = 0
        while i < len(text):
            for n in self.lengths:
                if i + n > len(text):
                    continue
                word = self.by_sound.get(tuple(sounds[i:i + n]))
                piece = text[i:i + n]
                if word is None:
                    continue
                if word == piece:  # the word itself, spelt right: keep it whole
                    out.append(piece)
                    i += n
                    break
                same = sum(a == b for a, b in zip(word, piece))
                if same * 2 >= n and not self.known.get(piece) and not self._holds_a_word(piece) \
                        and not any(a != b and b in _FUNCTION_CHARS for a, b in zip(word, piece)) \
                        and not self._overlaps_a_word(text, i, n):
                    out.append(word)
                    i += n
                    break
            else:
                out.append(text[i])
                i += 1
        return "".join(out)
