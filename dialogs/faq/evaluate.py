"""Measures the matcher on a labelled question set, and tunes its thresholds on the dev split."""
from __future__ import annotations

import gc
import re
import unicodedata
import itertools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from dialogs.faq.index import (
    ANSWER, NONE, REFER, SUGGEST, FaqError, FaqIndex, Match, Params, grade, read_yaml, strip_lines,
)

EVAL_DIR = Path(__file__).resolve().parent / "eval"
# The held-out set, and the development split (two files) that tuning and KB fixes may use.
SETS = {"eval": (EVAL_DIR / "eval.yaml",), "dev": (EVAL_DIR / "dev.yaml", EVAL_DIR / "dev2.yaml"),
        # the two halves of the dev split on their own (leave-one-set-out, docs/faq.md)
        "dev1": (EVAL_DIR / "dev.yaml",), "dev2": (EVAL_DIR / "dev2.yaml",)}


AMBIGUOUS = "ambiguous"

# Entries merged into another (issue 17: siblings with the same facts competed and lowered confidence);
# labels of the id-labelled sets that name the old id count for the entry that holds its questions now.
MERGED = {
    "exemption-photo": "photo-rules", "exemption-evidence-types": "exemption-evidence",
    "exemption-add-evidence": "exemption-diploma", "exemption-approved": "exemption-status",
    "exemption-rejected": "exemption-edit", "exemption-notice": "exemption-apply",
    "backfill-old-scores": "backfill-year-limits", "grad-approved": "grad-status",
    "grad-beian-or-report": "grad-prior-education", "thesis-result": "thesis-advisor",
    "transfer-out-rejected": "transfer-status", "degree-school": "degree-conditions",
    "contacts-qq": "contacts", "profile-fields": "profile-view",
}


@dataclass(frozen=True)
class Case:
    text: str
    label: Optional[str]  # an entry id; None: nothing in the knowledge base fits
    ambiguous: bool = False  # several entries fit equally ("密码"): suggestions are right, an answer is not


def load_cases(paths: Path | tuple[Path, ...], index: FaqIndex) -> list[Case]:
    """`entry-id: [questions]`, `none: [...]` and `ambiguous: [...]`; every id must exist in the knowledge base."""
    if not isinstance(paths, Path):
        cases = []
        for p in paths:
            cases += load_cases(p, index)
        return cases
    path = paths
    data = strip_lines(read_yaml(path))
    if not isinstance(data, dict):
        raise FaqError([f"{path}: expected a mapping of entry id: [questions]"])
    cases, errors = [], []
    for label, texts in data.items():
        label = MERGED.get(label, label)
        if label not in ("none", AMBIGUOUS) and index.get(label) is None:
            errors.append(f"{path}: {label!r} is not an entry of the knowledge base")
            continue
        if not isinstance(texts, list):
            errors.append(f"{path}: {label!r}: expected a list of questions")
            continue
        cases += [Case(str(t), None if label in ("none", AMBIGUOUS) else label, label == AMBIGUOUS) for t in texts]
    if errors:
        raise FaqError(errors)
    return cases


@dataclass
class Outcome:
    case: Case
    match: Match

    @property
    def ranked_ids(self) -> list[str]:
        return [s.entry.id for s in self.match.ranked]

    @property
    def right(self) -> bool:
        if self.case.ambiguous:
            return self.match.kind != ANSWER
        if self.case.label is None:
            return self.match.kind in (NONE, REFER)  # a referral is not an answer
        return self.match.kind in (ANSWER, REFER) and self.match.entry is not None \
            and self.match.entry.id == self.case.label

    @property
    def wrong_confident(self) -> bool:
        return self.match.kind == ANSWER and self.match.entry.id != self.case.label

    @property
    def not_sure(self) -> bool:
        return self.match.kind != ANSWER and not self.right


