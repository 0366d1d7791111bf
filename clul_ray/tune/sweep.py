"""A sweep: for each method, one Ray Tune run over its strengths, scored against retrain.

The original models and retrain references are computed once per seed (Ray tasks), then
each method's Tuner runs function trials (one CPU each, as many at once as the cluster's
CPUs or ``max_concurrent``), with ASHA stopping poor trials on their per-epoch scores and
random or Optuna search. A trial that raises is recorded as failed; the sweep goes on.
The data and the references are put into Ray's object store once per sweep (see
:mod:`.tuner`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from ..errors import ClulError
from ..models import build_model
from ..runtime import gather
from ..unlearn import get_method, method_names
from ..unlearn.compare import CompareSpec, load_data, settings
from ..unlearn.params import Int, Settings
from ..unlearn.scenarios import parse_scenario
from ..unlearn.training import TrainRecipe
from .eps_objective import eps_reference
from .nodes import Puts, connect_out, placement
from .objective import Weights
from .space import check_domain, space_for, sweepable
from .trial import Shared, compute_reference, default_score, tune_trial
from .tuner import RESULT_KEYS, Progress, fit_trials, make_trainable, per_seed


class SweepSpec(Settings):
    """What to sweep and how. ``space`` maps a method to its overrides ({param: spec})."""

    label: ClassVar[str] = "tune"

    methods: list[str] = Field(default_factory=lambda: ["all"])
    dataset: str = "digits"
    model: str = "mlp"
    model_args: dict[str, Any] = Field(default_factory=dict)
    forget: str = "class:3"
    seeds: Int = Field(1, ge=1)
    seed: Int = 0
    test_fraction: float = Field(0.2, gt=0, lt=1)
    recipe: TrainRecipe = Field(default_factory=TrainRecipe)
    data_dir: str | None = None
    space: dict[str, dict[str, Any]] = Field(default_factory=dict)
    num_samples: Int = Field(16, ge=1)
    scheduler: Literal["asha", "fifo"] = "asha"
    search: Literal["random", "optuna"] = "random"
    max_concurrent: Int | None = Field(None, ge=1)
    grace_period: Int = Field(1, ge=1)
    weights: Weights = Field(default_factory=Weights)
    objective: Literal["gap", "eps"] = "gap"
    audit_models: Int = Field(8, ge=2, description="--objective eps: N models per side")


def resolve_methods(names: list[str]) -> list[str]:
    """``all`` -> every method with strengths to sweep; names are checked."""
    out: list[str] = []
    for item in names:
        for part in (p.strip() for p in item.split(",") if p.strip()):
            for m in ([n for n in method_names(task="classify") if sweepable(n)]
                      if part == "all" else [part]):
                if get_method(m).task != "classify":
                    raise ClulError(f"{m} unlearns language models; sweep it on a text "
                                    f"dataset (--dataset tofu-synth:N --model gpt-tiny)")
                if not sweepable(m):
                    raise ClulError(f"{m} has no strengths to sweep")
                if m not in out:
                    out.append(m)
    if not out:
        raise ClulError("no method to sweep (use --method all or a method name)")
    return out


def check_spec(spec: SweepSpec) -> list[str]:
    """Refuse a bad spec before any work starts; returns the methods to sweep."""
    methods = resolve_methods(spec.methods)
    for m, params in spec.space.items():
        if m not in methods:
            raise ClulError(f"space for '{m}', which is not swept ({', '.join(methods)})")
        for k, v in params.items():
            check_domain(m, k, v)
    parse_scenario(spec.forget)
    return methods


def run_sweep(spec: SweepSpec, out_dir: str | Path, progress: Progress | None = None,
              address: str | None = None, shared_storage: bool = False) -> dict[str, Any]:
    """Sweep every method of ``spec``; write the outputs under ``out_dir`` (a folder, shared
    by every node on a multi-node cluster, or a URI: :mod:`.nodes`)."""
    from .outputs import write_outputs
    from .record import record_sweep

    tick = progress or (lambda *_: None)
    methods = check_spec(spec)
    where = connect_out(out_dir, address, shared_storage)
    out = where.local
    import ray

    tick("tune: loading data", 0, 1)
    cmp = CompareSpec(dataset=spec.dataset, model=spec.model, model_args=spec.model_args,
                      forget=spec.forget, seed=spec.seed, test_fraction=spec.test_fraction,
                      recipe=spec.recipe, data_dir=spec.data_dir, backend="ray")
    data = load_data(cmp)
    template = build_model(spec.model, data.input_shape, data.num_classes, spec.model_args)
    tick("tune: loading data", 1, 1)

    t0 = time.perf_counter()
    seeds = [spec.seed + k for k in range(spec.seeds)]
    # each put once: every reference task, default-params task and trial gets the refs
    puts = Puts()
    data_ref, template_ref = puts.put("data", data), puts.put("template", template)
    done = per_seed(compute_reference, seeds, "tune: original and retrained models",
                    "clul_ray.tune.reference", tick,
                    lambda s: (template_ref, data_ref, spec.recipe, s, "amnesiac" in methods))
    eps = (eps_reference(spec, data, template, tick) if spec.objective == "eps" else None)
    shared_ref = puts.put("references", Shared(done, spec.weights, eps))
    t_ref = time.perf_counter() - t0

    default_task = ray.remote(default_score).options(num_cpus=1, name="clul_ray.tune.default")
    defaults = {default_task.remote(m, data_ref, shared_ref): m for m in methods}
    rows: list[dict[str, Any]] = []
    walls: dict[str, float] = {}
    for m in methods:
        t1 = time.perf_counter()
        rows += fit_trials(
            tune_trial, {"method": m, "data": data_ref, "shared": shared_ref}, m,
            space_for(m, spec.space.get(m)), num_samples=spec.num_samples,
            max_concurrent=spec.max_concurrent, search=spec.search, seed=spec.seed,
            asha=spec.scheduler == "asha", grace_period=spec.grace_period, max_t=1000,
            storage_path=where.storage_path, tick=tick)
        walls[m] = time.perf_counter() - t1
    default_rows = {defaults[r]: v for r, v in gather(
        {r: f"{m} default params" for r, m in defaults.items()}).items()}
    meta = {
        "methods": methods, "dataset": spec.dataset, "model": spec.model,
        "forget": spec.forget, "seeds": seeds, "num_samples": spec.num_samples,
        "scheduler": spec.scheduler, "search": spec.search,
        "cpus": int(ray.cluster_resources().get("CPU", 1)),
        "references_computed": len(done), "reference_seconds": t_ref,
        "wall_seconds": walls, "weights": spec.weights.model_dump(),
        "objective": spec.objective, "audit_models": spec.audit_models if eps else None,
        "reference": {s: done[s].metrics for s in seeds},
        "original": {s: done[s].original_metrics for s in seeds},
        "defaults": {m: {k: default_rows[m].get(k) for k in RESULT_KEYS} for m in methods},
        "default_params": {m: settings(m, {}) for m in methods},
        **placement(rows, puts, make_trainable(
            tune_trial, {"method": methods[0], "data": data_ref, "shared": shared_ref})),
    }
    result = write_outputs(rows, meta, out)
    result["mlflow"] = record_sweep(rows, meta, result, out)
    return where.finish(result)
