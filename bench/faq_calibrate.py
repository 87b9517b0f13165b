"""Fit the FAQ's confidence model (dialogs/faq/confidence.py) and choose its threshold on the validation sets.

    .venv/bin/pip install -e '.[bench]'                  # scikit-learn (only here; the service never needs it)
    .venv/bin/python -m bench.faq_examples               # first, when kb.yaml changed: relabel examples.yaml
    .venv/bin/python -m bench.faq_calibrate              # fit on the training sets, choose, write confidence.yaml
    .venv/bin/python -m bench.faq_calibrate --dry-run    # the same figures, nothing written
    .venv/bin/python -m bench.faq_calibrate --table      # ... and both figures at every threshold
    .venv/bin/python -m bench.faq_calibrate --check      # exit 1 when confidence.yaml was fitted on other files

The training sets (dev = dev.yaml + dev2.yaml, eval: entry ids; seen, seen2, probe5, train6a-j, oos6a-b:
facts) are the data. Each question is ranked out of fold: by an index whose second opinion
(classifier.py) learned every set but its own. The model decides every ranking but exact phrasings and
requests for a flow (index.grade): each question whose grade it could change is one example, its features
(confidence.FEATURES) and a label, "the best-ranked entry is right" (its reply says the expected facts, or it
is the labelled entry; for a question out of scope, or an ambiguous one, never).

The threshold is chosen on the validation sets (fresh6, fresh7, fresh8: never learned from, graded by the
shipped index and the model fitted on every training set): the most right answers with confidently wrong
<= 2.5 % and out of scope answered <= 8 %. `--choose cv` chooses on the left-out training sets instead.
The sealed held-out set is never read.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import yaml

from dialogs.faq.confidence import DEFAULT_MODEL, FEATURES, ConfidenceModel, feature_values, fingerprint
from dialogs.faq.evaluate import (
    EVAL_DIR, SEEN, SEEN2, TRAIN_SETS, VALIDATION_SETS, Case, FactCase, FactOutcome, Outcome, load_cases, load_fact_cases,
)
from dialogs.faq.index import ANSWER, FaqError, FaqFiles, FaqIndex, Match, grade, parse_confidence, rules_of

# The calibration sets, in the order of the report. Never the sealed held-out set or the validation sets.
# dev.yaml and dev2.yaml are one set, as bench.faq_eval reports them (dev2 alone is 93 questions: one
# answer moves its wrong share by 1.1 points).
ID_SETS = {"dev": (EVAL_DIR / "dev.yaml", EVAL_DIR / "dev2.yaml"), "eval": (EVAL_DIR / "eval.yaml",)}
FACT_SETS = {"seen": SEEN, "seen2": SEEN2, **{name: EVAL_DIR / f"{name}.yaml" for name in TRAIN_SETS}}
# The validation sets: never learned from; the threshold is chosen on their figures (--choose validation).
VALIDATION = {name: EVAL_DIR / f"{name}.yaml" for name in VALIDATION_SETS}
# The examples.yaml sources each set's questions came from: while a set is graded, the second opinion has
# learned from every other set only (out of fold), as it will meet a new candidate's question.
SOURCES = {"dev": ("dev1", "dev2")}
MAX_WRONG = 0.025
MAX_OOS = 0.08
THRESHOLDS = tuple(round(0.50 + 0.005 * i, 3) for i in range(100))  # 0.50 .. 0.995
C = 1.0  # inverse regularisation strength of the logistic regression (features are standardised)
# Weight of an example from an id-labelled set beside one from a fact-graded set: the id labels predate
# the split of topics into sibling entries, so a sibling telling the same facts counts as wrong there.
ID_WEIGHT = 1.0
# Weight of an out-of-scope question: few beside the in-scope ones, and answering one is the costlier mistake.
OOS_WEIGHT = 1.0


class _Always:
    """A stand-in model that is always (or never) confident: what each question's reply would be."""

    def __init__(self, sure: bool) -> None:
        self.sure = sure

    def confident(self, values) -> bool:
        return self.sure

    def stale(self, files) -> bool:
        return False


@dataclass
class Item:
    """One question: its reply when confident and when not, and (when a model decides it) its features."""

    set: str
    text: str
    # What the question counts for in its set's report, when confident / not confident:
    # (right, wrong confident, out of scope answered).
    if_sure: tuple[bool, bool, bool]
    if_unsure: tuple[bool, bool, bool]
    in_scope: bool  # counts in the denominator of right / wrong (fact sets: in scope only)
    oos: bool  # counts in the denominator of out of scope answered
    values: Optional[dict[str, float]] = None  # None: the grade does not depend on confidence
    rules: object = None
    label: int = 0  # the best-ranked entry is right (see the module doc)

    @property
    def x(self) -> list[float]:
        return [self.values[f] for f in FEATURES]


