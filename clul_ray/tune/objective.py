"""The score a sweep minimises, and the Pareto front of forgetting against utility (pure).

With metrics m of an unlearned model and m_r of the model retrained without D_f (both from
:func:`clul_ray.metrics.evaluate`):

- ``gap`` = Σ_k w_k·|m_k − m_r,k| / Σ_k w_k over k in FA, RA, TA, MIA (equal weights give
  ``compare``'s "avg gap");
- ``objective`` = gap + ``cost`` weight · seconds / retrain seconds;
- ``forget_gap`` = mean(|FA − FA_r|, |MIA − MIA_r|): how far from retrain's forgetting;
- ``utility_drop`` = mean(max(0, RA_r − RA), max(0, TA_r − TA)): utility lost below retrain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from pydantic import Field

from ..unlearn.params import Settings

GAP_METRICS = ("FA", "RA", "TA", "MIA")


class Weights(Settings):
    """Weights of the objective's terms (``cost`` weighs seconds / retrain seconds)."""

    label: ClassVar[str] = "weights"

    FA: float = Field(1.0, ge=0)
    RA: float = Field(1.0, ge=0)
    TA: float = Field(1.0, ge=0)
    MIA: float = Field(1.0, ge=0)
    cost: float = Field(0.0, ge=0)
    gap: float = Field(0.0, ge=0, description="--objective eps: the gap's weight beside "
                       "1 − final score")


def score(m: dict[str, float], ref: dict[str, float], weights: Weights, seconds: float,
          ref_seconds: float) -> dict[str, float]:
    w = {k: getattr(weights, k) for k in GAP_METRICS}
    total = sum(w.values()) or 1.0
    gap = sum(w[k] * abs(m[k] - ref[k]) for k in GAP_METRICS) / total
    cost = seconds / ref_seconds if ref_seconds > 0 else 0.0
    return {"objective": gap + weights.cost * cost, "gap": gap, "cost": cost,
            "forget_gap": (abs(m["FA"] - ref["FA"]) + abs(m["MIA"] - ref["MIA"])) / 2,
            "utility_drop": (max(0.0, ref["RA"] - m["RA"]) + max(0.0, ref["TA"] - m["TA"])) / 2}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (both minimised),
    sorted by the first coordinate; NaN points are never on the front."""
    ok = [i for i, (a, b) in enumerate(points) if not (math.isnan(a) or math.isnan(b))]
    front = []
    for i in ok:
        a, b = points[i]
        if not any((points[j][0] <= a and points[j][1] <= b)
                   and (points[j][0] < a or points[j][1] < b) for j in ok):
            front.append(i)
    return sorted(front, key=lambda i: points[i])
