"""Leave-one-set-out choice of the character n-gram fusion (dialogs/faq/ngrams.py, Params.ngram_*).

    .venv/bin/python -m bench.faq_ngram                  # grid over the five development sets, then LOSO
    .venv/bin/python -m bench.faq_ngram --json out.json  # ... keeping every setting's figures

Five sets: dev1 (dev.yaml), dev2 (dev2.yaml), eval (graded by entry id) and seen, seen2 (graded by
facts). For each setting of the grid, every set's top-1 and top-3 (id sets: the right entry; fact sets:
the entry's reply says the expected facts), right and wrong confident are measured. Then, for each set
in turn, the setting with the best mean top-1 on the other four is picked and measured on it.
The sealed heldout.yaml is never read here.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import replace

from dialogs.faq.evaluate import (
    FACT_SETS, SETS, FactOutcome, Outcome, _says, load_cases, load_fact_cases, reply_text,
)
from dialogs.faq.index import ANSWER, FaqIndex, Params

ID_SETS = ("dev1", "dev2", "eval")
FACT_NAMES = ("seen", "seen2")
ALL = ID_SETS + FACT_NAMES

GRID = {
    "add": {
        "ngram_weight": (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0),
        "ngram_orders": ((2,), (1, 2), (2, 3), (1, 2, 3)),
        "ngram_cross": (True, False),
        "ngram_union_weight": (0.0, 0.5),
        "ngram_score": ("fused", "bm25"),
    },
    "mult": {
        "ngram_weight": (0.3, 0.5, 0.7, 0.9),
        "ngram_orders": ((2,), (1, 2), (2, 3)),
        "ngram_cross": (True, False),
        "ngram_union_weight": (0.0, 0.5),
        "ngram_score": ("fused", "bm25"),
    },
}


def settings(base: Params) -> list[Params]:
    out = [base]
    for mode, grid in GRID.items():
        names = list(grid)
        for values in itertools.product(*(grid[k] for k in names)):
            out.append(replace(base, ngram_mode=mode, **dict(zip(names, values))))
    return out


def label(p: Params) -> str:
    if not p.ngram_weight:
        return "off"
    return (f"{p.ngram_mode} w={p.ngram_weight} n={''.join(map(str, p.ngram_orders))} "
            f"{'cross' if p.ngram_cross else 'word'} u={p.ngram_union_weight} score={p.ngram_score}")


class Sets:
    def __init__(self, index: FaqIndex) -> None:
        self.id_cases = {s: load_cases(SETS[s], index) for s in ID_SETS}
        self.fact_cases = {s: load_fact_cases(FACT_SETS[s]) for s in FACT_NAMES}
        self._says: dict[tuple[str, int, str], bool] = {}

    def says(self, name: str, n: int, index: FaqIndex, entry_id: str) -> bool:
        key = (name, n, entry_id)
        got = self._says.get(key)
        if got is None:
            from dialogs.faq.index import Match
            m = Match(kind=ANSWER, text="", entry=index.get(entry_id))
            got = self._says[key] = _says(reply_text(m), self.fact_cases[name][n].expect)
        return got

    def measure(self, index: FaqIndex) -> dict[str, dict[str, float]]:
        out = {}
        for name, cases in self.id_cases.items():
            outs = [Outcome(c, index.match(c.text)) for c in cases]
            ins = [o for o in outs if o.case.label is not None]
            out[name] = {
                "top1": sum(o.ranked_ids[:1] == [o.case.label] for o in ins) / len(ins),
                "top3": sum(o.case.label in o.ranked_ids[:3] for o in ins) / len(ins),
                "right": sum(o.right for o in outs) / len(outs),
                "wrong": sum(o.wrong_confident for o in outs) / len(outs),
                "n": len(outs),
            }
        for name, cases in self.fact_cases.items():
            outs = [FactOutcome(c, index.match(c.text)) for c in cases]
            ins = [(n, o) for n, o in enumerate(outs) if not o.case.out_of_scope]
            oos = [o for o in outs if o.case.out_of_scope]

            def hit(n: int, o: FactOutcome, depth: int) -> bool:
                return any(self.says(name, n, index, s.entry.id) for s in o.match.ranked[:depth])

            # the verdict, with the cached fact check (FactOutcome.verdict builds the reply each time)
            right = sum(o.match.kind == ANSWER and hit(n, o, 1) for n, o in ins)
            wrong = sum(o.match.kind == ANSWER and not hit(n, o, 1) for n, o in ins)
            out[name] = {
                "top1": sum(hit(n, o, 1) for n, o in ins) / len(ins),
                "top3": sum(hit(n, o, 3) for n, o in ins) / len(ins),
                "right": right / len(ins),
                "wrong": wrong / len(ins),
                "oos": sum(o.match.kind == ANSWER for o in oos) / len(oos),
                "n": len(ins),
            }
        return out


def loso(results: list[tuple[str, dict]]) -> list[tuple[str, str, dict, dict]]:
    """For each set: the setting chosen on the other four, with its figures and the baseline's on the
    left-out set (results[0] is the baseline). Chosen: the best mean top-1 (then top-3, then right)
    among the settings that, on each of the four, neither lower right nor raise wrong confident."""
    base = results[0][1]
    rows = []
    for held in ALL:
        rest = [s for s in ALL if s != held]

        def safe(r: dict) -> bool:
            return all(r[s]["right"] >= base[s]["right"] - 1e-9 and r[s]["wrong"] <= base[s]["wrong"] + 1e-9
                       for s in rest)

        def fit_score(r: dict) -> tuple[float, ...]:
            return tuple(round(sum(r[s][k] for s in rest) / len(rest), 9) for k in ("top1", "top3", "right"))

        best_label, best = max((lr for lr in results if safe(lr[1])), key=lambda lr: fit_score(lr[1]))
        rows.append((held, best_label, best[held], base[held]))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.faq_ngram", description=__doc__.splitlines()[0])
    p.add_argument("--json", help="write every setting's figures to this file")
    p.add_argument("--cache-dir")
    p.add_argument("--quick", action="store_true", help="a few settings only (tests)")
    args = p.parse_args(argv)
    base = FaqIndex.load(cache_dir=args.cache_dir, params=replace(Params(), ngram_weight=0.0))
    sets = Sets(base)
    grid = settings(base.params)
    if args.quick:
        grid = grid[:3]
    results: list[tuple[str, dict]] = []
    started = time.perf_counter()
    for n, params in enumerate(grid):
        r = sets.measure(base.with_params(params))
        results.append((label(params), r))
        print(f"[{n + 1}/{len(grid)} {time.perf_counter() - started:.0f}s] {label(params):40} "
              + "  ".join(f"{s} {r[s]['top1']:.3f}/{r[s]['right']:.3f}/{r[s]['wrong']:.3f}" for s in ALL),
              flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    print("\nleave one set out (chosen on the other four: best mean top-1, right not lower and wrong not "
          "higher on any of them); figures on the set left out, before -> after:")
    for held, lab, got, was in loso(results):
        print(f"  {held:6} {lab:46} " + "  ".join(f"{k} {was[k]:.1%} -> {got[k]:.1%}"
                                                   for k in ("top1", "top3", "right", "wrong")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
