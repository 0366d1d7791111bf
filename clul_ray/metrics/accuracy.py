"""Accuracy-type metrics on probability (or logit) arrays: RA, FA, TA, UA, class recall."""

from __future__ import annotations

import numpy as np


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy; NaN for an empty set. Ties go to the lowest class index."""
    y = np.asarray(y)
    if len(y) == 0:
        return float("nan")
    return float(np.mean(np.argmax(np.asarray(probs), axis=1) == y))


def class_recall(probs: np.ndarray, y: np.ndarray, cls: int) -> float:
    """Accuracy on the rows whose true class is ``cls``; NaN if there are none."""
    y = np.asarray(y)
    rows = y == cls
    return accuracy(np.asarray(probs)[rows], y[rows])


def unlearning_accuracy(forget_accuracy: float) -> float:
    """UA = 1 - FA."""
    return 1.0 - forget_accuracy
