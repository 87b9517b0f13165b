"""The consultation knowledge base: load and validate it, tokenise with jieba, rank with BM25, grade confidence."""
from __future__ import annotations

import logging
import math
import os
import re
import tempfile
import threading
import time
import unicodedata
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Optional

import yaml

from dialogs.faq.classifier import OUT_OF_SCOPE, NaiveBayes, features as nb_features
from dialogs.faq.confidence import DEFAULT_MODEL, ConfidenceModel, feature_values, parse_model
from dialogs.faq.facts import facts, fill
from dialogs.faq.ngrams import NgramIndex, fuse
from dialogs.faq.understand import GENERAL, Topics, TypoFolder, is_question, parse_topics

log = logging.getLogger("zikao.faq")

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_KB = PACKAGE_DIR / "kb.yaml"

# What an entry's `action` may name: flows the router starts and queries it answers from the
# candidate's own data. A name outside this set is refused when the file is validated.
ACTIONS = frozenset({
    "flow:bind", "flow:unbind", "flow:password", "flow:switch_number", "flow:profile",
    "flow:exemption", "flow:backfill", "flow:thesis", "flow:graduation", "flow:degree",
    "flow:transfer_out", "flow:feedback",
    "query:latest_scores", "query:all_scores", "query:course_score", "query:plan", "query:progress",
    "query:windows", "query:messages", "query:news", "query:orders", "query:samples", "query:contacts",
})

ENTRY_FIELDS = {"id", "topic", "business", "also", "aspect", "refer", "questions", "answer", "action", "source"}
REQUIRED_FIELDS = ("id", "questions", "answer", "source")
ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{1,63}")
MAX_ANSWER_CHARS = 300  # a phone screen: a few short lines
MAX_ANSWER_LINES = 8
MAX_QUESTION_CHARS = 80

ANSWER, SUGGEST, NONE = "answer", "suggest", "none"
# A question about something the platform's manuals do not cover (exam registration, exam rooms ...):
# the reply refers the candidate on (上海招考热线, 反馈建议, 400-0960-990); it is not an answer.
REFER = "refer"

# Placeholder tokens for things that vary from question to question but mean the same.
COURSE, ADMISSION_NO, ID_NO, MAJOR, YEAR = "@course", "@admission_no", "@id_no", "@major", "@year"
FOREIGN_COURSE = "@foreign_course"  # added beside @course for a foreign-language course
HOTLINE_TOKEN = "技术咨询"  # the canonical word (synonyms.yaml) the hotline's number stands for


