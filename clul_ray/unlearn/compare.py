"""The comparison harness: one original model, every method and ``retrain`` on one split.

For each seed k (``seed``, ``seed+1``, ...): train the original model on the training rows
with the ``TrainRecipe``, then run every method and ``retrain`` from it on the same
forget/retain split with seed k, as Ray tasks (one CPU and one torch thread each) or
in-process. The held-out test split and the forget set are fixed by ``seed`` and shared by
all seeds, so the spread over seeds is the spread of training randomness. Metrics are
computed on the driver from the tasks' probability outputs (:mod:`clul_ray.metrics`), then
written by :mod:`.summary` and :mod:`.plot`. Progress is reported per phase: loading the
data, the original models, the methods (as each task finishes), the metrics.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import torch
from pydantic import Field
from torch import nn

from ..data.partition import is_test
from ..data.sources import features, open_source
from ..errors import ClulError
from ..hashing import derive_seed
from ..metrics import Labels, Outputs, evaluate, speedup
from ..models import build_model
from ..runtime import ensure_ray, gather
from .api import unlearn_model
from .base import Split, get_method, method_names
from .params import Int, Settings
from .scenarios import parse_scenario, split_forget
from .training import (
    TrainRecipe,
    predict_proba,
    reinitialize,
    torch_threads,
    train_from_scratch,
)

SALT_ZRF = 0x2F
GAP_METRICS = ("RA", "FA", "TA", "MIA")
Progress = Callable[[str, int, int], None]


def _silent(description: str, done: int, total: int) -> None:
    """The progress callback of a caller that gave none."""


class ScenarioSpec(Settings):
    """One forget scenario: the data, its split, the model and how the original trains."""

    dataset: str = "digits"
    model: str = "mlp"
    model_args: dict[str, Any] = Field(default_factory=dict)
    forget: str = "class:3"
    seed: Int = 0
    test_fraction: float = Field(0.2, gt=0, lt=1)
    recipe: TrainRecipe = Field(default_factory=TrainRecipe)
    backend: Literal["ray", "local"] = "ray"
    data_dir: str | None = None


class CompareSpec(ScenarioSpec):
    """What to compare. ``params`` maps a method to its overrides (``{"salun": {"lr": 0.1}}``)."""

    label: ClassVar[str] = "compare"

    methods: list[str] = Field(default_factory=lambda: ["all"])
    seeds: Int = Field(1, ge=1)
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tuned: dict[str, dict[str, Any]] = Field(default_factory=dict)  # from `clul-ray tune`
    audit: Int = Field(0, ge=0)  # N > 1: add the ε-score audit of every method (N per side)


@dataclass
class Data:
    forget: Split
    retain: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]

    @property
    def labels(self) -> Labels:
        return Labels(self.retain.y.numpy(), self.forget.y.numpy(), self.test.y.numpy())

    def full(self) -> Split:
        """D_r ∪ D_f (with the rows' ids when both have them): what the original trains on."""
        ids = (None if self.retain.ids is None or self.forget.ids is None
               else np.concatenate([self.retain.ids, self.forget.ids]))
        return Split(torch.cat([self.retain.x, self.forget.x]),
                     torch.cat([self.retain.y, self.forget.y]), ids)


@dataclass
class OriginalInfo:
    seed: int
    outputs: Outputs
    incompetent_forget: np.ndarray
    seconds: float


@dataclass
class MethodResult:
    method: str
    seed: int
    outputs: Outputs
    report: dict[str, Any]


def resolve_methods(methods: Sequence[str]) -> list[str]:
    """``all`` or names -> the methods to run, ``retrain`` first and always included."""
    names: list[str] = []
    for m in methods:
        for part in (p.strip() for p in m.split(",")):
            if not part:
                continue
            for name in (method_names(task="classify") if part == "all" else [part]):
                if get_method(name).task != "classify":
                    raise ClulError(f"{name} unlearns language models; compare runs the "
                                    f"classifier methods")
                if name not in names:
                    names.append(name)
    if not names:
        raise ClulError("no methods given (use --methods all or a comma-separated list)")
    return ["retrain"] + [n for n in names if n != "retrain"]


def parse_param_overrides(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """``["salun.lr=0.1", ...]`` -> ``{"salun": {"lr": "0.1"}}`` (typed later, per method)."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        method, dot, name = key.strip().rpartition(".")
        if not eq or not dot or not method or not name or not value.strip():
            raise ClulError(f"bad --param '{item}' (expected method.key=value, e.g. "
                            "salun.lr=0.05)")
        out.setdefault(method, {})[name] = value.strip()
    return out


def check_params(spec: CompareSpec, methods: list[str]) -> None:
    """Refuse ``--param`` and tuned params that no compared method takes, in one line."""
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


def check_spec(spec: CompareSpec) -> list[str]:
    """Refuse a bad spec before any work starts; returns the methods to run."""
    methods = resolve_methods(spec.methods)
    check_params(spec, methods)
    parse_scenario(spec.forget)
    if spec.audit == 1:
        raise ClulError("--audit must be 0 (off) or at least 2 models per side, got 1")
    return methods


TUNED = " (tuned)"


def runs(spec: CompareSpec, methods: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(row label, method, params) of every run: each method with its params, then a
    ``"<method> (tuned)"`` run for each method the spec has tuned params for."""
    out = [(m, m, method_params(spec, m)) for m in methods]
    out += [(m + TUNED, m, dict(spec.tuned[m])) for m in methods if m in spec.tuned]
    return out


def load_data(spec: ScenarioSpec) -> Data:
    src = open_source(spec.dataset, data_dir=spec.data_dir)
    tables = [t.select(["id", "label", "x"]) for t in src.iter_tables()]
    if not tables:
        raise ClulError(f"{spec.dataset}: the dataset is empty")
    table = pa.concat_tables(tables)
    ids, y, x = table.column("id").to_numpy(), table.column("label").to_numpy(), features(table)
    test = is_test(spec.seed, ids, spec.test_fraction)
    if test.all() or not test.any():
        raise ClulError(f"test_fraction {spec.test_fraction} leaves no training or no test rows")
    fs = split_forget(parse_scenario(spec.forget), ids[~test], y[~test], ids[test], y[test],
                      src.num_classes, spec.seed)
    tr_ids, tr_y, tr_x = ids[~test], y[~test], x[~test]
    keep = fs.test_keep
    return Data(
        forget=Split.from_numpy(tr_x[fs.forget], tr_y[fs.forget], tr_ids[fs.forget]),
        retain=Split.from_numpy(tr_x[~fs.forget], tr_y[~fs.forget], tr_ids[~fs.forget]),
        test=Split.from_numpy(x[test][keep], y[test][keep], ids[test][keep]),
        num_classes=src.num_classes, input_shape=tuple(src.input_shape))



def outputs_of(model: nn.Module, data: Data) -> Outputs:
    return Outputs(predict_proba(model, data.retain.x), predict_proba(model, data.forget.x),
                   predict_proba(model, data.test.x))


def train_original(template: nn.Module, data: Data, recipe: TrainRecipe, seed: int, *,
                   record_updates: bool = False) -> tuple[nn.Module, OriginalInfo]:
    """The original model on D_r ∪ D_f, its outputs, and a random model's outputs on D_f.

    ``record_updates``: the model carries its update log (for ``amnesiac``)."""
    with torch_threads(1):
        t0 = time.perf_counter()
        model = train_from_scratch(template, data.full(), recipe, seed,
                                   record_updates=record_updates)
        seconds = time.perf_counter() - t0
        incompetent = reinitialize(model, derive_seed(seed, SALT_ZRF)).eval()
        return model, OriginalInfo(seed, outputs_of(model, data),
                                   predict_proba(incompetent, data.forget.x), seconds)


def warm_up(model: nn.Module, x: torch.Tensor) -> None:
    """One untimed forward/backward on a copy, so a fresh worker's first-call costs do not
    land in the timed method (retrain is timed too, and its time is the speed-up's base)."""
    m = copy.deepcopy(model).train()
    m(x[:8]).sum().backward()


def run_method(model: nn.Module, data: Data, method: str, params: dict[str, Any],
               seed: int, label: str | None = None) -> MethodResult:
    with torch_threads(1):
        warm_up(model, data.retain.x)
        new, report = unlearn_model(model, data.forget, data.retain, method, params, seed)
        return MethodResult(label or method, seed, outputs_of(new, data), report.to_dict())


def method_params(spec: CompareSpec, method: str) -> dict[str, Any]:
    if method == "retrain":
        return spec.recipe.model_dump()
    return dict(spec.params.get(method, {}))


def settings(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Every parameter a method runs with (defaults included), seed aside."""
    p = get_method(method).make_params(params).model_dump()
    p.pop("seed", None)
    return p


def execute(spec: CompareSpec, todo: list[tuple[str, str, dict]], data: Data,
            template: nn.Module,
            tick: Progress) -> tuple[dict[int, OriginalInfo], list[MethodResult]]:
    """The original model and every method for each seed; progress as each one finishes."""
    seeds = [spec.seed + k for k in range(spec.seeds)]
    originals: dict[int, OriginalInfo] = {}
    results: list[MethodResult] = []

    def finished(value: OriginalInfo | MethodResult) -> None:
        if isinstance(value, OriginalInfo):
            originals[value.seed] = value
            tick("compare: original models", len(originals), len(seeds))
        else:
            results.append(value)
            tick("compare: methods", len(results), len(seeds) * len(todo))

    record = any(m == "amnesiac" for _, m, _ in todo)  # the update log only when needed
    tick("compare: original models", 0, len(seeds))
    tick("compare: methods", 0, len(seeds) * len(todo))
    if spec.backend == "local":
        for s in seeds:
            model, info = train_original(template, data, spec.recipe, s, record_updates=record)
            finished(info)
            for label, m, params in todo:
                finished(run_method(model, data, m, params, s, label))
        return originals, results

    import ray

    ensure_ray()
    train_task = ray.remote(train_original).options(num_cpus=1, num_returns=2,
                                                    name="clul_ray.compare.original")
    method_task = ray.remote(run_method).options(num_cpus=1, name="clul_ray.compare.method")
    data_ref = ray.put(data)
    labels: dict[Any, str] = {}
    for s in seeds:
        model_ref, info_ref = train_task.remote(template, data_ref, spec.recipe, s,
                                                record_updates=record)
        labels[info_ref] = f"original (seed {s})"
        for label, m, params in todo:
            ref = method_task.remote(model_ref, data_ref, m, params, s, label)
            labels[ref] = f"{label} (seed {s})"
    gather(labels, lambda _ref, value: finished(value))
    return originals, results


def score(data: Data, originals: dict[int, OriginalInfo], results: list[MethodResult],
          tick: Progress) -> list[dict[str, Any]]:
    """One row per (method, seed): the metrics, seconds, speed-up and gap to retrain."""
    labels = data.labels
    by_seed: dict[int, dict[str, MethodResult]] = {}
    for r in results:
        by_seed.setdefault(r.seed, {})[r.method] = r
    total = len(originals) + len(results)
    tick("compare: metrics", 0, total)
    rows: list[dict[str, Any]] = []
    for s in sorted(originals):
        ref = by_seed[s]["retrain"]
        inc = originals[s].incompetent_forget
        entries: list[tuple[str, Outputs, float | None, bool]] = [
            ("original", originals[s].outputs, None, False)]
        entries += [(m, r.outputs, r.report["seconds"], r.report["changes_weights"])
                    for m, r in by_seed[s].items()]
        seed_rows = []
        for name, outs, seconds, changes in entries:
            row: dict[str, Any] = {"method": name, "seed": s, "changes_weights": changes}
            row.update(evaluate(outs, labels, ref.outputs, inc, seed=s))
            row["seconds"] = float("nan") if seconds is None else seconds
            row["speedup"] = (float("nan") if seconds is None
                              else speedup(seconds, ref.report["seconds"]))
            seed_rows.append(row)
            tick("compare: metrics", len(rows) + len(seed_rows), total)
        retrain_row = next(r for r in seed_rows if r["method"] == "retrain")
        for row in seed_rows:
            row["gap"] = float(np.mean([abs(row[k] - retrain_row[k]) for k in GAP_METRICS]))
        rows += seed_rows
    return rows


def run_compare(spec: CompareSpec, out_dir: str | Path, progress: Progress | None = None,
                auditor: Callable[..., tuple[list[dict], str]] | None = None
                ) -> dict[str, Any]:
    """Run the comparison and write compare.csv / .md / .png (and per-seed rows, JSON).
    With ``spec.audit``, ``auditor(spec, runs, data, template, progress)`` gives each run's
    ε-score rows and their Markdown (:func:`clul_ray.audit.methods.compare_with_audit`)."""
    from .plot import write_plot
    from .summary import aggregate, write_csv, write_json, write_markdown

    tick = progress or _silent
    methods = check_spec(spec)
    if spec.audit and auditor is None:
        raise ClulError("compare with audit > 0 runs through clul_ray.audit.methods."
                        "compare_with_audit")
    tick("compare: loading data", 0, 1)
    data = load_data(spec)
    template = build_model(spec.model, data.input_shape, data.num_classes, spec.model_args)
    tick("compare: loading data", 1, 1)
    t0 = time.perf_counter()
    todo = runs(spec, methods)
    originals, results = execute(spec, todo, data, template, tick)
    wall = time.perf_counter() - t0
    per_seed = score(data, originals, results, tick)
    order = ["retrain", "original"] + [m for m in methods if m != "retrain"]
    order = [x for m in order for x in (m, m + TUNED)]
    rows = aggregate(per_seed, order)
    audit, audit_md = auditor(spec, todo, data, template, tick) if spec.audit else ([], "")
    scored = {a["method"]: a for a in audit}
    for r in rows:  # the ε-score beside each run's gap (compare.csv / .json)
        if r["method"] in scored:
            r.update(F=scored[r["method"]]["F"], eps_score=scored[r["method"]]["score"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "dataset": spec.dataset, "model": spec.model, "model_args": spec.model_args,
        "forget": spec.forget, "seeds": [spec.seed + k for k in range(spec.seeds)],
        "test_fraction": spec.test_fraction, "backend": spec.backend,
        "rows": {"forget": len(data.forget), "retain": len(data.retain),
                 "test": len(data.test)},
        "recipe": spec.recipe.model_dump(),
        "params": {label: settings(m, params) for label, m, params in todo},
        "original_train_seconds": [originals[s].seconds for s in sorted(originals)],
        "wall_seconds": wall,
    }
    paths = {
        "csv": write_csv(rows, out / "compare.csv"),
        "seeds_csv": write_csv(per_seed, out / "compare_seeds.csv"),
        "md": write_markdown(rows, meta, out / "compare.md"),
        "png": write_plot(rows, meta, out / "compare.png"),
    }
    if audit_md:
        with open(paths["md"], "a") as f:
            f.write("\n" + audit_md)
    paths["json"] = write_json({"meta": meta, "rows": rows, "per_seed": per_seed,
                                "reports": [r.report for r in results], "audit": audit},
                               out / "compare.json")
    return {"out": str(out), "files": {k: str(v) for k, v in paths.items()}, "meta": meta,
            "rows": rows, "audit": audit}
