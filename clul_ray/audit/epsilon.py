"""The ε-score of the NeurIPS 2023 Machine Unlearning Challenge, in numpy (pure).

Triantafillou et al., "Are we making progress in unlearning?" (arXiv 2406.09073); the
organisers' scoring code is google-deepmind/unlearning_evaluation (``metric.py``). Given the
signal of every forget example under N unlearned and N retrained models, each example gets
the ε of the best attack distinguishing the two sets of models, over two families of
decision rules:

- one threshold, swept over [min, max] of both samples at ``PER_UNIT`` per unit; the side
  with the larger median is the positive one;
- two thresholds: an interval that predicts the narrower ("peakier") sample, its right end
  swept from that sample's min + the narrower range − ``BUFFER`` to its max + ``BUFFER``, its
  left end within ±``BUFFER`` of the right end minus the narrower range.

Per threshold, with δ = ``DELTA``: FPR = FNR = 0 gives ε = ∞; exactly one of them 0 discards
the threshold (too few models to tell); otherwise
ε_t = max(0, log(1 − δ − FPR) − log FNR, log(1 − δ − FNR) − log FPR). ε of an example is the
largest ε_t, clipped to [0, ``CAP``]; a spread ratio (smaller range / larger range) below
``MIN_SPREAD_RATIO`` gives ``CAP``. Where both samples are constant (no range, a case the
organisers' code divides by zero on) ε is 0 when they are equal and ``CAP`` otherwise.

Rates are counted on sorted samples (``searchsorted``), so the two-threshold family's
hundreds of thousands of intervals cost O(T log N) per example, not T × N.
"""

from __future__ import annotations

import math

import numpy as np

DELTA = 1e-5
CAP = 50.0
PER_UNIT = 100
BUFFER = 2.0
MIN_SPREAD_RATIO = 0.01
BUCKET = 0.5