class FaqError(Exception):
    """The knowledge base (or one of its data files) is invalid; `errors` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class Entry:
    id: str
    questions: tuple[str, ...]
    answer: str
    source: str
    topic: str = ""
    action: Optional[str] = None
    line: int = 0  # where the entry starts in its file, for messages to staff
    business: str = GENERAL  # topics.yaml: what the entry is about (免考, 补登, 毕业 ...)
    aspect: Optional[str] = None  # topics.yaml: what it tells (材料, 时间, 条件, 流程 ...)
    refer: bool = False  # a topic the manuals do not settle (复核, 毕业证发放 ...): the answer refers on
    # Other businesses a question about this entry may name: 补登 of an old 免考 is asked as "以前办的免考
    # 平台上没显示" (names 免考 only); such a question is ranked against this entry too.
    also: tuple[str, ...] = ()
    template: str = ""  # the answer as written in the file, {placeholders} unfilled (for editing)

    def of(self, businesses: frozenset[str]) -> bool:
        """True when the entry belongs to one of the businesses a question names."""
        return self.business in businesses or any(b in businesses for b in self.also)

    @property
    def title(self) -> str:
        """The question shown in "你是不是想问" lists."""
        return self.questions[0]


@dataclass(frozen=True)
class Course:
    code: str
    name: str


@dataclass(frozen=True)
class Scored:
    entry: Entry
    score: float
    coverage: float  # share of the question's weight (idf) that this entry's phrasings contain
    fit: float = 0.0  # idf-weighted Dice overlap of the question with this entry's closest phrasing
    # Read by the confidence model only (confidence.py); the ranking does not depend on them.
    sim: float = 0.0  # character n-gram similarity (ngrams.py) of the question with this entry
    fused: float = 0.0  # the score the list is ranked by (BM25 with the n-grams), before near-tie ordering
    nb: float = 0.0  # the second opinion's (tempered) posterior for this entry (classifier.py)
    told: float = 0.0  # share of the question's weight found in the entry's phrasings or its answer
    lacks: float = 0.0  # the heaviest question word in neither, as a share of the largest idf ("支付宝")
    base_rank: int = 0  # where BM25 with the n-grams alone ranked it (0: first), before the second opinion


@dataclass(frozen=True)
class Match:
    """The outcome of one question: answer (one entry), suggest (up to 3) or none."""

    kind: str
    text: str
    entry: Optional[Entry] = None  # set when kind == "answer" (or "refer": the referral entry)
    suggestions: tuple[Entry, ...] = ()  # set when kind == "suggest"
    course: Optional[Course] = None  # a course named in the question ("英语二" -> 00015)
    ranked: tuple[Scored, ...] = ()  # the best few, for logs and the evaluation
    tokens: tuple[str, ...] = ()
    businesses: frozenset[str] = frozenset()  # businesses the question names
    aspects: frozenset[str] = frozenset()  # aspects it asks about
    unknown: tuple[str, ...] = ()  # its words the knowledge base never uses ("退" in "怎么退考")
    posterior: Optional[dict] = None  # the second opinion (classifier.py): entry id (or OUT_OF_SCOPE) -> probability
    tempered: Optional[dict] = None  # ... its softer reading (NaiveBayes.posteriors)
    outside: Optional[float] = None  # the two-class second opinion: how likely the question is out of scope

    @property
    def action(self) -> Optional[str]:
        return self.entry.action if self.kind == ANSWER and self.entry else None

    @property
    def suggestion_ids(self) -> tuple[str, ...]:
        return tuple(e.id for e in self.suggestions)


@dataclass(frozen=True)
class Thresholds:
    """Confidence classes, tuned on the dev split (bench/faq_eval.py --tune), never on the eval set.

    answer:  the question equals one phrasing (fit 1), or coverage >= answer_coverage, fit >= answer_fit
             and runner-up score <= answer_ratio * best score (never for a lone word that is not a phrasing),
             or one of the slot, business, lead and fit rules below (docs/faq.md "How matching works")
    suggest: coverage >= suggest_coverage (the best three whose score is >= suggest_floor * best)
    none:    anything else
    """

    answer_coverage: float = 0.75  # wave 4: 0.8 -> 0.75 (more right on seen, seen2, dev; no more wrong)
    answer_fit: float = 0.0
    answer_ratio: float = 0.8
    suggest_coverage: float = 0.4
    suggest_floor: float = 0.15
    # Slot rule: the question names the business and the aspect of the best entry, and no close
    # runner-up has the same business and an aspect asked about: answer from this coverage on.
    slot_coverage: float = 0.4
    slot_ratio: float = 0.6
    # Business rule: the question names the best entry's business, coverage >= business_coverage and
    # the runner-up <= business_ratio * best (0.5: chosen on dev, eval and seen together, wave 3).
    business_coverage: float = 0.5
    business_ratio: float = 0.7
    slot_fit: float = 0.8  # ... and fits the question nearly as well (a runner-up about 毕业证 does not
    #                         block "免考要什么材料")
    # Lead rule: the question names a business and the best entry is of it (or fits every business,
    # 通用, and tells the aspect asked: photo rules for "补登要传什么照片"), it covers half the question,
    # fits it somewhat, and leads the runner-up clearly (chosen on dev + seen: more right answers at
    # the same wrong rate).
    lead_coverage: float = 0.5
    lead_ratio: float = 0.6
    lead_fit: float = 0.3
    # Fit rule: the question reads much like one phrasing (idf-weighted Dice ≥ fit_min), the entry
    # covers most of it, no other entry has a phrasing nearly as close (fit at least fit_gap lower),
    # and it has no word the knowledge base never uses: "凭证照片有什么要求" is the photo rules even when
    # 补登's materials score close, but "怎么退考" is not "我考得怎么样".
    fit_min: float = 0.65  # wave 4: 0.7 -> 0.65 (same)
    fit_coverage: float = 0.6
    fit_gap: float = 0.2
    fit_ratio: float = 0.9  # ... and the runner-up scores at most this share of the best (wave 4)


@dataclass(frozen=True)
class Params:
    """Ranking parameters (BM25 and its inputs), also tuned on the dev split."""

    k1: float = 0.6
    b: float = 0.1
    union_weight: float = 0.6  # weight of the entry's all-phrasings document beside its best phrasing
    dice_weight: float = 1.0  # how much a phrasing's score depends on matching the question as a whole
    unknown_idf: float = 0.75  # weight (as a share of the largest idf) of a question word the KB never uses ...
    unknown_power: float = 2.0  # ... times its rarity in general Chinese (jieba's counts) to this power
    hmm: bool = False  # jieba's HMM guesses new words; off: typos split into known single characters
    aspect_boost: float = 0.35  # an entry telling the aspect asked about scores this much higher
    also_weight: float = 0.85  # an entry ranked for a business listed in its `also` only
    # Character n-grams (dialogs/faq/ngrams.py) fused with BM25 (issue 17, wave 5): an entry's score
    # becomes BM25 + ngram_weight * (the question's best BM25 score) * (n-gram cosine), and the list is
    # ranked by it; with ngram_score "bm25" each entry keeps its BM25 score for grade(), so the
    # thresholds mean what they did and a reordered list (first below the runner-up on BM25) is never
    # answered on the runner-up rules. Chosen by leave-one-set-out over dev1, dev2, eval, seen, seen2
    # (`python -m bench.faq_ngram`, docs/faq.md): the best mean top-1 on four sets with right not lower
    # and wrong not higher on any of them; four folds chose these orders, within-word n-grams, union
    # 0.5 and BM25 scores, at weights 1.0-1.5 (the fifth: cross-word n-grams, 2.0). 1.2, the folds'
    # median, raises top-1 on all five sets, lowers right on none and raises wrong on none.
    ngram_weight: float = 1.2  # 0 turns the signal off
    ngram_orders: tuple[int, ...] = (1, 2)  # characters and character pairs
    ngram_cross: bool = False  # n-grams within each token (True: across tokens too)
    ngram_union_weight: float = 0.5  # the entry's all-phrasings vector beside its best phrasing
    ngram_mode: str = "add"  # or "mult" (see ngrams.fuse)
    ngram_floor: float = 0.3  # an entry BM25 did not reach enters the list from this similarity (and
    #                           union cosine) on (0 to 1.1: the same figures on all five sets; 0.3 keeps
    #                           the list short: time)
    ngram_score: str = "bm25"  # what grade() reads as Scored.score: BM25's ("bm25") or the fused score
    # The second opinion (classifier.py, wave 6): naive Bayes over the phrasings and examples.yaml. The list
    # is ordered by nb_mix * (fused score / the best fused score) + (1 - nb_mix) * log(posterior) / 10 over
    # the ranking's best few and the classifier's best three; 1.0 turns it off (the posterior is still
    # computed for the confidence model). 0.3 to 0.7 ranked the same on the training sets (each left out of
    # what the classifier learned) and the validation sets (docs/faq.md "Examples and the second opinion").
    nb_mix: float = 0.5
    nb_alpha: float = 0.05  # additive smoothing
    thresholds: Thresholds = field(default_factory=Thresholds)


DEFAULT_PARAMS = Params()


# ---------------------------------------------------------------------------------- data files

@dataclass(frozen=True)
class FaqFiles:
    """The files one index is built from. Only the knowledge base usually moves; the rest ship with the package."""

    kb: Path = DEFAULT_KB
    synonyms: Path = PACKAGE_DIR / "synonyms.yaml"
    userdict: Path = PACKAGE_DIR / "userdict.txt"
    stopwords: Path = PACKAGE_DIR / "stopwords.txt"
    courses: Path = PACKAGE_DIR / "courses.txt"
    topics: Path = PACKAGE_DIR / "topics.yaml"
    # The learned confidence model (confidence.py, fitted by bench/faq_calibrate.py); without the
    # file (or with None: calibration) the hand-written rules alone decide.
    confidence: Optional[Path] = DEFAULT_MODEL
    # Labelled candidate questions the second opinion learns from (classifier.py; written by
    # `python -m bench.faq_examples` from the development sets; staff may add their own). None: phrasings only.
    examples: Optional[Path] = PACKAGE_DIR / "examples.yaml"

    @classmethod
    def with_kb(cls, kb: str | os.PathLike | None) -> "FaqFiles":
        """The package's files with another knowledge base; its examples are the examples.yaml beside it (none
        when there is none: the package's examples name the package's entries)."""
        if kb is None:
            return cls()
        beside = Path(kb).with_name("examples.yaml")
        return cls(kb=Path(kb), examples=beside if beside.exists() else None)

    def all(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.kb, self.synonyms, self.userdict, self.stopwords, self.courses, self.topics,
                                 self.confidence, self.examples) if p is not None)

    def stamp(self) -> tuple:
        """What changes when any of the files changes (modification time and size)."""
        out = []
        for p in self.all():
            try:
                st = p.stat()
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers where each mapping starts and refuses duplicate keys."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    mapping = loader.construct_mapping(node, deep=deep)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FaqError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise FaqError([f"{path}: cannot read ({e})"]) from None
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise FaqError([f"{where}: YAML syntax error: {problem}"]) from None


def strip_lines(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: strip_lines(v) for k, v in obj.items() if k != "__line__"}
    if isinstance(obj, list):
        return [strip_lines(v) for v in obj]
    return obj


def parse_entries(path: Path) -> list[Entry]:
    """Read and check the knowledge base file (not yet its phrasings' tokens: see build_index)."""
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise FaqError([f"{path}: expected a mapping with an 'entries:' list"])
    unknown_top = set(data) - {"version", "entries", "__line__"}
    errors = [f"{path}: unknown top-level key {k!r}" for k in sorted(unknown_top)]
    entries: list[Entry] = []
    first_line: dict[str, int] = {}
    for n, raw in enumerate(data["entries"], 1):
        if not isinstance(raw, dict):
            errors.append(f"{path}: entry #{n}: expected a mapping (id, questions, answer, source ...)")
            continue
        line = raw.get("__line__", 0)
        eid = raw.get("id")
        label = f"{path}:{line}: entry {eid!r}" if isinstance(eid, str) else f"{path}:{line}: entry #{n}"
        problems: list[str] = []
        for k in sorted(set(raw) - ENTRY_FIELDS - {"__line__"}):
            problems.append(f"unknown field {k!r} (allowed: {', '.join(sorted(ENTRY_FIELDS))})")
        for k in REQUIRED_FIELDS:
            if raw.get(k) in (None, "", []):
                problems.append(f"missing field {k!r}")
        if isinstance(eid, str) and eid:
            if not ID_RE.fullmatch(eid):
                problems.append("id: lower-case letters, digits and '-' only (2-64 characters)")
            elif eid in first_line:
                problems.append(f"duplicate id (first used at line {first_line[eid]})")
            else:
                first_line[eid] = line
        elif eid not in (None, ""):
            problems.append("id must be text")
        questions = raw.get("questions")
        if questions not in (None, "", []):
            if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
                problems.append("questions: expected a list of texts")
                questions = []
            else:
                questions = [q.strip() for q in questions]
                if len(questions) < 2:
                    problems.append("questions: give at least two ways of asking")
                for q in questions:
                    if not q:
                        problems.append("questions: an empty question")
                    elif len(q) > MAX_QUESTION_CHARS:
                        problems.append(f"questions: {q[:20]!r}... is longer than {MAX_QUESTION_CHARS} characters")
        answer = raw.get("answer")
        template = answer.strip() if isinstance(answer, str) else ""
        if answer not in (None, ""):
            if not isinstance(answer, str):
                problems.append("answer must be text")
            else:
                answer, unknown = fill(answer.strip())
                for name in unknown:
                    problems.append(f"answer: unknown placeholder {{{name}}} (known: {', '.join(sorted(facts()))})")
                if len(answer) > MAX_ANSWER_CHARS:
                    problems.append(f"answer: {len(answer)} characters, at most {MAX_ANSWER_CHARS} fit a phone screen")
                if answer.count("\n") + 1 > MAX_ANSWER_LINES:
                    problems.append(f"answer: more than {MAX_ANSWER_LINES} lines")
        action = raw.get("action")
        if action is not None and action not in ACTIONS:
            problems.append(f"unknown action {action!r} (known: {', '.join(sorted(ACTIONS))})")
        if raw.get("refer") not in (None, True, False):
            problems.append("refer must be true or false")
        for k in ("source", "topic", "business", "aspect"):
            if raw.get(k) is not None and not isinstance(raw.get(k), str):
                problems.append(f"{k} must be text")
        also = raw.get("also") or []
        if not isinstance(also, list) or not all(isinstance(b, str) and b.strip() for b in also):
            problems.append("also: expected a list of businesses")
            also = []
        if problems:
            errors.extend(f"{label}: {p}" for p in problems)
            continue
        entries.append(Entry(
            id=eid, questions=tuple(questions), answer=answer, source=raw["source"].strip(),
            topic=(raw.get("topic") or "").strip(), action=action, line=line,
            business=(raw.get("business") or GENERAL).strip(), aspect=(raw.get("aspect") or "").strip() or None,
            refer=bool(raw.get("refer")), also=tuple(b.strip() for b in also), template=template,
        ))
    if errors:
        raise FaqError(errors)
    if not entries:
        raise FaqError([f"{path}: no entries"])
    return entries


def parse_synonyms(path: Path) -> dict[str, tuple[str, ...]]:
    """variant -> canonical token(s), lower-case; a canonical word maps to itself.

    A canonical key with spaces stands for several tokens ("多少 成绩": [几分]); its variants
    map to all of them.
    """
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise FaqError([f"{path}: expected a mapping of canonical word: [variants]"])
    out: dict[str, tuple[str, ...]] = {}
    where: dict[str, str] = {}
    errors = []
    for canon, variants in strip_lines(data).items():
        if not isinstance(canon, (str, int)) or not isinstance(variants, list) or not variants:
            errors.append(f"{path}: {canon!r}: expected a non-empty list of variants")
            continue
        canon_n = tuple(normalize(str(canon)).split())
        words = [*variants] if len(canon_n) > 1 else [canon, *variants]
        for word in words:
            w = normalize(str(word))
            if not w or " " in w:
                errors.append(f"{path}: {canon!r}: variant {word!r} is empty or contains a space")
                continue
            if w in out and out[w] != canon_n:
                errors.append(f"{path}: {word!r} is in two groups ({where[w]!r} and {canon!r})")
                continue
            out[w] = canon_n
            where[w] = str(canon)
    if errors:
        raise FaqError(errors)
    return out


def _text_lines(path: Path) -> Iterable[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FaqError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise FaqError([f"{path}: cannot read ({e})"]) from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield n, line


def parse_stopwords(path: Path) -> frozenset[str]:
    return frozenset(normalize(line) for _, line in _text_lines(path))


def parse_userdict(path: Path) -> list[tuple[str, Optional[int], Optional[str]]]:
    out, errors = [], []
    for n, line in _text_lines(path):
        parts = line.split()
        freq: Optional[int] = None
        tag: Optional[str] = None
        if len(parts) > 3:
            errors.append(f"{path}:{n}: expected 'word [frequency] [tag]'")
            continue
        for extra in parts[1:]:
            if extra.isdigit():
                freq = int(extra)
            elif re.fullmatch(r"[a-z]+", extra):
                tag = extra
            else:
                errors.append(f"{path}:{n}: {extra!r} is neither a frequency nor a part-of-speech tag")
        out.append((normalize(parts[0]), freq, tag))
    if errors:
        raise FaqError(errors)
    return out


def parse_courses(path: Path) -> list[tuple[Course, tuple[str, ...]]]:
    out, errors, seen = [], [], {}
    for n, line in _text_lines(path):
        parts = line.split()
        if len(parts) < 2 or not re.fullmatch(r"\d{5}", parts[0]):
            errors.append(f"{path}:{n}: expected '5-digit code, name, [short names ...]'")
            continue
        course = Course(parts[0], parts[1])
        names = tuple(dict.fromkeys(normalize(p) for p in parts[1:]))
        for name in names:
            if name in seen and seen[name] != course.code:
                errors.append(f"{path}:{n}: {name!r} already names course {seen[name]}")
            seen[name] = course.code
        out.append((course, names))
    if errors:
        raise FaqError(errors)
    return out


@dataclass(frozen=True)
class Example:
    """A labelled candidate question (examples.yaml): which set it came from, the entry it is about (or
    classifier.OUT_OF_SCOPE) and its text."""

    source: str
    label: str
    text: str


def parse_examples(path: Optional[Path]) -> list[Example]:
    """examples.yaml: `sources: {set name: {entry id or out_of_scope: [questions]}}`; no file, no examples.
    Entry ids are checked against the knowledge base when the index is built."""
    if path is None or not path.exists():
        return []
    data = strip_lines(read_yaml(path))
    if not isinstance(data, dict) or not isinstance(data.get("sources"), dict):
        raise FaqError([f"{path}: expected a mapping with 'sources:' (set name: {{entry id: [questions]}})"])
    out, errors = [], []
    for source, labels in data["sources"].items():
        if not isinstance(labels, dict):
            errors.append(f"{path}: source {source!r}: expected a mapping of entry id: [questions]")
            continue
        for label, texts in labels.items():
            if not isinstance(texts, list) or not all(isinstance(t, str) and t.strip() for t in texts):
                errors.append(f"{path}: {source}/{label}: expected a list of questions")
                continue
            label = OUT_OF_SCOPE if label == "out_of_scope" else str(label)
            out += [Example(str(source), label, t) for t in texts]
    if errors:
        raise FaqError(errors)
    return out


# ---------------------------------------------------------------------------------- analysis

_CET = re.compile(r"(cet|pets)\s*[-_]?\s*([1-6])")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Full-width to half-width (NFKC), lower case, "CET 4"/"cet-4" -> "cet4", spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _CET.sub(r"\1\2", text)
    return _SPACES.sub(" ", text).strip()


_ENTITY = re.compile(
    r"(?<![a-z0-9])(?:"
    r"(?P<hotline>400[- ]?0960[- ]?990)"
    r"|(?P<id>\d{17}[\dx])"
    r"|(?P<adm>\d{12})"
    r"|(?P<major>\d{6}[kt]?)"
    r"|(?P<code>\d{5})"
    r"|(?P<year>(?:19|20)\d\d)"
    r"|(?P<num>\d+(?:\.\d+)?)"
    r")(?![a-z0-9])"
)
_WORD = re.compile(r"\w")
# "取消这个微信的绑定", "解除微信绑定": the words that undo 绑定 stand apart from it; read them as 解绑
# (a bag of words would otherwise take the question for one about binding).
_UNDO_BINDING = re.compile(r"(?:取消|解除)(.{0,8}?)(?:的)?绑定")
# An application that "failed" was not approved ("转出失败了"); an upload or payment that failed is another matter.
_FAILED = re.compile(r"(审核|申请|办理|转出|转入|免考|毕业|补登|论文|学位|提交)(了)?失败")
# A dash standing alone ("成绩那栏是 - 什么意思"): the score pages' 横杠, which would be dropped as punctuation.
_DASH = re.compile(r"(?:(?<=[\s\u4e00-\u9fff])|^)[-—–－~]+(?=[\s\u4e00-\u9fff]|$)")
# Moving one's records to or from a named province ("转到江苏去考", "从浙江转到上海"): the province
# is folded to 外省 only as a token, so the phrase is read here as the business it names (wave 5).
_PROVINCES = ("北京|天津|河北|山西|内蒙古|辽宁|吉林|黑龙江|江苏|浙江|安徽|福建|江西|山东|河南|湖北|湖南|广东|广西|"
              "海南|重庆|四川|贵州|云南|西藏|陕西|甘肃|青海|宁夏|新疆|外地|外省|别的省|其他省|老家|"
              "杭州|南京|苏州|无锡|宁波|合肥|广州|深圳|成都|武汉|长沙|郑州|西安|济南|青岛|厦门|福州|南昌|沈阳|哈尔滨")
_MOVE_OUT = re.compile(rf"(?<!从)(?:转|迁)(?:到|去|往|至)({_PROVINCES})|(?:回|去|到)({_PROVINCES})(?=.{{0,4}}考)")
_MOVE_IN = re.compile(rf"(?:从)?({_PROVINCES})(?:转|迁)(?:到|来|回|入|进)(?:上海|本市|这边|这里)?|(?:转|迁)(?:到|来|回)(?:上海|本市)()")

_jieba_lock = threading.Lock()
_base_dicts: dict[str, tuple[dict, int]] = {}


def _base_dictionary(cache_dir: str) -> tuple[dict, int]:
    """jieba's main dictionary, loaded once per process (from its cache file in `cache_dir`)."""
    with _jieba_lock:
        got = _base_dicts.get(cache_dir)
        if got is None:
            import jieba  # here, not at import: the service starts answering before the FAQ is built

            # jieba logs every initialisation at DEBUG to stderr; keep its warnings only.
            jieba.setLogLevel(logging.WARNING)
            try:
                Path(cache_dir).mkdir(parents=True, exist_ok=True)
            except OSError:
                log.warning("jieba cache directory %s is not writable; jieba will rebuild its dictionary", cache_dir)
            t = jieba.Tokenizer()
            t.tmp_dir = cache_dir  # the cache file is <cache_dir>/jieba.cache
            started = time.perf_counter()
            t.initialize()
            log.info("jieba dictionary loaded in %.2f s (cache in %s)", time.perf_counter() - started, cache_dir)
            got = (t.FREQ, t.total)
            _base_dicts[cache_dir] = got
        return got


def default_cache_dir() -> str:
    return os.path.join(tempfile.gettempdir(), "zikao-bot-jieba")


class Analyzer:
    """Text -> tokens: entities to placeholders, courses recognised, jieba, stop words out, synonyms folded."""

    def __init__(self, *, synonyms: dict[str, tuple[str, ...]], stopwords: frozenset[str],
                 userdict: list[tuple[str, Optional[int], Optional[str]]],
                 courses: list[tuple[Course, tuple[str, ...]]], cache_dir: str, hmm: bool = False) -> None:
        self.synonyms = synonyms
        self.stopwords = stopwords
        self.hmm = hmm
        freq, total = _base_dictionary(cache_dir)
        import jieba

        tok = jieba.Tokenizer()
        # A private copy of the main dictionary: user words of one knowledge base version never leak
        # into another, and no other jieba user in the process sees them.
        tok.FREQ, tok.total, tok.initialized = dict(freq), total, True
        tok.tmp_dir = cache_dir
        for word, f, tag in userdict:
            tok.add_word(word, f, tag)
        for word in synonyms:
            # A variant the main dictionary knows only as a rare word (转来: 3) is still split ("转"
            # + "来"): raise it to the frequency that keeps it whole.
            if not tok.FREQ.get(word) or (len(word) > 1 and tok.FREQ[word] < tok.suggest_freq(word, False)):
                tok.add_word(word)
        self.tokenizer = tok
        # Homophone typos of the domain's own words (免烤 -> 免考), see understand.TypoFolder.
        domain = [w for w, _, _ in userdict] + list(synonyms) + [t for toks in synonyms.values() for t in toks]
        self.typos = TypoFolder(domain, tok.FREQ)
        self.course_of: dict[str, Course] = {}
        for course, names in courses:
            for name in names:
                self.course_of[name] = course
            self.course_of.setdefault(course.code, course)
        names = sorted((n for n in self.course_of if not n.isdigit()), key=len, reverse=True)
        # "公共英语二级" is PETS-2, not the course 英语(二): a course name right before 级 is not the course.
        self._course_re = re.compile("(?:" + "|".join(map(re.escape, names)) + ")(?!级)") if names else None

    def prepare(self, text: str) -> str:
        """Normalised, with homophone typos of domain words corrected: what the rest works on."""
        text = _UNDO_BINDING.sub(r"解绑\1", self.typos.fold(_DASH.sub("横杠", normalize(text))))
        text = _FAILED.sub(r"\1\2没通过", text)
        text = _MOVE_OUT.sub(lambda m: f"转出{m.group(1) or m.group(2)}", text)  # the province stays: 外省 is a word of 转出's phrasings
        return _MOVE_IN.sub(lambda m: f"{m.group(1) or m.group(2)}转入", text)

    def analyze(self, text: str, *, prepared: bool = False) -> tuple[list[str], Optional[Course]]:
        text = text if prepared else self.prepare(text)
        course: Optional[Course] = None
        marker = "\x00"

        def course_token(c: Course) -> str:
            # A foreign-language course (英语(二) ...) is what CET/PETS exemptions are about: it is
            # told apart from other courses, so "线性代数能免吗" does not read like "英语二能免吗".
            return f"{marker}{COURSE}{marker}{marker}{FOREIGN_COURSE}{marker}" if "英语" in c.name else f"{marker}{COURSE}{marker}"

        def sub_course(m: re.Match) -> str:
            nonlocal course
            found = self.course_of[m.group(0)]
            course = course or found
            return course_token(found)

        def sub_entity(m: re.Match) -> str:
            nonlocal course
            kind = m.lastgroup
            if kind == "code":
                found = self.course_of.get(m.group(0)) or Course(m.group(0), "")
                course = course or found
                return course_token(found)
            if kind == "num":
                return " "  # a bare number ("59分", "3个") says nothing about the topic
            if kind == "hotline":  # the manuals' 技术咨询 number: a question about it is about 技术咨询
                return f"{marker}{HOTLINE_TOKEN}{marker}"
            token = {"id": ID_NO, "adm": ADMISSION_NO, "major": MAJOR, "year": YEAR}[kind]
            return f"{marker}{token}{marker}"

        if self._course_re is not None:
            text = self._course_re.sub(sub_course, text)
        text = _ENTITY.sub(sub_entity, text)
        tokens: list[str] = []
        for n, piece in enumerate(text.split(marker)):
            if n % 2:
                tokens.append(piece)
                continue
            for word in self.tokenizer.cut(piece, HMM=self.hmm):
                word = word.strip()
                if not word or not _WORD.search(word):
                    continue
                for token in self.synonyms.get(word, (word,)):
                    if token not in self.stopwords:
                        tokens.append(token)
        return tokens, course

    def tokens(self, text: str) -> list[str]:
        return self.analyze(text)[0]

    def masked(self, prepared: str) -> str:
        """A prepared text without its courses and entities (numbers, years, ID numbers ...), which its tokens
        name as placeholders (@course, @foreign_course ...): what the second opinion reads as characters, so
        that "马原能免考吗" does not read like "英语二能免考吗"."""
        if self._course_re is not None:
            prepared = self._course_re.sub(" ", prepared)
        return _ENTITY.sub(" ", prepared)


# ---------------------------------------------------------------------------------- ranking

class FaqIndex:
    """One validated knowledge base, ready to answer. Immutable: a reload builds a new one."""

    def __init__(self, entries: list[Entry], analyzer: Analyzer, params: Params = DEFAULT_PARAMS,
                 files: Optional[FaqFiles] = None, topics: Optional[Topics] = None,
                 confidence: Optional[ConfidenceModel] = None, examples: Iterable[Example] = ()) -> None:
        self.entries = entries
        self.examples = tuple(examples)
        self.confidence = confidence  # None: the hand-written rules decide (see grade)
        self.topics = topics or Topics({GENERAL: _general()}, {})
        self.by_id = {e.id: e for e in entries}
        self._position = {e.id: i for i, e in enumerate(entries)}
        self.analyzer = analyzer
        self.params = params
        self.files = files
        errors: list[str] = []
        seen: dict[tuple, tuple[Entry, str]] = {}
        # One document per phrasing (its owner's index, term counts, length) ...
        self._docs: list[tuple[int, Counter, int]] = []
        # ... and one per entry with all its phrasings' words, for coverage and a small bonus.
        self._entry_terms: list[Counter] = []
        phrasing_tokens: list[tuple[int, list[str]]] = []  # for the n-gram index
        for i, e in enumerate(entries):
            union: Counter = Counter()
            where = f"{files.kb if files else 'kb'}:{e.line}: entry {e.id!r}"
            for b in (e.business, *e.also):
                if b not in self.topics.businesses:
                    errors.append(f"{where}: unknown business {b!r} "
                                  f"(topics.yaml has: {', '.join(self.topics.businesses)})")
            if e.aspect is not None and self.topics.aspects and e.aspect not in self.topics.aspects:
                errors.append(f"{where}: unknown aspect {e.aspect!r} (topics.yaml has: {', '.join(self.topics.aspects)})")
            for q in e.questions:
                toks = analyzer.tokens(q)
                if not toks:
                    errors.append(f"{where}: question {q!r} has no words left after stop words")
                    continue
                key = tuple(sorted(toks))
                other = seen.get(key)
                if other and other[0].id != e.id:
                    errors.append(f"{where}: question {q!r} reads the same as {other[1]!r} of entry "
                                  f"{other[0].id!r} (line {other[0].line}); make them differ or merge the entries")
                seen.setdefault(key, (e, q))
                tf = Counter(toks)
                self._docs.append((i, tf, len(toks)))
                phrasing_tokens.append((i, toks))
                for t in tf:
                    union[t] = max(union[t], tf[t])
            self._entry_terms.append(union)
        # Examples of an entry kb.yaml no longer has are left out (a warning, not an error: deleting an entry
        # must not need an edit of examples.yaml; `python -m bench.faq_examples` rewrites it).
        orphans = sorted({x.label for x in self.examples if x.label != OUT_OF_SCOPE and x.label not in self.by_id})
        if orphans:
            log.warning("FAQ: examples.yaml names entries kb.yaml does not have (left out): %s", ", ".join(orphans))
            self.examples = tuple(x for x in self.examples if x.label == OUT_OF_SCOPE or x.label in self.by_id)
        if errors:
            raise FaqError(errors)
        n = len(entries)
        df: Counter = Counter()
        for union in self._entry_terms:
            df.update(union.keys())
        # idf over entries, not phrasings: an entry with many phrasings must not dilute its own words.
        self.idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
        self.max_idf = math.log(1 + (n + 0.5) / 0.5)
        self._avg_len = sum(d[2] for d in self._docs) / len(self._docs)
        self._avg_union = sum(sum(u.values()) for u in self._entry_terms) / n
        self._postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for d, (_, tf, _) in enumerate(self._docs):
            for t, c in tf.items():
                self._postings[t].append((d, c))
        self._union_postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for i, union in enumerate(self._entry_terms):
            for t, c in union.items():
                self._union_postings[t].append((i, c))
        self._union_len = [sum(u.values()) for u in self._entry_terms]
        self._doc_mass = [sum(self.idf[t] for t in tf) for _, tf, _ in self._docs]
        self._ngrams = NgramIndex(phrasing_tokens, n, orders=params.ngram_orders, cross=params.ngram_cross,
                                  union_weight=params.ngram_union_weight) if params.ngram_weight else None
        # The words each entry's answer says (with its phrasings: what a question may ask of it).
        self._told = [frozenset(analyzer.tokens(e.answer)) for e in entries]
        # The second opinion (classifier.py): every phrasing and every example, one bag of features each.
        bags = [self._bag(q) for e in entries for q in e.questions] + [self._bag(x.text) for x in self.examples]
        labels = [e.id for e in entries for q in e.questions] + [x.label for x in self.examples]
        self.nb = NaiveBayes(bags, labels, params.nb_alpha)
        # ... and a two-class one: in the knowledge base's scope or not (the many-class model's out-of-scope
        # class is one among 140; asked alone the question is clearer).
        self.scope = NaiveBayes(bags, ["out" if lab == OUT_OF_SCOPE else "in" for lab in labels], params.nb_alpha)

    def _bag(self, text: str) -> Counter:
        prepared = self.analyzer.prepare(text)
        return nb_features(self.analyzer.masked(prepared), self.analyzer.analyze(prepared, prepared=True)[0])

    @classmethod
    def load(cls, files: FaqFiles | None = None, *, cache_dir: str | None = None,
             params: Params = DEFAULT_PARAMS) -> "FaqIndex":
        """Read and validate every file; raises FaqError listing all problems."""
        files = files or FaqFiles()
        errors: list[str] = []
        parts = {}
        for name, parse, path in (("entries", parse_entries, files.kb), ("synonyms", parse_synonyms, files.synonyms),
                                  ("stopwords", parse_stopwords, files.stopwords),
                                  ("userdict", parse_userdict, files.userdict), ("courses", parse_courses, files.courses),
                                  ("topics", _parse_topics, files.topics),
                                  ("confidence", parse_confidence, files.confidence),
                                  ("examples", parse_examples, files.examples)):
            try:
                parts[name] = parse(path)
            except FaqError as e:
                errors.extend(e.errors)
        if errors:
            raise FaqError(errors)
        synonym_words = set(parts["synonyms"]) | {t for toks in parts["synonyms"].values() for t in toks}
        bad_stop = sorted(synonym_words & parts["stopwords"])
        if bad_stop:
            raise FaqError([f"{files.stopwords}: {w!r} is a stop word and also in {files.synonyms.name}"
                            for w in bad_stop])
        analyzer = Analyzer(synonyms=parts["synonyms"], stopwords=parts["stopwords"], userdict=parts["userdict"],
                            courses=parts["courses"], cache_dir=cache_dir or default_cache_dir(), hmm=params.hmm)
        return cls(parts["entries"], analyzer, params, files, parts["topics"], parts["confidence"], parts["examples"])

    def with_params(self, params: Params) -> "FaqIndex":
        """The same knowledge base ranked with other parameters (for tuning)."""
        if params.hmm != self.analyzer.hmm:
            analyzer = Analyzer.__new__(Analyzer)
            analyzer.__dict__.update(self.analyzer.__dict__)
            analyzer.hmm = params.hmm
        else:
            analyzer = self.analyzer
        return FaqIndex(self.entries, analyzer, params, self.files, self.topics, self.confidence, self.examples)

    def with_examples(self, keep: Callable[[Example], bool]) -> "FaqIndex":
        """The same knowledge base whose second opinion learned only the examples kept (calibration leaves one
        set out at a time)."""
        return FaqIndex(self.entries, self.analyzer, self.params, self.files, self.topics, self.confidence,
                        [x for x in self.examples if keep(x)])

    def with_confidence(self, model: Optional[ConfidenceModel]) -> "FaqIndex":
        """The same index graded with another confidence model (None: the rules alone), for calibration."""
        other = FaqIndex.__new__(FaqIndex)
        other.__dict__.update(self.__dict__)
        other.confidence = model
        return other

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, entry_id: str) -> Optional[Entry]:
        return self.by_id.get(entry_id)

    def _unknown_weight(self, token: str) -> float:
        """A word the knowledge base never uses: common words ("知道", "出来") weigh little, rare ones
        ("公积金") much, so that off-topic questions lose coverage but chatty ones keep it."""
        freq = self.analyzer.tokenizer.FREQ.get(token) or 0
        total = self.analyzer.tokenizer.total
        rarity = math.log(total / (freq + 1)) / math.log(total)
        return self.params.unknown_idf * self.max_idf * rarity ** self.params.unknown_power

    def _bm25(self, tf: int, length: int, avg: float) -> float:
        k1, b = self.params.k1, self.params.b
        return tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avg))

    def rank(self, tokens: list[str], limit: int = 5, *, businesses: frozenset[str] = frozenset(),
             aspects: frozenset[str] = frozenset(), posterior: Optional[dict] = None) -> list[Scored]:
        """The best entries for a question's tokens. A question naming businesses is only ranked
        against entries of those businesses (and of 通用); entries telling an aspect asked about
        score higher. With the second opinion's posterior (classifier.py), the list is reordered by it
        too (Params.nb_mix)."""
        terms = list(dict.fromkeys(tokens))
        if not terms:
            return []
        weight = {t: self.idf[t] if t in self.idf else self._unknown_weight(t) for t in terms}
        total = sum(weight.values()) or 1.0
        best: dict[int, float] = {}
        fit: dict[int, float] = defaultdict(float)
        doc_scores: dict[int, float] = defaultdict(float)
        overlap: dict[int, float] = defaultdict(float)
        for t in terms:
            idf = self.idf.get(t)
            if idf is None:
                continue
            for d, c in self._postings[t]:
                doc_scores[d] += idf * self._bm25(c, self._docs[d][2], self._avg_len)
                overlap[d] += idf
        dw = self.params.dice_weight
        for d, s in doc_scores.items():
            # Dice overlap (idf-weighted) of question and phrasing: a phrasing that says the same
            # thing and no more beats a long one that merely contains the question's words.
            dice = 2 * overlap[d] / (total + self._doc_mass[d])
            s *= 1 - dw + dw * dice
            i = self._docs[d][0]
            if s > best.get(i, 0.0):
                best[i] = s
            fit[i] = max(fit[i], dice)
        uw = self.params.union_weight
        if uw:
            for t in terms:
                idf = self.idf.get(t)
                if idf is None:
                    continue
                for i, c in self._union_postings[t]:
                    if i in best:
                        best[i] += uw * idf * self._bm25(c, self._union_len[i], self._avg_union)
        plain: Optional[dict[int, float]] = None
        sims: dict[int, float] = {}
        if self._ngrams is not None:
            # Character n-grams (ngrams.py): typos, other segmentations, partial words. Only the
            # score moves; coverage and fit below stay word-based.
            plain = best
            floor = self.params.ngram_floor
            sims = self._ngrams.scores(tokens, best, floor)
            best = fused = fuse(best, sims, self.params.ngram_weight, self.params.ngram_mode, floor)
        if businesses:
            best = {i: s for i, s in best.items()
                    if self.entries[i].of(businesses) or self.entries[i].business == GENERAL}
            # An entry let in by `also` only (补登 of an old 免考 for a 免考 question) ranks a little
            # below the named business's own entries: "免考可以撤回吗" is about 免考 itself.
            also = self.params.also_weight
            best = {i: s * also if self.entries[i].business not in businesses and self.entries[i].business != GENERAL
                    else s for i, s in best.items()}
        if aspects:
            boost = 1 + self.params.aspect_boost
            best = {i: s * boost if self.entries[i].aspect in aspects else s for i, s in best.items()}
        top = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:limit + TIE_POOL]
        ranked = []
        for i, s in top:
            ranked.append((i, s, self._coverage(i, weight, total)))
        # Near ties (within TIE_MARGIN of the score) go to the entry whose phrasings hold more of the
        # question (wave 5): "学历认证报告在哪里办" ties the evidence-fields entry, which lacks 申请.
        ranked.sort(key=lambda x: -x[1] * (1 + TIE_MARGIN * x[2]))
        base_rank = {i: r for r, (i, _, _) in enumerate(ranked)}
        if posterior is not None and self.params.nb_mix < 1.0:
            ranked = self._second_opinion(ranked[:limit], best, weight, total, posterior, businesses)
        out = []
        for i, s, coverage in ranked[:limit]:
            ranked_by = s
            if plain is not None and self.params.ngram_score == "bm25":
                # ranked by the fused score, graded on BM25's own (scaled by business and aspect like it)
                s = s * plain.get(i, 0.0) / fused[i] if fused.get(i) else 0.0
            nb = posterior.get(self.entries[i].id, 0.0) if posterior else 0.0
            told = self._told[i]
            missing = [w for t, w in weight.items() if t not in told and t not in self._entry_terms[i]]
            out.append(Scored(self.entries[i], s, coverage, fit.get(i, 0.0), sims.get(i, 0.0), ranked_by, nb=nb,
                              base_rank=base_rank.get(i, limit + TIE_POOL), told=1 - sum(missing) / total,
                              lacks=max(missing, default=0.0) / self.max_idf))
        return out

    def _coverage(self, i: int, weight: dict[str, float], total: float) -> float:
        """The share of the question's weight that entry i's phrasings contain."""
        return sum(w for t, w in weight.items() if t in self._entry_terms[i]) / total

    def _second_opinion(self, ranked: list[tuple[int, float, float]], best: dict[int, float], weight: dict[str, float],
                        total: float, posterior: dict, businesses: frozenset[str]) -> list[tuple[int, float, float]]:
        """The ranking's best few and the classifier's best three (of the businesses named), ordered by
        nb_mix * (score / the best score) + (1 - nb_mix) * log(posterior) / 10."""
        pool = {i: (s, c) for i, s, c in ranked}
        for eid, _ in sorted(((k, v) for k, v in posterior.items() if k != OUT_OF_SCOPE), key=lambda kv: -kv[1])[:3]:
            i = self._position[eid]
            if i in pool or (businesses and not (self.entries[i].of(businesses) or self.entries[i].business == GENERAL)):
                continue
            pool[i] = (best.get(i, 0.0), self._coverage(i, weight, total))
        top = max((s for s, _ in pool.values()), default=0.0) or 1.0
        mix = self.params.nb_mix

        def combined(i: int) -> float:
            return mix * pool[i][0] / top + (1 - mix) * math.log(posterior.get(self.entries[i].id, 0.0) + 1e-6) / 10

        return [(i, pool[i][0], pool[i][1]) for i in sorted(pool, key=lambda i: (-combined(i), i))]

    def match(self, text: str) -> Match:
        prepared = self.analyzer.prepare(text)
        tokens, course = self.analyzer.analyze(prepared, prepared=True)
        # "补登怎么办" (a business and nothing but 怎么办) asks how to do it, like "补登怎么办理"; 怎么办 in
        # the knowledge base's phrasings is a problem ("审核没过怎么办"), which such a question does not name.
        if "怎么办" in tokens and len(set(tokens)) == 2 \
                and self.topics.businesses_of([t for t in tokens if t != "怎么办"]):
            tokens = ["怎么" if t == "怎么办" else t for t in tokens]
        # The 备案表's code is its 在线验证码, not the login's SMS code ("备案表的验证码填哪").
        if "验证码" in tokens and "电子注册备案表" in tokens:
            tokens = ["在线验证码" if t == "验证码" else t for t in tokens]
        businesses = self.topics.businesses_of(tokens)
        aspects = self.topics.aspects_of(prepared)
        bag = nb_features(self.analyzer.masked(prepared), tokens) if tokens else None
        posterior, tempered = self.nb.posteriors(bag) if bag else (None, None)
        outside = self.scope.posteriors(bag)[1].get("out", 0.0) if bag else None
        # The list is reordered by the tempered posterior: the plain one is nearly always 0 or 1, and would let
        # the classifier alone overrule a clear ranking (best of both on the training and validation sets).
        ranked = self.rank(tokens, businesses=businesses, aspects=aspects, posterior=tempered)
        unknown = tuple(t for t in dict.fromkeys(tokens) if t not in self.idf)
        return grade(Match(kind=NONE, text=text, course=course, ranked=tuple(ranked), tokens=tuple(tokens),
                           businesses=businesses, aspects=aspects, unknown=unknown, posterior=posterior,
                           tempered=tempered, outside=outside),
                     self.params.thresholds, self.topics, self.confidence)

    def probability(self, m: Match) -> Optional[float]:
        """The confidence model's probability that a ranking's best entry is right (None without a model or a
        ranking): what `zikao-bot faq ask` shows beside the threshold."""
        if self.confidence is None or not m.ranked:
            return None
        return self.confidence.probability(feature_values(m, rules_of(m, self.params.thresholds), self.topics.refers))

    def warm(self) -> None:
        """Run one question through every stage so the first real one is as fast as the hundredth."""
        self.match("我想申请免考，英语二多少分？")


