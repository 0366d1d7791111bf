"""Accuracy-type metrics on probability (or logit) arrays: RA, FA, TA, UA, class recall,
and macro precision / recall / F1."""

from __future__ import annotations

import numpy as np

SCORES = ("precision", "recall", "F1")


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


def classification_scores(proba_or_pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Macro-averaged ``precision``, ``recall`` and ``F1`` of predictions against ``labels``:
    what scikit-learn's ``precision_recall_fscore_support(average="macro", zero_division=0)``
    gives (``tests/test_metrics.py``),
    over the classes present in the labels or the predictions. ``proba_or_pred`` is (n, C)
    probabilities or logits (argmax, ties to the lowest class) or (n,) predicted classes;
    NaN for no rows."""
    labels = np.asarray(labels)
    pred = np.asarray(proba_or_pred)
    if pred.ndim == 2:
        pred = np.argmax(pred, axis=1) if len(pred) else np.zeros(0, np.int64)
    if pred.ndim != 1 or len(pred) != len(labels):
        raise ValueError(f"need (n, C) scores or (n,) predictions for {len(labels)} labels, "
                         f"got shape {np.shape(proba_or_pred)}")
    if len(labels) == 0:
        return dict.fromkeys(SCORES, float("nan"))
    classes, y = np.unique(np.concatenate([labels, pred]), return_inverse=True)
    truth, guess = y[:len(labels)], y[len(labels):]  # (numpy; importing sklearn costs
    n = len(classes)                                   # seconds of a command's time)
    tp = np.bincount(truth[truth == guess], minlength=n).astype(np.float64)
    predicted = np.bincount(guess, minlength=n).astype(np.float64)
    actual = np.bincount(truth, minlength=n).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(predicted > 0, tp / predicted, 0.0)
        r = np.where(actual > 0, tp / actual, 0.0)
        f = np.where(predicted + actual > 0, 2 * tp / (predicted + actual), 0.0)
    return {"precision": float(p.mean()), "recall": float(r.mean()), "F1": float(f.mean())}
