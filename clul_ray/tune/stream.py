"""A sweep of a continual strategy's strengths along a stream (``clul-ray tune --stream``).

The stream, benchmark, model and training recipe come from a ``clul-ray continual`` config
(:class:`clul_ray.continual.spec.ContinualSpec`); the strategy's own strengths (CLUL's γ,
KD weights, temperature, p_B, buffer size and buffer CE) are sampled from its declared
space (``Strategy.space``) with a user's overrides. The oracle — retraining from scratch on
the allowed tasks after every step, with the strategy's recipe — does not depend on the
strengths, so it runs once per seed (Ray tasks) and reaches every trial through the object
store, where the benchmark and the oracle's rows are put once per sweep (see :mod:`.tuner`).

A trial runs the whole stream per seed and reports after each seed the mean so far of the
score after the last step (ASHA may stop it after the first seed); the objective is
:func:`clul_ray.continual.metrics.objective`: |gap to the oracle on the kept tasks| +
|gap on the forgotten ones|. The files are those of every sweep (:mod:`.outputs`):
``trials.csv``, ``best.md``, ``best.yaml`` (for ``clul-ray continual --params-from``),
``pareto.png`` and ``sweep.json``, and the sweep is recorded in MLflow (:mod:`.record`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from ..continual import metrics as M
from ..continual.runner import oracle_params, run_stream
from ..continual.spec import ContinualSpec, check_spec, strategy_params
from ..continual.strategies import get_strategy, make_params
from ..continual.stream import Step
from ..continual.tasks import Benchmark
from ..errors import ClulError
from ..unlearn.params import Int, Settings
from .nodes import Puts, connect_out, placement
from .space import check_domain, to_domain
from .tuner import RESULT_KEYS, Progress, fit_trials, make_trainable, per_seed

OBJECTIVE_TEXT = ("|gap to the oracle on the kept tasks| + |gap on the forgotten tasks| "
                  "after the whole stream (mean over seeds)")


class StreamSweepSpec(Settings):
    """What to sweep along a stream, and how."""

    label: ClassVar[str] = "tune"

    continual: ContinualSpec
    strategy: str = "clul"
    space: dict[str, Any] = Field(default_factory=dict)
    num_samples: Int = Field(16, ge=1)
    scheduler: Literal["asha", "fifo"] = "asha"
    search: Literal["random", "optuna"] = "random"
    max_concurrent: Int | None = Field(None, ge=1)


@dataclass
class _Target:
    """A strategy seen as :func:`~.space.check_domain` sees a method."""

    name: str

    @property
    def params_cls(self):
        return get_strategy(self.name).params_cls

    def make_params(self, values: dict[str, Any]):
        return make_params(self.name, values)


@dataclass
class StreamShared:
    """What every trial shares besides the benchmark: the resolved stream, the recipe, and
    the oracle's rows per seed."""

    steps: list[Step]
    model: str
    model_args: dict[str, Any]
    base: dict[str, Any]  # the strategy's params from the config (the recipe included)
    oracle: dict[int, list[dict[str, Any]]]


def check(spec: StreamSweepSpec) -> tuple[Benchmark, list[Step]]:
    """Refuse a bad sweep before any work: the strategy, its space, the stream."""
    target = _Target(spec.strategy)
    declared = get_strategy(spec.strategy).space
    if not declared and not spec.space:
        raise ClulError(f"{spec.strategy} has no strengths to sweep (give --space)")
    for k, v in {**declared, **spec.space}.items():
        check_domain(spec.strategy, str(k), v, target)
    cont = spec.continual
    if spec.strategy not in cont.strategies:
        cont = cont.model_copy(update={"strategies": [spec.strategy]})
    return check_spec(cont)


def make_stream_sweep(config: str | Path, strategy: str, space: str | Path | None,
                      num_samples: int | None, scheduler: str | None, search: str | None,
                      max_concurrent: int | None, seeds: int | None, seed: int | None,
                      data_dir: str | None) -> StreamSweepSpec:
    """The CLI's options (None = not given) over a ``clul-ray continual`` config."""
    from ..config import read_yaml
    from ..continual.spec import make_spec, read_config

    values = read_config(config)
    values.update({k: v for k, v in {"seeds": seeds, "seed": seed,
                                     "data_dir": data_dir}.items() if v is not None})
    cont = make_spec(values)
    get_strategy(strategy)
    overrides: dict[str, Any] = {}
    if space is not None:
        raw = read_yaml(space, "space file")
        if isinstance(raw, dict) and isinstance(raw.get(strategy), dict):
            raw = raw[strategy]
        if not isinstance(raw, dict) or not raw:
            raise ClulError(f"space file {space} must map {strategy}'s parameters to domains")
        overrides = {str(k): check_domain(strategy, str(k), v, _Target(strategy))
                     for k, v in raw.items()}
    given = {"num_samples": num_samples, "scheduler": scheduler, "search": search,
             "max_concurrent": max_concurrent}
    if num_samples == 0:
        raise ClulError("--num-samples must be at least 1")
    return StreamSweepSpec(continual=cont, strategy=strategy, space=overrides,
                           **{k: v for k, v in given.items() if v is not None})


