"""Ensemble aggregation: plurality vote of shard labels (ties to the lowest class) or mean
of shard probabilities. Pure NumPy."""

from __future__ import annotations

import numpy as np


def aggregate(probs: np.ndarray, method: str = "vote") -> np.ndarray:
    """probs: (shards, n, classes) -> predicted labels (n,)."""
    probs = np.asarray(probs)
    if probs.ndim != 3 or probs.shape[0] == 0:
        raise ValueError("aggregate needs probabilities shaped (shards, n, classes)")
    if method == "mean":
        return probs.mean(axis=0).argmax(axis=1)
    if method == "vote":
        labels = probs.argmax(axis=2)  # (shards, n)
        classes = probs.shape[2]
        counts = np.zeros((probs.shape[1], classes), dtype=np.int64)
        for row in labels:
            counts[np.arange(len(row)), row] += 1
        return counts.argmax(axis=1)  # argmax returns the lowest index on ties
    raise ValueError(f"unknown aggregation '{method}' (vote or mean)")
