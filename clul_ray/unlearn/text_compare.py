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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.sources import source_kind
from ..data.text import DEFAULT_CONTEXT, is_text, tofu_synth_options
from ..errors import ClulError
from ..hashing import derive_seed
from ..metrics import speedup
from ..models import batch_loss, build_model, is_language_model
from ..runtime import ensure_ray, gather
from ..text import corpus as C
from ..text.evaluate import EvalSet, ModelEval, evaluate_model, scores
from ..text.tokenizer import byte_tokenizer, encode, vocab_size
from .api import unlearn_model
from .base import Split, get_method, method_names
from .compare import TUNED, CompareSpec, Progress, _silent
from .training import (
    SALT_EPOCH,
    SALT_INIT,
    TrainRecipe,
    on_epoch_end,
    reinitialize,
    run_epochs,
    torch_threads,
)

SALT_EVAL_SAMPLE = 0x7E7
EVAL_QA_CAP = 300  # retain / holdout QAs scored per model (a seeded sample, as TOFU's subset)
EVAL_DOC_CAP = 1000  # retain documents whose perplexity is measured
TRAIN = "compare: training original and retrain (epochs)"
METHODS = "compare: methods"
EVAL = "compare: evaluating generations"


@dataclass(frozen=True)
class TextScenario:
    kind: str  # "people" or "bias"
    fraction: float = 0.0


def parse_text_scenario(spec: str) -> TextScenario:
    """``people:P`` (P as ``10%`` or ``0.1``) or ``bias``; anything else refused."""
    kind, _, arg = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind == "bias" and not arg.strip():
        return TextScenario("bias")
    if kind != "people":
        raise ClulError(f"forget scenario '{spec}' is not for text datasets (use people:P, "
                        "e.g. people:10%, or bias)")
    a = arg.strip()
    try:
        p = float(a[:-1]) / 100 if a.endswith("%") else float(a)
    except ValueError:
        raise ClulError(f"people scenario needs a fraction: 'people:10%' or 'people:0.1', got "
                        f"'{spec}'") from None
    if not 0.0 < p < 1.0:
        raise ClulError(f"'{spec}' names no person to forget or every one (the fraction must "
                        "be in (0, 1))")
    return TextScenario("people", p)


def lm_method_names() -> list[str]:
    """The registered language-model methods (``task="lm"``)."""
    try:
        return method_names(task="lm")  # type: ignore[call-arg]
    except TypeError:  # a registry without tasks has none
        return []


def resolve_lm_methods(methods: Sequence[str]) -> list[str]:
    """``all`` (the language-model methods) or names -> the methods, ``retrain`` first."""
    names: list[str] = []
    for m in methods:
        for part in (p.strip() for p in m.split(",")):
            if not part or part == "retrain":
                continue
            for name in (lm_method_names() if part == "all" else [part]):
                if getattr(get_method(name), "task", "classify") != "lm":
                    raise ClulError(f"{name} unlearns classifiers; on a text dataset compare "
                                    f"runs the language-model methods "
                                    f"({', '.join(lm_method_names()) or 'none registered'})")
                if name not in names:
                    names.append(name)
    if not names:
        raise ClulError("no language-model methods to compare (use --methods all or a "
                        "comma-separated list)")
    return ["retrain", *names]


@dataclass
class TextData:
    forget: Split
    retain: Split
    people: dict[str, np.ndarray]  # forget / retain / holdout people
    doc_ids: dict[str, np.ndarray]  # forget / retain / holdout document ids
    evalset: EvalSet
    vocab: int
    context: int
    scenario: TextScenario

    @property
    def full(self) -> Split:
        return Split(torch.cat([self.retain.x, self.forget.x]),
                     torch.cat([self.retain.y, self.forget.y]))


def _sample(items: list, cap: int, seed: int) -> list:
    if len(items) <= cap:
        return items
    keep = np.sort(np.random.default_rng(derive_seed(seed, SALT_EVAL_SAMPLE)).choice(
        len(items), cap, replace=False))
    return [items[i] for i in keep]


