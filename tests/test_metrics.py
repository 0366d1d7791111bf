"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clul_ray.metrics import (
    Labels,
    Outputs,
    accuracy,
    class_recall,
    classification_scores,
    evaluate,
    js_rows,
    kl_rows,
    loss_mia,
    mean_kl,
    mia_efficacy,
    sample_cross_entropy,
    speedup,
    true_class_confidence,
    unlearning_accuracy,
    zrf,
)

pytestmark = pytest.mark.pure


def test_accuracy_and_recall():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 0, 0, 1])
    assert accuracy(probs, y) == pytest.approx(3 / 4)
    assert class_recall(probs, y, 0) == pytest.approx(2 / 3)
    assert class_recall(probs, y, 1) == 1.0
    assert math.isnan(accuracy(np.zeros((0, 2)), np.zeros(0)))
    assert unlearning_accuracy(0.25) == 0.75


def test_kl_known_values():
    p = np.array([[0.5, 0.5]])
    q = np.array([[0.25, 0.75]])
    # 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln 2 + 0.5 ln(2/3)
    expected = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    assert kl_rows(p, q)[0] == pytest.approx(expected)
    assert expected == pytest.approx(0.143841, abs=1e-6)
    assert kl_rows(p, q, base=2)[0] == pytest.approx(expected / math.log(2))
    # the other direction differs: 0.25 ln(0.5) + 0.75 ln(1.5)
    assert kl_rows(q, p)[0] == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    # 0 log 0 = 0: KL(one-hot || uniform) = ln 2
    assert kl_rows(np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]]))[0] == pytest.approx(
        math.log(2))
    assert kl_rows(p, p)[0] == 0.0
    # mean over rows, direction KL(first || second)
    both_p, both_q = np.vstack([p, p]), np.vstack([q, p])
    assert mean_kl(both_p, both_q) == pytest.approx(expected / 2)
    assert math.isfinite(kl_rows(np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]]))[0])


def test_js_and_zrf_hand_computed():
    one_hot = np.array([[1.0, 0.0]])
    uniform = np.array([[0.5, 0.5]])
    # m = (0.75, 0.25); KL(p||m) = log2(4/3); KL(u||m) = 0.5 log2(2/3) + 0.5 log2(2)
    js = 0.5 * math.log2(4 / 3) + 0.5 * (0.5 * math.log2(2 / 3) + 0.5)
    assert js == pytest.approx(0.311278, abs=1e-6)
    assert js_rows(one_hot, uniform)[0] == pytest.approx(js)
    assert js_rows(uniform, one_hot)[0] == pytest.approx(js)  # symmetric
    assert zrf(one_hot, uniform) == pytest.approx(1 - js)
    # identical distributions: JS = 0, ZRF = 1; disjoint one-hots: JS = 1 bit, ZRF = 0
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(10), size=20)
    assert zrf(p, p) == pytest.approx(1.0)
    assert zrf(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])) == pytest.approx(0.0)
    # ten classes, one-hot vs uniform: m = (0.55, 0.05 x 9)
    oh10, u10 = np.eye(10)[:1], np.full((1, 10), 0.1)
    js10 = 0.5 * math.log2(1 / 0.55) + 0.5 * (0.1 * math.log2(0.1 / 0.55) + 0.9 * 1.0)
    assert zrf(oh10, u10) == pytest.approx(1 - js10)
    assert 0.0 <= js_rows(p, p[::-1]).min() and js_rows(p, p[::-1]).max() <= 1.0


def test_confidence_and_cross_entropy():
    probs = np.array([[0.25, 0.75], [0.6, 0.4]])
    y = np.array([0, 0])
    assert true_class_confidence(probs, y).tolist() == [0.25, 0.6]
    assert sample_cross_entropy(probs, y) == pytest.approx([math.log(4), -math.log(0.6)])
    assert np.isfinite(sample_cross_entropy(np.array([[0.0, 1.0]]), np.array([0]))).all()


def test_mia_efficacy_on_separable_confidences():
    rng = np.random.default_rng(1)
    members = rng.uniform(0.9, 1.0, 300)     # seen rows: confident
    non_members = rng.uniform(0.0, 0.3, 100)  # unseen rows: unsure
    assert mia_efficacy(members, non_members, rng.uniform(0.92, 1.0, 50)) == 0.0
    assert mia_efficacy(members, non_members, rng.uniform(0.0, 0.2, 50)) == 1.0
    half = np.concatenate([rng.uniform(0.92, 1.0, 25), rng.uniform(0.0, 0.2, 25)])
    assert mia_efficacy(members, non_members, half) == pytest.approx(0.5)
    # fewer retain rows than test rows: all of them are used
    assert mia_efficacy(members[:40], non_members, rng.uniform(0.0, 0.2, 10)) == 1.0
    assert math.isnan(mia_efficacy(members, non_members, np.zeros(0)))


