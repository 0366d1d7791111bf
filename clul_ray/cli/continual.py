"""``clul-ray continual``: strategies side by side along a stream of learn / unlearn steps
on a split benchmark; a table per step, stream.csv/.md/.png and MLflow lineage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from .common import (
    Address,
    AsJson,
    DataDir,
    Verbose,
    emit_progress,
    out,
    print_outputs,
    run,
    verbose_ray,
)

STREAM_HELP = ("the stream, replacing the config's: steps separated by ';', the parts of one "
               "step by '+': 'learn K', 'learn A-B' (one step per task), 'unlearn J[,J]' "
               "(tasks), 'unlearn classes C[,C]', 'unlearn ids FILE' (one id a line); e.g. "
               "\"learn 1-4; unlearn 2,4 + learn 5\". Tasks are 1-based.")


def continual(
    out_dir: Annotated[Path, typer.Option("--out", help="folder for stream.csv/.md/.png and "
                                                        "mlflow.db")],
    config: Annotated[Path | None, typer.Option(
        help="YAML: benchmark, setting, model, strategies, params, stream "
             "(e.g. pipelines/split_digits_clul.yaml)")] = None,
    stream: Annotated[str | None, typer.Option(help=STREAM_HELP)] = None,
    strategies: Annotated[str | None, typer.Option(
        help="comma-separated: clul, der, replay, finetune, oracle")] = None,
    seeds: Annotated[int | None, typer.Option(help="seeds to run (mean ± std when > 1)")]
    = None,
    seed: Annotated[int | None, typer.Option(help="first seed; also fixes the test split")]
    = None,
    benchmark: Annotated[str | None, typer.Option(
        help="split_digits | split_mnist | split_cifar10 | split_cifar100")] = None,
    setting: Annotated[str | None, typer.Option(help="class | task (incremental)")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="strategy.key=value, repeatable (all.epochs=5, clul.gamma=0.7)")]
    = None,
    params_from: Annotated[Path | None, typer.Option(
        help="best.yaml of `clul-ray tune --stream` (or its folder): tuned strategy params "
             "(--param still wins)")] = None,
    backend: Annotated[str | None, typer.Option(
        help="ray (one task per strategy, seed and step; default) | local")] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///OUT/mlflow.db)")]
    = None,
    data_dir: DataDir = None,
    address: Address = None,
    as_json: AsJson = False,
    verbose: Verbose = False,
) -> None:
    """Continual learning and unlearning: strategies side by side along a stream of steps.

    After every step: per-task and per-class accuracy, average accuracy over the learned and
    kept tasks, forget accuracy, BWT, forgetting, MIA-efficacy and the gaps to an oracle
    retrained on the allowed tasks. Writes stream.csv, stream.md, stream.png; each step of
    each strategy is an MLflow run whose parent is the previous step's."""
    from ..continual.spec import ALL, check_spec, load_best_params, make_spec, read_config
    from ..unlearn.compare import parse_param_overrides

    def body() -> None:
        values: dict[str, Any] = read_config(config) if config is not None else {}
        given = {"strategies": strategies, "seeds": seeds, "seed": seed,
                 "benchmark": benchmark, "setting": setting, "backend": backend,
                 "data_dir": data_dir}
        values.update({k: v for k, v in given.items() if v is not None})
        values.setdefault("backend", "ray")
        params = {k: dict(v) for k, v in (values.get("params") or {}).items()
                  if not isinstance(v, dict) or strategies is None
                  or k in (ALL, *(x.strip() for x in strategies.split(",")))}
        # (--strategies narrows the file's strategies: their params in the file go too)
        if params_from is not None:
            for name, kv in load_best_params(params_from).items():
                params.setdefault(name, {}).update(kv)
        for name, kv in parse_param_overrides(param or []).items():
            params.setdefault(name, {}).update(kv)
        values["params"] = params
        spec = make_spec(values, stream)
        checked = check_spec(spec)
        verbose_ray(verbose)
        if spec.backend == "ray":
            from ..runtime import ensure_ray

            ensure_ray(address)
        from ..continual.experiment import run_continual

        def work(prog) -> dict[str, Any]:
            result = run_continual(spec, out_dir, prog, tracking_uri, checked=checked)
            result.pop("rows")
            return result

        emit_progress(work, as_json, show_stream)

    run(body)


def _fmt(r: dict[str, Any], key: str) -> str:
    v = r.get(key)
    if v is None or v != v:
        return "-"
    sd = r.get(f"{key}_std")
    return f"{v:.3f}" + (f" ±{sd:.3f}" if r.get("seeds", 1) > 1 and sd == sd else "")


def show_stream(result: dict[str, Any]) -> None:
    from ..continual.outputs import SUMMARY

    meta = result["meta"]
    for step in sorted({r["step"] for r in result["summary"]}):
        rows = [r for r in result["summary"] if r["step"] == step]
        t = Table(Column("strategy", no_wrap=True, min_width=8), *(h for _, h in SUMMARY),
                  title=f"step {step}: {rows[0]['operation']}  ({meta['benchmark']}, "
                        f"{len(meta['seeds'])} seed(s))")
        for r in rows:
            t.add_row(r["strategy"], *(_fmt(r, k) for k, _ in SUMMARY))
        out.print(t)
    print_outputs(out, result, "step")
    out.print(f"wall seconds: {meta['wall_seconds']:.1f}", highlight=False)