def score(rows: list[dict[str, Any]]) -> dict[str, float]:
    """A stream's rows -> the sweep's result keys (after the last step)."""
    last = max(rows, key=lambda r: r["step"])
    gap, fg = last["gap_oracle"], last.get("forget_gap", math.nan)
    return {"objective": M.objective(rows), "gap": abs(gap),
            "forget_gap": 0.0 if math.isnan(fg) else abs(fg),
            "utility_drop": max(0.0, -gap), "cost": math.nan,
            "FA": last["forget_acc"], "RA": last["avg_acc"],
            "TA": M.stream_average(rows), "MIA": last["mia"], "ZRF": math.nan,
            "KL": math.nan, "seconds": sum(r["seconds"] for r in rows)}


def _mean(scores: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(sum(s[k] for s in scores) / len(scores)) for k in scores[0]}


def run_trial(config: dict[str, Any], strategy: str, bench: Benchmark, shared: StreamShared,
              report: Callable[[dict[str, Any]], None]) -> dict[str, float]:
    """The stream on every seed with the sampled strengths; the mean so far after each."""
    scores = []
    seeds = sorted(shared.oracle)
    for i, seed in enumerate(seeds):
        rows = run_stream(strategy, {**shared.base, **config}, shared.steps, bench, seed,
                          shared.model, shared.model_args, shared.oracle[seed])
        scores.append(score(rows))
        result = {**_mean(scores), "final": int(i == len(seeds) - 1), "seeds": i + 1}
        report(result)
    return result


def tune_trial(config: dict[str, Any], strategy: str, bench: Benchmark,
               shared: StreamShared) -> None:
    from ray import tune

    from .nodes import with_node

    run_trial(config, strategy, bench, shared, with_node(tune.report))


def oracle_rows(strategy: str, base: dict[str, Any], steps: list[Step], bench: Benchmark,
                seed: int, model: str, model_args: dict[str, Any]) -> list[dict[str, Any]]:
    return run_stream("oracle", oracle_params(make_params(strategy, base)), steps, bench,
                      seed, model, model_args)


def run_stream_sweep(spec: StreamSweepSpec, out_dir: str | Path,
                     progress: Progress | None = None, address: str | None = None,
                     shared_storage: bool = False) -> dict:
    """Sweep ``spec.strategy`` along the stream; write the outputs under ``out_dir`` (a
    folder, shared by every node on a multi-node cluster, or a URI: :mod:`.nodes`)."""
    from ray import tune

    from .outputs import write_outputs
    from .record import record_sweep

    tick = progress or (lambda *_: None)
    bench, steps = check(spec)
    cont, name = spec.continual, spec.strategy
    where = connect_out(out_dir, address, shared_storage)
    out = where.local
    import ray

    base = strategy_params(cont, name).model_dump()
    seeds = cont.seed_list
    t0 = time.perf_counter()
    # each put once: every oracle task, the default-params task and every trial get the refs
    puts = Puts()
    bench_ref = puts.put("benchmark", bench)
    got = per_seed(oracle_rows, seeds, "tune: oracle along the stream", "clul_ray.tune.oracle",
                   tick, lambda s: (name, base, steps, bench_ref, s, cont.model,
                                    cont.model_args))
    shared_ref = puts.put("oracle", StreamShared(steps, cont.model, cont.model_args, base, got))
    t_ref = time.perf_counter() - t0
    default = ray.remote(run_trial).options(num_cpus=1, name="clul_ray.tune.default").remote(
        {}, name, bench_ref, shared_ref, lambda _: None)

    space = {k: to_domain(v, tune) for k, v in {**get_strategy(name).space,
                                                 **spec.space}.items()}
    t1 = time.perf_counter()
    rows = fit_trials(
        tune_trial, {"strategy": name, "bench": bench_ref, "shared": shared_ref}, name, space,
        num_samples=spec.num_samples, max_concurrent=spec.max_concurrent, search=spec.search,
        seed=cont.seed, asha=spec.scheduler == "asha" and len(seeds) > 1, grace_period=1,
        max_t=len(seeds), storage_path=where.storage_path, tick=tick, name=f"stream-{name}")
    wall = time.perf_counter() - t1
    default_score = ray.get(default)
    meta = {
        "methods": [name], "dataset": cont.benchmark, "model": cont.model,
        "forget": "stream " + "; ".join(s.text() for s in steps), "seeds": seeds,
        "num_samples": spec.num_samples, "scheduler": spec.scheduler, "search": spec.search,
        "cpus": int(ray.cluster_resources().get("CPU", 1)), "references_computed": len(got),
        "reference_seconds": t_ref,
        "wall_seconds": {name: wall}, "weights": {}, "reference": "oracle",
        "objective_text": OBJECTIVE_TEXT,
        "labels": {"FA": "forget acc", "RA": "avg acc (kept)", "TA": "avg acc over the stream",
                   "MIA": "MIA-efficacy"}, "shown": ("FA", "RA", "TA", "MIA"),
        "defaults": {name: {k: default_score.get(k) for k in RESULT_KEYS}},
        "default_params": {name: {k: base[k] for k in space}},
        "continual": {"benchmark": cont.benchmark, "setting": cont.setting,
                      "stream": "; ".join(s.text() for s in steps)},
        **placement(rows, puts, make_trainable(
            tune_trial, {"strategy": name, "bench": bench_ref, "shared": shared_ref})),
    }
    result = write_outputs(rows, meta, out,  # best.yaml: the recipe beside the strengths
                           lambda n, p: make_params(n, {**base, **p}).model_dump())
    result["mlflow"] = record_sweep(rows, meta, result, out)
    return where.finish(result)