@dataclass
class Report:
    outcomes: list[Outcome]
    seconds_per_query: list[float] = field(default_factory=list)

    @property
    def in_domain(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.case.label is not None]

    @property
    def out_of_domain(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.case.label is None and not o.case.ambiguous]

    @property
    def ambiguous(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.case.ambiguous]

    @staticmethod
    def _rate(part: int, whole: int) -> float:
        return part / whole if whole else 0.0

    @property
    def top1(self) -> float:
        ins = self.in_domain
        return self._rate(sum(o.ranked_ids[:1] == [o.case.label] for o in ins), len(ins))

    @property
    def top3(self) -> float:
        ins = self.in_domain
        return self._rate(sum(o.case.label in o.ranked_ids[:3] for o in ins), len(ins))

    @property
    def right_rate(self) -> float:
        return self._rate(sum(o.right for o in self.outcomes), len(self.outcomes))

    @property
    def not_sure_rate(self) -> float:
        return self._rate(sum(o.not_sure for o in self.outcomes), len(self.outcomes))

    @property
    def wrong_confident_rate(self) -> float:
        return self._rate(sum(o.wrong_confident for o in self.outcomes), len(self.outcomes))

    @property
    def suggest_hit_rate(self) -> float:
        """Of in-domain questions answered with suggestions, how often the right entry was listed."""
        sug = [o for o in self.in_domain if o.match.kind == SUGGEST]
        return self._rate(sum(o.case.label in o.match.suggestion_ids for o in sug), len(sug))

    def utility(self) -> float:
        """What tuning maximises: +1 right, -4 wrong confident, +0.5 for suggestions listing the right entry."""
        return sum(_utility(o.case, o.match.kind, o.match.entry.id if o.match.entry else None,
                            o.match.suggestion_ids) for o in self.outcomes)

    def format(self, title: str = "") -> str:
        ins, outs, amb = self.in_domain, self.out_of_domain, self.ambiguous
        kinds = {k: sum(o.match.kind == k for o in self.outcomes) for k in (ANSWER, SUGGEST, NONE)}
        times = sorted(self.seconds_per_query)
        lines = [
            f"{title}{len(self.outcomes)} questions ({len(ins)} with an answer in the knowledge base, {len(outs)} without, "
            f"{len(amb)} ambiguous)",
            f"  top-1 accuracy      {self.top1:6.1%}   (in-domain: best-ranked entry is the right one)",
            f"  top-3 accuracy      {self.top3:6.1%}   (in-domain: right entry among the best three)",
            f"  right answers       {self.right_rate:6.1%}   (confident and right; 'none' when out of domain; not answered when ambiguous)",
            f"  not sure            {self.not_sure_rate:6.1%}   (suggestions or 'none' instead of the right answer)",
            f"  wrong confident     {self.wrong_confident_rate:6.1%}   (answered, and wrong)",
            f"  suggestion hits     {self.suggest_hit_rate:6.1%}   (right entry listed when suggesting)",
            f"  replies: answer {kinds[ANSWER]}, suggest {kinds[SUGGEST]}, none {kinds[NONE]}",
        ]
        if outs:
            lines.append(f"  out-of-domain: none {sum(o.match.kind == NONE for o in outs)}, "
                         f"suggest {sum(o.match.kind == SUGGEST for o in outs)}, "
                         f"answered {sum(o.match.kind == ANSWER for o in outs)} of {len(outs)}")
        if amb:
            lines.append(f"  ambiguous: suggest {sum(o.match.kind == SUGGEST for o in amb)}, "
                         f"none {sum(o.match.kind == NONE for o in amb)}, "
                         f"answered {sum(o.match.kind == ANSWER for o in amb)} of {len(amb)}")
        if times:
            mean = sum(times) / len(times)
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            lines.append(f"  time per question   mean {mean * 1e3:.3f} ms, p50 {times[len(times) // 2] * 1e3:.3f} ms, "
                         f"p99 {p99 * 1e3:.3f} ms, max {times[-1] * 1e3:.3f} ms")
        return "\n".join(lines)

    def format_misses(self) -> str:
        lines = []
        for o in self.outcomes:
            if o.right:
                continue
            tag = "WRONG" if o.wrong_confident else o.match.kind
            got = o.match.entry.id if o.match.entry else ",".join(o.match.suggestion_ids) or "-"
            top = " ".join(f"{s.entry.id}:{s.score:.1f}/{s.coverage:.2f}/{s.fit:.2f}" for s in o.match.ranked[:3])
            want = AMBIGUOUS if o.case.ambiguous else o.case.label or "none"
            lines.append(f"  [{tag:7}] {o.case.text!r} want {want} got {got}  "
                         f"tokens={'/'.join(o.match.tokens)}  {top}")
        return "\n".join(lines)


def evaluate(index: FaqIndex, cases: list[Case], *, repeat: int = 1) -> Report:
    outcomes = [Outcome(c, index.match(c.text)) for c in cases]
    gc.collect()  # time the matcher, not the collection of whatever ran before
    timings = []
    for _ in range(repeat):
        for c in cases:
            started = time.perf_counter()
            index.match(c.text)
            timings.append(time.perf_counter() - started)
    return Report(outcomes, timings)


