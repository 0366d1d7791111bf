"""``clul-ray tune``: Ray Tune sweeps of unlearning strengths, scored against retraining."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from ..config import read_yaml
from ..errors import ClulError
from .common import (
    Address,
    AsJson,
    DataDir,
    Dataset,
    Model,
    Verbose,
    emit_progress,
    out,
    parse_model_args,
    print_outputs,
    run,
    verbose_ray,
)

# option name -> SweepSpec field, for the values a pipeline YAML may also give
YAML_KEYS = ("method", "dataset", "model", "model_args", "forget", "space", "num_samples",
             "scheduler", "search", "max_concurrent", "seeds", "seed", "test_fraction",
             "epochs", "lr", "batch_size", "data_dir", "weights", "out", "objective",
             "audit_models")


def read_sweep_yaml(path: Path) -> dict[str, Any]:
    raw = read_yaml(path, "config file") or {}
    if not isinstance(raw, dict):
        raise ClulError(f"config file {path} must hold a mapping of settings")
    raw = raw.get("tune", raw)
    unknown = sorted(set(raw) - set(YAML_KEYS))
    if unknown:
        raise ClulError(f"config file {path}: unknown tune setting '{unknown[0]}' (known: "
                        f"{', '.join(YAML_KEYS)})")
    return raw


def tune(
    method: Annotated[str | None, typer.Option(
        help="a method, a comma-separated list, or all (every method with strengths)")] = None,
    forget: Annotated[str | None, typer.Option(help="class:C | random:P | ids:FILE")] = None,
    out_dir: Annotated[str | None, typer.Option(
        "--out", help="folder (or s3:// URI) for trials.csv, best.md, best.yaml, pareto.png "
                      "and Tune's ray_results")] = None,
    dataset: Dataset = None,
    model: Model = None,
    space: Annotated[Path | None, typer.Option(
        help="YAML overriding the search space (param: {loguniform: [lo, hi]} ...)")] = None,
    num_samples: Annotated[int | None, typer.Option(help="trials per method")] = None,
    scheduler: Annotated[str | None, typer.Option(help="asha (early stopping) | fifo")] = None,
    search: Annotated[str | None, typer.Option(help="random | optuna")] = None,
    max_concurrent: Annotated[int | None, typer.Option(
        help="trials at once (default: the cluster's CPUs)")] = None,
    seeds: Annotated[int | None, typer.Option(help="seeds per trial (score = the mean)")] = None,
    seed: Annotated[int | None, typer.Option(help="first seed; fixes the split")] = None,
    model_arg: Annotated[list[str] | None, typer.Option(
        "--model-arg", help="key=value for the model factory, repeatable")] = None,
    weight: Annotated[list[str] | None, typer.Option(
        "--weight", help="objective weight, repeatable: FA=1 RA=1 TA=1 MIA=1 cost=0 (text: "
                         "forget=1 utility=1 cost=0)")] = None,
    epochs: Annotated[int | None, typer.Option(help="original (and retrain) epochs")] = None,
    objective: Annotated[str | None, typer.Option(
        help="gap (to one retrained model; default) | eps (the ε-score audit's final score, "
             "N runs per trial)")] = None,
    audit_models: Annotated[int | None, typer.Option(
        help="--objective eps: N models per side (default 8)")] = None,
    data_dir: DataDir = None,
    config: Annotated[Path | None, typer.Option(
        help="a YAML of these settings (keys as the options, or under `tune:`)")] = None,
    stream: Annotated[Path | None, typer.Option(
        help="sweep a continual strategy (--method, default clul) along the stream of this "
             "`clul-ray continual` config; objective: the gap to the oracle after the whole "
             "stream")] = None,
    shared_storage: Annotated[bool, typer.Option(
        help="the local --out is a mount shared by every node (needed on a multi-node "
             "cluster)")] = False,
    address: Address = None,
    as_json: AsJson = False,
    verbose: Verbose = False,
) -> None:
    """Sweep unlearning strengths with Ray Tune; write the ranked best and the Pareto front.

    On a text dataset (tofu-synth:N, --model gpt-tiny) the language-model methods are swept,
    scored by forget quality and model utility against the retrained model."""
    from ..data.text import is_text
    from ..tune.space import load_space
    from ..tune.sweep import SweepSpec, resolve_methods, run_sweep
    from ..tune.text_sweep import (
        TextSweepSpec,
        check_text_sweep,
        resolve_text_methods,
        run_text_sweep,
    )

    if stream is not None:
        def body_stream() -> None:
            if forget or dataset or model or model_arg or weight or epochs or config:
                raise ClulError("with --stream, the stream's config gives the data, model "
                                "and recipe: drop --forget/--dataset/--model/--model-arg/"
                                "--weight/--epochs/--config")
            if out_dir is None:
                raise ClulError("missing --out")
            from ..tune.stream import make_stream_sweep, run_stream_sweep

            spec = make_stream_sweep(stream, method or "clul", space, num_samples, scheduler,
                                     search, max_concurrent, seeds, seed, data_dir)
            verbose_ray(verbose)
            emit_progress(lambda prog: run_stream_sweep(spec, out_dir, prog, address,
                                                       shared_storage), as_json, show_sweep)

        run(body_stream)
        return

    def body() -> None:
        settings: dict[str, Any] = read_sweep_yaml(config) if config is not None else {}
        given = {"method": method, "forget": forget, "out": out_dir, "dataset": dataset,
                 "model": model, "num_samples": num_samples, "scheduler": scheduler,
                 "search": search, "max_concurrent": max_concurrent, "seeds": seeds,
                 "seed": seed, "epochs": epochs, "data_dir": data_dir, "objective": objective,
                 "audit_models": audit_models}
        settings.update({k: v for k, v in given.items() if v is not None})
        if model_arg:
            settings["model_args"] = parse_model_args(model_arg)
        if weight:
            settings["weights"] = {**settings.get("weights", {}), **parse_model_args(weight)}
        for need in ("method", "forget", "out"):
            if settings.get(need) is None:
                raise ClulError(f"missing --{need} (or `{need}:` in --config)")
        if settings.get("num_samples") == 0:
            raise ClulError("--num-samples must be at least 1")
        recipe = {k: settings.pop(k) for k in ("epochs", "lr", "batch_size") if k in settings}
        target = str(settings.pop("out"))
        text = is_text(str(settings.get("dataset") or ""))
        methods = (resolve_text_methods if text else resolve_methods)(
            [str(settings.pop("method"))])
        space_file = space or settings.pop("space", None)
        spec = (TextSweepSpec if text else SweepSpec)(
            methods=methods, recipe=recipe,
            space=load_space(space_file, methods) if space_file else {}, **settings)
        verbose_ray(verbose)
        if text:  # refused before any progress is shown or anything written
            sweep = partial(run_text_sweep, checked=check_text_sweep(spec),
                            shared_storage=shared_storage)
        else:
            sweep = partial(run_sweep, shared_storage=shared_storage)
        emit_progress(lambda prog: sweep(spec, target, prog, address), as_json, show_sweep)

    run(body)


def show_sweep(result: dict[str, Any]) -> None:
    from ..tune.outputs import has_tf1

    meta = result["meta"]
    f1 = has_tf1(result["summary"])
    t = Table("default gap", "tuned gap", *(("default TF1", "tuned TF1") if f1 else ()),
              "trials", "stopped early", "failed", "wall s", "parallel eff.",
              title=f"sweep: {meta['dataset']} / {meta['model']} / forget {meta['forget']}")
    t.columns.insert(0, Column("method", no_wrap=True))

    def f(v: float, d: int = 4) -> str:
        return "-" if v is None or math.isnan(v) else f"{v:.{d}f}"

    eps = meta.get("objective") == "eps"
    if eps:
        t.columns.insert(1, Column("default ε-score"))
        t.columns.insert(2, Column("tuned ε-score"))
    for m, s in result["summary"].items():
        scores = [f(s["default_eps_score"], 3), f(s["tuned_eps_score"], 3)] if eps else []
        t.add_row(m, *scores, f(s["default_gap"]), f(s["tuned_gap"]),
                  *((f(s["default_TF1"]), f(s["tuned_TF1"])) if f1 else ()), str(s["trials"]),
                  str(s["stopped_early"]), str(s["failed"]), f(s["wall_seconds"], 1),
                  f(s["parallel_efficiency"], 2))
    out.print(t)
    for m, p in result["best"].items():
        out.print(f"best {m}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float)
                                           else f"{k}={v}" for k, v in sorted(p.items())),
                  highlight=False)
    print_outputs(out, result, "trial")