# Ranking near ties: how many entries beyond the limit are looked at, and how close counts as a tie.
TIE_POOL = 3
TIE_MARGIN = 0.02


def _general():
    from dialogs.faq.understand import Business
    return Business(GENERAL, frozenset())


def _parse_topics(path: Path) -> Topics:
    return parse_topics(path, read_yaml, strip_lines, normalize, FaqError)


def parse_confidence(path: Optional[Path]) -> Optional[ConfidenceModel]:
    """The learned confidence model, or None when the file is absent (the rules alone decide)."""
    if path is None:
        return None
    if not path.exists():
        log.warning("FAQ: no confidence model at %s; the hand-written rules decide", path)
        return None
    return parse_model(strip_lines(read_yaml(path)), str(path), FaqError)


# Asked facts: a question asking for a count of days ("免考一般几天出结果"), an invoice ("审定费能开发
# 票吗") or a time of day ("几点开始") is answered only by an entry that states one. The manuals give no
# review times and say nothing of invoices, so an entry on the same topic refers on instead of
# answering something else with confidence (wave 4). "多久" and "多少钱" are not in the list: candidates
# asking them are served by "请耐心等待，结果会推送" and "金额以支付页面为准" (the development sets expect
# those answers).
ASKED_FACTS = (
    (re.compile(r"几天|多少天|几个工作日|多少个工作日|几周|几个星期|几个月"),
     re.compile(r"\d+\s*个?(工作日|天|周|星期|月|小时)|[一二三四五六七八九十两]+个?(工作日|天|周|星期|个月|小时)")),
    (re.compile(r"发票|收据|报销"), re.compile(r"发票|收据")),
    (re.compile(r"几点"), re.compile(r"\d{1,2}[:：]\d{2}|\d{1,2}点")),
    # Wave 6: an amount of money ("审定费多少钱": 48 of the 55 such questions of the training sets are out of
    # scope for their writers; the manuals state no amount) and the day a certificate is issued or mailed
    # ("毕业证什么时候发": 18 of 20).
    (re.compile(r"多少钱|多少费用|收多少|几块钱|什么价|价格|费用是多少|费用多少|交多少|付多少|收费标准"),
     re.compile(r"\d+(\.\d+)?\s*元|\d+\s*块")),
    (re.compile(r"(什么时候|啥时候|几时|哪天)(发|寄|拿|领)"), re.compile(r"\d+\s*(月|日|号)|\d+\s*个?工作日")),
)