GRID = {
    "k1": (0.6, 0.9, 1.2),
    "b": (0.1, 0.3, 0.5),
    "union_weight": (0.3, 0.6, 1.0),
    "dice_weight": (0.5, 0.8, 1.0),
    "unknown_idf": (0.75, 1.0),
    "unknown_power": (1.0, 2.0, 3.0),
}
THRESHOLD_GRID = {
    "answer_coverage": (0.7, 0.8, 0.9),
    "answer_ratio": (0.7, 0.8, 0.9),
    "business_coverage": (0.5, 0.6, 0.7),
    "business_ratio": (0.6, 0.7, 0.8),
    "slot_coverage": (0.4, 0.5, 0.6),
    "suggest_coverage": (0.3, 0.4, 0.5),
}


def tune(index: FaqIndex, cases: list[Case]) -> tuple[Params, Report]:
    """Grid search on `cases` (the dev split); best utility wins. First the ranking parameters with
    the current thresholds, then the thresholds over the best ranking, both graded by index.grade
    itself, so the search and the service never disagree on a rule."""
    best: tuple[float, Params] = (evaluate(index, cases, repeat=0).utility(), index.params)  # never end worse
    for k1, b, uw, dw, unk, up in itertools.product(*(GRID[k] for k in GRID)):
        ranking = replace(index.params, k1=k1, b=b, union_weight=uw, dice_weight=dw, unknown_idf=unk, unknown_power=up)
        u = evaluate(index.with_params(ranking), cases, repeat=0).utility()
        if u > best[0] + 1e-9:
            best = (u, ranking)
    probe = index.with_params(best[1])
    matches = [probe.match(c.text) for c in cases]
    names = list(THRESHOLD_GRID)
    for values in itertools.product(*(THRESHOLD_GRID[k] for k in names)):
        th = replace(best[1].thresholds, **dict(zip(names, values)))
        if th.suggest_coverage > min(th.answer_coverage, th.business_coverage):
            continue
        u = Report([Outcome(c, grade(m, th, probe.topics, probe.confidence))
                    for c, m in zip(cases, matches)]).utility()
        if u > best[0] + 1e-9:
            best = (u, replace(best[1], thresholds=th))
    tuned = index.with_params(best[1])
    return best[1], evaluate(tuned, cases)


def _utility(case: Case, kind: str, top: Optional[str], listed: tuple[str, ...]) -> float:
    """One question's share of Report.utility."""
    if case.ambiguous:
        return -4.0 if kind == ANSWER else 1.0
    if case.label is None:
        return {NONE: 1.0, REFER: 1.0, SUGGEST: -0.1, ANSWER: -4.0}[kind]
    if kind == REFER:
        return 1.0 if top == case.label else 0.0
    if kind == ANSWER:
        return 1.0 if top == case.label else -4.0
    if kind == SUGGEST:
        return 0.5 if case.label in listed else -0.1
    return 0.0


# ---------------------------------------------------------------------------------- held-out set graded by facts

# Sets graded by the facts a reply must contain (questions: [{q, business, aspect, expect}]).
# seen.yaml was the held-out set of issue 17 until its questions had been read while working on the
# knowledge base: it is a development set now. heldout.yaml is the sealed set the lead installs; nobody
# working on kb.yaml reads it.
SEEN = EVAL_DIR / "seen.yaml"
# seen2.yaml was wave 3's sealed set: measured once (right 62.4 %), then its misses were read: a
# development set from wave 4 on.
SEEN2 = EVAL_DIR / "seen2.yaml"
HELDOUT = EVAL_DIR / "heldout.yaml"
FACT_SETS = {"seen": SEEN, "dev3": SEEN, "seen2": SEEN2, "heldout": HELDOUT}
# Wave 6: wave 5's probe, and seven training sets written by helpers from FLOWS.md and the manuals only
# (each a different style: situations, short forms and typos, conditions, pages and fields) ...
TRAIN_SETS = ("probe5", "train6a", "train6b", "train6c", "train6d", "train6e", "train6f", "train6g", "train6h", "train6i",
              "train6j", "oos6a", "oos6b")
