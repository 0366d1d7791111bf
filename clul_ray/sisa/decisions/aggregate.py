"""Ensemble aggregation: plurality vote of shard labels (ties to the lowest class) or mean
of shard probabilities. Pure NumPy."""

from __future__ import annotations

import numpy as np


def ensemble_token_logprobs(probs: np.ndarray) -> np.ndarray:
    """A language-model ensemble (the mean of the shards' next-token distributions) at the
    true tokens: ``probs`` (shards, n, t) each shard's probability of each true next token
    (NaN where the target is padding) -> (n, t) log of their mean (NaN stays)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 3 or probs.shape[0] == 0:
        raise ValueError("ensemble_token_logprobs needs probabilities shaped (shards, n, t)")
    with np.errstate(divide="ignore"):
        return np.log(probs.mean(axis=0))


def perplexity(logprobs: np.ndarray) -> float:
    """exp of the mean negative log-likelihood over the real (non-NaN) tokens."""
    lp = np.asarray(logprobs, dtype=np.float64)
    real = lp[~np.isnan(lp)]
    return float(np.exp(-real.mean())) if real.size else float("nan")


def aggregate(probs: np.ndarray, method: str = "vote") -> np.ndarray:
    """probs: (shards, n, classes) -> predicted labels (n,)."""
    probs = np.asarray(probs)
    if probs.ndim != 3 or probs.shape[0] == 0:
        raise ValueError("aggregate needs probabilities shaped (shards, n, classes)")
    if method == "mean":
        return probs.mean(axis=0).argmax(axis=1)
    if method == "vote":
        return vote(probs.argmax(axis=2), probs.shape[2])
    raise ValueError(f"unknown aggregation '{method}' (vote or mean)")


def vote(labels: np.ndarray, classes: int) -> np.ndarray:
    """labels: (shards, n) each shard's predicted class -> the most voted class (n,), the
    lowest on ties."""
    n = labels.shape[1]
    counts = np.zeros((n, classes), dtype=np.int64)
    rows = np.arange(n)
    for row in labels:
        counts[rows, row] += 1
    return counts.argmax(axis=1)  # argmax returns the lowest index on ties
