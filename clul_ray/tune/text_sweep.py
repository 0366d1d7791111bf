"""A sweep on a text dataset (``tofu-synth:N``): for each language-model method, one Ray
Tune run over its strengths, scored against the retrained language model with the text
objective (:mod:`.text_objective`).

The corpus is split as ``compare`` splits it (:func:`clul_ray.unlearn.text_data.
load_text_data`, the split fixed by the first seed); the evaluation set is capped for sweeps
(:func:`.text_trial.sweep_evalset`). The references are computed once per seed
(:func:`.text_trial.references`), then each method's Tuner runs function trials that report
once, so the scheduler is FIFO whatever ``scheduler`` says. Outputs as for classifiers
(:mod:`.outputs`), with the text metrics as columns.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from ..errors import ClulError
from ..models import build_model, is_language_model
from ..runtime import gather
from ..unlearn import get_method, method_names
from ..unlearn.compare import CompareSpec, settings
from ..unlearn.text_data import TextData, load_text_data, parse_text_scenario
from .nodes import Puts, connect_out, placement
from .space import check_domain, space_for, sweepable
from .sweep import SweepSpec
from .text_objective import TEXT_RESULT_KEYS, TextWeights
from .text_trial import TextShared, default_text_score, references, sweep_evalset, text_trial
from .tuner import Progress, fit_trials, make_trainable

OBJECTIVE_TEXT = ("w_forget·(1 − forget quality) + w_utility·max(0, MU_retrain − MU) / "
                  "MU_retrain (+ cost)")
COLUMNS = ("method", "trial", "status", "objective", "gap", "forget_gap", "utility_drop",
           "cost", "forget_quality", "model_utility", "priv_leak", "verbmem", "knowmem_forget",
           "ppl_forget", "ppl_retain", "seconds", "iterations", "trial_seconds", "node_id", "error")
SHOWN = ("forget_quality", "model_utility", "priv_leak", "verbmem")
LABELS = {"forget_quality": "FQ", "model_utility": "MU", "priv_leak": "PrivLeak",
          "verbmem": "VerbMem"}


class TextSweepSpec(SweepSpec):
    """A :class:`SweepSpec` on a text dataset: the text objective's weights."""

    dataset: str = "tofu-synth:100"
    model: str = "gpt-tiny"
    forget: str = "people:10%"
    weights: TextWeights = Field(default_factory=TextWeights)  # type: ignore[assignment]


def resolve_text_methods(names: list[str]) -> list[str]:
    """``all`` -> every language-model method with strengths; names are checked."""
    lm = method_names(task="lm")
    out: list[str] = []
    for item in names:
        for part in (p.strip() for p in item.split(",") if p.strip()):
            for m in ([n for n in lm if sweepable(n)] if part == "all" else [part]):
                if get_method(m).task != "lm":
                    raise ClulError(f"{m} unlearns classifiers; on a text dataset tune sweeps "
                                    f"the language-model methods ({', '.join(lm)})")
                if not sweepable(m):
                    raise ClulError(f"{m} has no strengths to sweep")
                if m not in out:
                    out.append(m)
    if not out:
        raise ClulError("no method to sweep (use --method all or a method name)")
    return out


def check_text_sweep(spec: TextSweepSpec) -> tuple[list[str], TextData, Any]:
    """Refuse a bad spec before any work starts; the methods, the data and the template."""
    methods = resolve_text_methods(spec.methods)
    for m, params in spec.space.items():
        if m not in methods:
            raise ClulError(f"space for '{m}', which is not swept ({', '.join(methods)})")
        for k, v in params.items():
            check_domain(m, k, v)
    if parse_text_scenario(spec.forget).kind != "people":
        raise ClulError(f"tune on a text dataset needs --forget people:P (forget quality "
                        f"compares the forgotten people's answers), got '{spec.forget}'")
    data = load_text_data(CompareSpec(
        dataset=spec.dataset, model=spec.model, model_args=spec.model_args, forget=spec.forget,
        seed=spec.seed, test_fraction=spec.test_fraction, recipe=spec.recipe,
        data_dir=spec.data_dir))
    template = build_model(spec.model, (data.context,), data.vocab, spec.model_args)
    if not is_language_model(template):
        raise ClulError(f"tune on a text dataset needs a language model (--model gpt-tiny), "
                        f"got {spec.model}")
    return methods, data, template


