"""The learned confidence model: whether the best-ranked entry is worth answering with (docs/faq.md
"Confidence model").

A logistic regression over a handful of features of a ranking (coverage, fit, the runner-up, business
and aspect agreement, which hand-written rule fired ...), fitted by `python -m bench.faq_calibrate`
on the labelled question sets and shipped as plain numbers in `confidence.yaml`. Applying it is pure
Python: the service does not need scikit-learn.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional

from dialogs.faq.understand import GENERAL, is_question

DEFAULT_MODEL = Path(__file__).resolve().parent / "confidence.yaml"

# The features, in the order of the shipped coefficients. Adding, removing or renaming one needs a
# refit (`python -m bench.faq_calibrate`): a model file fitted for another list is refused. Since wave 6
# the model decides every ranking but exact phrasings and requests for a flow (index.grade), so the
# hand-written rules' verdicts are features too.
FEATURES: tuple[str, ...] = (
    "coverage",        # share of the question's weight the best entry's phrasings contain
    "fit",             # idf-weighted Dice overlap of the question with the best entry's closest phrasing
    "runner_ratio",    # runner-up's score / best score, BM25's (what the rules read; 0 when there is none)
    "fit_gap",         # best fit minus the best fit of any other ranked entry
    "coverage_gap",    # best coverage of the next two entries minus the best entry's (n-grams may rank first
                       # an entry covering less)
    "sim",             # character n-gram similarity of the question with the best entry (wave 5)
    "sim_gap",         # ... minus the best similarity of any other ranked entry
    "fused_ratio",     # runner-up's fused score (BM25 + n-grams, what the list is ranked by) / the best's
    "bm25_first",      # the best entry also has the highest BM25 score (the n-grams did not reorder the top)
    "sibling_runner",  # the runner-up is of the same business and tells the same aspect
    "names_business",  # the question names a business (免考, 补登 ...)
    "of_business",     # ... and the best entry is of it (or lists it under `also`)
    "general_entry",   # the best entry is of 通用 (fits every business)
    "asks_aspect",     # the question asks an aspect (材料, 时间 ...)
    "tells_aspect",    # ... and the best entry tells it
    "rival_slot",      # a runner-up of the same business telling an asked aspect scores >= 0.6 of the best
    "rival_aspect",    # the best entry does not tell the aspect asked, and a runner-up at >= 0.7 of its score does
    "unknown_words",   # how many of the question's words the knowledge base never uses (capped at 3)
    "log_tokens",      # log(1 + number of distinct tokens)
    "single_word",     # one token that is not itself a phrasing ("密码")
    "question",        # a question ("…吗", "怎么…"), not a request or a keyword (understand.is_question)
    "action_entry",    # the best entry carries an action (a flow or query)
    "number_unstated", # the question asks how much / how long / how many, and the best entry's answer has no number
    # Wave 6: the second opinion (classifier.py) and the hand-written rules, now that the model decides every
    # ranking (index.grade) and learns from out-of-fold examples (bench/faq_calibrate.py).
    "nb_p",            # the classifier's posterior for the best entry
    "nb_log",          # log(posterior) / 10
    "nb_margin",       # ... minus the highest posterior of any other entry
    "nb_oos",          # the classifier's posterior for "out of scope"
    "agree_base",      # the best entry is also first without the second opinion
    "agree_nb",        # the best entry is also the classifier's first
    "base_ratio",      # the best entry's fused score / the highest fused score of the list
    "rules_any",       # a hand-written rule is confident (index.rules_of)
    "rule_clear",
    "rule_slot",
    "rule_named",
    "rule_lead",
    "rule_fits",
    "nbt_p",           # the classifier's tempered posterior for the best entry (NaiveBayes.posteriors)
    "nbt_margin",      # ... minus the highest tempered posterior of any other entry
    "nbt_oos",         # the tempered posterior for "out of scope"
    "told",            # share of the question's weight found in the best entry's phrasings or answer
    "lacks",           # the heaviest question word in neither, as a share of the largest idf ("审定费能用支付宝付吗")
    "outside",         # the two-class second opinion's (tempered) probability that the question is out of scope
    "all_told",        # every question word is in the best entry's phrasings or answer
    "base_rank",       # where the ranking without the second opinion put the best entry (0: first; capped at 5)
)

ASKS_NUMBER = re.compile(r"多少|多久|多长|几")
STATES_NUMBER = re.compile(r"\d|[一二三四五六七八九十两]个?(工作日|天|周|月|年|门|次|分|字|元|学分)")


def feature_values(m, rules, refers: Callable[[Optional[str]], bool]) -> dict[str, float]:
    """The features of a ranked Match (index.Match) whose rules (index.Rules) were evaluated (refers: whether
    a business is outside the manuals; no feature uses it while the model leaves referrals to the rules)."""
    ranked = m.ranked
    first = ranked[0]
    e = first.entry
    rest = ranked[1:]
    runner = rest[0].score / first.score if rest and first.score > 0 else 0.0
    fused_runner = rest[0].fused / first.fused if rest and first.fused > 0 else 0.0
    other_fit = max((s.fit for s in rest), default=0.0)
    other_sim = max((s.sim for s in rest), default=0.0)
    other_cov = max((s.coverage for s in rest[:2]), default=0.0)
    rival = any(s.entry.business == e.business and s.entry.aspect in m.aspects and s.score >= 0.6 * first.score
                for s in rest) if m.aspects else False
    rival_aspect = bool(m.aspects) and e.aspect not in m.aspects and any(
        s.entry.aspect in m.aspects and s.score >= 0.7 * first.score for s in rest)
    sibling = bool(rest) and rest[0].entry.business == e.business and rest[0].entry.aspect == e.aspect
    return {
        "coverage": first.coverage,
        "fit": first.fit,
        "runner_ratio": min(runner, 2.0),
        "fit_gap": first.fit - other_fit,
        "coverage_gap": other_cov - first.coverage,
        "sim": first.sim,
        "sim_gap": first.sim - other_sim,
        "fused_ratio": min(fused_runner, 1.0),
        "bm25_first": float(all(s.score <= first.score for s in rest)),
        "sibling_runner": float(sibling),
        "names_business": float(bool(m.businesses)),
        "of_business": float(e.of(m.businesses)),
        "general_entry": float(e.business == GENERAL),
        "asks_aspect": float(bool(m.aspects)),
        "tells_aspect": float(e.aspect in m.aspects),
        "rival_slot": float(rival),
        "rival_aspect": float(rival_aspect),
        "unknown_words": float(min(len(m.unknown), 3)),
        "log_tokens": math.log1p(len(set(m.tokens))),
        "single_word": float(rules.single_word_topic),
        "question": float(is_question(m.text)),
        "action_entry": float(e.action is not None),
        "number_unstated": float(bool(ASKS_NUMBER.search(m.text)) and not STATES_NUMBER.search(e.answer)),
        **_second_opinion(m, rules),
    }


def _second_opinion(m, rules) -> dict[str, float]:
    from dialogs.faq.classifier import OUT_OF_SCOPE

    first = m.ranked[0]
    post = m.posterior or {}
    others = max((p for k, p in post.items() if k not in (OUT_OF_SCOPE, first.entry.id)), default=0.0)
    top_fused = max((s.fused for s in m.ranked), default=0.0)
    calm = m.tempered or {}
    calm_others = max((p for k, p in calm.items() if k not in (OUT_OF_SCOPE, first.entry.id)), default=0.0)
    mine = post.get(first.entry.id, 0.0)
    return {
        "nb_p": mine,
        "nb_log": math.log(mine + 1e-6) / 10,
        "nb_margin": mine - others,
        "nb_oos": post.get(OUT_OF_SCOPE, 0.0),
        "agree_base": float(first.base_rank == 0),
        "agree_nb": float(bool(post) and mine >= others),
        "base_ratio": first.fused / top_fused if top_fused > 0 else 0.0,
        "rules_any": float(rules.any),
        "rule_clear": float(rules.clear),
        "rule_slot": float(rules.slot),
        "rule_named": float(rules.named),
        "rule_lead": float(rules.lead),
        "rule_fits": float(rules.fits),
        "nbt_p": calm.get(first.entry.id, 0.0),
        "nbt_margin": calm.get(first.entry.id, 0.0) - calm_others,
        "nbt_oos": calm.get(OUT_OF_SCOPE, 0.0),
        "told": first.told,
        "lacks": first.lacks,
        "outside": m.outside or 0.0,
        "all_told": float(first.lacks == 0),
        "base_rank": float(min(first.base_rank, 5)),
    }


@dataclass(frozen=True)
class ConfidenceModel:
    """Logistic regression: p = 1 / (1 + exp(-(intercept + sum(weight * feature)))); confident at p >= threshold.
    Decides every ranking but a question that equals a phrasing and a request for an entry's action
    (index.grade); the hand-written rules are among its features."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    intercept: float
    threshold: float
    fitted_on: Mapping[str, object] = field(default_factory=dict)  # fingerprints, figures (for staff)

    def probability(self, values: Mapping[str, float]) -> float:
        z = self.intercept + sum(w * values[f] for f, w in zip(self.features, self.weights))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def confident(self, values: Mapping[str, float] | Callable[[], Mapping[str, float]]) -> bool:
        """values: the features, or a function computing them."""
        return self.probability(values() if callable(values) else values) >= self.threshold

    def stale(self, files) -> bool:
        """True when the files the model was fitted on (knowledge base and matching data) changed since:
        the model still applies (its features do not name entries), but a refit may do better."""
        want = self.fitted_on.get("kb_fingerprint")
        return bool(want) and want != fingerprint(files)


