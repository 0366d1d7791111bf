"""A sweep on a text dataset: what every trial shares, computed once, and the trial.

Per seed the original language model (retain and forget documents) and the retrained one
(retain documents only) are trained, and both are evaluated, as Ray tasks in parallel
(:func:`references`); the data and the :class:`TextShared` bundle reach the trials through
Ray's object store, each put there once (``tune.with_parameters`` given their refs).

A trial runs its method with the sampled params from each seed's original model, evaluates
the result (:func:`clul_ray.text.evaluate.evaluate_model`, scored against that seed's
retrained model with :func:`~clul_ray.text.evaluate.scores`) and reports once, at the end,
the mean over the seeds with ``final = 1``: no per-epoch reports, so no early stopping.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from ..hashing import derive_seed
from ..runtime import gather
from ..text.evaluate import EvalSet, ModelEval, evaluate_model, scores
from ..unlearn.api import unlearn_model
from ..unlearn.text_compare import train_task, warm_up
from ..unlearn.text_data import TextData
from ..unlearn.training import TrainRecipe, torch_threads
from .text_objective import TEXT_METRICS, TextWeights, text_score
from .tuner import Progress

# a sweep evaluates every trial: it scores a seeded sample of the retain and holdout
# questions and of the retain documents (every forget question and document is kept)
SWEEP_QA_CAP = 100
SWEEP_DOC_CAP = 200
SALT_SWEEP_EVAL = 0x7E8


def _sample(items: list, cap: int, seed: int) -> list:
    if len(items) <= cap:
        return items
    keep = np.sort(np.random.default_rng(derive_seed(seed, SALT_SWEEP_EVAL)).choice(
        len(items), cap, replace=False))
    return [items[i] for i in keep]


def sweep_evalset(evalset: EvalSet, seed: int, qa_cap: int = SWEEP_QA_CAP,
                  doc_cap: int = SWEEP_DOC_CAP) -> EvalSet:
    """``evalset`` with at most ``qa_cap`` retain and holdout questions and ``doc_cap``
    retain documents (seeded samples); the forget side is whole."""
    return dataclasses.replace(
        evalset, retain_qa=_sample(evalset.retain_qa, qa_cap, seed),
        holdout_qa=_sample(evalset.holdout_qa, qa_cap, seed + 1),
        retain_docs=_sample(evalset.retain_docs, doc_cap, seed + 2), tensors={})


@dataclass
class TextReference:
    """One seed's original model and its retrained reference, both evaluated."""

    seed: int
    original: nn.Module
    retrain_eval: ModelEval
    seconds: float  # retrain's training seconds
    metrics: dict[str, float]  # retrain's scores (against itself)
    original_metrics: dict[str, float]  # the original model's, against retrain


@dataclass
class TextShared:
    """What every trial shares besides the data: the references per seed, the weights."""

    references: dict[int, TextReference]
    weights: TextWeights


def _eval(model: nn.Module, evalset: EvalSet) -> ModelEval:
    with torch_threads(1):
        return evaluate_model(model, evalset)


def references(template_ref, data_ref, evalset_ref, recipe: TrainRecipe, seeds: list[int],
               tick: Progress) -> dict[int, TextReference]:
    """Per seed, the original and the retrained model trained, then each evaluated: Ray
    tasks (one CPU each), all seeds at once. The work a sweep does once, not per trial."""
    import ray

    desc = "tune: original and retrained models"
    train = ray.remote(_train_split).options(num_cpus=1, num_returns=2,
                                             name="clul_ray.tune.text_train")
    evaluate = ray.remote(_eval).options(num_cpus=1, name="clul_ray.tune.text_eval")
    labels: dict[Any, str] = {}
    models: dict[tuple[int, str], Any] = {}
    secs: dict[Any, int] = {}
    evals: dict[Any, tuple[int, str]] = {}
    for s in seeds:
        for kind in ("original", "retrain"):
            models[s, kind], s_ref = train.remote(template_ref, data_ref, kind, recipe, s)
            if kind == "retrain":
                secs[s_ref] = s
                labels[s_ref] = f"training retrain (seed {s})"
            e_ref = evaluate.remote(models[s, kind], evalset_ref)
            evals[e_ref] = (s, kind)
            labels[e_ref] = f"evaluating {kind} (seed {s})"
    total, finished = len(labels), 0
    tick(desc, 0, total)

    def one_done(_ref, _value) -> None:
        nonlocal finished
        finished += 1
        tick(desc, finished, total)

    done = gather(labels, one_done)
    out = {}
    for s in seeds:
        got = {kind: done[r] for r, (s2, kind) in evals.items() if s2 == s}
        seconds = next(done[r] for r, s2 in secs.items() if s2 == s)
        out[s] = TextReference(
            s, ray.get(models[s, "original"]), got["retrain"], seconds,
            scores(got["retrain"], got["retrain"]), scores(got["original"], got["retrain"]))
    return out


def _train_split(template: nn.Module, data: TextData, kind: str, recipe: TrainRecipe,
                 seed: int) -> tuple[nn.Module, float]:
    return train_task(template, data.full if kind == "original" else data.retain, recipe, seed)


def score_text_model(model: nn.Module, evalset: EvalSet, ref: TextReference,
                     weights: TextWeights, seconds: float) -> dict[str, float]:
    """Evaluate ``model``, score it against ``ref``'s retrained model: the trial's result."""
    row = scores(evaluate_model(model, evalset), ref.retrain_eval)
    out = {k: float(row[k]) for k in TEXT_METRICS}
    out.update(text_score(row["forget_quality"], row["model_utility"],
                          ref.metrics["model_utility"], seconds, ref.seconds, weights))
    out["seconds"] = seconds
    return out


def run_text_trial(config: dict[str, Any], method: str, data: TextData, shared: TextShared,
                   report) -> dict:
    """Run ``method`` with ``config`` on every seed; report the mean once."""
    seeds = sorted(shared.references)
    finals = []
    with torch_threads(1):
        warm_up(shared.references[seeds[0]].original, data.retain.x)  # untimed first calls
        for s in seeds:
            ref = shared.references[s]
            model, rep = unlearn_model(ref.original, data.forget, data.retain, method, config,
                                       s)
            finals.append(score_text_model(model, data.evalset, ref, shared.weights,
                                           rep.seconds))
    mean = {k: float(np.mean([f[k] for f in finals])) for k in finals[0]}
    result = {**mean, "final": 1, "seeds": len(seeds)}
    report(result)
    return result


def text_trial(config: dict[str, Any], method: str, data: TextData,
               shared: TextShared) -> None:
    """The Ray Tune function trainable: :func:`run_text_trial` through ``tune.report``."""
    from ray import tune

    from .nodes import with_node

    run_text_trial(config, method, data, shared, with_node(tune.report))


def default_text_score(method: str, data: TextData, shared: TextShared) -> dict:
    """The method's default params, scored like a trial (outside Tune)."""
    return run_text_trial({}, method, data, shared, lambda _: None)
