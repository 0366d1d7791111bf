"""A sweep: for each method, one Ray Tune run over its strengths, scored against retrain.

The original models and retrain references are computed once per seed (Ray tasks), then
each method's Tuner runs function trials (one CPU each, as many at once as the cluster's
CPUs or ``max_concurrent``), with ASHA stopping poor trials on their per-epoch scores and
random or Optuna search. A trial that raises is recorded as failed; the sweep goes on.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field
from ray import tune

from ..errors import ClulError, last_line
from ..models import build_model
from ..runtime import ensure_ray, gather, verbose
from ..unlearn import get_method, method_names
from ..unlearn.compare import CompareSpec, load_data, settings
from ..unlearn.params import Int, Settings
from ..unlearn.scenarios import parse_scenario
from ..unlearn.training import TrainRecipe
from .objective import Weights
from .space import check_domain, space_for, sweepable
from .trial import Shared, compute_reference, default_score, tune_trial

Progress = Callable[[str, int, int], None]
RESULT_KEYS = ("objective", "gap", "forget_gap", "utility_drop", "cost", "FA", "RA", "TA",
               "MIA", "ZRF", "KL", "seconds")


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


def resolve_methods(names: list[str]) -> list[str]:
    """``all`` -> every method with strengths to sweep; names are checked."""
    out: list[str] = []
    for item in names:
        for part in (p.strip() for p in item.split(",") if p.strip()):
            for m in ([n for n in method_names() if sweepable(n)] if part == "all" else [part]):
                get_method(m)
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


class TrialProgress(tune.Callback):
    """Ticks the progress bar as each trial of a method finishes (completed, stopped or
    failed). Tune pickles its callbacks with the run's state; the bar stays behind."""

    def __init__(self, tick: Progress, desc: str, total: int):
        self.tick, self.desc, self.total, self.done = tick, desc, total, 0

    def __getstate__(self) -> dict:
        return {"desc": self.desc, "total": self.total, "done": self.done}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, tick=lambda *_: None)

    def _finished(self) -> None:
        self.done += 1
        self.tick(self.desc, self.done, self.total)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._finished()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._finished()


def per_seed(fn: Callable, seeds: list[int], desc: str, name: str, tick: Progress,
             args: Callable[[int], tuple]) -> dict[int, Any]:
    """``fn(*args(seed))`` for every seed as Ray tasks (one CPU each), ticking ``desc`` as
    each finishes: ``{seed: result}``. The work a sweep does once, not per trial."""
    import ray

    task = ray.remote(fn).options(num_cpus=1, name=name)
    tick(desc, 0, len(seeds))
    refs = {task.remote(*args(s)): s for s in seeds}
    finished = 0

    def one_done(_ref, _value) -> None:
        nonlocal finished
        finished += 1
        tick(desc, finished, len(seeds))

    done = gather({r: f"{name} (seed {s})" for r, s in refs.items()}, one_done)
    return {refs[r]: v for r, v in done.items()}


def search_algorithm(kind: str, seed: int):
    """Random (Tune's variant generator) or Optuna's TPE, seeded."""
    if kind == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        if not verbose():  # "A new study created in memory ..." on every sweep
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        return OptunaSearch(seed=seed)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed)


def sweep_method(method: str, spec: SweepSpec, shared: Shared, out: Path,
                 tick: Progress) -> list[dict[str, Any]]:
    """One Tuner over ``method``'s space; one row per trial."""
    import ray
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    search = search_algorithm(spec.search, spec.seed)
    scheduler = (ASHAScheduler(grace_period=spec.grace_period, reduction_factor=2, max_t=1000)
                 if spec.scheduler == "asha" else FIFOScheduler())
    cpus = int(ray.cluster_resources().get("CPU", 1))
    desc = f"tune {method}: trials"
    tick(desc, 0, spec.num_samples)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(tune_trial, method=method, shared=shared),
                            {"cpu": 1}),
        param_space=space_for(method, spec.space.get(method)),
        tune_config=tune.TuneConfig(
            metric="objective", mode="min", num_samples=spec.num_samples,
            search_alg=search, scheduler=scheduler, reuse_actors=True,
            max_concurrent_trials=min(spec.max_concurrent or cpus, spec.num_samples)),
        run_config=tune.RunConfig(
            name=method, storage_path=str((out / "ray_results").resolve()), verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
            callbacks=[TrialProgress(tick, desc, spec.num_samples)]))
    # Tune prints its experiment header and results path to stdout whatever its verbosity:
    # onto stderr with --verbose, else nowhere (stdout stays a clean --json)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(
            sys.stderr if verbose() else devnull):
        grid = tuner.fit()
    return grid_rows(grid, method)


def grid_rows(grid, method: str) -> list[dict[str, Any]]:
    """A Tuner's results -> one row per trial: status, error, params, the result keys and
    the objective after each iteration."""
    rows = []
    for i, r in enumerate(grid):
        m = r.metrics or {}
        status = ("failed" if r.error is not None else
                  "completed" if m.get("final") == 1 else "stopped")
        row: dict[str, Any] = {
            "method": method, "trial": m.get("trial_id", f"{method}-{i}"), "status": status,
            "error": None if r.error is None else last_line(r.error),
            "iterations": m.get("training_iteration", 0),
            "trial_seconds": m.get("time_total_s", math.nan),
            "params": dict(r.config or {})}
        row.update({k: m.get(k, math.nan) for k in RESULT_KEYS})
        history = r.metrics_dataframe
        row["history"] = ([] if history is None or "objective" not in history else
                          [float(v) for v in history["objective"]])
        rows.append(row)
    return rows


def run_sweep(spec: SweepSpec, out_dir: str | Path, progress: Progress | None = None,
              address: str | None = None) -> dict[str, Any]:
    """Sweep every method of ``spec``; write the outputs under ``out_dir``."""
    from .outputs import write_outputs
    from .record import record_sweep

    tick = progress or (lambda *_: None)
    methods = check_spec(spec)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ensure_ray(address)
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
    data_ref = ray.put(data)
    done = per_seed(compute_reference, seeds, "tune: original and retrained models",
                    "clul_ray.tune.reference", tick,
                    lambda s: (template, data_ref, spec.recipe, s))
    shared = Shared(data, done, spec.weights)
    t_ref = time.perf_counter() - t0

    default_task = ray.remote(default_score).options(num_cpus=1, name="clul_ray.tune.default")
    shared_ref = ray.put(shared)
    defaults = {default_task.remote(m, shared_ref): m for m in methods}
    rows: list[dict[str, Any]] = []
    walls: dict[str, float] = {}
    for m in methods:
        t1 = time.perf_counter()
        rows += sweep_method(m, spec, shared, out, tick)
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
        "reference": {s: shared.references[s].metrics for s in seeds},
        "original": {s: shared.references[s].original_metrics for s in seeds},
        "defaults": {m: {k: default_rows[m].get(k) for k in RESULT_KEYS} for m in methods},
        "default_params": {m: settings(m, {}) for m in methods},
    }
    result = write_outputs(rows, meta, out)
    result["mlflow"] = record_sweep(rows, meta, result, out)
    return result