def logit_scaled_confidence(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log p_y − log Σ_{y'≠y} p_y' per row of (n, classes) logits (float64, stable)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return proba_confidence(p / p.sum(axis=1, keepdims=True), targets)


def proba_confidence(proba: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The same signal from (n, classes) probabilities (an ensemble's mean, say): the wrong
    classes' mass is summed, not taken as 1 − p_y, so a confident row keeps its precision."""
    p = np.array(proba, dtype=np.float64)
    rows = np.arange(len(p))
    correct = p[rows, targets].copy()
    p[rows, targets] = 0.0
    wrong = p.sum(axis=1)
    return np.log(correct + 1e-45) - np.log(wrong + 1e-45)


def _at_least(sorted_x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Fraction of the sample >= each threshold."""
    return (len(sorted_x) - np.searchsorted(sorted_x, t, side="left")) / len(sorted_x)


def _within(sorted_x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Fraction of the sample in [lo, hi] for each interval."""
    n = np.searchsorted(sorted_x, hi, side="right") - np.searchsorted(sorted_x, lo, side="left")
    return np.clip(n, 0, None) / len(sorted_x)


def single_threshold_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, FNR) of "positive when the signal >= t" over the swept thresholds."""
    both = np.concatenate([pos, neg])
    lo, hi = float(both.min()), float(both.max())
    t = np.linspace(lo, hi, int(math.ceil((hi - lo) * PER_UNIT)))
    ps, ns = np.sort(pos), np.sort(neg)
    return _at_least(ns, t), 1.0 - _at_least(ps, t)


def _double_grid(pos: np.ndarray, neg: np.ndarray):
    """The two-threshold family's grid: (peaky sample, other, right ends, left offsets)."""
    pos_range, neg_range = np.ptp(pos), np.ptp(neg)
    if pos_range >= neg_range:
        pos, neg = neg, pos
    width = float(min(pos_range, neg_range))
    lo, hi = float(pos.min()) + width - BUFFER, float(pos.max()) + BUFFER
    right = np.linspace(lo, hi, int(math.ceil((hi - lo) * PER_UNIT)))
    offsets = np.linspace(-width - BUFFER, -width + BUFFER, int(math.ceil(2 * BUFFER * PER_UNIT)))
    return np.sort(pos), np.sort(neg), right, offsets


def _interval_rates(ps: np.ndarray, ns: np.ndarray, right: np.ndarray,
                    offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    left = (right[:, None] + offsets[None, :]).ravel()
    right = np.repeat(right, len(offsets))
    return _within(ns, left, right), 1.0 - _within(ps, left, right)


def double_threshold_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, FNR) of "positive when the signal is in [left, right]", positive being the
    narrower sample."""
    ps, ns, right, offsets = _double_grid(pos, neg)
    return _interval_rates(ps, ns, right, offsets)


def threshold_epsilons(fpr: np.ndarray, fnr: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """ε per threshold; NaN where exactly one of FPR, FNR is 0 (discarded)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(1 - delta - fpr) - np.log(fnr)
        b = np.log(1 - delta - fnr) - np.log(fpr)
        eps = np.clip(np.fmax(a, b), 0, None)
    eps = np.where((fpr == 0) & (fnr == 0), np.inf, eps)
    return np.where((fpr * fnr == 0) & ~((fpr == 0) & (fnr == 0)), np.nan, eps)


BLOCK = 512  # right ends per block of the two-threshold family (bounds memory on wide signals)


def _largest(eps: np.ndarray, best: float | None) -> float | None:
    kept = eps[~np.isnan(eps)]
    if kept.size == 0:
        return best
    top = float(kept.max())
    return top if best is None else max(best, top)


def example_epsilon(pos: np.ndarray, neg: np.ndarray, delta: float = DELTA) -> float:
    """ε of one forget example: ``pos`` the signals of the side with the larger median."""
    pos, neg = np.asarray(pos, np.float64).ravel(), np.asarray(neg, np.float64).ravel()
    small, large = sorted([float(np.ptp(pos)), float(np.ptp(neg))])
    if large == 0.0:
        return 0.0 if pos[0] == neg[0] else CAP
    if small / large < MIN_SPREAD_RATIO:
        return CAP
    best = _largest(threshold_epsilons(*single_threshold_rates(pos, neg), delta), None)
    ps, ns, right, offsets = _double_grid(pos, neg)
    for i in range(0, len(right), BLOCK):
        if best is not None and best >= CAP:
            break
        rates = _interval_rates(ps, ns, right[i:i + BLOCK], offsets)
        best = _largest(threshold_epsilons(*rates, delta), best)
    if best is None:
        raise ValueError("every threshold was discarded: too few models to estimate ε")
    return float(np.clip(best, 0.0, CAP))


def epsilons(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """ε per forget example from (models, examples) signals of both sets."""
    u, r = np.asarray(unlearned, np.float64), np.asarray(retrained, np.float64)
    if u.ndim != 2 or u.shape != r.shape:
        raise ValueError(f"signals must be two (models, examples) arrays of one shape, "
                         f"got {u.shape} and {r.shape}")
    if u.shape[0] < 2:
        raise ValueError(f"the audit needs at least 2 models per side, got {u.shape[0]}")
    r_pos = np.median(r, axis=0) > np.median(u, axis=0)
    return np.array([example_epsilon(r[:, i], u[:, i], delta) if r_pos[i]
                     else example_epsilon(u[:, i], r[:, i], delta)
                     for i in range(u.shape[1])])


def bucket_points(n_models: int) -> list[tuple[float, float]]:
    """(bucket start, points): width-0.5 buckets from 0 scoring 1, 1/2, 1/4, … whose ends
    do not pass ⌈ln(N − 1)⌉."""
    top = math.ceil(math.log(n_models - 1)) if n_models > 2 else 0
    out, start, points = [], 0.0, 1.0
    while start + BUCKET <= top:
        out.append((start, points))
        start, points = start + BUCKET, points / 2
    return out


def points_of(eps: float, n_models: int) -> float:
    """H(ε): the points of the bucket ε falls in; 0 past the last bucket."""
    for start, points in bucket_points(n_models):
        if eps < start + BUCKET:
            return points
    return 0.0


def forgetting_quality(eps: np.ndarray, n_models: int) -> float:
    """F: the mean of H(ε) over the forget set."""
    return float(np.mean([points_of(float(e), n_models) for e in eps]))


def final_score(quality: float, ra_unlearned: float, ra_retrained: float,
                ta_unlearned: float, ta_retrained: float) -> float:
    """F × (mean RA unlearned / retrained) × (mean TA unlearned / retrained)."""
    return quality * (ra_unlearned / ra_retrained) * (ta_unlearned / ta_retrained)
