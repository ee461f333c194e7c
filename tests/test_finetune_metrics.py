"""Fine-tuning metrics against hand-computed cases."""

import math

import pytest

from bert_jax.finetune import metrics


def test_accuracy_and_binary_f1():
    labels, preds = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
    assert metrics.accuracy(labels, preds) == pytest.approx(3 / 5)
    # class 1: tp=2, fp=1, fn=1 -> precision 2/3, recall 2/3
    assert metrics.binary_f1(labels, preds) == pytest.approx(2 / 3)


def test_matthews_correlation_by_hand():
    labels, preds = [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 1]
    tp, tn, fp, fn = 2, 2, 1, 1
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert metrics.matthews_corr(labels, preds) == pytest.approx(expected)  # 1/3
    assert metrics.matthews_corr(labels, [1] * 6) == 0.0


def test_pearson_and_spearman():
    out = metrics.pearson_spearman([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 100.0])
    assert out["spearman"] == pytest.approx(1.0)  # same order
    # deviations x: -1.5 -.5 .5 1.5, y: -26 -24 -22 72 -> r = 148 / sqrt(5 * 6920)
    assert out["pearson"] == pytest.approx(148 / math.sqrt(5 * 6920))


def test_entity_scores_seqeval_default_semantics():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["I-ORG", "O"]]
    # entities gold: PER(0-1), LOC(3), ORG(0); pred: PER(0-1), ORG(3), ORG(0) (I- opens an entity)
    out = metrics.entity_scores(gold, pred)
    assert out["precision"] == pytest.approx(2 / 3)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 / 3)
    assert out["accuracy"] == pytest.approx(4 / 6)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Cat!", "cat"),
        ("an apple, a pear and the plum", "apple pear and plum"),
        ("  Theory  of   everything ", "theory of everything"),  # "the" inside a word stays
        ("U.S.A.", "usa"),
    ],
)
def test_squad_normalisation(text, normalized):
    assert metrics.normalize_answer(text) == normalized


def test_squad_exact_match_and_f1():
    assert metrics.exact_match("the Denver Broncos", "Denver Broncos.") == 1.0
    # gold tokens [denver, broncos], pred [broncos, won] -> p=1/2, r=1/2
    assert metrics.token_f1("Denver Broncos", "Broncos won") == pytest.approx(0.5)
    assert metrics.token_f1("", "") == 1.0
    assert metrics.token_f1("", "something") == 0.0


def test_squad_scores_max_over_golds_v2_splits_and_missing_predictions():
    golds = {"q1": ["Paris", "the city of Paris"], "q2": [""], "q3": ["blue sky"]}
    preds = {"q1": "city of Paris", "q2": "", "q3": "sky"}
    out = metrics.squad_scores(golds, preds)
    # q1: EM 1 (second gold), q2: EM 1 (both empty), q3: EM 0, F1 = 2*(1*0.5)/1.5 = 2/3
    assert out["exact_match"] == pytest.approx(200 / 3)
    assert out["f1"] == pytest.approx(100 * (1 + 1 + 2 / 3) / 3)
    assert out["HasAns_exact_match"] == pytest.approx(50.0)
    assert out["NoAns_exact_match"] == pytest.approx(100.0)
    assert metrics.squad_scores({"q": ["x"]}, {})["exact_match"] == 0.0
