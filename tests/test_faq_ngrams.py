"""The character n-gram signal beside BM25 (dialogs/faq/ngrams.py, issue 17 wave 5)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from bench import faq_eval, faq_ngram
from dialogs.faq import ANSWER, FaqIndex
from dialogs.faq.ngrams import NgramIndex, fuse, grams

OFF_TOPIC = ("今天天气怎么样", "公积金怎么提取", "附近有什么好吃的", "股票怎么买", "我想买车", "帮我订一张去北京的机票")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("jieba"))


@pytest.fixture(scope="module")
def index(cache_dir) -> FaqIndex:
    """BM25 with the n-grams, without the second opinion's reordering (wave 6), to tell what the n-grams do."""
    ix = FaqIndex.load(cache_dir=cache_dir)
    ix = ix.with_params(replace(ix.params, nb_mix=1.0))
    ix.warm()
    return ix


@pytest.fixture(scope="module")
def without(index) -> FaqIndex:
    """The same knowledge base ranked by BM25 alone."""
    return index.with_params(replace(index.params, ngram_weight=0.0))


def top(ix: FaqIndex, text: str) -> str:
    m = ix.match(text)
    return m.ranked[0].entry.id if m.ranked else ""


# ---------------------------------------------------------------- the signal on its own

def test_grams_within_words_or_across_them():
    assert grams(["毕业证书", "@course"], (1, 2), cross=False) == {
        "毕": 1, "业": 1, "证": 1, "书": 1, "毕业": 1, "业证": 1, "证书": 1, "@course": 1}
    # across words, the segmentation does not matter: "毕业 证书" reads like "毕业证书"
    assert grams(["毕业", "证书"], (2,), cross=True) == grams(["毕业证书"], (2,), cross=True)
    assert "业证" not in grams(["毕业", "证书"], (2,), cross=False)


def test_a_typo_or_a_split_word_still_shares_characters_with_its_phrasing():
    ng = NgramIndex([(0, ["免考", "申请"]), (0, ["申请", "免考", "条件"]), (1, ["毕业证书", "申请"]), (2, ["修改", "密码"])],
                    3, orders=(1, 2), cross=False)
    typo = ng.scores(["免烤", "申请"])  # a typo the pinyin folder would not catch: no word in common but 申请
    assert max(typo, key=typo.get) == 0
    split = ng.scores(["毕业", "证", "书"])  # jieba split the word: no token in common at all
    assert max(split, key=split.get) == 1 and 2 not in split
    assert all(0.0 < s <= 1.0 + 1e-9 for s in split.values())
    assert ng.scores(["天气"]) == {}


def test_fusion_keeps_bm25s_scale_and_lets_in_only_close_strangers():
    bm25 = {0: 10.0, 1: 8.0}
    fused = fuse(bm25, {0: 0.1, 1: 0.9, 2: 0.2, 3: 0.5}, 1.0, floor=0.3)
    assert fused[1] > fused[0]  # reordered by the characters ...
    assert fused[0] == pytest.approx(10.0 + 10.0 * 0.1)  # ... in BM25's units (the question's best score)
    assert 2 not in fused and fused[3] == pytest.approx(5.0)
    assert fuse(bm25, {0: 0.5}, 0.0) == bm25 and fuse({}, {0: 0.5}, 1.0) == {}


# ---------------------------------------------------------------- in the packaged knowledge base

# A character dropped while typing splits a word into pieces BM25 does not know (wave 5's synonyms
# now cover the earlier examples 免烤, 忘啦 and 转出去, so these are what only the n-grams still catch).
@pytest.mark.parametrize("text, entry_id", [
    ("绑定不上", "bind-how"),  # BM25 alone: the forgotten-password entry
    ("在线证码是什么", "grad-verification-code"),  # 验 dropped
    ("毕证书去哪里领", "grad-certificate"),  # 业 dropped: BM25 alone says the degree certificate
    ("免考么时候可以申请", "exemption-window"),  # 什 dropped: BM25 alone says how to apply
])
def test_questions_unlike_the_phrasings_rank_the_right_entry_first(index, without, text, entry_id):
    assert top(index, text) == entry_id
    assert top(without, text) != entry_id  # what the n-grams changed


