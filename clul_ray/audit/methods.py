"""``clul-ray compare --audit N``: every compared method's ε-score beside its gap.

One audit of the comparison's scenario (first seed): N reference models (cached, shared
with ``clul-ray audit``), one original, and N runs of each method — all as one set of Ray
tasks — then ε per forget example and the final score per method. ``retrain`` is audited
too (its own seeds): its F is what a perfect method scores at this N.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..unlearn.compare import CompareSpec, Data, run_compare
from . import epsilon as E
from .cache import ScoreCache
from .jobs import trained
from .run import Job, Progress, epsilons, execute, method_job, reference_jobs
from .spec import AuditSpec, scenario_of, side_seeds
from .summary import means, row


def audit_spec(spec: CompareSpec) -> AuditSpec:
    return AuditSpec(**scenario_of(spec), method="retrain", models=spec.audit, null=False)


def audit_methods(spec: CompareSpec, todo: list[tuple[str, str, dict[str, Any]]], data: Data,
                  template: nn.Module, tick: Progress) -> list[dict[str, Any]]:
    """One audit row per (label, method, params) of ``todo``: F, final score, ratios."""
    audit = audit_spec(spec)
    seeds = side_seeds(audit, "unlearned")
    jobs = reference_jobs(audit, data, template)
    for label, method, params in todo:
        if method == "retrain":
            jobs += [Job(f"unlearned:{label}", s, trained, (template, data, spec.recipe, s,
                                                            False)) for s in seeds]
        else:
            jobs += [method_job(f"unlearned:{label}", data, method, params, s) for s in seeds]
    sides = execute(audit, jobs, data, template, ScoreCache(audit.cache_dir()), tick)
    reference = sides.signals("reference")
    ref = means(sides.scores["reference"])
    rows = []
    for label, _, _ in todo:
        side = f"unlearned:{label}"
        eps = epsilons(audit, sides.signals(side), reference, tick, label)
        rows.append(row(label, eps, audit.models, means(sides.scores[side]), ref, None))
    return rows


def markdown(rows: list[dict[str, Any]], n: int) -> str:
    head = ("| method | F | final score | median ε | RA ratio | TA ratio | F1(test) |\n"
            "|---|---:|---:|---:|---:|---:|---:|")
    body = [f"| {r['method']} | {r['F']:.3f} | {r['score']:.3f} | {r['eps_median']:.2f} | "
            f"{r['RA_ratio']:.3f} | {r['TA_ratio']:.3f} | {r['F1']:.4f} |" for r in rows]
    return "\n".join([
        f"## ε-score audit (NeurIPS 2023 challenge), N = {n} models per side", "",
        head, *body, "",
        f"F: mean points of the forget examples' ε (buckets {E.BUCKET:g} wide); final score: F "
        "× RA ratio × TA ratio against N retrained models; retrain's own F is the best any "
        "method can score at this N.", ""])


def audited(spec: CompareSpec, todo: list[tuple[str, str, dict[str, Any]]], data: Data,
            template: nn.Module, tick: Progress) -> tuple[list[dict[str, Any]], str]:
    rows = audit_methods(spec, todo, data, template, tick)
    return rows, markdown(rows, spec.audit)


def compare_with_audit(spec: CompareSpec, out_dir: str | Path,
                       progress: Progress | None = None) -> dict[str, Any]:
    """:func:`~clul_ray.unlearn.compare.run_compare` with every run's ε-score (``spec.audit``
    models per side) in compare.md / compare.json."""
    return run_compare(spec, out_dir, progress, audited)
