"""``clul-ray audit``: the NeurIPS 2023 challenge's ε-score of one method on one scenario."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from .common import (
    Address,
    AsJson,
    DataDir,
    Dataset,
    Forget,
    Model,
    Verbose,
    emit_progress,
    out,
    parse_model_args,
    run,
    verbose_ray,
)


def audit(
    forget: Forget,
    method: Annotated[str, typer.Option(
        help="a classifier method (finetune, neggrad, ...), or retrain | original | sisa")],
    out_dir: Annotated[Path, typer.Option(
        "--out", help="folder for audit.json/.md, eps.parquet, eps.png, mlflow.db")],
    models: Annotated[int, typer.Option(help="N: models per side (the challenge used 512)")]
    = 8,
    dataset: Dataset = "digits",
    model: Model = "mlp",
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="key=value for the method, repeatable (e.g. --param lr=0.01)")] = None,
    params_from: Annotated[Path | None, typer.Option(
        "--params-from", help="best.yaml of `clul-ray tune` (its params for this method; "
                              "--param values win)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the original, the split and the sides")]
    = 0,
    model_arg: Annotated[list[str] | None, typer.Option(
        "--model-arg", help="key=value for the model factory, repeatable")] = None,
    epochs: Annotated[int, typer.Option(help="original (and retrain) epochs")] = 20,
    lr: Annotated[float, typer.Option(help="original (and retrain) Adam lr")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="original (and retrain) batch size")] = 64,
    test_fraction: Annotated[float, typer.Option(help="held-out test fraction")] = 0.2,
    shards: Annotated[int, typer.Option(help="--method sisa: shards per ensemble")] = 4,
    slices: Annotated[int, typer.Option(help="--method sisa: slices per shard")] = 2,
    null: Annotated[bool, typer.Option(
        "--null/--no-null", help="also score N more retrained models (F_null, F / F_null)")]
    = True,
    cache: Annotated[Path | None, typer.Option(
        help="folder of cached reference models (default $CLUL_RAY_CACHE/audit or "
             "~/.cache/clul-ray/audit)")] = None,
    data_dir: DataDir = None,
    backend: Annotated[str, typer.Option(help="ray (tasks, 1 CPU each) | local")] = "ray",
    address: Address = None,
    as_json: AsJson = False,
    verbose: Verbose = False,
) -> None:
    """Audit a method by the ε-score of the NeurIPS 2023 unlearning challenge.

    Trains N unlearned and N retrained models as Ray tasks, then gives each forget example
    the ε of the best attack telling the two apart; F, the final score and F / F_null are
    written with a table of utility (RA/FA/TA, test precision/recall/F1)."""
    from ..audit.run import load_checked, run_audit
    from ..audit.spec import BASELINES, AuditSpec, SisaShape
    from ..tune.outputs import tuned_params
    from ..unlearn.training import TrainRecipe

    def body() -> None:
        given = parse_model_args(param or [])
        params = given if method in BASELINES else {**tuned_params(params_from, method),
                                                    **given}
        spec = AuditSpec(
            dataset=dataset, model=model, model_args=parse_model_args(model_arg or []),
            forget=forget, method=method, params=params, models=models, seed=seed,
            test_fraction=test_fraction,
            recipe=TrainRecipe(epochs=epochs, lr=lr, batch_size=batch_size),
            sisa=SisaShape(shards=shards, slices=slices), null=null, backend=backend,
            data_dir=data_dir, cache=str(cache) if cache else None)
        data = load_checked(spec)
        verbose_ray(verbose)
        if backend == "ray":
            from ..runtime import ensure_ray

            ensure_ray(address)
        emit_progress(lambda prog: run_audit(spec, out_dir, prog, data), as_json, show_audit)

    run(body)


def show_audit(result: dict[str, Any]) -> None:
    from ..audit.outputs import TABLE, TERMINAL, cell

    meta = result["meta"]
    cols = [c for c in TABLE if c[0] in TERMINAL]
    t = Table(Column("side", no_wrap=True), *(h for _, h, _ in cols),
              title=f"ε-score audit: {meta['method']} on {meta['dataset']} / forget "
                    f"{meta['forget']} (N = {meta['models']})")
    for r in result["rows"]:
        t.add_row(r["method"], *(cell(r.get(k), min(d, 3)) for k, _, d in cols))
    out.print(t)
    for k, p in result["files"].items():
        out.print(f"{k}: {p}", highlight=False)
    if result.get("mlflow"):
        out.print(f"MLflow: {result['mlflow']['tracking_uri']} run {result['mlflow']['run']}",
                  highlight=False)
    out.print(f"wall seconds: {meta['wall_seconds']:.1f} on {meta['cpus']} CPU(s); "
              f"reference models from the cache: {meta['reference_cached']}", highlight=False)
