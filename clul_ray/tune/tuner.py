"""What both sweeps run Ray Tune with (:mod:`.sweep`, a method's strengths against retrain;
:mod:`.stream`, a continual strategy's along a stream): the work done once per seed as Ray
tasks, one Tuner of function trials with its progress ticks, and its results as rows.

What the trials share is put into Ray's object store once, by the sweep, and handed to the
tasks and to :func:`fit_trials` as ObjectRefs: ``tune.with_parameters`` passes a ref through
as it is (each trial gets the object), where it would put any other value again, once per
Tuner.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Callable
from typing import Any

from ray import tune

from ..errors import last_line
from ..runtime import gather, verbose

Progress = Callable[[str, int, int], None]
RESULT_KEYS = ("objective", "gap", "forget_gap", "utility_drop", "cost", "FA", "RA", "TA",
               "TF1", "MIA", "ZRF", "KL", "seconds", "F", "eps_score")


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


def make_trainable(trial: Callable, shared: dict[str, Any]):
    """What Tune ships to each trial: ``trial`` with ``shared`` (refs pass through as they
    are), one CPU."""
    return tune.with_resources(tune.with_parameters(trial, **shared), {"cpu": 1})


def fit_trials(trial: Callable, shared: dict[str, Any], label: str, space: dict[str, Any], *,
               num_samples: int, max_concurrent: int | None, search: str, seed: int,
               asha: bool, grace_period: int, max_t: int, storage_path: str, tick: Progress,
               name: str | None = None,
               keys: tuple[str, ...] = RESULT_KEYS) -> list[dict[str, Any]]:
    """One Tuner: ``num_samples`` trials of the function ``trial(config, **shared)`` over
    ``space`` (one CPU each, as many at once as the cluster's CPUs or ``max_concurrent``),
    minimising ``objective``, with random or Optuna ``search``; ASHA stops poor trials when
    ``asha``. ``shared``'s bulky values are ObjectRefs (see the module docstring). A trial
    that raises is recorded as failed. Tune's files go under ``storage_path/<name>``
    (default ``label``; a folder or a URI), the bar is ``tune <label>: trials``; one row per
    trial with the result ``keys`` and the node it ran on."""
    import ray
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    cpus = int(ray.cluster_resources().get("CPU", 1))
    desc = f"tune {label}: trials"
    tick(desc, 0, num_samples)
    tuner = tune.Tuner(
        make_trainable(trial, shared),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="objective", mode="min", num_samples=num_samples,
            search_alg=search_algorithm(search, seed),
            scheduler=(ASHAScheduler(grace_period=grace_period, reduction_factor=2, max_t=max_t)
                       if asha else FIFOScheduler()),
            reuse_actors=True, max_concurrent_trials=min(max_concurrent or cpus, num_samples)),
        run_config=tune.RunConfig(
            name=name or label, storage_path=storage_path, verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
            callbacks=[TrialProgress(tick, desc, num_samples)]))
    # Tune prints its experiment header and results path to stdout whatever its verbosity:
    # onto stderr with --verbose, else nowhere (stdout stays a clean --json)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(
            sys.stderr if verbose() else devnull):
        grid = tuner.fit()
    return grid_rows(grid, label, keys)


def grid_rows(grid, method: str, keys: tuple[str, ...] = RESULT_KEYS) -> list[dict[str, Any]]:
    """A Tuner's results -> one row per trial: status, error, params, the result ``keys``
    and the objective after each iteration."""
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
            "node_id": m.get("node_id"),
            "params": dict(r.config or {})}
        row.update({k: m.get(k, math.nan) for k in keys})
        history = r.metrics_dataframe
        row["history"] = ([] if history is None or "objective" not in history else
                          [float(v) for v in history["objective"]])
        rows.append(row)
    return rows
