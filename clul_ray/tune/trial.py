"""What every trial shares, computed once, and the trial itself.

Per seed the original model is trained and ``retrain`` (the reference) is run once — Ray
tasks in parallel — and the data and the :class:`Shared` bundle reach the trials through
Ray's object store, each put there once (``tune.with_parameters`` given their refs), so no
trial retrains anything but its method.

A trial runs its method with the sampled params on the first seed and reports the score
after every epoch (ASHA stops poor trials on these); it then runs the other seeds and
reports, as its last result with ``final = 1``, the mean score over all seeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from ..metrics import Outputs, evaluate
from ..unlearn.api import unlearn_model
from ..unlearn.compare import (
    Data,
    outputs_of,
    run_method,
    torch_threads,
    train_original,
    warm_up,
)
from ..unlearn.training import TrainRecipe, on_epoch_end
from .eps_objective import EpsReference, eps_scores
from .objective import GAP_METRICS, Weights, score

Report = Callable[[dict[str, Any]], None]


@dataclass
class Reference:
    """One seed's original model and its retrained reference."""

    seed: int
    original: nn.Module
    incompetent_forget: np.ndarray
    outputs: Outputs  # retrain's
    metrics: dict[str, float]  # retrain's
    seconds: float  # retrain's
    original_metrics: dict[str, float]


@dataclass
class Shared:
    """What every trial shares besides the data: the references per seed, the weights."""

    references: dict[int, Reference]
    weights: Weights
    eps: EpsReference | None = None  # --objective eps: the audit's reference side


def compute_reference(template: nn.Module, data: Data, recipe: TrainRecipe, seed: int,
                      record_updates: bool = False) -> Reference:
    """Train the original model and retrain without D_f: the work a sweep does once
    (``record_updates``: the original carries its update log, for ``amnesiac``)."""
    model, info = train_original(template, data, recipe, seed, record_updates=record_updates)
    ret = run_method(model, data, "retrain", recipe.model_dump(), seed)
    ref = evaluate(ret.outputs, data.labels, ret.outputs, info.incompetent_forget, seed=seed)
    orig = evaluate(info.outputs, data.labels, ret.outputs, info.incompetent_forget, seed=seed)
    return Reference(seed, model, info.incompetent_forget, ret.outputs, ref,
                     ret.report["seconds"], orig)


def score_model(model: nn.Module, data: Data, shared: Shared, seed: int,
                seconds: float) -> dict[str, float]:
    ref = shared.references[seed]
    m = evaluate(outputs_of(model, data), data.labels, ref.outputs, ref.incompetent_forget,
                 seed=seed)
    out = {k: m[k] for k in (*GAP_METRICS, "TF1", "ZRF", "KL")}
    out.update(score(m, ref.metrics, shared.weights, seconds, ref.seconds))
    out["seconds"] = seconds
    return out


def run_trial(config: dict[str, Any], method: str, data: Data, shared: Shared,
              report: Report) -> dict:
    """Run ``method`` with ``config`` on every seed; report per epoch, then the mean."""
    seeds = sorted(shared.references)
    finals = []
    with torch_threads(1):
        warm_up(shared.references[seeds[0]].original, data.retain.x)  # untimed first calls
        for i, s in enumerate(seeds):
            ref = shared.references[s]
            paused = 0.0
            t0 = time.perf_counter()

            def per_epoch(epoch: int, model: nn.Module, s=s, t0=t0) -> None:
                nonlocal paused
                t = time.perf_counter()
                report({**score_model(model, data, shared, s, t - t0 - paused),
                        "epoch": epoch, "final": 0})
                paused += time.perf_counter() - t

            with on_epoch_end(per_epoch if i == 0 and shared.eps is None else None):
                model, rep = unlearn_model(ref.original, data.forget, data.retain, method,
                                           config, s)
            finals.append(score_model(model, data, shared, s, rep.seconds - paused))
    mean = {k: float(np.mean([f[k] for f in finals])) for k in finals[0]}
    if shared.eps is not None:
        with torch_threads(1):
            mean.update(eps_scores(shared.references[seeds[0]].original, data, method, config,
                                   shared.eps, shared.weights, mean["gap"], mean["cost"]))
    result = {**mean, "final": 1, "seeds": len(seeds)}
    report(result)
    return result


def tune_trial(config: dict[str, Any], method: str, data: Data, shared: Shared) -> None:
    """The Ray Tune function trainable: :func:`run_trial` reporting through ``tune.report``."""
    from ray import tune

    from .nodes import with_node

    run_trial(config, method, data, shared, with_node(tune.report))


def default_score(method: str, data: Data, shared: Shared) -> dict:
    """The method's default params, scored like a trial (outside Tune)."""
    return run_trial({}, method, data, shared, lambda _: None)
