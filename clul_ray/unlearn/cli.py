"""``clul-ray compare`` and ``clul-ray unlearn``: registered on the main app by :func:`register`.

The main CLI module is imported lazily inside the command, so importing this module first
(tests) and importing ``clul_ray.cli`` first (the entry point) both work.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import ClulError


def parse_model_args(items: list[str]) -> dict[str, Any]:
    """``["hidden=64", "dropout=0.2"]`` -> ``{"hidden": 64, "dropout": 0.2}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ClulError(f"bad key=value '{item}' (expected key=value, e.g. hidden=64)")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def compare(
    forget: Annotated[str, typer.Option(help="class:C | random:P | ids:FILE")],
    out: Annotated[Path, typer.Option("--out", help="folder for compare.csv/.md/.png")],
    dataset: Annotated[str, typer.Option(help="digits | synthetic:N | parquet:PATH | ...")]
    = "digits",
    model: Annotated[str, typer.Option(help="mlp | cnn | resnet18 | module:fn")] = "mlp",
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
    data_dir: Annotated[str | None, typer.Option(help="folder of torchvision datasets")]
    = None,
    backend: Annotated[str, typer.Option(help="ray (tasks, 1 CPU each) | local")] = "ray",
    address: Annotated[str | None, typer.Option(
        "--address", envvar="RAY_ADDRESS", help="Ray cluster address")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Compare approximate unlearning methods with retraining on one forget scenario."""
    from .. import cli as base
    from .compare import CompareSpec, check_spec, parse_param_overrides, run_compare
    from .training import TrainRecipe

    def body() -> None:
        spec = CompareSpec(
            dataset=dataset, model=model, model_args=parse_model_args(model_arg or []),
            forget=forget, methods=[methods], seeds=seeds, seed=seed,
            test_fraction=test_fraction,
            recipe=TrainRecipe(epochs=epochs, lr=lr, batch_size=batch_size),
            params=parse_param_overrides(param or []), backend=backend, data_dir=data_dir)
        check_spec(spec)
        if backend == "ray":
            from ..runtime import ensure_ray

            ensure_ray(address)
        with base.RichProgress(not as_json) as prog:
            result = run_compare(spec, out, prog)
        if as_json:
            sys.stdout.write(json.dumps(result, default=str) + "\n")
        else:
            show(base.out, result)

    base.run(body)


def show(console, result: dict[str, Any]) -> None:
    from .summary import TABLE, cell, label

    meta = result["meta"]
    note = "; means, ± std in compare.md" if len(meta["seeds"]) > 1 else ""
    t = Table("method", *(h for _, h, _ in TABLE),
              title=f"{meta['dataset']} / {meta['model']} / forget {meta['forget']} "
                    f"({len(meta['seeds'])} seed(s){note})")
    for r in result["rows"]:
        mean_only = {**r, "seeds": 1}
        t.add_row(label(r).replace("**", ""), *(cell(mean_only, k, d) for k, _, d in TABLE))
    console.print(t)
    for k, p in result["files"].items():
        console.print(f"{k}: {p}", highlight=False)
    wall = meta.get("wall_seconds")
    if wall is not None and not math.isnan(wall):
        console.print(f"wall seconds (all tasks): {wall:.1f}", highlight=False)


def unlearn(
    root: Annotated[str, typer.Option("--root", help="storage root of a trained pipeline")],
    method: Annotated[str, typer.Option(help="finetune | neggrad | random_label | "
                                             "bad_teacher | scrub | salun | mi_reg | ...")],
    forget: Annotated[str, typer.Option(help="class:C | random:P | ids:FILE")],
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="key=value for the method, repeatable (e.g. --param lr=0.01)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the method (and of random:P)")] = 0,
    address: Annotated[str | None, typer.Option(
        "--address", envvar="RAY_ADDRESS", help="Ray cluster address")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Forget rows approximately: edit affected shard models on Ray; `train` heals exactly.

    A new version, marked approximate, goes through the deletion ledger like `delete`."""
    from .. import cli as base

    def body() -> None:
        params = parse_model_args(param or [])
        with base.RichProgress(not as_json) as prog:
            result = base.pipeline(root, address, prog).unlearn(method, forget, params, seed)
        base.emit(result, as_json)

    base.run(body)


def register(app: typer.Typer) -> None:
    """Add the ``compare`` and ``unlearn`` commands to the main ``clul-ray`` app."""
    app.command("compare")(compare)
    app.command("unlearn")(unlearn)