def unstated_fact(text: str, entry: Entry) -> bool:
    """The question asks a fact (a number of days, an invoice, a time of day) that the entry's answer does not state."""
    q = normalize(text)
    return any(ask.search(q) and not state.search(entry.answer) for ask, state in ASKED_FACTS)


@dataclass(frozen=True)
class Rules:
    """Which hand-written confidence rules a ranking meets (docs/faq.md "How matching works"); the
    learned model (confidence.py) reads them as features."""

    single_word_topic: bool = False
    exact: bool = False
    clear: bool = False
    slot: bool = False
    named: bool = False
    lead: bool = False
    fits: bool = False

    @property
    def any(self) -> bool:
        return self.exact or self.clear or self.slot or self.named or self.lead or self.fits


def rules_of(m: Match, th: Thresholds) -> Rules:
    """The rules a ranking (at least one entry) meets."""
    ranked = m.ranked
    first = ranked[0]
    runner_up = ranked[1].score if len(ranked) > 1 else 0.0
    # One word ("英语", "密码") names a topic, not a question: answer it only when it is a phrasing
    # of its own (a keyword like "免考"), otherwise list the candidates.
    single_word_topic = len(set(m.tokens)) == 1 and first.fit < 0.99
    # The question says exactly what one phrasing says (validation keeps phrasings unique across
    # entries): that is the entry, however close the runner-up ("申请免考" vs "现在能申请免考吗").
    exact = first.fit >= 0.99
    clear = not single_word_topic and first.coverage >= th.answer_coverage and first.fit >= th.answer_fit \
        and runner_up <= th.answer_ratio * first.score
    # The question names the entry's business and asks the aspect it tells ("免考要什么材料" ->
    # exemption, 材料), and no close runner-up tells the same business and an asked aspect.
    slot = (not single_word_topic and first.entry.of(m.businesses) and first.entry.aspect in m.aspects
            and first.coverage >= th.slot_coverage
            and not any(s.entry.business == first.entry.business and s.entry.aspect in m.aspects
                        and s.score >= th.slot_ratio * first.score and s.fit >= th.slot_fit * first.fit
                        for s in ranked[1:]))
    named = (not single_word_topic and first.entry.of(m.businesses) and first.coverage >= th.business_coverage
             and runner_up <= th.business_ratio * first.score)
    lead = (not single_word_topic and bool(m.businesses)
            and (first.entry.of(m.businesses)
                 or (first.entry.business == GENERAL and first.entry.aspect in m.aspects))
            and first.coverage >= th.lead_coverage and first.fit >= th.lead_fit
            and runner_up <= th.lead_ratio * first.score)
    close_fit = max((s.fit for s in ranked[1:]), default=0.0)
    fits = (not single_word_topic and not m.unknown and first.fit >= th.fit_min and first.coverage >= th.fit_coverage
            and close_fit <= first.fit - th.fit_gap and runner_up <= th.fit_ratio * first.score)
    return Rules(single_word_topic, exact, clear, slot, named, lead, fits)