def load_text_data(spec: CompareSpec) -> TextData:
    """The corpus, the people split, the token rows and the evaluation set of ``spec``."""
    if source_kind(spec.dataset) != "tofu-synth":
        raise ClulError(f"compare on text needs question/answer pairs to score; "
                        f"{spec.dataset} has none (use tofu-synth:N)")
    scenario = parse_text_scenario(spec.forget)
    n, seed, bias = tofu_synth_options(spec.dataset)
    if scenario.kind == "bias" and bias <= 0:
        raise ClulError(f"--forget bias needs a corpus with bias documents (e.g. "
                        f"tofu-synth:{n}:bias=0.5), got {spec.dataset}")
    corpus = C.tofu_synth(n, seed, bias)
    f_people, r_people, h_people = C.person_splits(n, scenario.fraction, spec.test_fraction,
                                                   spec.seed)
    if not len(h_people):
        raise ClulError(f"test_fraction {spec.test_fraction} of {n} people leaves no holdout "
                        "person")
    trained = np.union1d(f_people, r_people)
    train_ids = C.ids_of_people(corpus, trained)
    if scenario.kind == "bias":
        forget_ids = np.intersect1d(C.bias_ids(corpus), train_ids)
        if not len(forget_ids):
            raise ClulError(f"{spec.dataset} has no bias document outside the holdout people")
    else:
        forget_ids = C.ids_of_people(corpus, f_people)
    retain_ids = np.setdiff1d(train_ids, forget_ids)
    if not len(retain_ids):
        raise ClulError(f"forget {spec.forget} leaves no retain document")
    holdout_ids = C.ids_of_people(corpus, h_people)
    docs = corpus.documents
    all_ids = docs.column("id").to_numpy()
    texts = docs.column("text").to_pylist()
    kinds = np.asarray(docs.column("kind").to_pylist())
    pos = {int(i): k for k, i in enumerate(all_ids)}

    def text_of(ids: np.ndarray) -> list[str]:
        return [texts[pos[int(i)]] for i in ids]

    tok, context = byte_tokenizer(), DEFAULT_CONTEXT

    def split(ids: np.ndarray) -> Split:
        x, _ = encode(tok, text_of(ids), context)
        return Split.from_numpy(x.astype(np.float32), np.zeros(len(ids)), ids)

    qa_of = {k: [q for q in corpus.qa if q.person in set(p.tolist())]
             for k, p in (("forget", f_people), ("retain", r_people), ("holdout", h_people))}
    forget_kinds = set(kinds[[pos[int(i)] for i in forget_ids]])
    privacy = [i for i in holdout_ids if kinds[pos[int(i)]] in forget_kinds]
    evalset = EvalSet(
        tok=tok, context=context,
        forget_qa=qa_of["forget"] if scenario.kind == "people" else [],
        retain_qa=_sample(qa_of["retain"], EVAL_QA_CAP, spec.seed),
        holdout_qa=_sample(qa_of["holdout"], EVAL_QA_CAP, spec.seed + 1),
        forget_docs=text_of(forget_ids),
        retain_docs=_sample(text_of(retain_ids), EVAL_DOC_CAP, spec.seed + 2),
        holdout_docs=text_of(holdout_ids), privacy_holdout_docs=text_of(np.asarray(privacy)),
        bias=bias > 0)
    return TextData(forget=split(forget_ids), retain=split(retain_ids),
                    people={"forget": f_people, "retain": r_people, "holdout": h_people},
                    doc_ids={"forget": forget_ids, "retain": retain_ids,
                             "holdout": holdout_ids},
                    evalset=evalset, vocab=vocab_size(tok), context=context, scenario=scenario)


def check_text_spec(spec: CompareSpec) -> tuple[list[str], TextData, nn.Module]:
    """Refuse a bad spec before any work starts; the methods, the data and the template."""
    if not is_text(spec.dataset):
        raise ClulError(f"not a text dataset: '{spec.dataset}'")
    methods = resolve_lm_methods(spec.methods)
    if spec.seeds != 1:
        raise ClulError("compare on a text dataset runs one seed (--seeds 1)")
    if "retrain" in spec.params:
        raise ClulError("retrain follows the original model's recipe; change it with "
                        "--epochs / --lr / --batch-size instead of --param retrain.*")
    for m, values in spec.params.items():
        if m not in methods:
            raise ClulError(f"--param for '{m}', which is not among the methods "
                            f"({', '.join(methods)})")
        get_method(m).make_params(values)
    for m, values in spec.tuned.items():
        get_method(m).make_params(values)
    if spec.tuned and not set(spec.tuned) & set(methods):
        raise ClulError(f"the tuned params are for {', '.join(spec.tuned)}, none of which is "
                        "compared")
    parse_text_scenario(spec.forget)
    data = load_text_data(spec)
    template = build_model(spec.model, (data.context,), data.vocab, spec.model_args)
    if not is_language_model(template):
        raise ClulError(f"compare on a text dataset needs a language model (--model gpt-tiny), "
                        f"got {spec.model}")
    return methods, data, template


def train_lm(template: nn.Module, data: Split, recipe: TrainRecipe, seed: int) -> nn.Module:
    """Fresh weights (seeded), then ``recipe.epochs`` seeded passes minimising the
    next-token loss (the classifier harness's recipe, with ``models.batch_loss``)."""
    model = reinitialize(template, derive_seed(seed, SALT_INIT))
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