def fingerprint(files) -> str:
    """A short hash of what the ranking is built from (index.FaqFiles: kb.yaml, synonyms, topics ...)."""
    h = hashlib.sha256()
    for p in (files.kb, files.synonyms, files.userdict, files.stopwords, files.courses, files.topics,
              getattr(files, "examples", None)):
        if p is None:
            continue
        try:
            h.update(Path(p).read_bytes())
        except OSError:
            h.update(b"-")
        h.update(b"\0")
    return h.hexdigest()[:16]


def parse_model(data: object, where: str, error_cls) -> ConfidenceModel:
    """A model from confidence.yaml's data; refuses one fitted for another feature list."""
    errors: list[str] = []
    if not isinstance(data, dict) or not isinstance(data.get("weights"), dict):
        raise error_cls([f"{where}: expected a mapping with 'weights:' (feature: coefficient)"])
    weights = data["weights"]
    names = tuple(weights)
    if names != FEATURES:
        missing = [f for f in FEATURES if f not in weights]
        extra = [f for f in names if f not in FEATURES]
        errors.append(f"{where}: fitted for other features (missing: {', '.join(missing) or '-'}; "
                      f"unknown: {', '.join(extra) or '-'}{'; order differs' if not missing and not extra else ''}); "
                      f"refit with `python -m bench.faq_calibrate`")
    for k in ("intercept", "threshold"):
        if not isinstance(data.get(k), (int, float)):
            errors.append(f"{where}: '{k}' must be a number")
    if not all(isinstance(w, (int, float)) for w in weights.values()):
        errors.append(f"{where}: every weight must be a number")
    if errors:
        raise error_cls(errors)
    return ConfidenceModel(names, tuple(float(w) for w in weights.values()), float(data["intercept"]),
                           float(data["threshold"]), dict(data.get("fitted_on") or {}))
