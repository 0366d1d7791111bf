"""``clul-ray tune --objective eps``: trials scored by the ε-score audit (:mod:`clul_ray.audit`).

Once per sweep, N models are retrained on D_r (the audit's reference side, from its cache
when an earlier audit or sweep of the scenario trained them). Each trial then runs its
method N times from the first seed's original model (the audit's unlearned seeds), and
scores them: F, the final score F × RA ratio × TA ratio, and the objective it minimises,
``1 − final score + gap·gap + cost·cost`` (weights ``gap`` and ``cost``, both 0 by default).
Per-epoch reports are skipped (the score needs the finished models), so ASHA has one rung.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from ..audit import epsilon as E
from ..audit.jobs import unlearned
from ..audit.spec import AuditSpec, scenario_of, side_seeds
from ..audit.summary import means, row
from ..unlearn.compare import Data
from .objective import Weights


@dataclass
class EpsReference:
    """What every trial's audit shares: the reference side's signals and utility means."""

    seeds: list[int]  # the unlearned runs' seeds
    signals: np.ndarray  # (N, forget rows)
    means: dict[str, float]  # the reference models' RA, TA, ... (audit.summary.means)

    @property
    def models(self) -> int:
        return len(self.seeds)


def audit_spec(spec: Any) -> AuditSpec:
    """The audit of a sweep's scenario (a :class:`~.sweep.SweepSpec`), N = audit_models."""
    return AuditSpec(**scenario_of(spec), method="retrain", models=spec.audit_models,
                     null=False, backend="ray")


def eps_reference(spec: Any, data: Data, template: nn.Module, tick: Any) -> EpsReference:
    """Train (or read from the audit cache) the N reference models, as Ray tasks."""
    from ..audit.cache import ScoreCache
    from ..audit.run import execute, reference_jobs

    audit = audit_spec(spec)
    sides = execute(audit, reference_jobs(audit, data, template), data, template,
                    ScoreCache(audit.cache_dir()), tick)
    return EpsReference(side_seeds(audit, "unlearned"), sides.signals("reference"),
                        means(sides.scores["reference"]))


def eps_scores(original: nn.Module, data: Data, method: str, config: dict[str, Any],
               ref: EpsReference, weights: Weights, gap: float, cost: float) -> dict[str, float]:
    """N runs of ``method`` with ``config`` from ``original``, audited against ``ref``."""
    runs = [unlearned(original, data, method, config, s) for s in ref.seeds]
    eps = E.epsilons(np.stack([r.signal for r in runs]), ref.signals)
    r = row(method, eps, ref.models, means(runs), ref.means, None)
    return {"F": r["F"], "eps_score": r["score"], "RA_ratio": r["RA_ratio"],
            "TA_ratio": r["TA_ratio"],
            "objective": 1.0 - r["score"] + weights.gap * gap + weights.cost * cost}