# ... and two sealed validation sets written the same way by two more helpers: their figures chose between
# variants of the second opinion (docs/faq.md), their questions were never read. heldout.yaml stays the test.
VALIDATION_SETS = ("fresh6", "fresh7", "fresh8")
FACT_SETS.update({name: EVAL_DIR / f"{name}.yaml" for name in TRAIN_SETS + VALIDATION_SETS})
# What the second opinion learns from (examples.yaml, `python -m bench.faq_examples`): every development
# set, never heldout.yaml or the validation sets.
EXAMPLE_SOURCES = ("dev1", "dev2", "eval", "seen", "seen2") + TRAIN_SETS


def is_fact_set(path: Path) -> bool:
    """True when the file is a fact-graded set (a mapping with a 'questions:' list)."""
    try:
        head = path.read_text(encoding="utf-8")
    except OSError:
        return False
    return re.search(r"^questions:", head, re.M) is not None


@dataclass(frozen=True)
class FactCase:
    """A question graded by what the answer says, not by which entry gave it (heldout.yaml)."""

    text: str
    business: str = ""
    aspect: str = ""
    expect: tuple[tuple[str, ...], ...] = ()  # every group must be matched by one of its strings
    out_of_scope: bool = False


def load_fact_cases(path: Path = SEEN) -> list[FactCase]:
    data = strip_lines(read_yaml(path))
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise FaqError([f"{path}: expected a mapping with a 'questions:' list"])
    cases, errors = [], []
    for n, q in enumerate(data["questions"], 1):
        if not isinstance(q, dict) or not isinstance(q.get("q"), str):
            errors.append(f"{path}: question #{n}: expected a mapping with 'q:'")
            continue
        oos = bool(q.get("out_of_scope"))
        expect = q.get("expect") or []
        if not oos and (not isinstance(expect, list) or not expect
                        or not all(isinstance(g, list) and g for g in expect)):
            errors.append(f"{path}: question #{n} {q['q']!r}: 'expect' must be a list of non-empty lists")
            continue
        cases.append(FactCase(q["q"], str(q.get("business") or ""), str(q.get("aspect") or ""),
                              tuple(tuple(str(s) for s in g) for g in expect), oos))
    if errors:
        raise FaqError(errors)
    return cases


def reply_text(match: Match) -> str:
    """What the candidate reads for an answer (the entry's text and the offered action), as
    dialogs.consult builds it without a database (no live window line)."""
    from dialogs.consult import ALIASES, offer_line  # consult imports this package: load it on use

    e = match.entry
    if e is None:
        return ""
    action = ALIASES.get(e.action, e.action) if e.action else None
    return "\n".join(p for p in (e.answer, offer_line(action, e.answer)) if p)


def _says(text: str, expect: tuple[tuple[str, ...], ...]) -> bool:
    folded = unicodedata.normalize("NFKC", text)
    return all(any(s in text or unicodedata.normalize("NFKC", s) in folded for s in group) for group in expect)


@dataclass
class FactOutcome:
    case: FactCase
    match: Match

    @property
    def verdict(self) -> str:
        """right | wrong (confident, facts missing) | not sure | oos-ok | oos-overconfident."""
        confident = self.match.kind == ANSWER
        if self.case.out_of_scope:
            return "oos-overconfident" if confident else "oos-ok"
        if not confident:
            return "not sure"
        return "right" if _says(reply_text(self.match), self.case.expect) else "wrong"

    @property
    def top1_right(self) -> bool:
        """In scope, and the best-ranked entry's reply states the expected facts, whatever the
        confidence class (what the ranking alone achieves: the confidence rules may still hold it back)."""
        if self.case.out_of_scope or not self.match.ranked:
            return False
        first = replace(self.match, kind=ANSWER, entry=self.match.ranked[0].entry)
        return _says(reply_text(first), self.case.expect)