def run_text_sweep(spec: TextSweepSpec, out_dir: str | Path, progress: Progress | None = None,
                   address: str | None = None,
                   checked: tuple[list[str], TextData, Any] | None = None,
                   shared_storage: bool = False) -> dict[str, Any]:
    """Sweep every method of ``spec``; write the outputs under ``out_dir`` (a folder, shared
    by every node on a multi-node cluster, or a URI: :mod:`.nodes`). ``checked``: what
    :func:`check_text_sweep` returned for ``spec``, if it was called already."""
    from .outputs import write_outputs
    from .record import record_sweep

    tick = progress or (lambda *_: None)
    methods, data, template = checked or check_text_sweep(spec)
    data = dataclasses.replace(data, evalset=sweep_evalset(data.evalset, spec.seed))
    where = connect_out(out_dir, address, shared_storage)
    out = where.local
    import ray

    t0 = time.perf_counter()
    seeds = [spec.seed + k for k in range(spec.seeds)]
    puts = Puts()
    data_ref, template_ref = puts.put("data", data), puts.put("template", template)
    done = references(template_ref, data_ref, puts.put("evalset", data.evalset), spec.recipe,
                      seeds, tick)
    shared_ref = puts.put("references", TextShared(done, spec.weights))
    t_ref = time.perf_counter() - t0

    default_task = ray.remote(default_text_score).options(num_cpus=1,
                                                          name="clul_ray.tune.text_default")
    defaults = {default_task.remote(m, data_ref, shared_ref): m for m in methods}
    rows: list[dict[str, Any]] = []
    walls: dict[str, float] = {}
    for m in methods:
        t1 = time.perf_counter()
        rows += fit_trials(
            text_trial, {"method": m, "data": data_ref, "shared": shared_ref}, m,
            space_for(m, spec.space.get(m)), num_samples=spec.num_samples,
            max_concurrent=spec.max_concurrent, search=spec.search, seed=spec.seed,
            asha=False, grace_period=spec.grace_period, max_t=1,
            storage_path=where.storage_path, tick=tick,
            keys=TEXT_RESULT_KEYS)
        walls[m] = time.perf_counter() - t1
    default_rows = {defaults[r]: v for r, v in gather(
        {r: f"{m} default params" for r, m in defaults.items()}).items()}
    ev = data.evalset
    meta = {
        "methods": methods, "dataset": spec.dataset, "model": spec.model,
        "forget": spec.forget, "seeds": seeds, "num_samples": spec.num_samples,
        "scheduler": "fifo", "search": spec.search,
        "cpus": int(ray.cluster_resources().get("CPU", 1)),
        "references_computed": len(done), "reference_seconds": t_ref,
        "wall_seconds": walls, "weights": spec.weights.model_dump(),
        "objective_text": OBJECTIVE_TEXT, "columns": COLUMNS, "shown": SHOWN,
        "labels": LABELS, "axes": ("1 − forget quality", "utility drop below retrain"),
        "evaluated": {"forget_qa": len(ev.forget_qa), "retain_qa": len(ev.retain_qa),
                      "holdout_qa": len(ev.holdout_qa), "forget_docs": len(ev.forget_docs),
                      "retain_docs": len(ev.retain_docs)},
        "retrain": {s: done[s].metrics for s in seeds},
        "retrain_seconds": {s: done[s].seconds for s in seeds},
        "original": {s: done[s].original_metrics for s in seeds},
        "defaults": {m: {k: default_rows[m].get(k) for k in TEXT_RESULT_KEYS}
                     for m in methods},
        "default_params": {m: settings(m, {}) for m in methods},
        **placement(rows, puts, make_trainable(
            text_trial, {"method": methods[0], "data": data_ref, "shared": shared_ref})),
    }
    result = write_outputs(rows, meta, out)
    result["mlflow"] = record_sweep(rows, meta, result, out)
    return where.finish(result)