def _id_flags(case: Case, m: Match) -> tuple[bool, bool, bool]:
    o = Outcome(case, m)
    oos = case.label is None and not case.ambiguous and m.kind == ANSWER
    return o.right, o.wrong_confident, oos


def _fact_flags(case: FactCase, m: Match) -> tuple[bool, bool, bool]:
    v = FactOutcome(case, m).verdict
    return v == "right", v == "wrong", v == "oos-overconfident"


def collect(index: FaqIndex, id_sets: Optional[dict] = None, fact_sets: Optional[dict] = None,
            out_of_fold: bool = True) -> list[Item]:
    """Every question of the calibration sets (default: the training sets), ranked once and graded both ways:
    the model sure, and not sure. out_of_fold: its own set is left out of the second opinion's examples (a
    validation set never is in them)."""
    id_sets = ID_SETS if id_sets is None else id_sets
    fact_sets = FACT_SETS if fact_sets is None else fact_sets
    index = index.with_confidence(None)
    th, topics = index.params.thresholds, index.topics
    sure, unsure = _Always(True), _Always(False)
    items: list[Item] = []

    def add(oof: FaqIndex, name: str, text: str, flags, case, in_scope: bool, oos: bool) -> None:
        m = oof.match(text)
        a, b = grade(m, th, topics, sure), grade(m, th, topics, unsure)
        item = Item(name, text, flags(case, a), flags(case, b), in_scope, oos)
        if (a.kind, a.entry, a.suggestions) != (b.kind, b.entry, b.suggestions):
            rules = rules_of(m, th)
            item.values, item.rules = feature_values(m, rules, topics.refers), rules
            item.label = int(item.if_sure[0])  # answered with the best entry, the set counts it right
        items.append(item)

    def left_out(name: str) -> FaqIndex:
        if not out_of_fold:
            return index
        mine = SOURCES.get(name, (name,))
        return index.with_examples(lambda x: x.source not in mine)

    for name, path in id_sets.items():
        oof = left_out(name)
        for c in load_cases(path, index):
            add(oof, name, c.text, _id_flags, c, True, c.label is None and not c.ambiguous)
    for name, path in fact_sets.items():
        oof = left_out(name)
        for c in load_fact_cases(path):
            add(oof, name, c.text, _fact_flags, c, not c.out_of_scope, c.out_of_scope)
    return items


@dataclass(frozen=True)
class Figures:
    n: int
    right: float
    not_sure: float
    wrong: float
    oos: float
    oos_n: int

    def row(self) -> str:
        return (f"{self.right:6.1%} {self.not_sure:8.1%} {self.wrong:6.1%} {self.oos:6.1%} "
                f"({round(self.oos * self.oos_n)} of {self.oos_n})")


def figures(items: list[Item], decide) -> Figures:
    """Right / not sure / wrong / out of scope answered, as bench.faq_eval reports them."""
    n = sum(i.in_scope for i in items)
    right = wrong = oos_answered = 0
    for i in items:
        sure = decide(i) if i.values is not None else False
        r, w, o = i.if_sure if sure else i.if_unsure
        right += r
        wrong += w
        oos_answered += o
    oos_n = sum(i.oos for i in items)
    if not n:  # a set of out-of-scope questions only (oos6a, oos6b)
        return Figures(0, 0.0, 0.0, 0.0, oos_answered / oos_n if oos_n else 0.0, oos_n)
    return Figures(n, right / n, 1 - (right + wrong) / n, wrong / n, oos_answered / oos_n if oos_n else 0.0, oos_n)


