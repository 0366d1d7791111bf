"""The score a sweep on a text dataset minimises (pure).

With forget quality FQ (TOFU: the KS-test p-value of the forget truth ratios against the
retrained model's, in [0, 1]), model utility MU of the unlearned model and MU_r of the
retrained one, both from :func:`clul_ray.text.evaluate.scores`:

- ``forget_gap`` = 1 − FQ: 0 when the forget truth ratios are indistinguishable from
  retrain's;
- ``utility_drop`` = max(0, MU_r − MU) / MU_r (0 when MU_r is 0): utility lost below
  retrain's, relative to it;
- ``gap`` = w_forget · forget_gap + w_utility · utility_drop;
- ``objective`` = gap + w_cost · seconds / retrain seconds (minimised).
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import Field

from ..unlearn.params import Settings

# what a text trial reports, beside the objective's terms
TEXT_METRICS = ("forget_quality", "model_utility", "priv_leak", "verbmem", "knowmem_forget",
                "ppl_forget", "ppl_retain")
TEXT_RESULT_KEYS = ("objective", "gap", "forget_gap", "utility_drop", "cost", *TEXT_METRICS,
                    "seconds")


class TextWeights(Settings):
    """Weights of the text objective's terms (``--weight forget=1 utility=1 cost=0``)."""

    label: ClassVar[str] = "weights"

    forget: float = Field(1.0, ge=0)
    utility: float = Field(1.0, ge=0)
    cost: float = Field(0.0, ge=0)


def text_score(fq: float, mu: float, mu_retrain: float, seconds: float,
               retrain_seconds: float, weights: TextWeights | None = None) -> dict[str, float]:
    """The objective and its terms from FQ, MU, retrain's MU and the seconds (see the
    module docstring). NaN in, NaN out: a trial without a score never ranks best."""
    w = weights or TextWeights()
    forget_gap = 1.0 - fq
    if math.isnan(mu) or math.isnan(mu_retrain):
        utility_drop = math.nan
    else:
        utility_drop = max(0.0, mu_retrain - mu) / mu_retrain if mu_retrain > 0 else 0.0
    cost = seconds / retrain_seconds if retrain_seconds > 0 else 0.0
    gap = w.forget * forget_gap + w.utility * utility_drop
    return {"objective": gap + w.cost * cost, "gap": gap, "forget_gap": forget_gap,
            "utility_drop": utility_drop, "cost": cost}
