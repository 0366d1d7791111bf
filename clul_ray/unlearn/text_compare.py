"""The comparison harness on a text dataset: language-model unlearning methods against
retraining, scored with the TOFU (Maini et al. 2024) and MUSE (Shi et al. 2024) metrics.

On ``tofu-synth:N`` the people are split into forget, retain and holdout
(:func:`clul_ray.text.corpus.person_splits`; the holdout fraction is ``test_fraction``, the
holdout people are never trained on). Scenarios (``forget``):

- ``people:P`` (``10%`` or ``0.1``): every document of a fraction P of the people;
- ``bias``: the stereotyped ``bias`` documents of a corpus built with ``bias=B``
  (:func:`clul_ray.text.corpus.bias_ids`), the association gap reported beside utility.

The original model is trained on the retain and forget documents, ``retrain`` on the retain
documents only (same recipe and seed, ``models.batch_loss`` on seeded permutations); every
language-model method then runs from the original model. Each model is evaluated once
(:func:`clul_ray.text.evaluate.evaluate_model`); forget quality and PrivLeak are read
against ``retrain``. Training, methods and evaluations run as Ray tasks (one CPU and one
torch thread each) or in-process (``backend="local"``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.text import is_text
from ..errors import ClulError
from ..hashing import derive_seed
from ..metrics import speedup
from ..models import batch_loss, build_model, is_language_model
from ..runtime import ensure_ray, gather
from ..text.evaluate import EvalSet, ModelEval, evaluate_model, scores
from .api import unlearn_model
from .base import Split, get_method
from .compare import TUNED, CompareSpec, Progress, _silent, check_params
from .text_data import TextData, load_text_data, parse_text_scenario, resolve_lm_methods
from .training import (
    SALT_EPOCH,
    SALT_INIT,
    TrainRecipe,
    on_epoch_end,
    run_epochs,
    torch_threads,
)

TRAIN = "compare: training original and retrain (epochs)"
METHODS = "compare: methods"
EVAL = "compare: evaluating generations"


def check_text_spec(spec: CompareSpec) -> tuple[list[str], TextData, nn.Module]:
    """Refuse a bad spec before any work starts; the methods, the data and the template."""
    if not is_text(spec.dataset):
        raise ClulError(f"not a text dataset: '{spec.dataset}'")
    methods = resolve_lm_methods(spec.methods)
    if spec.seeds != 1:
        raise ClulError("compare on a text dataset runs one seed (--seeds 1)")
    if spec.audit:
        raise ClulError("the ε-score audit (--audit) scores classifiers; drop it on a text "
                        "dataset")
    check_params(spec, methods)
    parse_text_scenario(spec.forget)
    data = load_text_data(spec)
    template = build_model(spec.model, (data.context,), data.vocab, spec.model_args)
    if not is_language_model(template):
        raise ClulError(f"compare on a text dataset needs a language model (--model gpt-tiny), "
                        f"got {spec.model}")
    return methods, data, template


def train_lm(template: nn.Module, data: Split, recipe: TrainRecipe, seed: int) -> nn.Module:
    """Fresh weights (seeded), then ``recipe.epochs`` seeded passes minimising the
    next-token loss (the classifier harness's recipe, with ``models.batch_loss``). The
    template is a :class:`~clul_ray.text.lm.CausalLM` (its own GPT-2 initialisation)."""
    model = copy.deepcopy(template)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, SALT_INIT))
        model.init_weights()
    opt = recipe.optimizer_for(model.parameters(), recipe.weight_decay)
    with torch.random.fork_rng(devices=[]):
        run_epochs(model, opt, derive_seed(seed, SALT_EPOCH), recipe.epochs, len(data),
                   recipe.batch_size, lambda idx, _: batch_loss(model, data.x[idx], data.y[idx]))
    return model.eval()


def warm_up(model: nn.Module, x: torch.Tensor) -> None:
    """One untimed forward/backward on a copy (first-call costs stay out of the timings)."""
    m = copy.deepcopy(model).train()
    batch_loss(m, x[:8], torch.zeros(len(x[:8]), dtype=torch.long)).backward()


def train_task(template: nn.Module, data: Split, recipe: TrainRecipe, seed: int,
               epoch_tick=None) -> tuple[nn.Module, float]:
    """A trained model and its training seconds (one torch thread)."""
    with torch_threads(1), on_epoch_end(epoch_tick):
        warm_up(template, data.x)
        t0 = time.perf_counter()
        model = train_lm(template, data, recipe, seed)
        return model, time.perf_counter() - t0


def method_task(model: nn.Module, data: TextData, method: str, params: dict[str, Any],
                seed: int) -> tuple[nn.Module, dict[str, Any]]:
    with torch_threads(1):
        warm_up(model, data.retain.x)
        new, report = unlearn_model(model, data.forget, data.retain, method, params, seed)
        return new, report.to_dict()


def eval_task(model: nn.Module, evalset: EvalSet, label: str,
              tick=None) -> tuple[str, ModelEval]:
    with torch_threads(1):
        return label, evaluate_model(model, evalset, tick)


def runs(spec: CompareSpec, methods: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(row label, method, params): each method, then a tuned run per tuned method."""
    out = [(m, m, dict(spec.params.get(m, {}))) for m in methods if m != "retrain"]
    return out + [(m + TUNED, m, dict(spec.tuned[m])) for m in methods if m in spec.tuned]


@dataclass
class Executed:
    train_seconds: dict[str, float]
    reports: dict[str, dict[str, Any]]
    evals: dict[str, ModelEval]


def execute(spec: CompareSpec, todo: list[tuple[str, str, dict]], data: TextData,
            template: nn.Module, tick: Progress) -> Executed:
    """Original, retrain, every method and every model's evaluation; progress as they go."""
    seconds: dict[str, float] = {}
    reports: dict[str, dict[str, Any]] = {}
    evals: dict[str, ModelEval] = {}
    per_model = data.evalset.generations()
    total_eval = per_model * (2 + len(todo))
    epochs = max(spec.recipe.epochs, 1)
    counts = {"epochs": 0, "generated": 0}
    tick(TRAIN, 0, 2 * epochs)
    tick(METHODS, 0, len(todo))
    tick(EVAL, 0, total_eval)

    def epoch_done(_epoch: int, _model: nn.Module) -> None:
        counts["epochs"] += 1
        tick(TRAIN, counts["epochs"], 2 * epochs)

    def generated(k: int) -> None:
        counts["generated"] += k
        tick(EVAL, counts["generated"], total_eval)

    if spec.backend == "local":
        hook = epoch_done if spec.recipe.epochs else None
        original, seconds["original"] = train_task(template, data.full, spec.recipe, spec.seed,
                                                   hook)
        retrain, seconds["retrain"] = train_task(template, data.retain, spec.recipe,
                                                 spec.seed, hook)
        if not spec.recipe.epochs:
            tick(TRAIN, 2 * epochs, 2 * epochs)
        models = {"original": original, "retrain": retrain}
        for k, (label, m, params) in enumerate(todo):
            models[label], reports[label] = method_task(original, data, m, params, spec.seed)
            tick(METHODS, k + 1, len(todo))
        for label, model in models.items():
            evals[label] = eval_task(model, data.evalset, label, generated)[1]
        return Executed(seconds, reports, evals)

    import ray

    ensure_ray()
    train = ray.remote(train_task).options(num_cpus=1, num_returns=2,
                                           name="clul_ray.compare.text_train")
    method = ray.remote(method_task).options(num_cpus=1, num_returns=2,
                                             name="clul_ray.compare.text_method")
    evaluate = ray.remote(eval_task).options(num_cpus=1, name="clul_ray.compare.text_eval")
    data_ref, eval_ref = ray.put(data), ray.put(data.evalset)
    labels: dict[Any, str] = {}
    kinds: dict[Any, tuple[str, str]] = {}
    model_refs = {}
    for name, split in (("original", data.full), ("retrain", data.retain)):
        model_refs[name], s_ref = train.remote(template, split, spec.recipe, spec.seed)
        labels[s_ref], kinds[s_ref] = f"training {name}", ("train", name)
    for label, m, params in todo:
        model_refs[label], r_ref = method.remote(model_refs["original"], data_ref, m, params,
                                                 spec.seed)
        labels[r_ref], kinds[r_ref] = label, ("method", label)
    for label, ref in model_refs.items():
        e_ref = evaluate.remote(ref, eval_ref, label)
        labels[e_ref], kinds[e_ref] = f"evaluating {label}", ("eval", label)

    def finished(ref, value) -> None:
        kind, label = kinds[ref]
        if kind == "train":
            seconds[label] = value
            counts["epochs"] += epochs
            tick(TRAIN, counts["epochs"], 2 * epochs)
        elif kind == "method":
            reports[label] = value
            tick(METHODS, len(reports), len(todo))
        else:
            evals[label] = value[1]
            generated(per_model)

    gather(labels, finished)
    return Executed(seconds, reports, evals)


def score_rows(todo: list[tuple[str, str, dict]], done: Executed) -> list[dict[str, Any]]:
    """One row per model: retrain, original, then the methods in order."""
    ref = done.evals["retrain"]
    base = done.train_seconds["retrain"]
    rows = []
    for label in ["retrain", "original", *(t[0] for t in todo)]:
        rep = done.reports.get(label)
        secs = (base if label == "retrain" else float("nan") if label == "original"
                else rep["seconds"])
        row: dict[str, Any] = {"method": label,
                               "changes_weights": True if rep is None else rep["changes_weights"]}
        row.update(scores(done.evals[label], ref))
        row["seconds"] = secs
        row["speedup"] = float("nan") if label == "original" else speedup(secs, base)
        rows.append(row)
    return rows


def run_text_compare(spec: CompareSpec, out_dir: str | Path, progress: Progress | None = None,
                     checked: tuple[list[str], TextData, nn.Module] | None = None
                     ) -> dict[str, Any]:
    """Run the comparison; write summary.json / .md / .csv and compare.png in ``out_dir``."""
    from .text_summary import write_outputs

    tick = progress or _silent
    methods, data, template = checked or check_text_spec(spec)
    todo = runs(spec, methods)
    t0 = time.perf_counter()
    done = execute(spec, todo, data, template, tick)
    wall = time.perf_counter() - t0
    rows = score_rows(todo, done)
    ev = data.evalset
    meta = {
        "dataset": spec.dataset, "model": spec.model, "model_args": spec.model_args,
        "forget": spec.forget, "scenario": data.scenario.kind, "bias": ev.bias,
        "seed": spec.seed,
        "seeds": [spec.seed], "test_fraction": spec.test_fraction, "backend": spec.backend,
        "people": {k: len(v) for k, v in data.people.items()},
        "documents": {k: len(v) for k, v in data.doc_ids.items()},
        "qa": {"forget": len(ev.forget_qa), "retain": len(ev.retain_qa),
               "holdout": len(ev.holdout_qa)},
        "privacy_nonmembers": len(ev.privacy_holdout_docs),
        "recipe": spec.recipe.model_dump(),
        "params": {label: get_method(m).make_params(p).model_dump() for label, m, p in todo},
        "original_train_seconds": done.train_seconds["original"],
        "retrain_seconds": done.train_seconds["retrain"],
        "wall_seconds": wall,
    }
    examples = {label: e.examples for label, e in done.evals.items()}
    files = write_outputs(rows, meta, {"reports": list(done.reports.values()),
                                       "examples": examples}, Path(out_dir))
    return {"out": str(out_dir), "files": {k: str(v) for k, v in files.items()}, "meta": meta,
            "rows": rows}
