"""Divergences between rows of probability arrays: KL, Jensen-Shannon, and the ZRF score."""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def _rows(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 2:
        raise ValueError(f"need two (n, C) arrays of one shape, got {p.shape} and {q.shape}")
    return p, q


def kl_rows(p: np.ndarray, q: np.ndarray, base: float = np.e) -> np.ndarray:
    """KL(p_i || q_i) per row, with 0·log 0 = 0, q floored at 1e-12 (finite), and rounding
    below zero clipped to 0."""
    p, q = _rows(p, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0))
                                     - np.log(np.maximum(q, EPS))), 0.0)
    return np.maximum(terms.sum(axis=1), 0.0) / np.log(base)  # >= 0 up to rounding


def mean_kl(p: np.ndarray, q: np.ndarray) -> float:
    """Mean over rows of KL(p_i || q_i) in nats; NaN for no rows.

    "KL to retrain" is ``mean_kl(p_retrain, p_method)`` over D_f (or D_t).
    """
    p, q = _rows(p, q)
    return float(kl_rows(p, q).mean()) if len(p) else float("nan")


def js_rows(p: np.ndarray, q: np.ndarray, base: float = 2.0) -> np.ndarray:
    """Jensen-Shannon divergence per row, ½KL(p||m) + ½KL(q||m), m = (p+q)/2.

    In base 2 it lies in [0, 1].
    """
    p, q = _rows(p, q)
    m = (p + q) / 2
    return 0.5 * kl_rows(p, m, base) + 0.5 * kl_rows(q, m, base)


def zrf(p_model: np.ndarray, p_incompetent: np.ndarray) -> float:
    """ZRF = 1 - mean_i JS(p_model(x_i), p_incompetent(x_i)) in base 2, over D_f.

    1 means the model behaves like the randomly initialised teacher on D_f. Compare with the
    retrained model's ZRF: higher is not automatically better.
    """
    p, q = _rows(p_model, p_incompetent)
    return float(1.0 - js_rows(p, q).mean()) if len(p) else float("nan")
