"""Write dialogs/faq/examples.yaml: the development sets' questions, each under the entry it is about, for the
FAQ's second opinion (dialogs/faq/classifier.py, docs/faq.md "Examples and the second opinion").

    .venv/bin/python -m bench.faq_examples            # rewrite examples.yaml
    .venv/bin/python -m bench.faq_examples --check    # exit 1 when examples.yaml is not what it would write

A question labelled with an entry id (dev, eval) keeps its label; `none` becomes out_of_scope and an
`ambiguous` one is left out. A question graded by facts (seen, seen2, probe5, train6a-j, oos6a-b) goes under the entry
whose reply states the facts, the best-ranked one when several do (ranked without the second opinion);
an out-of-scope one under the referral entry the phrasings refer it to (教材购买 ...), else under out_of_scope;
one no entry answers is left out and listed (a gap in kb.yaml).
A question the held-out or validation sets also ask (the same short text, written independently) is left out:
of those sets only the question texts are read, for that. Refit the confidence model after
(`python -m bench.faq_calibrate`).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import yaml

from dialogs.faq.classifier import OUT_OF_SCOPE
from dialogs.faq.evaluate import (
    EXAMPLE_SOURCES, FACT_SETS, HELDOUT, SETS, VALIDATION_SETS, _says, load_cases, load_fact_cases, reply_text,
)
from dialogs.faq.index import ANSWER, REFER, FaqFiles, FaqIndex, PACKAGE_DIR, normalize

HEADER = """\
# Labelled candidate questions for the FAQ's second opinion (dialogs/faq/classifier.py, docs/faq.md
# "Examples and the second opinion"). Written by `python -m bench.faq_examples` from the development sets
# (never from heldout.yaml or the validation sets); staff may add a source of their own, e.g.
#   office:
#     exemption-apply:
#     - 免考在手机上怎么弄
# An entry id that kb.yaml no longer has is left out with a warning when the knowledge base loads.
"""


def held_apart() -> set[str]:
    """The (normalised) texts of the held-out and validation sets: a development set may hold the same short
    question ("初始密码是多少", written independently); it is left out of the examples, so that what the
    service learned never includes a question it is measured on. Only the texts are read, never what they
    expect."""
    texts: set[str] = set()
    for path in [HELDOUT] + [FACT_SETS[name] for name in VALIDATION_SETS]:
        if path.exists():
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            texts |= {normalize(str(q.get("q", ""))) for q in data.get("questions") or [] if isinstance(q, dict)}
    return texts


def label_all(index: FaqIndex) -> tuple[dict[str, dict[str, list[str]]], list[str], int]:
    """{source: {entry id or out_of_scope: [questions]}}, the questions no entry answers, and how many were
    left out because a held-out or validation set asks the same."""
    out: dict[str, dict[str, list[str]]] = {}
    gaps: list[str] = []
    seen: set[str] = set()
    apart = held_apart()
    dropped = 0
    order = {e.id: n for n, e in enumerate(index.entries)}

    def add(source: str, label: str, text: str) -> None:
        nonlocal dropped
        if text in seen:
            return
        seen.add(text)
        if normalize(text) in apart:
            dropped += 1
            return
        out.setdefault(source, {}).setdefault(label, []).append(text)

    for source in EXAMPLE_SOURCES:
        if source in FACT_SETS:
            for c in load_fact_cases(FACT_SETS[source]):
                m = index.match(c.text)
                if c.out_of_scope:
                    # The knowledge base's referral entries (教材购买, 成绩复核 ...) exist for such questions: one
                    # the phrasings refer on to a referral entry teaches that entry; the rest, out of scope.
                    referral = m.kind == REFER and m.entry is not None and m.entry.refer
                    add(source, m.entry.id if referral else "out_of_scope", c.text)
                    continue
                gold = {e.id for e in index.entries if _says(reply_text(replace(m, kind=ANSWER, entry=e)), c.expect)}
                if not gold:
                    gaps.append(f"{source}: {c.text}")
                    continue
                ranked = [s.entry.id for s in index.rank(list(m.tokens), limit=len(index.entries),
                                                           businesses=m.businesses, aspects=m.aspects)]
                first = next((i for i in ranked if i in gold), None) or min(gold, key=order.get)
                add(source, first, c.text)
        else:
            for c in load_cases(SETS[source], index):
                if c.ambiguous:
                    continue
                add(source, c.label or "out_of_scope", c.text)
    for source, labels in out.items():
        out[source] = dict(sorted(labels.items(), key=lambda kv: (kv[0] == "out_of_scope", order.get(kv[0], 0))))
    return out, gaps, dropped


def render(sources: dict[str, dict[str, list[str]]]) -> str:
    body = yaml.safe_dump({"version": 1, "sources": sources}, allow_unicode=True, sort_keys=False, width=200)
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.faq_examples", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(PACKAGE_DIR / "examples.yaml"))
    p.add_argument("--check", action="store_true", help="exit 1 when the file differs from what would be written")
    p.add_argument("--gaps", action="store_true", help="list the questions no entry answers")
    args = p.parse_args(argv)
    # Labels come from the phrasings alone: the examples being written must not label themselves.
    index = FaqIndex.load(replace(FaqFiles(), examples=None))
    sources, gaps, dropped = label_all(index)
    text = render(sources)
    n = sum(len(v) for labels in sources.values() for v in labels.values())
    if args.gaps:
        print("\n".join(gaps))
    if args.check:
        same = Path(args.out).exists() and Path(args.out).read_text(encoding="utf-8") == text
        print(f"{args.out}: {'up to date' if same else 'STALE: run python -m bench.faq_examples'}")
        return 0 if same else 1
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"wrote {args.out}: {n} questions from {len(sources)} sets; {len(gaps)} answered by no entry (--gaps); "
          f"{dropped} left out because a held-out or validation set asks the same")
    return 0


if __name__ == "__main__":
    sys.exit(main())
