"""A character n-gram signal beside the word-level BM25 (issue 17: questions phrased unlike the KB).

Word-level BM25 misses what jieba splits differently ("毕业证书" vs "毕业 证"), partial words ("审定"
vs "审定费") and typos the pinyin folder does not catch: they share no token with the phrasing, but
they share characters. Here every phrasing and every entry (the union of its phrasings) is a TF-IDF
vector of the character n-grams of its tokens, i.e. of the text after normalisation, entities,
synonym folding and stop words; a question is scored by cosine against each phrasing and its
entry's union, and `FaqIndex.rank` fuses that with BM25 (`fuse`). Built once per index (load),
scored with postings in plain Python: about 0.1 ms per question.

Only the ranking changes: coverage and fit, which grade() uses for confidence, stay word-based.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Container, Iterable, Optional, Sequence


def grams(tokens: Sequence[str], orders: Sequence[int], cross: bool) -> Counter:
    """The n-grams of a token list. A placeholder token (@course ...) is one symbol. With `cross`
    the tokens are read as one run of characters (n-grams across word boundaries: the segmentation
    no longer matters); without, each token on its own."""
    runs: list[list[str]] = []
    for t in tokens:
        sym = [t] if t.startswith("@") else list(t)
        if cross and runs:
            runs[-1].extend(sym)
        else:
            runs.append(sym)
    out: Counter = Counter()
    for run in runs:
        for n in orders:
            for k in range(len(run) - n + 1):
                out["".join(run[k:k + n]) if n > 1 else run[k]] += 1
    return out


class NgramIndex:
    """TF-IDF (sublinear tf, idf over entries) cosine of character n-grams, per phrasing and per entry."""

    def __init__(self, phrasings: Iterable[tuple[int, Sequence[str]]], n_entries: int, *,
                 orders: Sequence[int] = (2,), cross: bool = True, union_weight: float = 0.5) -> None:
        self.orders, self.cross, self.union_weight = tuple(orders), cross, union_weight
        docs: list[tuple[int, Counter]] = [(i, grams(toks, self.orders, cross)) for i, toks in phrasings]
        unions: list[Counter] = [Counter() for _ in range(n_entries)]
        for i, g in docs:
            for k, c in g.items():
                unions[i][k] = max(unions[i][k], c)
        df: Counter = Counter()
        for u in unions:
            df.update(u.keys())
        n = max(n_entries, 1)
        self.idf = {k: math.log((n + 1) / (d + 1)) + 1.0 for k, d in df.items()}
        self.n_entries, self.n_docs = n_entries, len(docs)
        # each entry's phrasings as a range of documents (phrasings come entry by entry)
        self._ranges: list[tuple[int, int]] = [(0, 0)] * n_entries
        for d, (i, _) in enumerate(docs):
            a, b = self._ranges[i]
            self._ranges[i] = (a, d + 1) if b else (d, d + 1)
        if any(i != j for j, (a, b) in enumerate(self._ranges) for i in (docs[k][0] for k in range(a, b))):
            raise ValueError("phrasings must come grouped by entry")
        self._postings = self._build(g for _, g in docs)
        self._union_postings = self._build(unions)

    def _vector(self, counts: Counter) -> dict[str, float]:
        v = {k: (1 + math.log(c)) * self.idf[k] for k, c in counts.items() if k in self.idf}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {k: x / norm for k, x in v.items()}

    def _build(self, vectors: Iterable[Counter]) -> dict[str, list[tuple[int, float]]]:
        postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for d, counts in enumerate(vectors):
            for k, x in self._vector(counts).items():
                postings[k].append((d, x))
        return dict(postings)

    def scores(self, tokens: Sequence[str], among: Optional[Container[int]] = None,
               floor: float = 0.0) -> dict[int, float]:
        """entry index -> similarity in [0, 1]: the best phrasing's cosine plus union_weight times the
        entry's, over 1 + union_weight. Entries sharing no n-gram are absent; with `among`, so are
        the others whose union cosine is below `floor` (time: only the candidates are scored)."""
        q = self._vector(grams(tokens, self.orders, self.cross))
        if not q:
            return {}
        per_doc = [0.0] * self.n_docs  # dense: cheaper than dicts for a few hundred phrasings
        per_entry = [0.0] * self.n_entries
        postings, union_postings = self._postings, self._union_postings
        for k, x in q.items():
            for d, y in postings.get(k, ()):
                per_doc[d] += x * y
            for i, y in union_postings.get(k, ()):
                per_entry[i] += x * y
        uw = self.union_weight
        scale = 1 / (1 + uw)
        ranges = self._ranges
        return {i: (max(per_doc[ranges[i][0]:ranges[i][1]]) + uw * s) * scale
                for i, s in enumerate(per_entry) if s and (among is None or i in among or s >= floor)}


def fuse(bm25: dict[int, float], ngram: dict[int, float], weight: float, mode: str = "add",
         floor: float = 0.0) -> dict[int, float]:
    """BM25 scores (entry -> score) with the n-gram similarity folded in.

    add:  score + weight * top * sim, where top is the question's best BM25 score: the scale of BM25
          is kept (grade()'s runner-up ratios still compare like with like), and an entry BM25 never
          reached can enter the list (when its similarity is at least `floor`), at most weight * top.
    mult: score * (1 - weight + weight * sim / best sim): only entries BM25 reached.
    """
    if not weight or not ngram or not bm25:
        return bm25
    if mode == "mult":
        peak = max(ngram.values()) or 1.0
        return {i: s * (1 - weight + weight * ngram.get(i, 0.0) / peak) for i, s in bm25.items()}
    top = max(bm25.values())
    out = dict(bm25)
    for i, sim in ngram.items():
        if i in out:
            out[i] += weight * top * sim
        elif sim >= floor:
            out[i] = weight * top * sim
    return out