def fit(items: list[Item], threshold: float = 0.5, note: Optional[dict] = None) -> ConfidenceModel:
    """Logistic regression on standardised features, returned on the raw features' scale."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    train = [i for i in items if i.values is not None]
    X = np.array([i.x for i in train], dtype=float)
    y = np.array([i.label for i in train])
    sw = np.array([(ID_WEIGHT if i.set in ID_SETS else 1.0) * (OOS_WEIGHT if i.oos else 1.0) for i in train])
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale[scale == 0] = 1.0
    lr = LogisticRegression(C=C, max_iter=5000).fit((X - mean) / scale, y, sample_weight=sw)
    w = lr.coef_[0] / scale
    b = float(lr.intercept_[0] - (lr.coef_[0] * mean / scale).sum())
    return ConfidenceModel(FEATURES, tuple(float(v) for v in w), b, threshold, note or {})


def cross_validate(items: list[Item], names: list[str]) -> dict[float, dict[str, Figures]]:
    """threshold -> left-out set -> figures of a model fitted on the other sets."""
    table: dict[float, dict[str, Figures]] = {t: {} for t in THRESHOLDS}
    for left in names:
        model = fit([i for i in items if i.set != left])
        mine = [i for i in items if i.set == left]
        probs = {id(i): model.probability(i.values) for i in mine if i.values is not None}
        for t in THRESHOLDS:
            table[t][left] = figures(mine, lambda i, t=t: probs[id(i)] >= t)
    return table


def pooled(per_set: dict[str, Figures], names) -> Figures:
    """The left-out sets' figures added up (each question counts once, whatever its set's size)."""
    fs = [per_set[n] for n in names]
    n = sum(f.n for f in fs) or 1
    oos_n = sum(f.oos_n for f in fs)
    right = sum(f.right * f.n for f in fs) / n
    wrong = sum(f.wrong * f.n for f in fs) / n
    oos = sum(f.oos * f.oos_n for f in fs) / oos_n if oos_n else 0.0
    return Figures(n, right, 1 - right - wrong, wrong, oos, oos_n)


def best_within(figures_at: dict[float, Figures]) -> Optional[float]:
    """The threshold with the most right answers whose figures keep within the limits (ties: the higher)."""
    ok = [t for t, f in figures_at.items() if f.wrong <= MAX_WRONG + 1e-9 and f.oos <= MAX_OOS + 1e-9]
    return max(ok, key=lambda t: (round(figures_at[t].right, 6), t)) if ok else None


def set_fingerprints() -> dict[str, str]:
    paths = {**ID_SETS, **{k: (p,) for k, p in FACT_SETS.items()}}
    out = {}
    for name, ps in paths.items():
        h = hashlib.sha256()
        for p in ps:
            h.update(p.read_bytes())
        out[name] = h.hexdigest()[:16]
    return out


def write_model(model: ConfidenceModel, path: Path, cv_rows: dict[str, Figures], final_rows: dict[str, Figures]) -> None:
    data = {
        "version": 1,
        "threshold": model.threshold,
        "intercept": round(model.intercept, 6),
        "weights": {f: round(w, 6) for f, w in zip(model.features, model.weights)},
        "fitted_on": {
            **dict(model.fitted_on),
            "cross_validated": {k: _row_dict(f) for k, f in cv_rows.items()},
            "all_sets": {k: _row_dict(f) for k, f in final_rows.items()},
        },
    }
    head = ("# The FAQ's learned confidence model (dialogs/faq/confidence.py, docs/faq.md \"Confidence model\").\n"
            "# Written by `python -m bench.faq_calibrate`: refit after editing kb.yaml; do not edit by hand.\n")
    path.write_text(head + yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _row_dict(f: Figures) -> dict:
    return {"right": round(f.right, 4), "not_sure": round(f.not_sure, 4), "wrong": round(f.wrong, 4),
            "oos_answered": round(f.oos, 4)}


def main(argv: list[str] | None = None) -> int:
    global MAX_WRONG, MAX_OOS, OOS_WEIGHT
    p = argparse.ArgumentParser(prog="python -m bench.faq_calibrate", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(DEFAULT_MODEL), help="where to write the model (default: %(default)s)")
    p.add_argument("--cache-dir", help="where jieba keeps its dictionary cache")
    p.add_argument("--dry-run", action="store_true", help="cross-validate and fit, write nothing")
    p.add_argument("--check", action="store_true", help="exit 1 when the shipped model was fitted on other files")
    p.add_argument("--max-wrong", type=float, default=MAX_WRONG,
                   help="limit on every left-out set's confidently wrong share (default %(default)s)")
    p.add_argument("--max-oos", type=float, default=MAX_OOS,
                   help="limit on every left-out set's out-of-scope answered share (default %(default)s)")
    p.add_argument("--table", action="store_true", help="print the cross-validated figures at every threshold")
    p.add_argument("--threshold", type=float, help="ship this threshold instead of the one the limits choose")
    p.add_argument("--choose", choices=("validation", "cv"), default="validation",
                   help="choose the threshold on the validation sets (default) or by leaving one training set out")
    p.add_argument("--oos-weight", type=float, default=OOS_WEIGHT,
                   help="weight of an out-of-scope question in the fit (default %(default)s)")
    args = p.parse_args(argv)
    MAX_WRONG, MAX_OOS, OOS_WEIGHT = args.max_wrong, args.max_oos, args.oos_weight
    files = FaqFiles()
    if args.check:
        try:
            model = parse_confidence(files.confidence)
        except FaqError as e:
            print("\n".join(e.errors))
            return 1
        if model is None:
            print(f"no confidence model at {files.confidence}: run `python -m bench.faq_calibrate`")
            return 1
        stale = model.stale(files) or model.fitted_on.get("sets") != set_fingerprints()
        print("the confidence model was fitted on other files: run `python -m bench.faq_calibrate`" if stale
              else "the confidence model was fitted on the current knowledge base and sets")
        return 1 if stale else 0
    try:
        # The rules alone: the model being refitted (perhaps for other features) is not read.
        index = FaqIndex.load(replace(files, confidence=None), cache_dir=args.cache_dir)
    except FaqError as e:
        print("faq_calibrate: invalid files:\n" + "\n".join(f"  {m}" for m in e.errors), file=sys.stderr)
        return 1
    items = collect(index)
    names = list(ID_SETS) + list(FACT_SETS)
    decided = sum(i.values is not None for i in items)
    print(f"{len(items)} questions in {len(names)} sets; {decided} graded by confidence "
          f"(positive: {sum(i.label for i in items if i.values is not None)})")
    never = {n: figures([i for i in items if i.set == n], lambda i: False) for n in names}

    cv = cross_validate(items, names)
    train_names = [n for n in TRAIN_SETS if n in names]
    # The validation sets, graded by the shipped index (every example learned), and the model fitted on every
    # training set: what a new candidate's question meets.
    val_items = collect(index, {}, VALIDATION, out_of_fold=False)
    probe = fit(items)
    val_probs = {id(i): probe.probability(i.values) for i in val_items if i.values is not None}
    val = {t: figures(val_items, lambda i, t=t: val_probs[id(i)] >= t) for t in THRESHOLDS}
    if args.threshold is not None:
        threshold = args.threshold
    else:
        on = val if args.choose == "validation" else {t: pooled(cv[t], train_names) for t in THRESHOLDS}
        threshold = best_within(on)
        if threshold is None:
            raise SystemExit(f"faq_calibrate: no threshold keeps the {args.choose} figures within the limits")
    chosen = pooled(cv[threshold], train_names)
    print(f"\nthreshold {threshold:.3f} ({'given' if args.threshold is not None else 'chosen on ' + args.choose}; "
          f"limits: wrong <= {MAX_WRONG:.1%}, out of scope answered <= {MAX_OOS:.1%})")
    print(f"  left-out training sets, pooled: right {chosen.right:.1%}, wrong {chosen.wrong:.1%}, "
          f"out of scope answered {chosen.oos:.1%}")
    print(f"  validation sets ({', '.join(VALIDATION)}), pooled: right {val[threshold].right:.1%}, "
          f"wrong {val[threshold].wrong:.1%}, out of scope answered {val[threshold].oos:.1%}")
    if args.table:
        print("\nthreshold: validation right / wrong / oos answered || left-out training sets pooled")
        for t in THRESHOLDS[::2]:
            f, v = pooled(cv[t], train_names), val[t]
            print(f"  {t:.3f}  {v.right:.1%} {v.wrong:.1%} {v.oos:.1%} || {f.right:.1%} {f.wrong:.1%} {f.oos:.1%}")
    note = {"kb_fingerprint": fingerprint(files), "sets": set_fingerprints(), "examples": decided,
            "limits": {"wrong": MAX_WRONG, "oos_answered": MAX_OOS}, "C": C, "oos_weight": OOS_WEIGHT,
            "threshold_chosen_on": "given" if args.threshold is not None else args.choose,
            "validation": _row_dict(val[threshold])}
    model = fit(items, threshold, note)
    final = {n: figures([i for i in items if i.set == n], lambda i: model.confident(i.values)) for n in names}
    cv_rows = cv[threshold]
    print(f"\n{'set':6} {'':28} {'right':>6} {'not sure':>8} {'wrong':>6} {'oos answered':>12}")
    for n in names:
        print(f"{n:6} {'model never sure':28} {never[n].row()}")
        print(f"{'':6} {'model, left out (CV)':28} {cv_rows[n].row()}")
        print(f"{'':6} {'model, fitted on all sets':28} {final[n].row()}")
    print("\nweights (raw feature scale):")
    for f, w in zip(model.features, model.weights):
        print(f"  {f:16} {w:+8.3f}")
    print(f"  {'intercept':16} {model.intercept:+8.3f}")
    if args.dry_run:
        return 0
    write_model(model, Path(args.out), cv_rows, final)
    print(f"\nwrote {args.out}; check the figures: zikao-bot faq eval --set seen|seen2|dev|eval")
    return 0


if __name__ == "__main__":
    sys.exit(main())