@dataclass
class FactReport:
    outcomes: list[FactOutcome]

    def count(self, verdict: str) -> int:
        return sum(o.verdict == verdict for o in self.outcomes)

    @property
    def in_scope(self) -> list[FactOutcome]:
        return [o for o in self.outcomes if not o.case.out_of_scope]

    @property
    def out_of_scope(self) -> list[FactOutcome]:
        return [o for o in self.outcomes if o.case.out_of_scope]

    def _ranked_says(self, o: FactOutcome, depth: int) -> bool:
        return any(_says(reply_text(replace(o.match, entry=s.entry)), o.case.expect) for s in o.match.ranked[:depth])

    @property
    def top1(self) -> float:
        """Share of in-scope questions whose best-ranked entry's reply says the expected facts,
        whatever the confidence (the ranking's quality, apart from grade())."""
        ins = self.in_scope
        return sum(self._ranked_says(o, 1) for o in ins) / len(ins) if ins else 0.0

    @property
    def top3(self) -> float:
        """... one of the best three entries' replies says them."""
        ins = self.in_scope
        return sum(self._ranked_says(o, 3) for o in ins) / len(ins) if ins else 0.0

    def rate(self, verdict: str) -> float:
        whole = len(self.out_of_scope) if verdict.startswith("oos") else len(self.in_scope)
        return self.count(verdict) / whole if whole else 0.0

    def format(self, title: str = "") -> str:
        ins, outs = self.in_scope, self.out_of_scope
        lines = [
            f"{title}{len(self.outcomes)} questions ({len(ins)} in scope, {len(outs)} out of scope), graded by the facts "
            f"the reply must contain",
            f"  right               {self.rate('right'):6.1%}   ({self.count('right')}: confident, and says the expected facts)",
            f"  not sure            {self.rate('not sure'):6.1%}   ({self.count('not sure')}: suggestions, referral or 'not sure')",
            f"  wrong confident     {self.rate('wrong'):6.1%}   ({self.count('wrong')}: confident, expected facts missing)",
            f"  out of scope answered confidently {self.rate('oos-overconfident'):6.1%}   "
            f"({self.count('oos-overconfident')} of {len(outs)})",
        ]
        areas = sorted({o.case.business for o in ins})
        lines.append("  by business (right / not sure / wrong of n):")
        for a in areas:
            mine = [o for o in ins if o.case.business == a]
            v = [o.verdict for o in mine]
            lines.append(f"    {a:6} {v.count('right'):3} / {v.count('not sure'):3} / {v.count('wrong'):3}  of {len(mine)}")
        return "\n".join(lines)

    def format_top1(self) -> str:
        """The ranking's share: in-scope questions whose best-ranked entry states the expected facts,
        overall and by confidence class."""
        ins = self.in_scope
        hit = sum(o.top1_right for o in ins)
        unsure = [o for o in ins if o.verdict == "not sure"]
        unsure_hit = sum(o.top1_right for o in unsure)
        wrong = [o for o in ins if o.verdict == "wrong"]
        return "\n".join([
            f"  top-1 says the facts {hit / len(ins) if ins else 0.0:6.1%}   ({hit} of {len(ins)} in scope: the best-ranked "
            f"entry's reply, whatever the confidence)",
            f"  top-3 says the facts {self.top3:6.1%}   (in scope: one of the best three)",
            f"  not sure, top-1 ok  {unsure_hit:4} of {len(unsure):<4}  (held back although the best-ranked entry was right)",
            f"  top-1 misses        {len(ins) - hit:4}        (confident and wrong {len(wrong)}, "
            f"not sure with a wrong top-1 {len(unsure) - unsure_hit})",
        ])

    def format_top1_misses(self) -> str:
        lines = []
        for o in self.in_scope:
            if o.top1_right:
                continue
            top = " ".join(f"{s.entry.id}:{s.score:.1f}/{s.coverage:.2f}" for s in o.match.ranked[:3]) or "-"
            want = " & ".join("|".join(g) for g in o.case.expect)
            lines.append(f"  [{o.verdict:8}] {o.case.text!r} ({o.case.business}/{o.case.aspect}) "
                         f"tokens={'/'.join(o.match.tokens)} b={','.join(sorted(o.match.businesses))} "
                         f"a={','.join(sorted(o.match.aspects))}  {top}  want: {want}")
        return "\n".join(lines)

    def format_misses(self) -> str:
        lines = []
        for o in self.outcomes:
            v = o.verdict
            if v in ("right", "oos-ok"):
                continue
            got = o.match.entry.id if o.match.entry else ",".join(o.match.suggestion_ids) or "-"
            want = "out of scope" if o.case.out_of_scope else " & ".join("|".join(g) for g in o.case.expect)
            lines.append(f"  [{v:17}] {o.case.text!r} ({o.case.business}/{o.case.aspect}) {o.match.kind} {got}  want: {want}")
        return "\n".join(lines)


def evaluate_facts(index: FaqIndex, cases: list[FactCase]) -> FactReport:
    return FactReport([FactOutcome(c, index.match(c.text)) for c in cases])
