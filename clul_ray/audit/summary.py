"""An audit's figures from its sides' scores and ε (pure)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..unlearn.compare import Data, settings
from . import epsilon as E
from .jobs import SCALARS, ModelScore
from .spec import BASELINES, AuditSpec

NULL_ROW = "null"  # N more retrained models, scored as a method


def means(scores: list[ModelScore]) -> dict[str, float]:
    return {k: float(np.mean([getattr(s, k) for s in scores])) for k in SCALARS}


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def row(label: str, eps: np.ndarray, n: int, side: dict[str, float], ref: dict[str, float],
        f_null: float | None) -> dict[str, Any]:
    """One line of the audit's table: F, the final score and the utility it weighs."""
    f = E.forgetting_quality(eps, n)
    ra, ta = _ratio(side["RA"], ref["RA"]), _ratio(side["TA"], ref["TA"])
    return {"method": label, "F": f,
            "F_rel": _ratio(f, f_null) if f_null is not None else float("nan"),
            "score": E.final_score(f, side["RA"], ref["RA"], side["TA"], ref["TA"]),
            "RA_ratio": ra, "TA_ratio": ta,
            "eps_mean": float(np.mean(eps)), "eps_median": float(np.median(eps)),
            "eps_at_cap": float(np.mean(eps >= E.CAP)), **side}


def summarize(spec: AuditSpec, data: Data, sides: Any, eps: np.ndarray,
              eps_null: np.ndarray | None) -> dict[str, Any]:
    n = spec.models
    ref = means(sides.scores["reference"])
    f_null = None if eps_null is None else E.forgetting_quality(eps_null, n)
    rows = [row(spec.method, eps, n, means(sides.scores["unlearned"]), ref, f_null)]
    if eps_null is not None:
        rows.append(row(NULL_ROW, eps_null, n, means(sides.scores["null"]), ref, f_null))
    params = ({} if spec.method in BASELINES else settings(spec.method, spec.params))
    meta = {
        "dataset": spec.dataset, "model": spec.model, "model_args": spec.model_args,
        "forget": spec.forget, "method": spec.method, "params": params, "models": n,
        "seed": spec.seed, "test_fraction": spec.test_fraction, "backend": spec.backend,
        "recipe": spec.recipe.model_dump(),
        "sisa": spec.sisa.model_dump() if spec.method == "sisa" else None,
        "rows": {"forget": len(data.forget), "retain": len(data.retain),
                 "test": len(data.test)},
        "buckets": E.bucket_points(n), "delta": E.DELTA, "cap": E.CAP,
        "cache": str(spec.cache_dir()), "reference_cached": sides.cached,
        "phase_seconds": dict(sides.phases),
    }
    first = rows[0]
    summary = {k: first[k] for k in ("F", "F_rel", "score", "RA_ratio", "TA_ratio")}
    summary["F_null"] = f_null if f_null is not None else float("nan")
    return {"meta": meta, "summary": summary, "reference": ref, "rows": rows}
