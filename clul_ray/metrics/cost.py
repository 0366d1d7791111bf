"""Cost of a method against retraining."""

from __future__ import annotations


def speedup(seconds: float, retrain_seconds: float) -> float:
    """How many times faster than retraining (retrain_seconds / seconds); NaN if unknown."""
    if seconds is None or retrain_seconds is None or seconds <= 0:
        return float("nan")
    return float(retrain_seconds / seconds)
