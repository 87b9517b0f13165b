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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional

from dialogs.faq.understand import GENERAL, is_question

DEFAULT_MODEL = Path(__file__).resolve().parent / "confidence.yaml"

# The features, in the order of the shipped coefficients. Adding, removing or renaming one needs a
# refit (`python -m bench.faq_calibrate`): a model file fitted for another list is refused.
FEATURES: tuple[str, ...] = (
    "coverage",        # share of the question's weight the best entry's phrasings contain
    "fit",             # idf-weighted Dice overlap of the question with the best entry's closest phrasing
    "runner_ratio",    # runner-up's score / best score (0 when there is none)
    "fit_gap",         # best fit minus the best fit of any other ranked entry
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
    "rule_exact",      # the hand-written rules (index.Rules) that fire
    "rule_clear",
    "rule_slot",
    "rule_named",
    "rule_lead",
    "rule_fits",
    "action_entry",    # the best entry carries an action (a flow or query)
)

# How the model combines with the hand-written rules:
#   model:          answer when the question equals a phrasing, or the model is confident
#   rules_or_model: answer when any rule fires, or the model is confident
COMBINE = ("model", "rules_or_model")


def feature_values(m, rules, refers: Callable[[Optional[str]], bool]) -> dict[str, float]:
    """The features of a ranked Match (index.Match) whose rules (index.Rules) were evaluated (refers: whether
    a business is outside the manuals; no feature uses it while the model leaves referrals to the rules)."""
    ranked = m.ranked
    first = ranked[0]
    e = first.entry
    runner = ranked[1].score / first.score if len(ranked) > 1 and first.score > 0 else 0.0
    other_fit = max((s.fit for s in ranked[1:]), default=0.0)
    rival = any(s.entry.business == e.business and s.entry.aspect in m.aspects and s.score >= 0.6 * first.score
                for s in ranked[1:]) if m.aspects else False
    rival_aspect = bool(m.aspects) and e.aspect not in m.aspects and any(
        s.entry.aspect in m.aspects and s.score >= 0.7 * first.score for s in ranked[1:])
    return {
        "coverage": first.coverage,
        "fit": first.fit,
        "runner_ratio": runner,
        "fit_gap": first.fit - other_fit,
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
        "rule_exact": float(rules.exact),
        "rule_clear": float(rules.clear),
        "rule_slot": float(rules.slot),
        "rule_named": float(rules.named),
        "rule_lead": float(rules.lead),
        "rule_fits": float(rules.fits),
        "action_entry": float(e.action is not None),
    }


@dataclass(frozen=True)
class ConfidenceModel:
    """Logistic regression: p = 1 / (1 + exp(-(intercept + sum(weight * feature)))); confident at p >= threshold."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    intercept: float
    threshold: float
    combine: str = "model"
    fitted_on: Mapping[str, object] = field(default_factory=dict)  # fingerprints, figures (for staff)

    def probability(self, values: Mapping[str, float]) -> float:
        z = self.intercept + sum(w * values[f] for f, w in zip(self.features, self.weights))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def confident(self, values: Mapping[str, float] | Callable[[], Mapping[str, float]], rules) -> bool:
        """values: the features, or a function computing them (only called when the rules do not settle it)."""
        if rules.exact or (self.combine == "rules_or_model" and rules.any):
            return True
        return self.probability(values() if callable(values) else values) >= self.threshold

    def stale(self, files) -> bool:
        """True when the files the model was fitted on (knowledge base and matching data) changed since."""
        want = self.fitted_on.get("kb_fingerprint")
        return bool(want) and want != fingerprint(files)


def fingerprint(files) -> str:
    """A short hash of what the ranking is built from (index.FaqFiles: kb.yaml, synonyms, topics ...)."""
    h = hashlib.sha256()
    for p in (files.kb, files.synonyms, files.userdict, files.stopwords, files.courses, files.topics):
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
    combine = data.get("combine", "model")
    if combine not in COMBINE:
        errors.append(f"{where}: combine must be one of {', '.join(COMBINE)}")
    if errors:
        raise error_cls(errors)
    return ConfidenceModel(names, tuple(float(w) for w in weights.values()), float(data["intercept"]),
                           float(data["threshold"]), combine, dict(data.get("fitted_on") or {}))
