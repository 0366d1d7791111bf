"""An audit's files: audit.json, audit.md, eps.parquet (per forget example), eps.png, and an
MLflow run (experiment ``clul-ray-audit``; ``MLFLOW_TRACKING_URI``, else
``sqlite:///<out>/mlflow.db``). A failure to record in MLflow warns; the files stand."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..lineage.tracking import TAG, flat_params, folder_run, recorded, tracking_uri
from ..unlearn.compare import Data
from . import epsilon as E

EXPERIMENT = "clul-ray-audit"
# Columns of audit.md: (row key, header, decimals).
TABLE = (("F", "F", 3), ("F_rel", "F / F_null", 2), ("score", "final score", 3),
         ("eps_median", "median ε", 2), ("RA", "RA", 4), ("FA", "FA", 4), ("TA", "TA", 4),
         ("precision", "P(test)", 4), ("recall", "R(test)", 4), ("F1", "F1(test)", 4),
         ("RA_ratio", "RA ratio", 3), ("TA_ratio", "TA ratio", 3), ("seconds", "seconds", 2))
# The terminal's table: the columns that fit 80 characters (audit.md has them all).
TERMINAL = ("F", "F_rel", "score", "eps_median", "FA", "TA", "F1", "seconds")


class AuditRecordWarning(UserWarning):
    """MLflow could not record an audit; its files are written."""


def cell(value: Any, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{decimals}f}"


def markdown(result: dict[str, Any]) -> str:
    meta, ref = result["meta"], result["reference"]
    head = "| side | " + " | ".join(h for _, h, _ in TABLE) + " |"
    sep = "|---|" + "|".join("---:" for _ in TABLE) + "|"
    body = ["| " + r["method"] + " | " + " | ".join(cell(r.get(k), d) for k, _, d in TABLE)
            + " |" for r in result["rows"]]
    body.append("| reference (retrained) | " + " | ".join(
        cell(ref.get(k), d) if k in ref else "" for k, _, d in TABLE) + " |")
    buckets = ", ".join(f"[{s:g}, {s + E.BUCKET:g}) → {p:g}" for s, p in meta["buckets"])
    sisa = (f"; ensembles of {meta['sisa']['shards']} shards × {meta['sisa']['slices']} "
            "slices" if meta["sisa"] else "")
    return "\n".join([
        f"# ε-score audit: {meta['method']} on {meta['dataset']} / {meta['model']} / "
        f"forget {meta['forget']}",
        "",
        f"N = {meta['models']} models per side{sisa}; {meta['rows']['forget']} forget, "
        f"{meta['rows']['retain']} retain, {meta['rows']['test']} test rows; δ = "
        f"{meta['delta']:g}; ε capped at {meta['cap']:g}. Points per ε bucket: {buckets}.",
        "",
        *[head, sep, *body],
        "",
        "F: mean points of the forget examples' ε (NeurIPS 2023 challenge). final score: F × "
        "RA ratio × TA ratio (unlearned / reference means). F / F_null: F against the F of "
        "the null row: N more retrained models scored the same way — the best any method "
        "can reach at this N (the estimator's ε of two samples of one distribution is not 0 "
        "at finite N). "
        "P/R/F1: macro over classes on the test rows.",
        "",
        f"Params: `{json.dumps(meta['params'], sort_keys=True)}`; recipe: "
        f"`{json.dumps(meta['recipe'], sort_keys=True)}`; reference models from the cache: "
        f"{meta['reference_cached']}; wall {meta['wall_seconds']:.1f} s on "
        f"{meta['cpus']} CPU(s).",
        ""])


def per_example(data: Data, sides: Any, eps: np.ndarray, eps_null: np.ndarray | None,
                n: int) -> pa.Table:
    cols: dict[str, Any] = {
        "id": data.forget.ids, "label": data.forget.y.numpy(), "eps": eps,
        "points": np.array([E.points_of(float(e), n) for e in eps]),
        "median_signal_unlearned": np.median(sides.signals("unlearned"), axis=0),
        "median_signal_reference": np.median(sides.signals("reference"), axis=0)}
    if eps_null is not None:
        cols["eps_null"] = eps_null
    return pa.table(cols)


def plot(result: dict[str, Any], sides: Any, eps: np.ndarray, eps_null: np.ndarray | None,
         path: Path) -> Path:
    """ε histograms (method, null) and the two sides' signals on three forget examples: the
    lowest, median and highest ε."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = result["meta"]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2), constrained_layout=True)
    edge = float(math.ceil(math.log(max(meta["models"] - 1, 2)))) + 1.0  # past the buckets
    bins = np.arange(0, edge + 0.26, 0.25)
    axes[0].hist(np.minimum(eps, edge), bins=bins, alpha=0.7, label=meta["method"])
    if eps_null is not None:
        axes[0].hist(np.minimum(eps_null, edge), bins=bins, alpha=0.5, label="null")
    axes[0].set_title(f"ε per forget example (N = {meta['models']})")
    axes[0].set_xlabel(f"ε (the last bar: ε ≥ {edge:g}, up to the cap {E.CAP:g})")
    axes[0].legend()
    u, r = sides.signals("unlearned"), sides.signals("reference")
    order = np.argsort(eps, kind="stable")
    for ax, (name, i) in zip(axes[1:], [("lowest", order[0]), ("median", order[len(order) // 2]),
                                        ("highest", order[-1])], strict=True):
        both = np.histogram_bin_edges(np.concatenate([r[:, i], u[:, i]]), bins=24)
        ax.hist(r[:, i], bins=both, alpha=0.6, label="reference (retrained)")
        ax.hist(u[:, i], bins=both, alpha=0.6, label=meta["method"])
        ax.set_title(f"{name} ε = {eps[i]:.2f} (forget row {i})")
        ax.set_xlabel("logit-scaled confidence")
        ax.legend(fontsize=8)
    fig.suptitle(f"{meta['method']} on {meta['dataset']} / forget {meta['forget']}: "
                 f"F = {result['summary']['F']:.3f}, final score = "
                 f"{result['summary']['score']:.3f}")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def record(result: dict[str, Any], out: Path) -> dict[str, Any] | None:
    return recorded(lambda: _record(result, out), "audit", f"its files are in {out}",
                    AuditRecordWarning)


def _record(result: dict[str, Any], out: Path) -> dict[str, Any]:
    from mlflow.entities import Metric, Param

    meta = result["meta"]
    uri = tracking_uri(out)
    client, _, run_id = folder_run(uri, EXPERIMENT, f"audit-{meta['method']}", "audit", out)
    now = int(time.time() * 1000)
    params = {k: meta[k] for k in ("dataset", "model", "forget", "method", "models", "seed")}
    params.update(flat_params(meta["params"], "params."))
    params.update(flat_params(meta["recipe"], "recipe."))
    metrics = [Metric(k, float(v), now, 0) for k, v in result["summary"].items()
               if not math.isnan(float(v))]
    metrics += [Metric(f"unlearned.{k}", float(v), now, 0) for k, v in result["rows"][0].items()
                if k in ("RA", "FA", "TA", "precision", "recall", "F1", "seconds")]
    client.log_batch(run_id, metrics=metrics,
                     params=[Param(k, str(v)) for k, v in params.items()])
    for name in ("audit.json", "audit.md", "eps.parquet", "eps.png"):
        client.log_artifact(run_id, str(out / name))
    client.set_tag(run_id, f"{TAG}method", meta["method"])
    client.set_terminated(run_id, "FINISHED")
    return {"tracking_uri": uri, "experiment": EXPERIMENT, "run": run_id}


def write_outputs(result: dict[str, Any], data: Data, sides: Any, eps: np.ndarray,
                  eps_null: np.ndarray | None, out: Path, tick: Any) -> dict[str, Any]:
    tick("audit: writing", 0, 1)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "audit.json", "md": out / "audit.md", "parquet": out / "eps.parquet",
             "png": out / "eps.png"}
    pq.write_table(per_example(data, sides, eps, eps_null, result["meta"]["models"]),
                   files["parquet"])
    plot(result, sides, eps, eps_null, files["png"])
    files["md"].write_text(markdown(result))
    result["files"] = {k: str(v) for k, v in files.items()}
    files["json"].write_text(json.dumps(result, indent=2, default=float))
    result["mlflow"] = record(result, out)
    tick("audit: writing", 1, 1)
    return result