def _model_decides(m: Match, model: Optional[ConfidenceModel]) -> bool:
    """Whether the learned model (confidence.py) decides a ranking: always with a model, except a request for
    an entry's action ("我要申请免考" starts a flow on the rules' word, as before the model)."""
    if model is None or not m.ranked:
        return False
    return not (m.ranked[0].entry.action is not None and not is_question(m.text))


def _refers(m: Match, refers: Callable[[Optional[str]], bool]) -> bool:
    """A sure ranking of this question is referred on, not answered: its best entry is a referral or of an
    out-of-scope business, it asks a fact the entry does not state (a count of days, an invoice), or it
    names only out-of-scope businesses (and the entry does not list them under `also`)."""
    first = m.ranked[0].entry
    named_only_out_of_scope = bool(m.businesses) and all(refers(b) for b in m.businesses)
    return (first.refer or refers(first.business) or unstated_fact(m.text, first)
            or (named_only_out_of_scope and not any(b in first.also for b in m.businesses)))


def model_answers(m: Match, th: Thresholds, refers: Callable[[Optional[str]], bool],
                  model: Optional[ConfidenceModel], rules: Optional[Rules] = None) -> bool:
    """Whether the learned model is sure of a ranking it decides (_model_decides)."""
    if not _model_decides(m, model):
        return False
    rules = rules if rules is not None else rules_of(m, th)
    return model.confident(lambda: feature_values(m, rules, refers))


