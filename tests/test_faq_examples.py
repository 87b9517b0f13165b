"""The FAQ's second opinion (dialogs/faq/classifier.py) and its examples (examples.yaml, docs/faq.md "Examples and
the second opinion"): naive Bayes itself, the examples file's rules, and that no question of the held-out or
validation sets is among what the service learned from."""
from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path

import pytest
import yaml

from dialogs.faq.classifier import OUT_OF_SCOPE, NaiveBayes, features
from dialogs.faq.evaluate import EXAMPLE_SOURCES, FACT_SETS, HELDOUT, VALIDATION_SETS, load_fact_cases
from dialogs.faq.index import PACKAGE_DIR, Example, FaqError, FaqFiles, FaqIndex, normalize, parse_examples

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("jieba"))


def bag(*grams: str) -> Counter:
    return Counter(grams)


def test_naive_bayes_prefers_the_class_whose_examples_share_the_features():
    nb = NaiveBayes([bag("免", "考", "材料"), bag("免", "考", "时间"), bag("毕", "业", "材料")],
                    ["exemption", "exemption", "graduation"], alpha=0.1)
    plain, tempered = nb.posteriors(bag("免", "考"))
    assert math.isclose(sum(plain.values()), 1.0) and math.isclose(sum(tempered.values()), 1.0)
    assert plain["exemption"] > 0.9
    # the tempered reading is softer, and agrees on the order
    assert 0.5 < tempered["exemption"] < plain["exemption"]
    # features never seen are ignored; with none known every class is equally likely
    assert nb.posterior(bag("免", "考", "从未见过")) == plain
    assert nb.posterior(bag("从未见过")) == {"exemption": 0.5, "graduation": 0.5}


def test_the_prior_is_uniform_whatever_the_number_of_examples():
    # a class with many examples does not win a question that fits both equally
    nb = NaiveBayes([bag("a")] * 20 + [bag("a")], ["many"] * 20 + ["few"], alpha=0.1)
    p = nb.posterior(bag("a"))
    assert math.isclose(p["many"], p["few"], rel_tol=0.05)


def test_features_are_character_ngrams_and_weighted_words():
    f = features("免考材料 吗", ["免考", "材料"])
    assert f["免"] == 1 and f[" 免考"] == 1 and f["考材料"] == 1 and f["材料 "] == 1
    assert f["w:免考"] == f["w:材料"] > 1  # a word weighs more than one n-gram
    assert "料 吗" not in f  # n-grams stay within runs between spaces and punctuation
    # a course that is not a foreign-language one says so (naive Bayes sees no absence)
    assert "w:@other_course" in features("能免考吗", ["@course", "免考"])
    assert "w:@other_course" not in features("能免考吗", ["@course", "@foreign_course", "免考"])


def test_examples_file_rules(tmp_path):
    path = tmp_path / "examples.yaml"
    path.write_text("version: 1\nsources:\n  office:\n    exemption-apply:\n    - 免考在手机上怎么弄\n"
                    "    out_of_scope:\n    - 报名费多少钱\n", encoding="utf-8")
    assert parse_examples(path) == [Example("office", "exemption-apply", "免考在手机上怎么弄"),
                                    Example("office", OUT_OF_SCOPE, "报名费多少钱")]
    assert parse_examples(None) == [] and parse_examples(tmp_path / "absent.yaml") == []
    path.write_text("version: 1\nsources:\n  office:\n    exemption-apply: 免考\n", encoding="utf-8")
    with pytest.raises(FaqError, match="expected a list of questions"):
        parse_examples(path)
    path.write_text("version: 1\nexamples: []\n", encoding="utf-8")
    with pytest.raises(FaqError, match="sources"):
        parse_examples(path)


def test_examples_of_a_deleted_entry_are_left_out_with_a_warning(tmp_path, cache_dir, caplog):
    kb = tmp_path / "kb.yaml"
    kb.write_text("version: 1\nentries:\n- id: only\n  questions: [怎么申请免考, 免考怎么办理]\n"
                  "  answer: 回复“免考”开始办理。\n  source: test\n", encoding="utf-8")
    (tmp_path / "examples.yaml").write_text(
        "version: 1\nsources:\n  office:\n    only:\n    - 免考咋弄\n    gone:\n    - 毕业咋弄\n", encoding="utf-8")
    files = FaqFiles.with_kb(kb)
    assert files.examples == tmp_path / "examples.yaml"  # the examples beside the knowledge base
    with caplog.at_level(logging.WARNING, logger="zikao.faq"):
        ix = FaqIndex.load(files, cache_dir=cache_dir)
    assert [x.text for x in ix.examples] == ["免考咋弄"]
    assert "gone" in caplog.text
    # another knowledge base without an examples.yaml beside it learns from its phrasings only
    other = tmp_path / "other" / "kb.yaml"
    other.parent.mkdir()
    other.write_text(kb.read_text(encoding="utf-8"), encoding="utf-8")
    assert FaqFiles.with_kb(other).examples is None


def test_the_shipped_examples_name_entries_of_the_shipped_knowledge_base(cache_dir):
    ix = FaqIndex.load(cache_dir=cache_dir)
    examples = parse_examples(PACKAGE_DIR / "examples.yaml")
    assert len(examples) > 4000 and len(ix.examples) == len(examples)
    assert {x.source for x in examples} <= set(EXAMPLE_SOURCES)


def test_no_held_out_or_validation_question_is_learned_from():
    """The sealed set and the validation sets stay apart: no question of theirs is an example (the generator
    leaves out a development question they happen to ask too)."""
    learned = {x.text for x in parse_examples(PACKAGE_DIR / "examples.yaml")}
    assert "heldout" not in EXAMPLE_SOURCES and not set(VALIDATION_SETS) & set(EXAMPLE_SOURCES)
    for name in VALIDATION_SETS:
        assert not {normalize(c.text) for c in load_fact_cases(FACT_SETS[name])} & {normalize(t) for t in learned}, name
    if HELDOUT.exists():
        # read for their texts only: nothing here looks at what they expect
        texts = {normalize(q["q"]) for q in yaml.safe_load(HELDOUT.read_text(encoding="utf-8"))["questions"]}
        assert not texts & {normalize(t) for t in learned}


def test_the_second_opinion_is_part_of_every_ranking(cache_dir):
    ix = FaqIndex.load(cache_dir=cache_dir)
    m = ix.match("免烤要啥材料")
    assert m.posterior and m.tempered and 0.0 <= m.outside <= 1.0
    assert all(0.0 <= s.nb <= 1.0 for s in m.ranked)
    # a course named is read as a course, not as its characters: 马原 is not the English exemption
    assert ix.match("马原能免考吗").ranked[0].entry.id == "exemption-who"
    assert ix.match("英语二能免考吗").ranked[0].entry.id == "exemption-cet4"
    # the two-class opinion: a question about the weather is out of scope, one about 免考 materials is not
    assert ix.match("今天上海天气怎么样").outside > 0.9
    assert ix.match("免考要准备什么材料").outside < 0.1
