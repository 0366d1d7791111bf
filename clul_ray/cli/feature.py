"""``clul-ray feature-unlearn``: map each group of a sensitive column onto the groups'
Wasserstein-2 barycenter (quantile | gaussian | ot), write the transformed Parquet, the
utility/independence report and its curve over t, and save the fitted transform."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import ClulError, MissingGroupColumn
from .common import Address, AsJson, DataDir, Verbose, emit, out, root_option, run, verbose_ray


def feature_unlearn(
    dataset: Annotated[str, typer.Option(
        help="synthetic-fair:N | parquet:PATH (any canonical source with the column)")],
    sensitive: Annotated[str, typer.Option(help="the sensitive column Z")],
    out_path: Annotated[Path, typer.Option(
        "--out", help="a new folder for the transformed Parquet (id, label, x): "
                      "`clul-ray train --dataset parquet:OUT` reads it")],
    method: Annotated[str, typer.Option(
        help="quantile (per-feature 1-D maps) | gaussian (affine) | ot (POT, small data)")]
        = "quantile",
    t: Annotated[float, typer.Option("--t", help="strength: x_t = (1-t) x + t x̂, in [0, 1]")]
        = 1.0,
    root: Annotated[str | None, typer.Option(
        "--root", callback=root_option,
        help="storage root for the versioned transform and its MLflow run (default: the "
             "report folder)")] = None,
    report_dir: Annotated[Path | None, typer.Option(
        "--report", help="folder for report.json and curve.csv/.md/.png (default: OUT.report)")]
        = None,
    sample_size: Annotated[int, typer.Option(
        help="rows per group kept for the quantiles (a seeded sample by id; all when fewer)")]
        = 100_000,
    report_rows: Annotated[int, typer.Option(help="rows sampled for the report")] = 20_000,
    seed: Annotated[int, typer.Option(help="seed of the samples and of the OT start")] = 0,
    data_dir: DataDir = None,
    address: Address = None,
    as_json: AsJson = False,
    verbose: Verbose = False,
) -> None:
    """Remove what the features say about a sensitive column (Wasserstein barycenter)."""
    verbose_ray(verbose)
    run(lambda: emit(_run(dataset, sensitive, out_path, method, t, root, report_dir,
                          sample_size, report_rows, seed, data_dir, address), as_json, _show))


def _checks(sensitive: str, out_path: Path, method: str, t: float, sample_size: int,
            report_rows: int) -> None:
    from ..feature.transform import METHODS

    if not 0.0 <= t <= 1.0:
        raise ClulError(f"--t must be in [0, 1], got {t}")
    if method not in METHODS:
        raise ClulError(f"unknown method '{method}' (expected {', '.join(METHODS)})")
    if sample_size < 2 or report_rows < 100:
        raise ClulError("--sample-size must be at least 2 and --report-rows at least 100")
    if out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())):
        raise ClulError(f"--out {out_path} exists; give a new folder")
    if sensitive in ("id", "label"):
        raise ClulError(f"--sensitive {sensitive}: id and label cannot be the sensitive column")


def open_with_sensitive(dataset: str, sensitive: str, data_dir: str | None):
    """The source with the sensitive column carried along (its group column)."""
    from ..data.sources import open_source

    try:
        src = open_source(dataset, data_dir=data_dir, group_column=sensitive)
    except MissingGroupColumn as e:
        raise ClulError(f"{dataset}: no sensitive column '{sensitive}'" if e.has_columns
                        else f"{dataset} has no sensitive column '{sensitive}'") from None
    head = next(iter(src.iter_tables()), None)
    if head is None or sensitive not in head.column_names:
        raise ClulError(f"{dataset}: no sensitive column '{sensitive}'")
    return src


def _run(dataset, sensitive, out_path: Path, method, t, root, report_dir, sample_size,
         report_rows, seed, data_dir, address) -> dict[str, Any]:
    _checks(sensitive, out_path, method, t, sample_size, report_rows)
    src = open_with_sensitive(dataset, sensitive, data_dir)

    from ..feature import report as rp
    from ..feature.apply import fit_dataset, parquet_digest, write_dataset
    from ..feature.versions import save
    from ..lineage.feature import record_feature
    from ..runtime import ensure_ray
    from ..storage.store import Store

    ensure_ray(address)
    ds = src.ray_dataset()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    tr, rows = fit_dataset(ds, sensitive, method, seed=seed, sample_size=sample_size,
                           report_rows=report_rows)
    seconds["fit"] = time.perf_counter() - t0
    # everything is checked: from here on files are written
    t0 = time.perf_counter()
    write_dataset(ds, tr, t, str(out_path.resolve()))
    seconds["apply"] = time.perf_counter() - t0
    n_out, out_digest = parquet_digest(str(out_path))
    t0 = time.perf_counter()
    codes = tr.codes(rows["z"])
    ts = sorted({*rp.CURVE_T, float(t)})
    curve = rp.curve(rows["x"], rows["label"], rows["z"],
                     lambda s: tr.apply(rows["x"], codes, s), ts=ts, seed=seed)
    for r in curve:
        r["method"] = method
    folder = report_dir or Path(f"{out_path}.report")
    files = rp.write_curve(curve, folder, f"{dataset}: {method}, sensitive={sensitive}")
    seconds["report"] = time.perf_counter() - t0
    summary = rp.summary(curve, t)
    store = Store(root or str(folder))
    record = save(store, tr, {"t": float(t), "dataset": dataset, "out": str(out_path.resolve()),
                              "rows": n_out, "output_digest": out_digest, "report": summary})
    result = {"dataset": dataset, "sensitive": sensitive, "method": method, "t": float(t),
              "out": str(out_path), "rows": n_out, "groups": tr.groups, "weights": tr.weights,
              "counts": tr.counts, "report_rows": int(len(rows["id"])), **summary,
              "curve": curve, "files": files, "root": store.root,
              "feature_version": record["version"], "transform": record["transform"],
              "transform_sha256": record["transform_sha256"], "input_digest": tr.data_digest,
              "output_digest": out_digest, "seconds": seconds}
    rp.write_json(result, folder / "report.json")
    files["json"] = str(folder / "report.json")
    result["mlflow"] = record_feature(store, record, tr.to_json(), list(files.values()))
    return result


def _show(r: dict) -> None:
    out.print(f"[bold]{r['dataset']}[/bold]  {r['method']} barycenter of '{r['sensitive']}' "
              f"(groups {r['groups']}, p_z {[round(p, 4) for p in r['weights']]}), t={r['t']}: "
              f"{r['rows']} rows -> {r['out']}", highlight=False)
    tab = Table("t", "label accuracy", "label P / R / F1 (macro)", "z balanced accuracy",
                "chance", "HSIC", "HSIC p")
    for c in r["curve"]:
        tab.add_row(f"{c['t']:.2f}", f"{c['label_accuracy']:.4f}",
                    " / ".join(f"{c[k]:.4f}" for k in ("label_precision", "label_recall",
                                                        "label_f1")),
                    f"{c['z_balanced_accuracy']:.4f}", f"{c['z_chance']:.4f}",
                    f"{c['hsic']:.5f}", f"{c['hsic_p']:.3f}")
    out.print(tab)
    out.print(f"transform v{r['feature_version']} {r['transform']} under {r['root']} "
              f"(sha256 {r['transform_sha256'][:12]}); report {r['files']['json']}, "
              f"curve {r['files']['png']}", highlight=False)
    out.print("seconds: " + ", ".join(f"{k}={v:.2f}" for k, v in r["seconds"].items()),
              highlight=False)
