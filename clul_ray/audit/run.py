"""The audit's driver: schedule every model of every side, then ε per forget example.

Work is a list of :class:`Job` (one model or ensemble each), run as Ray tasks of one CPU
(spread over the cluster by Ray) or in this process (``backend="local"``). The original
model of an approximate method is one task; its N runs wait on it through its object ref.
Reference models found in the cache are not trained. ε is computed in chunks of forget
examples, also as tasks. Progress is reported per phase as each task finishes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ClulError
from ..models import build_model
from ..unlearn.compare import Data, load_data
from . import epsilon as E
from .cache import ScoreCache, data_digest, reference_key
from .jobs import ModelScore, fit_original, sisa_ensemble, trained, unlearned
from .spec import AuditSpec, check_spec, side_seeds

Progress = Callable[[str, int, int], None]
SIDES = ("reference", "null", "unlearned")
PHASE = {"reference": "audit: reference models", "null": "audit: null models (reference B)",
         "unlearned": "audit: unlearned models"}
EPS_PHASE = "audit: ε per forget example"


def phase(side: str) -> str:
    """The progress bar of a side (``unlearned:<label>``: one method's runs in a compare)."""
    return PHASE.get(side) or f"audit: {side.partition(':')[2]} models"


def _silent(description: str, done: int, total: int) -> None:
    """The progress callback of a caller that gave none."""


@dataclass
class Job:
    side: str
    seed: int
    fn: Callable[..., ModelScore]
    args: tuple
    needs_original: bool = False
    key: str | None = None  # a reference model's cache key
    needs_log: bool = False  # the original must carry its update log (amnesiac)


@dataclass
class Sides:
    scores: dict[str, list[ModelScore]] = field(default_factory=dict)
    cached: int = 0
    phases: dict[str, float] = field(default_factory=dict)

    def signals(self, side: str) -> np.ndarray:
        return np.stack([s.signal for s in self.scores[side]])


def reference_setup(spec: AuditSpec) -> dict[str, Any]:
    setup: dict[str, Any] = {"model": spec.model, "model_args": spec.model_args,
                             "recipe": spec.recipe.model_dump()}
    if spec.method == "sisa":
        setup.update(kind="sisa", sisa=spec.sisa.model_dump(), placement_seed=spec.seed)
    return setup


def reference_jobs(spec: AuditSpec, data: Data, template: Any) -> list[Job]:
    """The reference side (and the null side, unless ``spec.null`` is off)."""
    digest, setup = data_digest(data), reference_setup(spec)
    sisa, jobs = spec.method == "sisa", []
    for side in ("reference", "null") if spec.null else ("reference",):
        for s in side_seeds(spec, side):
            args = ((data, spec.recipe, spec.model, spec.model_args, spec.sisa, spec.seed, s,
                     False) if sisa else (template, data, spec.recipe, s, False))
            jobs.append(Job(side, s, sisa_ensemble if sisa else trained, args,
                            key=reference_key(digest, setup, s)))
    return jobs


def method_job(side: str, data: Data, method: str, params: dict[str, Any], seed: int) -> Job:
    """One run of an approximate method from the original model."""
    from ..unlearn.base import get_method

    return Job(side, seed, unlearned, (data, method, params, seed), needs_original=True,
               needs_log=get_method(method).needs_update_log)


def plan_jobs(spec: AuditSpec, data: Data, template: Any) -> list[Job]:
    """Every model of every side (pure: nothing runs here)."""
    jobs = reference_jobs(spec, data, template)
    if spec.method == "sisa":
        jobs += [Job("unlearned", s, sisa_ensemble, (data, spec.recipe, spec.model,
                                                     spec.model_args, spec.sisa, spec.seed, s,
                                                     True))
                 for s in side_seeds(spec, "originals")]
    elif spec.method in ("retrain", "original"):
        side = "originals" if spec.method == "original" else "unlearned"
        jobs += [Job("unlearned", s, trained, (template, data, spec.recipe, s,
                                               spec.method == "original"))
                 for s in side_seeds(spec, side)]
    else:
        jobs += [method_job("unlearned", data, spec.method, spec.params, s)
                 for s in side_seeds(spec, "unlearned")]
    return jobs


def execute(spec: AuditSpec, jobs: list[Job], data: Data, template: Any, cache: ScoreCache,
            tick: Progress) -> Sides:
    """Run the jobs the cache does not answer; scores per side in seed order."""
    sides = list(dict.fromkeys([*SIDES, *(j.side for j in jobs)]))
    out = Sides(scores={side: [] for side in sides})
    todo: list[Job] = []
    for job in jobs:
        hit = cache.get(job.key) if job.key else None
        if hit is not None:
            out.scores[job.side].append(hit)
            out.cached += 1
        else:
            todo.append(job)
    totals = {side: sum(j.side == side for j in jobs) for side in sides}
    for side in sides:
        if totals[side]:
            tick(phase(side), len(out.scores[side]), totals[side])

    def finished(job: Job, score: ModelScore) -> None:
        out.scores[job.side].append(score)
        if job.key:
            cache.put(job.key, score)
        tick(phase(job.side), len(out.scores[job.side]), totals[job.side])

    t0 = time.perf_counter()
    needs_original = any(j.needs_original for j in todo)
    record = any(j.needs_log for j in todo)
    if spec.backend == "local":
        original = (fit_original(template, data, spec.recipe, spec.seed, record)
                    if needs_original else None)
        for job in todo:
            finished(job, job.fn(original, *job.args) if job.needs_original else job.fn(*job.args))
    else:
        _on_ray(spec, todo, data, template, finished, record)
    out.phases["models"] = time.perf_counter() - t0
    order = {j.seed: i for i, j in enumerate(jobs)}
    for side in sides:
        out.scores[side].sort(key=lambda s: order.get(s.seed, 0))
    return out


def _on_ray(spec: AuditSpec, todo: list[Job], data: Data, template: Any,
            finished: Callable[[Job, ModelScore], None], record: bool) -> None:
    import ray

    from ..runtime import ensure_ray, gather

    ensure_ray()
    data_ref = ray.put(data)
    original_ref = None
    if any(j.needs_original for j in todo):
        original_ref = ray.remote(fit_original).options(
            num_cpus=1, name="clul_ray.audit.original").remote(template, data_ref, spec.recipe,
                                                                spec.seed, record)
    labels: dict[Any, str] = {}
    by_ref: dict[Any, Job] = {}
    for job in todo:
        args = tuple(data_ref if a is data else a for a in job.args)
        task = ray.remote(job.fn).options(num_cpus=1, name=f"clul_ray.audit.{job.side}")
        ref = task.remote(original_ref, *args) if job.needs_original else task.remote(*args)
        labels[ref], by_ref[ref] = f"{job.side} model (seed {job.seed})", job
    gather(labels, lambda ref, score: finished(by_ref[ref], score))


def epsilons(spec: AuditSpec, unlearned_signals: np.ndarray, reference: np.ndarray,
             tick: Progress, what: str) -> np.ndarray:
    """ε per forget example, in chunks (Ray tasks unless the backend is local)."""
    n = reference.shape[1]
    chunks = np.array_split(np.arange(n), max(1, min(n, 4 * _cpus(spec))))
    chunks = [c for c in chunks if len(c)]
    tick(f"{EPS_PHASE} ({what})", 0, n)
    parts: dict[int, np.ndarray] = {}
    done = 0
    if spec.backend == "local":
        for i, c in enumerate(chunks):
            parts[i] = E.epsilons(unlearned_signals[:, c], reference[:, c])
            done += len(c)
            tick(f"{EPS_PHASE} ({what})", done, n)
    else:
        import ray

        from ..runtime import gather

        task = ray.remote(E.epsilons).options(num_cpus=1, name="clul_ray.audit.epsilon")
        refs = {task.remote(unlearned_signals[:, c], reference[:, c]): i
                for i, c in enumerate(chunks)}

        def got(ref: Any, value: np.ndarray) -> None:
            nonlocal done
            parts[refs[ref]] = value
            done += len(value)
            tick(f"{EPS_PHASE} ({what})", done, n)

        gather({r: f"ε of examples chunk {i}" for r, i in refs.items()}, got)
    return np.concatenate([parts[i] for i in range(len(chunks))])


def _cpus(spec: AuditSpec) -> int:
    if spec.backend == "local":
        return 1
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def load_checked(spec: AuditSpec) -> Data:
    """The spec checked and its scenario's rows loaded; refused in one line when bad or when
    the forget set holds no training row."""
    check_spec(spec)
    data = load_data(spec)
    if len(data.forget) == 0:
        raise ClulError(f"the forget set '{spec.forget}' holds no training rows: nothing to "
                        "audit")
    return data


def run_audit(spec: AuditSpec, out_dir: str | Path, progress: Progress | None = None,
              data: Data | None = None) -> dict[str, Any]:
    """Audit ``spec.method`` on its scenario; write audit.json/.md, eps.parquet, eps.png and
    an MLflow run under ``out_dir``. Returns what audit.json holds, plus the files.
    ``data``: the scenario's rows when the caller has loaded them (:func:`load_checked`)."""
    from .outputs import write_outputs
    from .summary import summarize

    tick = progress or _silent
    tick("audit: loading data", 0, 1)
    data = data if data is not None else load_checked(spec)
    template = build_model(spec.model, data.input_shape, data.num_classes, spec.model_args)
    tick("audit: loading data", 1, 1)
    t0 = time.perf_counter()
    cache = ScoreCache(spec.cache_dir())
    sides = execute(spec, plan_jobs(spec, data, template), data, template, cache, tick)
    t1 = time.perf_counter()
    reference = sides.signals("reference")
    eps = epsilons(spec, sides.signals("unlearned"), reference, tick, spec.method)
    eps_null = (epsilons(spec, sides.signals("null"), reference, tick, "null")
                if spec.null else None)
    sides.phases["epsilon"] = time.perf_counter() - t1
    result = summarize(spec, data, sides, eps, eps_null)
    result["meta"].update(wall_seconds=time.perf_counter() - t0, cpus=_cpus(spec))
    return write_outputs(result, data, sides, eps, eps_null, Path(out_dir), tick)
