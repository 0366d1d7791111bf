"""What a sweep leaves in its folder: ``trials.csv`` (every trial), ``best.md`` (ranked),
``best.yaml`` (the best params per method, for ``--params-from`` / ``--tuned``),
``pareto.png`` (forgetting gap against utility drop, the front drawn, the default marked)
and ``sweep.json``; and reading ``best.yaml`` back."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..config import read_yaml
from ..errors import ClulError
from ..unlearn import get_method
from ..unlearn.compare import settings
from .objective import pareto_front

COLUMNS = ("method", "trial", "status", "objective", "gap", "forget_gap", "utility_drop",
           "cost", "FA", "RA", "TA", "TF1", "MIA", "ZRF", "KL", "F", "eps_score", "seconds",
           "iterations", "trial_seconds", "node_id", "error")


def best_rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method, the completed trial with the lowest objective."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["status"] != "completed" or math.isnan(r["objective"]):
            continue
        if r["method"] not in out or r["objective"] < out[r["method"]]["objective"]:
            out[r["method"]] = r
    return out


def summary(rows: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per method: default vs tuned gap and TF1 (macro F1 on D_t; NaN in a sweep without
    it), trials run / stopped / failed, wall, efficiency."""
    best = best_rows(rows)
    out = {}
    for m in meta["methods"]:
        mine = [r for r in rows if r["method"] == m]
        busy = sum(r["trial_seconds"] for r in mine if not math.isnan(r["trial_seconds"]))
        wall = meta["wall_seconds"][m]
        out[m] = {"default_gap": meta["defaults"][m]["gap"],
                  "tuned_gap": best[m]["gap"] if m in best else math.nan,
                  "tuned_objective": best[m]["objective"] if m in best else math.nan,
                  "default_eps_score": _number(meta["defaults"][m].get("eps_score")),
                  "tuned_eps_score": _number(best[m].get("eps_score")) if m in best
                  else math.nan,
                  "default_TF1": _number(meta["defaults"][m].get("TF1")),
                  "tuned_TF1": _number(best[m].get("TF1")) if m in best else math.nan,
                  "trials": len(mine),
                  "stopped_early": sum(r["status"] == "stopped" for r in mine),
                  "failed": sum(r["status"] == "failed" for r in mine),
                  "wall_seconds": wall,
                  "nodes": len({r["node_id"] for r in mine if r.get("node_id")}),
                  "parallel_efficiency": busy / (wall * meta["cpus"]) if wall > 0 else math.nan}
    return out


def _number(v: Any) -> float:
    return math.nan if v is None else float(v)


def has_tf1(stats: dict[str, dict[str, Any]]) -> bool:
    """Whether the sweep's summary has a TF1 to show (a classifier's sweep)."""
    return any(not math.isnan(s.get(k, math.nan)) for s in stats.values()
               for k in ("default_TF1", "tuned_TF1"))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def write_csv(rows: list[dict[str, Any]], path: Path,
              columns: tuple[str, ...] = COLUMNS) -> Path:
    keys = sorted({k for r in rows for k in r["params"]})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*columns, *(f"param.{k}" for k in keys)])
        for r in rows:
            w.writerow([_fmt(r.get(c)) if r.get(c) is not None else "" for c in columns]
                       + [r["params"].get(k, "") for k in keys])
    return path


def write_markdown(rows: list[dict[str, Any]], meta: dict[str, Any],
                   stats: dict[str, dict[str, Any]], path: Path, top: int = 5) -> Path:
    f1 = has_tf1(stats)
    lines = [f"# Sweep: {meta['dataset']} / {meta['model']} / forget {meta['forget']}", "",
             f"{meta['num_samples']} samples per method, scheduler {meta['scheduler']}, "
             f"search {meta['search']}, seeds {meta['seeds']}; objective = "
             + meta.get("objective_text", "weighted mean |metric − retrain's| over FA, RA, "
                        "TA, MIA (+ cost)") + ", lower is better."
             + (" TF1: macro F1 on the test rows (the default params', the best trial's)."
                if f1 else ""), "",
             "| method | default gap | tuned gap | "
             + ("default TF1 | tuned TF1 | " if f1 else "")
             + "trials | stopped early | failed | wall s | parallel eff. |",
             "|---" * (10 if f1 else 8) + "|"]
    for m, s in stats.items():
        lines.append(f"| {m} | {_fmt(s['default_gap'])} | {_fmt(s['tuned_gap'])} | "
                     + (f"{_fmt(s['default_TF1'])} | {_fmt(s['tuned_TF1'])} | " if f1 else "")
                     + f"{s['trials']} | {s['stopped_early']} | {s['failed']} | "
                     f"{_fmt(s['wall_seconds'])} | {_fmt(s['parallel_efficiency'])} |")
    shown = tuple(meta.get("shown", ("FA", "RA", "TA", "TF1", "MIA")))
    names = [meta.get("labels", {}).get(k, k) for k in shown]
    for m in meta["methods"]:
        ranked = sorted((r for r in rows if r["method"] == m and r["status"] == "completed"),
                        key=lambda r: r["objective"])[:top]
        d = meta["defaults"][m]
        lines += ["", f"## {m}", "", "| rank | objective | gap | " + " | ".join(names)
                  + " | params |", "|---" * (len(shown) + 4) + "|",
                  f"| default | {_fmt(d['objective'])} | {_fmt(d['gap'])} | "
                  + "".join(f"{_fmt(d[k])} | " for k in shown)
                  + f"{_params_text(meta['default_params'][m])} |"]
        for i, r in enumerate(ranked, 1):
            lines.append(f"| {i} | {_fmt(r['objective'])} | {_fmt(r['gap'])} | "
                         + "".join(f"{_fmt(r[k])} | " for k in shown)
                         + f"{_params_text(r['params'])} |")
    path.write_text("\n".join(lines) + "\n")
    return path