def grade(m: Match, th: Thresholds, topics: Optional[Topics] = None,
          model: Optional[ConfidenceModel] = None) -> Match:
    """The confidence class of a ranking: answer (clear winner), refer (a clear winner outside the
    manuals' scope), suggest (up to three) or none. With a model (confidence.yaml) the model decides
    whether the best entry is worth answering with (model_answers; the hand-written rules are among its
    features); a question equal to a phrasing, and a request for an entry's action, are left to the rules.
    A referral is safe (it answers nothing): a ranking the rules or the model is sure of is referred on
    (docs/faq.md "Confidence model")."""
    ranked = m.ranked
    base = replace(m, kind=NONE, entry=None, suggestions=())
    refers = topics.refers if topics is not None else (lambda b: False)
    named_only_out_of_scope = bool(m.businesses) and all(refers(b) for b in m.businesses)
    # Nothing to suggest when none of the best three covers enough of the question (the best three:
    # the character n-grams may rank first an entry covering a little less than the runner-up).
    if not ranked or max(s.coverage for s in ranked[:3]) < th.suggest_coverage:
        if named_only_out_of_scope:
            # "报名费多少钱": nothing in the knowledge base, but clearly outside the manuals: refer on.
            first = ranked[0].entry if ranked and refers(ranked[0].entry.business) else None
            return replace(base, kind=REFER, entry=first)
        if ranked and not _refers(m, refers) and model_answers(m, th, refers, model):
            return replace(base, kind=ANSWER, entry=ranked[0].entry)
        return base
    first = ranked[0]
    # An in-scope entry that lists the out-of-scope business under `also` answers for it: the 考试日程
    # 安排表 and 网上报名提示 are published in 站内消息 (操作手册 七), so "考试日程在哪看" is answered.
    also_named = any(b in first.entry.also for b in m.businesses)
    rules = rules_of(m, th)
    referred = _refers(m, refers)
    if rules.exact or not _model_decides(m, model):
        sure = rules.any
    elif referred:
        sure = rules.any or model_answers(m, th, refers, model, rules)
    else:
        sure = model_answers(m, th, refers, model, rules)
    if sure:
        if first.entry.refer or refers(first.entry.business):
            return replace(base, kind=REFER, entry=first.entry)
        if unstated_fact(m.text, first.entry):
            return replace(base, kind=REFER, entry=None)  # the general referral
        if named_only_out_of_scope and not also_named:
            # "报名照片要求": a question naming only an out-of-scope business is referred on, even when
            # an entry for every business (photo rules) fits its words.
            return replace(base, kind=REFER, entry=None)  # the general referral
        return replace(base, kind=ANSWER, entry=first.entry)
    if named_only_out_of_scope and not also_named:
        return replace(base, kind=REFER, entry=first.entry if refers(first.entry.business) else None)
    if unstated_fact(m.text, first.entry):
        # "申请学位审核一般要几天": no entry states review times; sure of the topic or not, the honest reply
        # is the general referral, not a list of entries that do not say it either.
        return replace(base, kind=REFER, entry=None)
    picks = tuple(s.entry for s in ranked[:3] if s.score >= th.suggest_floor * first.score)
    return replace(base, kind=SUGGEST, suggestions=picks)


