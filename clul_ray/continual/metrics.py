"""Pure stream metrics (numpy only): per-class accuracy, average accuracy over the learned
and kept tasks, forget accuracy, backward transfer, the forgetting measure, the gap to the
oracle, MIA-Efficacy (:func:`clul_ray.metrics.mia.mia_efficacy`, the SalUn convention:
true-class confidence, the fraction of forget rows called non-members), and the
objective of a sweep over CLUL's strengths.

``history[i][k]`` is the accuracy on task k's test rows after step i (0-based steps);
``learned_at[k]`` the step that learned task k.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..metrics.mia import mia_efficacy, true_class_confidence

NAN = float("nan")


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y)) if len(y) else NAN


def per_class_accuracy(pred: np.ndarray, y: np.ndarray, num_classes: int) -> list[float]:
    return [accuracy(pred[y == c], y[y == c]) for c in range(num_classes)]


def mean(values: Sequence[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else NAN


def backward_transfer(history: Sequence[Mapping[int, float]], learned_at: Mapping[int, int],
                      kept: Sequence[int]) -> float:
    """BWT (Lopez-Paz & Ranzato): mean over kept tasks learned before the latest learned
    task of acc_now(k) - acc_just_after_learning(k); NaN when there is none."""
    now = len(history) - 1
    last = max(learned_at.values(), default=-1)
    return mean([history[now][k] - history[learned_at[k]][k]
                 for k in kept if learned_at[k] < last])


def forgetting_measure(history: Sequence[Mapping[int, float]],
                       learned_at: Mapping[int, int], kept: Sequence[int]) -> float:
    """Chaudhry et al.: mean over the same tasks of the best accuracy any earlier step had
    on k (since k was learned) minus the accuracy now."""
    now = len(history) - 1
    last = max(learned_at.values(), default=-1)
    return mean([max(history[i][k] for i in range(learned_at[k], now)) - history[now][k]
                 for k in kept if learned_at[k] < last])


def mia(probs_retain: np.ndarray, y_retain: np.ndarray, probs_test: np.ndarray,
        y_test: np.ndarray, probs_forget: np.ndarray, y_forget: np.ndarray,
        seed: int = 0) -> float:
    """MIA-Efficacy of the forget rows (NaN when nothing was forgotten)."""
    if len(y_forget) == 0:
        return NAN
    return mia_efficacy(true_class_confidence(probs_retain, y_retain),
                        true_class_confidence(probs_test, y_test),
                        true_class_confidence(probs_forget, y_forget), seed=seed)


GAP_KEYS = (("avg_acc", "gap_oracle"), ("forget_acc", "forget_gap"), ("mia", "mia_gap"))


def add_gaps(rows: list[dict[str, Any]], oracle_rows: list[dict[str, Any]]) -> None:
    """Per step: ``gap_oracle`` = avg_acc - oracle's, ``forget_gap`` = forget_acc - oracle's,
    ``mia_gap`` likewise (rows matched by step, in place)."""
    ref = {r["step"]: r for r in oracle_rows}
    for r in rows:
        o = ref.get(r["step"])
        for key, gap in GAP_KEYS:
            r[gap] = NAN if o is None else r[key] - o[key]


def objective(rows: Sequence[Mapping[str, Any]]) -> float:
    """What a sweep of CLUL's strengths minimises: after the whole stream, |gap to the
    oracle on the kept tasks| + |gap on the forgotten ones| (a NaN forget gap counts 0)."""
    if not rows:
        return NAN
    last = max(rows, key=lambda r: r["step"])
    fg = last.get("forget_gap", NAN)
    return abs(last["gap_oracle"]) + (0.0 if math.isnan(fg) else abs(fg))


def stream_average(rows: Sequence[Mapping[str, Any]], key: str = "avg_acc") -> float:
    """The mean of ``key`` over the stream's steps."""
    return mean([r[key] for r in rows])