def test_grading_reads_the_same_word_based_figures(index, without):
    # coverage and fit stay word-based, and (ngram_score "bm25") each entry keeps its BM25 score:
    # the thresholds of grade() mean what they did.
    for text in ("免烤什么时候开始", "密码给忘啦", "毕业审定费多少", "补登要传什么照片", *OFF_TOPIC):
        m = without.match(text)
        plain = {s.entry.id: s for s in without.rank(list(m.tokens), 200, businesses=m.businesses, aspects=m.aspects)}
        for s in index.match(text).ranked:
            if s.entry.id in plain:
                p = plain[s.entry.id]
                assert (s.score, s.coverage, s.fit) == pytest.approx((p.score, p.coverage, p.fit)), (text, s.entry.id)


def test_off_topic_questions_gain_no_confidence(index, without):
    for text in OFF_TOPIC:
        got, was = index.match(text), without.match(text)
        assert got.kind != ANSWER, text
        assert got.kind == was.kind, text
        assert max((s.coverage for s in got.ranked), default=0) <= max((s.coverage for s in was.ranked), default=0) + 1e-9


def test_the_signal_is_built_once_and_stays_fast(index):
    assert index._ngrams is not None
    import time
    started = time.perf_counter()
    for _ in range(20):
        for text in ("免烤什么时候开始", "密码给忘啦", "毕业申请啥时候开始", "公积金怎么提取"):
            index.match(text)
    assert (time.perf_counter() - started) / 80 < 0.005  # well under a millisecond on a quiet machine


# ---------------------------------------------------------------- the measurement tooling

def test_top1_option_prints_what_the_best_ranked_entries_say(cache_dir, capsys, tmp_path):
    sealed = tmp_path / "facts.yaml"
    sealed.write_text("questions:\n- q: 怎么修改密码\n  business: 账户\n  expect:\n  - [修改密码]\n"
                      "- q: 今天天气怎么样\n  business: 账户\n  expect:\n  - [晴]\n", encoding="utf-8")
    assert faq_eval.main(["--set", str(sealed), "--top1", "--cache-dir", cache_dir]) == 0
    out = capsys.readouterr().out
    assert "top-1 says the facts  50.0%" in out and "top-3 says the facts  50.0%" in out


def test_leave_one_set_out_picks_on_four_sets_and_never_a_setting_raising_wrong():
    sets = faq_ngram.ALL
    base = {s: {"top1": 0.8, "top3": 0.9, "right": 0.7, "wrong": 0.01} for s in sets}
    risky = {s: {**base[s], "top1": 0.95, "wrong": 0.05} for s in sets}  # best top-1, more wrong
    good = {s: {**base[s], "top1": 0.85} for s in sets}
    odd = {s: {**base[s], "top1": 0.9 if s == "dev1" else 0.8} for s in sets}  # only good where left out
    rows = faq_ngram.loso([("off", base), ("risky", risky), ("good", good), ("odd", odd)])
    assert [r[0] for r in rows] == list(sets)
    assert {r[1] for r in rows} == {"good"}


def test_suggestions_when_one_of_the_best_three_covers_the_question(index):
    from dialogs.faq.index import NONE, SUGGEST, Match, Scored, grade
    a, b, c = (index.get(i) for i in ("password-forgot", "password-change", "password-initial"))
    th = index.params.thresholds
    ranked = (Scored(a, 4.0, 0.35, 0.3), Scored(b, 4.5, 0.6, 0.4), Scored(c, 1.0, 0.2, 0.1))
    m = grade(Match(kind=NONE, text="密码给忘啦", ranked=ranked, tokens=("密码", "忘啦")), th, index.topics)
    assert m.kind == SUGGEST and m.suggestion_ids[:2] == ("password-forgot", "password-change")
    low = tuple(replace(s, coverage=0.3) for s in ranked)
    assert grade(Match(kind=NONE, text="x", ranked=low, tokens=("x",)), th, index.topics).kind == NONE
