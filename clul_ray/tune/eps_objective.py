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
from ..audit.spec import AuditSpec, side_seeds
from ..unlearn.compare import Data, ScenarioSpec
from .objective import Weights

EPS_KEYS = ("F", "eps_score", "RA_ratio", "TA_ratio")


@dataclass
class EpsReference:
    """What every trial's audit shares: the reference side's signals and utility means."""

    seeds: list[int]  # the unlearned runs' seeds
    signals: np.ndarray  # (N, forget rows)
    RA: float
    TA: float

    @property
    def models(self) -> int:
        return len(self.seeds)


def audit_spec(spec: Any) -> AuditSpec:
    """The audit of a sweep's scenario (a :class:`~.sweep.SweepSpec`), N = audit_models."""
    return AuditSpec(**{k: getattr(spec, k) for k in ScenarioSpec.model_fields
                        if k != "backend"}, method="retrain", models=spec.audit_models,
                     null=False, backend="ray")


def eps_reference(spec: Any, data: Data, template: nn.Module, tick: Any) -> EpsReference:
    """Train (or read from the audit cache) the N reference models, as Ray tasks."""
    from ..audit.cache import ScoreCache
    from ..audit.run import execute, reference_jobs

    audit = audit_spec(spec)
    sides = execute(audit, reference_jobs(audit, data, template), data, template,
                    ScoreCache(audit.cache_dir()), tick)
    ref = sides.scores["reference"]
    return EpsReference(side_seeds(audit, "unlearned"), sides.signals("reference"),
                        float(np.mean([s.RA for s in ref])), float(np.mean([s.TA for s in ref])))


def eps_scores(original: nn.Module, data: Data, method: str, config: dict[str, Any],
               ref: EpsReference, weights: Weights, gap: float, cost: float) -> dict[str, float]:
    """N runs of ``method`` with ``config`` from ``original``, audited against ``ref``."""
    runs = [unlearned(original, data, method, config, s) for s in ref.seeds]
    eps = E.epsilons(np.stack([r.signal for r in runs]), ref.signals)
    f = E.forgetting_quality(eps, ref.models)
    ra, ta = float(np.mean([r.RA for r in runs])), float(np.mean([r.TA for r in runs]))
    final = E.final_score(f, ra, ref.RA, ta, ref.TA)
    return {"F": f, "eps_score": final, "RA_ratio": ra / ref.RA, "TA_ratio": ta / ref.TA,
            "objective": 1.0 - final + weights.gap * gap + weights.cost * cost}
