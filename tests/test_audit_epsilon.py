"""The ε-score estimator (``clul_ray.audit.epsilon``) against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clul_ray.audit import epsilon as E

pytestmark = pytest.mark.pure


def test_two_equal_samples_give_epsilon_zero():
    x = np.linspace(-2.0, 2.0, 64)
    assert E.example_epsilon(x, x.copy()) < 1e-3
    assert E.points_of(E.example_epsilon(x, x.copy()), 64) == 1.0


def test_separable_samples_give_the_cap():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(20.0, 1.0, 64), rng.normal(0.0, 1.0, 64)
    assert E.example_epsilon(pos, neg) == E.CAP
    assert E.points_of(E.CAP, 64) == 0.0


def test_a_peaky_sample_beside_a_spread_one_gives_the_cap():
    rng = np.random.default_rng(1)
    spread = rng.normal(0.0, 1.0, 32)
    peaky = 0.1 + rng.normal(0.0, 1e-4, 32)
    assert E.example_epsilon(spread, peaky) == E.CAP
    assert E.example_epsilon(np.zeros(8), np.zeros(8)) == 0.0
    assert E.example_epsilon(np.ones(8), np.zeros(8)) == E.CAP


def test_one_threshold_epsilon_is_the_formula():
    # FPR = 1/4, FNR = 1/2 at the best threshold: ε = log(1 - δ - 1/2) - log(1/4)
    eps = E.threshold_epsilons(np.array([0.25]), np.array([0.5]))
    want = max(math.log(1 - E.DELTA - 0.25) - math.log(0.5),
               math.log(1 - E.DELTA - 0.5) - math.log(0.25))
    assert eps[0] == pytest.approx(want)
    both_zero, one_zero = E.threshold_epsilons(np.array([0.0, 0.0]), np.array([0.0, 0.3]))
    assert both_zero == np.inf and np.isnan(one_zero)


def test_the_positive_side_is_the_larger_median_and_shapes_are_checked():
    rng = np.random.default_rng(2)
    u = rng.normal(0.0, 1.0, (16, 3))
    r = u[::-1].copy()  # the same values per example, other order: ε ~ 0
    eps = E.epsilons(u, r)
    assert eps.shape == (3,) and (eps < 1e-3).all()
    far = E.epsilons(u + 30.0, r)  # separable either way round
    assert (far == E.CAP).all()
    with pytest.raises(ValueError, match="one shape"):
        E.epsilons(u, r[:, :2])
    with pytest.raises(ValueError, match="at least 2 models"):
        E.epsilons(u[:1], r[:1])


def test_buckets_follow_the_models_count():
    # N = 512: ⌈ln 511⌉ = 7 → 14 buckets; N = 64: ⌈ln 63⌉ = 5 → 10 buckets
    assert len(E.bucket_points(512)) == 14 and len(E.bucket_points(64)) == 10
    assert E.bucket_points(64)[:3] == [(0.0, 1.0), (0.5, 0.5), (1.0, 0.25)]
    assert E.points_of(0.49, 64) == 1.0 and E.points_of(0.5, 64) == 0.5
    assert E.points_of(4.99, 64) == 2.0 ** -9 and E.points_of(5.0, 64) == 0.0


def test_quality_and_the_final_product():
    f = E.forgetting_quality(np.array([0.1, 0.7, 60.0, 1.2]), 64)
    assert f == pytest.approx((1 + 0.5 + 0 + 0.25) / 4)
    assert E.final_score(f, 0.9, 1.0, 0.8, 0.9) == pytest.approx(f * 0.9 * (0.8 / 0.9))


def test_logit_scaled_confidence_is_log_odds_of_the_true_class():
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]]))
    got = E.logit_scaled_confidence(logits, np.array([0, 2]))
    assert got == pytest.approx([math.log(0.7 / 0.3), 0.0], abs=1e-9)


@pytest.mark.parametrize("shift", [1.0, 2.0, 3.0])
def test_gaussian_pairs_give_the_analytic_epsilon(shift):
    """N(μ, 1) against N(0, 1), as quantile-exact samples of N = 1000: the best one-threshold
    attack whose rates can be told from N models (FPR ≥ 1/N) has
    ε = ln N + ln Q(Q⁻¹(1/N) − μ), Q the normal tail. The estimator, which also tries
    intervals and every grid threshold, lands within 12 % of it, and grows with μ."""
    from scipy.stats import norm

    n = 1000
    q = (np.arange(n) + 0.5) / n
    neg = norm.ppf(q)
    analytic = math.log(n) + math.log(norm.sf(norm.isf(1 / n) - shift))
    estimate = E.example_epsilon(neg + shift, neg)
    assert analytic <= estimate <= 1.12 * analytic
    assert estimate < E.example_epsilon(neg + shift + 0.5, neg)
