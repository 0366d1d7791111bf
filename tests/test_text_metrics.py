"""The TOFU / MUSE metrics of clul_ray.text.metrics against values worked out by hand on
tiny inputs, and their refusals of bad input."""

from __future__ import annotations

import math
import re
from itertools import combinations

import numpy as np
import pytest

from clul_ray.errors import ClulError
from clul_ray.text import metrics as M

pytestmark = pytest.mark.pure


# ----------------------------------------------------------------------------- TOFU


def test_answer_probability_is_exp_of_minus_mean_nll():
    got = M.answer_probability(np.array([0.0, math.log(2), 1.0]))
    assert np.allclose(got, [1.0, 0.5, math.exp(-1)])


def test_truth_ratio_on_a_2x3_example():
    # Row 0: P_para^(1/|a|) = e^-1; perturbed e^-1, e^-2, e^-3, geometric mean e^-2;
    #        R = e^-2 / e^-1 = e^-1.
    # Row 1: paraphrase e^-0.5; perturbed e^-0.2, e^-0.5, e^-0.8, geometric mean e^-0.5; R = 1.
    para = np.array([1.0, 0.5])
    pert = np.array([[1.0, 2.0, 3.0], [0.2, 0.5, 0.8]])
    r = M.truth_ratio(para, pert)
    assert r.shape == (2,)
    assert np.allclose(r, [math.exp(-1), 1.0])
    # The same from probabilities directly (geometric mean over the perturbed answers).
    p_para, p_pert = np.exp(-para), np.exp(-pert)
    assert np.allclose(r, np.prod(p_pert, axis=1) ** (1 / 3) / p_para)


def test_truth_ratio_score():
    r = np.array([math.exp(-1), 1.0, 2.0])
    # max(0, 1 - R): 1 - e^-1, 0, 0.
    assert M.truth_ratio_score(r) == pytest.approx((1 - math.exp(-1)) / 3)
    # Forget reading min(R, 1/R): e^-1, 1, 0.5.
    assert M.truth_ratio_score(r, forget=True) == pytest.approx((math.exp(-1) + 1 + 0.5) / 3)


def _exact_ks_pvalue(a, b) -> float:
    """Two-sided exact KS p-value (no ties) by enumerating every split of the pooled sample."""
    pooled = np.sort(np.concatenate([a, b]))

    def stat(x, y):
        fx = np.searchsorted(np.sort(x), pooled, side="right") / len(x)
        fy = np.searchsorted(np.sort(y), pooled, side="right") / len(y)
        return np.max(np.abs(fx - fy))

    d = stat(a, b)
    splits = list(combinations(range(len(pooled)), len(a)))
    hits = 0
    for idx in splits:
        mask = np.zeros(len(pooled), bool)
        mask[list(idx)] = True
        hits += stat(pooled[mask], pooled[~mask]) >= d - 1e-12
    return hits / len(splits)


