"""``clul-ray compare`` (approximate unlearning methods against retraining, on one forget
scenario) and ``clul-ray unlearn`` (approximate forgetting on a trained storage root)."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .common import (
    Address,
    AsJson,
    DataDir,
    Dataset,
    Forget,
    Model,
    Verbose,
    emit_progress,
    open_root,
    out,
    parse_model_args,
    root_option,
    run,
    verbose_ray,
)


def compare(
    forget: Forget,
    out_dir: Annotated[Path, typer.Option(
        "--out", help="folder for compare.csv/.md/.png (text: summary.json/.md, compare.png)")],
    dataset: Dataset = "digits",
    model: Model = "mlp",
    methods: Annotated[str, typer.Option(help="all, or a comma-separated list")] = "all",
    seeds: Annotated[int, typer.Option(help="seeds to run (mean ± std when > 1)")] = 1,
    seed: Annotated[int, typer.Option(help="first seed; also fixes the test/forget split")]
    = 0,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="method.key=value, repeatable (e.g. salun.lr=0.05)")] = None,
    model_arg: Annotated[list[str] | None, typer.Option(
        "--model-arg", help="key=value for the model factory, repeatable")] = None,
    epochs: Annotated[int, typer.Option(help="original (and retrain) epochs")] = 20,
    lr: Annotated[float, typer.Option(help="original (and retrain) Adam lr")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="original (and retrain) batch size")] = 64,
    test_fraction: Annotated[float, typer.Option(help="held-out test fraction")] = 0.2,
    data_dir: DataDir = None,
    backend: Annotated[str, typer.Option(help="ray (tasks, 1 CPU each) | local")] = "ray",
    audit: Annotated[int, typer.Option(
        help="N > 1: add each method's ε-score audit (N runs and N retrained models)")] = 0,
    tuned: Annotated[Path | None, typer.Option(
        help="a `clul-ray tune` folder (or its best.yaml): add a tuned row per method")] = None,
    address: Address = None,
    as_json: AsJson = False,
    verbose: Verbose = False,
) -> None:
    """Compare approximate unlearning methods with retraining on one forget scenario.

    On a text dataset (tofu-synth:N) the language-model methods are compared with the
    TOFU/MUSE metrics; --forget people:P (e.g. people:10%) or bias."""
    from ..data.text import is_text
    from ..tune.outputs import load_best
    from ..unlearn.compare import CompareSpec, check_spec, parse_param_overrides, run_compare
    from ..unlearn.training import TrainRecipe

    def body() -> None:
        spec = CompareSpec(
            dataset=dataset, model=model, model_args=parse_model_args(model_arg or []),
            forget=forget, methods=[methods], seeds=seeds, seed=seed,
            test_fraction=test_fraction,
            recipe=TrainRecipe(epochs=epochs, lr=lr, batch_size=batch_size),
            params=parse_param_overrides(param or []), backend=backend, data_dir=data_dir,
            tuned=load_best(tuned) if tuned is not None else {}, audit=audit)
        if is_text(dataset or ""):
            from ..unlearn.text_compare import check_text_spec, run_text_compare

            work = partial(run_text_compare, spec, out_dir, checked=check_text_spec(spec))
            printer = show_text_compare
        else:
            check_spec(spec)
            compare_run = run_compare
            if spec.audit:
                from ..audit.methods import compare_with_audit as compare_run
            work, printer = partial(compare_run, spec, out_dir), show_compare
        verbose_ray(verbose)
        if backend == "ray":
            from ..runtime import ensure_ray

            ensure_ray(address)
        emit_progress(work, as_json, printer)

    run(body)


def show_compare(result: dict[str, Any]) -> None:
    from ..unlearn.summary import TABLE, cell, label

    meta = result["meta"]
    note = "; means, ± std in compare.md" if len(meta["seeds"]) > 1 else ""
    t = Table("method", *(h for _, h, _ in TABLE),
              title=f"{meta['dataset']} / {meta['model']} / forget {meta['forget']} "
                    f"({len(meta['seeds'])} seed(s){note})")
    for r in result["rows"]:
        mean_only = {**r, "seeds": 1}
        t.add_row(label(r).replace("**", ""), *(cell(mean_only, k, d) for k, _, d in TABLE))
    out.print(t)
    for k, p in result["files"].items():
        out.print(f"{k}: {p}", highlight=False)
    if result.get("audit"):
        a = Table("method", "F", "final score", "median ε", "RA ratio", "TA ratio",
                  title="ε-score audit (NeurIPS 2023 challenge)")
        for r in result["audit"]:
            a.add_row(r["method"], f"{r['F']:.3f}", f"{r['score']:.3f}",
                      f"{r['eps_median']:.2f}", f"{r['RA_ratio']:.3f}", f"{r['TA_ratio']:.3f}")
        out.print(a)
    wall = meta.get("wall_seconds")
    if wall is not None and not math.isnan(wall):
        out.print(f"wall seconds (all tasks): {wall:.1f}", highlight=False)


def show_text_compare(result: dict[str, Any]) -> None:
    from ..unlearn.summary import cell, label
    from ..unlearn.text_summary import columns

    meta = result["meta"]
    cols = columns(meta)
    p = meta["people"]
    t = Table("method", *(h for _, h, _ in cols),
              title=f"{meta['dataset']} / {meta['model']} / forget {meta['forget']} "
                    f"({p['forget']} forget, {p['retain']} retain, {p['holdout']} holdout "
                    "people)")
    for r in result["rows"]:
        t.add_row(label(r).replace("**", ""), *(cell(r, k, d) for k, _, d in cols))
    out.print(t)
    for k, path in result["files"].items():
        out.print(f"{k}: {path}", highlight=False)
    out.print(f"wall seconds (all tasks): {meta['wall_seconds']:.1f}", highlight=False)


def unlearn(
    root: Annotated[str, typer.Option("--root", help="storage root of a trained pipeline",
                                      callback=root_option)],
    method: Annotated[str, typer.Option(help="finetune | neggrad | random_label | "
                                             "bad_teacher | scrub | salun | mi_reg | ...")],
    forget: Forget,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="key=value for the method, repeatable (e.g. --param lr=0.01)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the method (and of random:P)")] = 0,
    params_from: Annotated[Path | None, typer.Option(
        "--params-from", help="best.yaml of `clul-ray tune` (its params for this method; "
                              "--param values win)")] = None,
    address: Address = None,
    as_json: AsJson = False,
    verbose: Verbose = False,
) -> None:
    """Forget rows approximately: edit the affected shard models; `train` heals exactly.

    A new version, marked approximate, goes through the deletion ledger like `delete`."""

    def body() -> None:
        tuned: dict = {}
        if params_from is not None:  # (the sweep's outputs module imports torch)
            from ..tune.outputs import tuned_params

            tuned = tuned_params(params_from, method)
        params = {**tuned, **parse_model_args(param or [])}
        verbose_ray(verbose)
        emit_progress(lambda prog: open_root(root, address, prog).unlearn(
            method, forget, params, seed), as_json)

    run(body)
