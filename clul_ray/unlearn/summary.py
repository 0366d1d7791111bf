"""Aggregate per-seed comparison rows (mean ± std) and write them as CSV, Markdown, JSON."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import METRICS

VALUES = (*METRICS, "seconds", "speedup", "gap")
# Columns of the Markdown table: (row key, header, decimals).
# Of the macro scores, the table shows D_t's precision, recall, F1 and D_f's F1 (the CSV and
# JSON carry D_r's F1 too).
TABLE = (("RA", "RA", 4), ("FA", "FA", 4), ("TA", "TA", 4), ("TP", "P(D_t)", 4),
         ("TR", "R(D_t)", 4), ("TF1", "F1(D_t)", 4), ("FF1", "F1(D_f)", 4), ("MIA", "MIA-eff.", 4),
         ("MIA_loss", "MIA-loss", 3), ("ZRF", "ZRF", 3), ("KL", "KL(D_f)", 3),
         ("seconds", "seconds", 2), ("speedup", "speed-up", 1), ("gap", "avg gap", 4))


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(arr) == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def aggregate(per_seed: list[dict[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    """One row per method, in ``order``: each value's mean and sample std (ddof=1) over seeds."""
    rows = []
    for method in order:
        mine = [r for r in per_seed if r["method"] == method]
        if not mine:
            continue
        row: dict[str, Any] = {"method": method, "changes_weights": mine[0]["changes_weights"],
                               "seeds": len(mine)}
        for k in VALUES:
            row[k], row[f"{k}_std"] = _mean_std([r[k] for r in mine])
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k)) for k in columns})
    return path


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def cell(row: dict[str, Any], key: str, decimals: int) -> str:
    mean, std = row.get(key), row.get(f"{key}_std")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean:.{decimals}f}"
    if row.get("seeds", 1) > 1 and std is not None and not math.isnan(std):
        text += f" ± {std:.{decimals}f}"
    return text


def label(row: dict[str, Any]) -> str:
    name = row["method"]
    if name == "retrain":
        return "**retrain** (reference)"
    if name == "original":
        return "original (no unlearning)"
    return name if row["changes_weights"] else f"{name} †"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = "| method | " + " | ".join(h for _, h, _ in TABLE) + " |"
    sep = "|---|" + "|".join("---:" for _ in TABLE) + "|"
    body = ["| " + label(r) + " | " + " | ".join(cell(r, k, d) for k, _, d in TABLE) + " |"
            for r in rows]
    return "\n".join([head, sep, *body])


def write_markdown(rows: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> Path:
    n = meta["rows"]
    seeds = meta["seeds"]
    lines = [
        f"# Unlearning comparison: {meta['dataset']}, {meta['model']}, forget "
        f"`{meta['forget']}`",
        "",
        f"{n['forget']} forget rows (D_f), {n['retain']} retain rows (D_r), {n['test']} test "
        f"rows (D_t); seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}); "
        + ("mean ± sample std over seeds." if len(seeds) > 1 else "one seed."),
        "",
        markdown_table(rows),
        "",
        "RA/FA/TA: accuracy on D_r/D_f/D_t. P(D_t)/R(D_t)/F1(D_t): precision, recall and F1 "
        "on D_t, macro-averaged over classes; F1(D_f): macro F1 on D_f (over the classes in "
        "its labels or predictions). MIA-eff.: fraction of D_f that an SVC on "
        "true-class confidence (members: |D_t| rows of D_r, non-members: D_t) calls "
        "non-member. MIA-loss: accuracy of a logistic-regression attack on per-sample CE, "
        "D_f vs D_t (0.5 = indistinguishable). ZRF: 1 - mean JS (base 2) to a random model on "
        "D_f. KL(D_f): mean KL(p_retrain || p_method) on D_f. seconds: the method's wall time; "
        "speed-up: retrain seconds / method seconds. avg gap: mean |metric - retrain's| over "
        "RA, FA, TA, MIA-eff. (per seed, then averaged). The goal is to match retrain, "
        "not to reach FA = 0.",
        "",
        "† no weight update: the forget data's influence stays in the weights.",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def write_json(obj: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(obj, indent=1, default=_json_default, allow_nan=True))
    return path


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)