def test_forget_quality_ks_pvalue():
    same = np.array([0.3, 0.5, 0.9, 1.2])
    assert M.forget_quality(same, same.copy()) == pytest.approx(1.0)
    # Fully separated samples of 3: only 2 of the C(6,3) = 20 splits reach D = 1, so p = 0.1.
    assert M.forget_quality([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.1)
    # Of 10 each: p = 2 / C(20, 10), clearly below 0.05.
    sep = M.forget_quality(np.arange(10.0), np.arange(10.0, 20.0))
    assert sep < 0.05 and sep == pytest.approx(2 / math.comb(20, 10))
    for a, b in (([1.0, 2.0, 4.0], [3.0, 5.0, 6.0]), ([0.1, 0.7, 0.8, 2.0], [0.5, 0.9, 1.5])):
        assert M.forget_quality(a, b) == pytest.approx(_exact_ks_pvalue(np.array(a), np.array(b)))


def _lcs_recall(pred: str, ref: str) -> float:
    """ROUGE-L recall by hand: LCS over rouge_score's tokens (lowercase, non [a-z0-9] ->
    space) divided by the reference's length."""
    def tok(s):
        return re.sub(r"[^a-z0-9]+", " ", s.lower()).split()

    p, r = tok(pred), tok(ref)
    if not r:
        return 0.0
    table = [[0] * (len(p) + 1) for _ in range(len(r) + 1)]
    for i in range(len(r)):
        for j in range(len(p)):
            table[i + 1][j + 1] = (table[i][j] + 1 if r[i] == p[j]
                                   else max(table[i][j + 1], table[i + 1][j]))
    return table[-1][-1] / len(r)


def test_rouge_l_recall_against_a_hand_lcs():
    preds = ["the cat on a mat", "The Cat, sat!", "a dog barked", "mat the on sat cat the"]
    refs = ["the cat sat on the mat", "the cat sat", "the cat sat on the mat",
            "the cat sat on the mat"]
    got = M.rouge_l_recall(preds, refs)
    # LCS "the cat on mat" = 4 of 6; case and punctuation ignored; nothing shared; the
    # shuffled words keep "the on the" in order, 3 of 6.
    assert np.allclose(got, [4 / 6, 1.0, 0.0, 3 / 6])
    assert np.allclose(got, [_lcs_recall(p, r) for p, r in zip(preds, refs, strict=True)])


def test_model_utility_harmonic_mean_and_zero():
    assert M.model_utility([0.5, 0.25, 1.0]) == pytest.approx(3 / (2 + 4 + 1))
    assert M.model_utility([0.4] * 9) == pytest.approx(0.4)
    assert M.model_utility([0.5, 0.0, 1.0]) == 0.0


# ----------------------------------------------------------------------------- MUSE


def test_min_k_prob_picks_the_lowest_fraction_of_real_tokens():
    lp = np.array([[-1.0, -5.0, -2.0, -4.0, -3.0, -100.0],
                   [-0.1, -0.2, -100.0, -100.0, -100.0, -100.0]])
    mask = np.array([[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0]], bool)
    # Row 0: 5 real tokens, int(5 * 0.4) = 2 lowest: -5, -4. Padding (-100) is ignored.
    # Row 1: int(2 * 0.4) = 0 -> at least one token: -0.2.
    assert np.allclose(M.min_k_prob(lp, mask), [-4.5, -0.2])
    # The count is floored: int(5 * 0.5) = 2 (not 3).
    assert np.allclose(M.min_k_prob(lp, mask, k=0.5), [-4.5, -0.2])
    assert np.allclose(M.min_k_prob(lp, mask, k=1.0), [-3.0, -0.15])


def test_auc_extremes():
    assert M.auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert M.auc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert M.auc([1.0, 2.0], [1.0, 2.0]) == 0.5
    assert M.auc([1.0, 3.0], [2.0, 4.0]) == pytest.approx(0.25)


def test_priv_leak_sign_and_value():
    assert M.priv_leak(0.6, 0.5) == pytest.approx(20.0)
    assert M.priv_leak(0.4, 0.5) == pytest.approx(-20.0)
    assert M.priv_leak(0.5, 0.5) == 0.0
    with pytest.raises(ClulError):
        M.priv_leak(0.5, 0.0)


# ----------------------------------------------------------------------------- general


def test_perplexity_of_uniform_logprobs_is_the_vocabulary_size():
    v = 50
    lp = np.full((3, 4), -math.log(v))
    mask = np.ones((3, 4), bool)
    assert M.perplexity(lp, mask) == pytest.approx(v)
    lp[2, 2:] = np.nan  # padding, masked out, any value
    mask[2, 2:] = False
    assert M.perplexity(lp, mask) == pytest.approx(v)
    # exp(mean NLL) over all real tokens together: NLLs 1 and 3 -> e^2.
    assert M.perplexity([[-1.0, -3.0]], [[True, True]]) == pytest.approx(math.exp(2))


def test_ensemble_logprobs_mean_over_shards_and_nan_padding():
    shards = np.array([[[0.2, 0.5, np.nan]], [[0.6, 0.1, np.nan]]])
    got = M.ensemble_logprobs(shards)
    assert got.shape == (1, 3)
    assert got[0, 0] == pytest.approx(math.log(0.4))
    assert got[0, 1] == pytest.approx(math.log(0.3))
    assert np.isnan(got[0, 2])


def test_association_gap_sign():
    assoc, neutral = np.array([-1.0, -2.0]), np.array([-3.0, -3.0])
    assert M.association_gap(assoc, neutral) == pytest.approx(1.5)
    assert M.association_gap(neutral, assoc) == pytest.approx(-1.5)
    assert M.association_gap(assoc, assoc) == 0.0


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("call", [
    lambda: M.answer_probability([]),
    lambda: M.answer_probability([0.5, -0.1]),
    lambda: M.truth_ratio([1.0, 2.0], np.ones((3, 2))),
    lambda: M.truth_ratio([1.0], np.ones(3)),
    lambda: M.truth_ratio([], np.ones((0, 3))),
    lambda: M.truth_ratio([np.nan], np.ones((1, 3))),
    lambda: M.truth_ratio_score([]),
    lambda: M.truth_ratio_score([0.5, -1.0]),
    lambda: M.forget_quality([], [1.0]),
    lambda: M.forget_quality(np.ones((2, 2)), [1.0]),
    lambda: M.rouge_l_recall(["a"], ["a", "b"]),
    lambda: M.rouge_l_recall([], []),
    lambda: M.rouge_l_recall("abc", "abc"),
    lambda: M.rouge_l_recall([1], ["a"]),
    lambda: M.model_utility([]),
    lambda: M.min_k_prob(np.zeros((2, 3)) - 1, np.ones((2, 2), bool)),
    lambda: M.min_k_prob(np.zeros((0, 3)), np.ones((0, 3), bool)),
    lambda: M.min_k_prob(-np.ones((1, 3)), np.ones((1, 3), bool), k=0.0),
    lambda: M.min_k_prob(-np.ones((1, 3)), np.ones((1, 3), bool), k=1.5),
    lambda: M.min_k_prob(-np.ones((1, 3)), np.zeros((1, 3), bool)),
    lambda: M.min_k_prob(np.ones((1, 3)), np.ones((1, 3), bool)),
    lambda: M.min_k_prob([[-1.0, np.nan]], [[True, True]]),
    lambda: M.auc([], [1.0]),
    lambda: M.auc([1.0], []),
    lambda: M.priv_leak(0.5, -0.1),
    lambda: M.priv_leak(1.5, 0.5),
    lambda: M.priv_leak(float("nan"), 0.5),
    lambda: M.perplexity(-np.ones((2, 3)), np.ones((3, 2), bool)),
    lambda: M.perplexity(-np.ones((1, 3)), np.zeros((1, 3), bool)),
    lambda: M.ensemble_logprobs(np.ones((2, 3))),
    lambda: M.ensemble_logprobs(np.zeros((0, 1, 2))),
    lambda: M.ensemble_logprobs(np.array([[[0.2, np.nan]], [[0.6, 0.3]]])),
    lambda: M.ensemble_logprobs(np.array([[[1.2]], [[0.6]]])),
    lambda: M.association_gap([-1.0, -2.0], [-1.0]),
    lambda: M.association_gap([], []),
])
def test_bad_input_is_refused_with_a_one_line_message(call):
    with pytest.raises(ClulError) as e:
        call()
    assert "\n" not in str(e.value) and str(e.value)
