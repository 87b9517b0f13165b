"""A second opinion on which entry a question is about: multinomial naive Bayes over character n-grams and
words, learned from the entries' phrasings and from labelled candidate questions (examples.yaml).

The ranking (index.py: BM25, Dice fit, character n-grams) reads a question against an entry's own phrasings;
this model reads it against everything candidates were seen to ask, and it has a class for questions the
knowledge base does not answer (out of scope). Its posterior is one more input of the ranking and of the
confidence model (confidence.py), and where it agrees with the ranking a new phrasing is much more likely to
be right (docs/faq.md "Examples and the second opinion").

Written by hand, not with scikit-learn, because it is trained when the index loads (from plain text, so an
edited kb.yaml or examples.yaml needs no refit step) and applied in pure Python: the service does not depend
on scikit-learn or numpy. Counting and adding logarithms is all naive Bayes is.
"""
from __future__ import annotations

import math
import re
from array import array
from collections import Counter, defaultdict
from typing import Iterable, Mapping, Sequence

OUT_OF_SCOPE = "__out_of_scope__"  # the class of questions the knowledge base does not answer
# A word (after synonyms, with the placeholders @course, @foreign_course ...) counts as this many character
# n-grams: the words carry the meaning, the n-grams catch typos and other segmentations.
WORD_WEIGHT = 3  # chosen on the validation sets with 1, 2, 3 (docs/faq.md)

_PUNCT = re.compile(r"[\s，。？！、；：,.?!;:“”\"'（）()\[\]【】《》<>~～…·\-—_/\\|]+")


def features(prepared: str, tokens: Sequence[str], orders: tuple[int, ...] = (1, 2, 3)) -> Counter:
    """Character n-grams of the normalised text (within runs between punctuation and spaces, padded) and the
    analyzer's words (after synonyms), as one bag."""
    bag: Counter = Counter()
    for run in _PUNCT.split(prepared):
        if not run:
            continue
        padded = f" {run} "
        for n in orders:
            if n == 1:
                bag.update(run)  # single characters, without the padding
                continue
            for i in range(len(padded) - n + 1):
                bag[padded[i:i + n]] += 1
    for t in tokens:
        bag["w:" + t] += WORD_WEIGHT
    # A course that is not a foreign language one says so: naive Bayes sees no absence, and "马原能免考吗"
    # must not read like "英语二能免考吗" (the CET / PETS exemptions).
    if "w:@course" in bag and "w:@foreign_course" not in bag:
        bag["w:@other_course"] += WORD_WEIGHT
    return bag


class NaiveBayes:
    """Multinomial naive Bayes with additive smoothing and a uniform prior over classes (how many examples an
    entry happens to have says nothing about how likely a question is to be about it)."""

    def __init__(self, bags: Iterable[Counter], labels: Iterable[str], alpha: float = 0.1) -> None:
        totals: dict[str, Counter] = defaultdict(Counter)
        for bag, label in zip(bags, labels):
            totals[label].update(bag)
        self.classes: tuple[str, ...] = tuple(sorted(totals))
        vocab = set()
        for c in totals.values():
            vocab.update(c)
        v = len(vocab)
        self.alpha = alpha
        # log P(feature | class) for seen (feature, class) pairs, as one row per feature; an unseen pair
        # takes the class's floor.
        self._floor = [math.log(alpha / (sum(totals[c].values()) + alpha * v)) for c in self.classes]
        rows: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        for k, c in enumerate(self.classes):
            denom = sum(totals[c].values()) + alpha * v
            for f, n in totals[c].items():
                ks, lifts = rows[f]
                ks.append(k)
                lifts.append(math.log((n + alpha) / denom) - self._floor[k])
        # One packed row per feature (compressed sparse rows): a few MB, where a dict of lists of tuples took
        # tens (the index lives in every process).
        self._row: dict[str, int] = {}
        self._start = array("I", [0])
        self._class = array("H")
        self._lift = array("f")
        for f, (ks, lifts) in rows.items():
            self._row[f] = len(self._start) - 1
            self._class.extend(ks)
            self._lift.extend(lifts)
            self._start.append(len(self._class))

    def posteriors(self, bag: Mapping[str, int]) -> tuple[dict[str, float], dict[str, float]]:
        """P(class | question) for every class (features never seen in training are ignored), plain and
        tempered. Naive Bayes counts every overlapping n-gram as independent evidence, so its plain
        posteriors are nearly always 0 or 1; the tempered reading divides the log-likelihoods by the square
        root of the number of known features, a softer one the confidence model reads beside the plain."""
        scores = [0.0] * len(self.classes)
        known = 0
        start, classes, lifts = self._start, self._class, self._lift
        for f, n in bag.items():
            r = self._row.get(f)
            if r is None:
                continue
            known += n
            for j in range(start[r], start[r + 1]):
                scores[classes[j]] += n * lifts[j]
        if not known:
            u = {c: 1 / len(self.classes) for c in self.classes}
            return u, u
        scores = [s + known * fl for s, fl in zip(scores, self._floor)]
        scale = math.sqrt(known)
        return self._softmax(scores), self._softmax([s / scale for s in scores])

    def posterior(self, bag: Mapping[str, int]) -> dict[str, float]:
        return self.posteriors(bag)[0]

    def _softmax(self, scores: list[float]) -> dict[str, float]:
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        z = sum(exps)
        return {c: e / z for c, e in zip(self.classes, exps)}