def test_loss_mia_separable_and_indistinguishable():
    rng = np.random.default_rng(2)
    forget = rng.uniform(3.0, 5.0, 100)
    test = rng.uniform(0.0, 1.0, 400)  # balanced: 100 of them are used
    assert loss_mia(forget, test) == pytest.approx(1.0)
    same = np.full(100, 0.7)
    assert loss_mia(same, same.copy()) == pytest.approx(0.5)
    assert math.isnan(loss_mia(forget[:3], test))


def test_speedup():
    assert speedup(2.0, 10.0) == 5.0
    assert math.isnan(speedup(0.0, 10.0))


def test_evaluate_combines_metrics():
    rng = np.random.default_rng(3)
    lab = Labels(retain=rng.integers(0, 3, 60), forget=rng.integers(0, 3, 30),
                 test=rng.integers(0, 3, 40))
    onehot = Outputs(np.eye(3)[lab.retain] * 0.97 + 0.01, np.eye(3)[lab.forget] * 0.97 + 0.01,
                     np.eye(3)[lab.test] * 0.97 + 0.01)
    rand = np.full((30, 3), 1 / 3)
    r = evaluate(onehot, lab, retrain=onehot, incompetent_forget=rand, seed=0)
    assert r["RA"] == r["FA"] == r["TA"] == 1.0
    assert r["UA"] == 0.0
    assert r["KL"] == 0.0 and r["KL_test"] == 0.0
    assert r["TP"] == r["TR"] == r["TF1"] == r["FF1"] == r["RF1"] == 1.0
    assert 0.0 < r["ZRF"] < 1.0
    r2 = evaluate(onehot, lab, retrain=None, incompetent_forget=onehot.forget)
    assert r2["ZRF"] == pytest.approx(1.0) and math.isnan(r2["KL"])


def test_macro_precision_recall_f1_hand_computed():
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    # class 0: P 2/2, R 2/3, F1 4/5; class 1: P 1/2, R 1/2, F1 1/2; class 2: P 1/2, R 1/1,
    # F1 2/3 -> macro P 2/3, R 13/18, F1 59/90 (accuracy 4/6)
    s = classification_scores(pred, y)
    assert s == pytest.approx({"precision": 2 / 3, "recall": 13 / 18, "F1": 59 / 90})
    assert s["precision"] != pytest.approx(s["recall"])
    proba = np.eye(3)[pred] * 0.8 + 0.05  # (n, C) scores give the same as their argmax
    assert classification_scores(proba, y) == s
    # a class predicted but never true: precision 0, recall 0/0 -> 0 (zero_division=0)
    assert classification_scores(np.array([0, 1]), np.array([0, 0])) == pytest.approx(
        {"precision": 1 / 2, "recall": 1 / 4, "F1": 1 / 3})
    assert all(math.isnan(v) for v in classification_scores(np.zeros((0, 3)), []).values())
    with pytest.raises(ValueError, match="6 labels"):
        classification_scores(pred[:5], y)


def test_evaluate_reports_macro_scores_on_test_and_forget():
    lab = Labels(retain=np.array([0, 1, 2]), forget=np.array([0, 0]),
                 test=np.array([0, 0, 0, 1, 1, 2]))
    out = Outputs(np.eye(3)[lab.retain], np.eye(3)[[0, 1]], np.eye(3)[[0, 0, 1, 1, 2, 2]])
    r = evaluate(out, lab)
    assert (r["TP"], r["TR"], r["TF1"]) == pytest.approx((2 / 3, 13 / 18, 59 / 90))
    assert r["TA"] == pytest.approx(4 / 6)
    assert r["FF1"] == pytest.approx(1 / 3) and r["FA"] == 0.5 and r["RF1"] == 1.0


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=60))
@settings(max_examples=150, deadline=None)
def test_macro_scores_equal_scikit_learns(pairs):
    """The numpy macro scores are scikit-learn's (zero_division=0), on any labels."""
    from sklearn.metrics import precision_recall_fscore_support

    y, pred = (np.array(c) for c in zip(*pairs, strict=True))
    p, r, f, _ = precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    s = classification_scores(pred, y)
    assert s == pytest.approx({"precision": p, "recall": r, "F1": f}, abs=1e-12)
