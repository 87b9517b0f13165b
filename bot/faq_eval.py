"""`zikao-bot faq eval`: accuracy and speed of the consultation matcher on a labelled question set.

Prints top-1 and top-3 accuracy, the right / not sure / wrong confident rates and time per question;
for the fact-graded sets (--set seen, the former held-out set now used for development, and
--set heldout, the sealed set installed as dialogs/faq/eval/heldout.yaml): right / not sure / wrong /
out-of-scope answered confidently; with --top1 also the share whose best-ranked entry states the expected
facts whatever the confidence (what the ranking achieves), and how many not-sure replies had a right top-1.
The same report runs as a benchmark: `python -m bench.faq_eval` (bench/faq_eval.py).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dialogs.faq.evaluate import (
    FACT_SETS, HELDOUT, SETS, evaluate, evaluate_facts, is_fact_set, load_cases, load_fact_cases, tune,
)
from dialogs.faq.index import FaqError, FaqFiles, FaqIndex


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", default="eval",
                   help="eval (default, entry ids), dev (tuning; dev1 and dev2 are its halves), seen/dev3 (graded by facts, development), "
                        "seen2 (wave 3's sealed set, development now), heldout (graded by facts, sealed), or a path to a labelled YAML file")
    p.add_argument("--kb", help="knowledge base file (default: the packaged dialogs/faq/kb.yaml)")
    p.add_argument("--cache-dir", help="where jieba keeps its dictionary cache (default: a temp dir)")
    p.add_argument("--misses", action="store_true", help="list every question not answered right")
    p.add_argument("--top1", action="store_true",
                   help="fact-graded sets: also the share whose best-ranked entry states the expected facts "
                        "(with --misses: list the top-1 misses instead)")
    p.add_argument("--repeat", type=int, default=20, help="timing passes over the set (default 20)")
    p.add_argument("--tune", action="store_true", help="grid-search ranking and thresholds (dev set only)")


def run(args: argparse.Namespace) -> int:
    if args.set in FACT_SETS or (args.set not in SETS and is_fact_set(Path(args.set))):
        return run_facts(args)
    paths = SETS.get(args.set, (Path(args.set),))
    name = args.set if args.set in SETS else Path(args.set).name
    if args.tune and paths != SETS["dev"]:
        print("faq eval: --tune runs on the dev set only (--set dev); the eval set stays held out", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        index = FaqIndex.load(FaqFiles.with_kb(args.kb), cache_dir=args.cache_dir)
        index.warm()
        load_seconds = time.perf_counter() - started
        cases = load_cases(paths, index)
    except FaqError as e:
        print("faq eval: invalid files:\n" + "\n".join(f"  {m}" for m in e.errors), file=sys.stderr)
        return 1
    print(f"knowledge base: {len(index)} entries, loaded and warmed in {load_seconds:.2f} s; {confidence_line(index)}")
    if args.tune:
        params, report = tune(index, cases)
        print(f"best on {name}: {params}")
        print(report.format(f"{name} (tuned): "))
        if args.misses:
            print(report.format_misses())
        return 0
    report = evaluate(index, cases, repeat=max(0, args.repeat))
    print(report.format(f"{name}: "))
    if args.misses:
        print(report.format_misses())
    return 0


def confidence_line(index: FaqIndex) -> str:
    """Which confidence decision the figures are for (docs/faq.md "Confidence model")."""
    m = index.confidence
    if m is None:
        return "confidence: the hand-written rules"
    stale = " (warning: fitted on other files; it still applies, a refit may do better: python -m bench.faq_calibrate)" \
        if index.files is not None and m.stale(index.files) else ""
    return f"confidence: the model decides, the rules among its features (threshold {m.threshold:.2f}){stale}"


def run_facts(args: argparse.Namespace) -> int:
    if args.tune:
        print("faq eval: --tune runs on the dev set only (--set dev); fact-graded sets are not tuned on", file=sys.stderr)
        return 2
    path = FACT_SETS.get(args.set, Path(args.set))
    name = args.set if args.set in FACT_SETS else path.name
    if not path.exists():
        hint = (" (the sealed held-out set is installed there by the lead; use --set seen for the development copy)"
                if path == HELDOUT else "")
        print(f"faq eval: {path} does not exist{hint}", file=sys.stderr)
        return 1
    try:
        index = FaqIndex.load(FaqFiles.with_kb(args.kb), cache_dir=args.cache_dir)
        cases = load_fact_cases(path)
    except FaqError as e:
        print("faq eval: invalid files:\n" + "\n".join(f"  {m}" for m in e.errors), file=sys.stderr)
        return 1
    print(f"knowledge base: {len(index)} entries; {confidence_line(index)}")
    report = evaluate_facts(index, cases)
    print(report.format(f"{name}: "))
    top1 = getattr(args, "top1", False)
    if top1:
        print(report.format_top1())
    if args.misses:
        print(report.format_top1_misses() if top1 else report.format_misses())
    return 0
