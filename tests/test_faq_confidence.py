"""The FAQ's learned confidence model (docs/faq.md "Confidence model"): the shipped coefficients fit the
code's feature list, the file loads and applies without scikit-learn, the model decides every ranking but
exact phrasings and requests for a flow (wave 6), never answers where the reply must refer on, and a
knowledge base edited since the fit is a warning, not a failure."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from dialogs.faq import ANSWER, SUGGEST, FaqError, FaqFiles, FaqIndex
from dialogs.faq.confidence import DEFAULT_MODEL, FEATURES, ConfidenceModel, feature_values, parse_model
from dialogs.faq.index import REFER, Scored, grade, parse_confidence, rules_of, unstated_fact
from dialogs.faq.understand import is_question

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("jieba"))


@pytest.fixture(scope="module")
def index(cache_dir) -> FaqIndex:
    return FaqIndex.load(cache_dir=cache_dir)


def shipped() -> dict:
    return yaml.safe_load(DEFAULT_MODEL.read_text(encoding="utf-8"))


def test_the_shipped_coefficients_are_those_of_the_current_feature_list():
    # A feature added, removed, renamed or moved in confidence.FEATURES without refitting fails here:
    # run `.venv/bin/python -m bench.faq_calibrate` (docs/faq.md "Confidence model").
    data = shipped()
    assert tuple(data["weights"]) == FEATURES, "refit: .venv/bin/python -m bench.faq_calibrate"
    model = parse_model(data, str(DEFAULT_MODEL), FaqError)
    assert model.features == FEATURES and 0 < model.threshold < 1
    assert {"kb_fingerprint", "sets", "cross_validated", "all_sets"} <= set(model.fitted_on)


def test_a_model_fitted_for_other_features_is_refused():
    data = shipped()
    data["weights"] = {**data["weights"], "a_new_feature": 0.5}
    with pytest.raises(FaqError, match="refit"):
        parse_model(data, "confidence.yaml", FaqError)
    del data["weights"]["coverage"]
    with pytest.raises(FaqError, match="missing: coverage"):
        parse_model(data, "confidence.yaml", FaqError)


def test_a_model_fitted_on_other_files_still_applies_and_is_only_a_warning(index, tmp_path):
    # The office adds an entry to kb.yaml without refitting: the model keeps answering (its features
    # name no entry), `zikao-bot faq check` / `faq eval` say a refit may help, nothing fails.
    from bot.faq_cli import _summary
    from bot.faq_eval import confidence_line
    old = replace(index.confidence, fitted_on={"kb_fingerprint": "0" * 16})
    ix = index.with_confidence(old)
    assert old.stale(index.files)
    assert "refit" in _summary(ix, tmp_path / "kb.yaml") and "ok" in _summary(ix, tmp_path / "kb.yaml")
    assert "refit" in confidence_line(ix)
    assert ix.match("免考要准备什么材料").kind == ANSWER


def test_the_model_loads_and_answers_without_scikit_learn(tmp_path):
    # The service applies the coefficients in pure Python: scikit-learn (and numpy) stay in bench/.
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('sklearn', 'numpy', 'scipy'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from dialogs.faq import FaqIndex\n"
        f"ix = FaqIndex.load(cache_dir={str(tmp_path)!r})\n"
        "assert ix.confidence is not None and ix.confidence.threshold\n"
        "m = ix.match('免考要准备什么材料')\n"
        "print(m.kind, m.entry.id if m.entry else '-')\n"
        "assert not any(k.split('.')[0] in ('sklearn', 'numpy', 'scipy') for k in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("answer ")


def test_without_a_model_file_the_rules_decide(tmp_path, cache_dir):
    files = replace(FaqFiles(), confidence=tmp_path / "absent.yaml")
    assert parse_confidence(files.confidence) is None and parse_confidence(None) is None
    ix = FaqIndex.load(files, cache_dir=cache_dir)
    assert ix.confidence is None and ix.match("免考要准备什么材料").kind == ANSWER


def test_the_model_decides_every_ranking_but_exact_phrasings(index):
    # Wave 6: the model decides (the rules are among its features), in both directions.
    base = index.match("免考审核没通过咋办")
    e, other = index.get("exemption-edit"), index.get("exemption-status")
    close = replace(base, businesses=frozenset({"免考"}), aspects=frozenset(),
                    ranked=(Scored(e, 10.0, 0.5, 0.5), Scored(other, 7.5, 0.4, 0.4)))
    th = index.params.thresholds
    assert not rules_of(close, th).any
    assert grade(close, th, index.topics).kind == SUGGEST  # the rules alone
    values = feature_values(close, rules_of(close, th), index.topics.refers)
    assert set(values) == set(FEATURES)
    sure = ConfidenceModel(FEATURES, tuple(0.0 for _ in FEATURES), 5.0, 0.5)
    unsure = replace(sure, intercept=-5.0)
    assert grade(close, th, index.topics, sure).kind == ANSWER
    assert grade(close, th, index.topics, unsure).kind == SUGGEST
    # a question equal to a phrasing is answered whatever the model says
    exact = index.match("免考")
    assert rules_of(exact, th).exact and grade(exact, th, index.topics, unsure).kind == ANSWER
    # a rule that fires no longer answers on its own: the model may hold it back (its verdict is a feature)
    clear = replace(close, ranked=(Scored(e, 10.0, 0.9, 0.5), Scored(other, 5.0, 0.4, 0.4)))
    assert rules_of(clear, th).any and not rules_of(clear, th).exact
    assert grade(clear, th, index.topics).kind == ANSWER  # the rules alone
    assert grade(clear, th, index.topics, unsure).kind == SUGGEST
    assert feature_values(clear, rules_of(clear, th), index.topics.refers)["rules_any"] == 1.0


def test_an_asked_fact_the_entry_does_not_state_is_referred_not_answered(index):
    th = index.params.thresholds
    sure = ConfidenceModel(FEATURES, tuple(0.0 for _ in FEATURES), 5.0, 0.5)
    unsure = replace(sure, intercept=-5.0)
    # A question asking a count of days the best entry does not state: however sure (or unsure) the model is
    # of the entry, the reply is the general referral (a referral answers nothing).
    base = index.match("免考审核要几个工作日")
    e = next(x for x in index.entries if not x.refer and not index.topics.refers(x.business)
             and unstated_fact(base.text, x))
    other = next(x for x in index.entries if x is not e and not x.refer)
    close = replace(base, businesses=frozenset(), aspects=frozenset(),
                    ranked=(Scored(e, 10.0, 0.5, 0.5), Scored(other, 9.5, 0.5, 0.45)))
    assert not rules_of(close, th).any
    for model in (sure, unsure):
        assert (grade(close, th, index.topics, model).kind, grade(close, th, index.topics, model).entry) == (REFER, None)


def test_a_request_for_a_flow_is_left_to_the_rules(index):
    # A request ("我想…") whose best entry carries an action would start a flow: the model leaves it.
    th = index.params.thresholds
    sure = ConfidenceModel(FEATURES, tuple(0.0 for _ in FEATURES), 5.0, 0.5)
    base = index.match("免考审核要几个工作日")
    act = next(x for x in index.entries if x.action and not x.refer)
    other = next(x for x in index.entries if x is not act and not x.refer)
    req = replace(base, text="我想弄一下那个", businesses=frozenset(), aspects=frozenset(),
                  ranked=(Scored(act, 10.0, 0.5, 0.5), Scored(other, 9.5, 0.5, 0.45)))
    assert not is_question(req.text) and not rules_of(req, th).any
    assert grade(req, th, index.topics, sure).kind == SUGGEST


def test_a_sure_ranking_led_by_a_referral_entry_is_referred(index):
    # A ranking led by a referral entry (成绩复核): sure, the referral; not sure, the suggestion list.
    # Never an answer, however sure the model is.
    base = index.match("成绩复核怎么申请")
    review, other = index.get("score-recheck"), index.get("score-course")
    assert review.refer
    close = replace(base, businesses=frozenset(), aspects=frozenset(),
                    ranked=(Scored(review, 10.0, 0.5, 0.5), Scored(other, 9.0, 0.5, 0.45)))
    th = index.params.thresholds
    assert not rules_of(close, th).any
    sure = ConfidenceModel(FEATURES, tuple(0.0 for _ in FEATURES), 5.0, 0.5)
    unsure = replace(sure, intercept=-5.0)
    assert (grade(close, th, index.topics, sure).kind, grade(close, th, index.topics, sure).entry) == (REFER, review)
    assert grade(close, th, index.topics, unsure).kind == SUGGEST


def test_the_probability_is_the_logistic_of_the_weighted_sum():
    m = ConfidenceModel(("a", "b"), (2.0, -1.0), 0.5, 0.6)
    assert m.probability({"a": 0.0, "b": 0.5}) == pytest.approx(0.5)
    assert m.probability({"a": 1.0, "b": 0.0}) == pytest.approx(1 / (1 + 2.718281828459045 ** -2.5))
    assert m.confident({"a": 1.0, "b": 0.0}) and not m.confident({"a": -1.0, "b": 0.0})