# ---------------------------------------------------------------------------------- service

_SHARED: "OrderedDict[tuple, FaqIndex]" = OrderedDict()
_SHARED_LOCK = threading.Lock()
_SHARED_KEEP = 2


def _shared_index(files: FaqFiles, stamp: tuple, cache_dir: str, params: Params) -> FaqIndex:
    """The index of these files as they are now (their stamp), built once per process: every FaqService starting
    on the same files shares it (an index is immutable). Building takes about 2.5 s of CPU (jieba, the second
    opinion); a process that starts several services (the app and the console, a test suite starting many
    apps) would otherwise build it again in each, in threads that run on after their app has stopped. One
    builder at a time; a reload always builds anew (FaqService.reload)."""
    key = (files, stamp, cache_dir, params)
    with _SHARED_LOCK:
        index = _SHARED.get(key)
        if index is None:
            index = FaqIndex.load(files, cache_dir=cache_dir, params=params)
            index.warm()
            _SHARED[key] = index
            while len(_SHARED) > _SHARED_KEEP:
                _SHARED.popitem(last=False)
        _SHARED.move_to_end(key)
        return index


class FaqService:
    """Holds the current index; picks up edited files without a restart.

    On use, at most every `check_interval` seconds, the files' modification times are compared with
    those the index was built from. A changed set is validated and swapped in whole; an invalid one
    is logged and ignored, and the old knowledge base keeps answering until the files are fixed.
    """

    def __init__(self, kb: str | os.PathLike | None = None, *, files: Optional[FaqFiles] = None,
                 cache_dir: str | os.PathLike | None = None, check_interval: float = 3.0,
                 params: Params = DEFAULT_PARAMS, clock: Callable[[], float] = time.monotonic) -> None:
        self.files = files or FaqFiles.with_kb(kb)
        self.cache_dir = str(cache_dir) if cache_dir is not None else default_cache_dir()
        self.check_interval = check_interval
        self.params = params
        self.clock = clock
        self._index: Optional[FaqIndex] = None
        self._stamp: tuple = ()
        self._next_check = 0.0
        self._lock = threading.Lock()
        self.last_error: Optional[FaqError] = None

    @property
    def ready(self) -> bool:
        """The index is built (warm() has finished): match() will not block on jieba."""
        return self._index is not None

    @property
    def index(self) -> FaqIndex:
        if self._index is None:
            self.warm()
        assert self._index is not None
        return self._index

    def warm(self) -> FaqIndex:
        """Load jieba and the knowledge base now (at start-up). Raises FaqError if the files are invalid."""
        with self._lock:
            if self._index is None:
                stamp = self.files.stamp()
                started = time.perf_counter()
                index = _shared_index(self.files, stamp, self.cache_dir, self.params)
                self._index, self._stamp = index, stamp
                self._next_check = self.clock() + self.check_interval
                log.info("FAQ: %d entries from %s ready in %.2f s", len(index), self.files.kb,
                         time.perf_counter() - started)
            return self._index

    def reload(self) -> bool:
        """Validate the files and swap the new index in; False (old one kept, reason logged) if invalid."""
        with self._lock:
            stamp = self.files.stamp()
            try:
                index = FaqIndex.load(self.files, cache_dir=self.cache_dir, params=self.params)
                index.warm()
            except FaqError as e:
                self.last_error = e
                self._stamp = stamp  # do not retry the same broken files on every message
                log.error("FAQ: %s is invalid, still answering from the previous version:\n%s",
                          self.files.kb, "\n".join(e.errors))
                return False
            old = len(self._index) if self._index else 0
            self._index, self._stamp, self.last_error = index, stamp, None
            log.info("FAQ: reloaded %s (%d entries, was %d)", self.files.kb, len(index), old)
            return True

    def check_for_changes(self) -> bool:
        """Reload if the files changed since the last look; True when a new index was swapped in."""
        now = self.clock()
        if now < self._next_check:
            return False
        self._next_check = now + self.check_interval
        if self._index is None:
            self.warm()
            return True
        if self.files.stamp() == self._stamp:
            return False
        return self.reload()

    def match(self, text: str) -> Match:
        self.check_for_changes()
        return self.index.match(text)

    def get(self, entry_id: str) -> Optional[Entry]:
        """An entry by id, e.g. the one a candidate picked by number from a suggestion list."""
        return self.index.get(entry_id)


def check_files(files: FaqFiles | None = None, *, cache_dir: str | None = None) -> FaqIndex:
    """Validate everything a service would load; raises FaqError. Used by `zikao-bot faq check`."""
    return FaqIndex.load(files, cache_dir=cache_dir)