def _params_text(p: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(p.items()))


def write_best_yaml(rows: list[dict[str, Any]], path: Path,
                    settings_of: Callable[[str, dict], dict] = settings) -> Path:
    """``{method: every param of the best trial}`` (defaults filled in, seed aside)."""
    best = {m: settings_of(m, r["params"]) for m, r in best_rows(rows).items()}
    path.write_text("# best params per method (clul-ray tune); use with --params-from / "
                    "--tuned\n" + yaml.safe_dump(best, sort_keys=True))
    return path


def write_pareto(rows: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = meta["methods"]
    cols = min(3, len(methods))
    nrows = math.ceil(len(methods) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.8 * nrows), squeeze=False)
    for ax, m in zip(axes.flat, methods, strict=False):
        done = [r for r in rows if r["method"] == m and r["status"] == "completed"]
        pts = [(r["forget_gap"], r["utility_drop"]) for r in done]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, alpha=0.6, label="trials")
        front = [pts[i] for i in pareto_front(pts)]
        if front:
            ax.plot([p[0] for p in front], [p[1] for p in front], "-o", color="C3", ms=4,
                    label="Pareto front")
        d = meta["defaults"][m]
        ax.scatter([d["forget_gap"]], [d["utility_drop"]], marker="*", s=160, color="k",
                   label="default", zorder=5)
        ax.set_title(m)
        ref = meta.get("reference")
        ref = ref if isinstance(ref, str) else "retrain"
        xlabel, ylabel = meta.get("axes", (f"forgetting gap to {ref}",
                                          f"utility drop below {ref}"))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    fig.suptitle(f"{meta['dataset']} / {meta['model']} / forget {meta['forget']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(rows: list[dict[str, Any]], meta: dict[str, Any], out: Path,
                  settings_of: Callable[[str, dict], dict] = settings) -> dict:
    stats = summary(rows, meta)
    files = {"trials_csv": write_csv(rows, out / "trials.csv", tuple(meta.get("columns", COLUMNS))),
             "best_md": write_markdown(rows, meta, stats, out / "best.md"),
             "best_yaml": write_best_yaml(rows, out / "best.yaml", settings_of),
             "pareto_png": write_pareto(rows, meta, out / "pareto.png")}
    files["json"] = out / "sweep.json"
    files["json"].write_text(json.dumps({"meta": meta, "summary": stats, "trials": rows},
                                        indent=1, default=str))
    return {"out": str(out), "files": {k: str(v) for k, v in files.items()},
            "summary": stats, "best": {m: r["params"] for m, r in best_rows(rows).items()},
            "meta": meta}


def load_best(path: str | Path) -> dict[str, dict[str, Any]]:
    """``best.yaml`` (or a folder holding it) -> ``{method: params}``."""
    p = Path(path)
    if p.is_dir():
        p = p / "best.yaml"
    if not p.is_file():
        raise ClulError(f"no best.yaml at {path} (run `clul-ray tune --out DIR` first)")
    raw = read_yaml(p, "best params file")
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, dict)
                                                       for v in raw.values()):
        raise ClulError(f"{p} must map each method to its params")
    for m, params in raw.items():
        get_method(m).make_params(params)
    return raw


def tuned_params(path: str | Path | None, method: str) -> dict[str, Any]:
    """A method's params from a sweep's best.yaml (none when ``path`` is None)."""
    if path is None:
        return {}
    best = load_best(path)
    if method not in best:
        raise ClulError(f"{path} has no params for {method} (it has: {', '.join(best)})")
    return best[method]
