"""stream.csv (every strategy x seed x step), stream.md (per step, mean ± std over seeds)
and stream.png (accuracy per task along the stream, one panel per strategy, unlearn steps
marked)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..unlearn.summary import write_csv

SUMMARY = (("avg_acc", "avg acc"), ("avg_f1", "avg F1"), ("forget_acc", "forget acc"),
           ("gap_oracle", "gap"),
           ("forget_gap", "forget gap"), ("bwt", "BWT"), ("forgetting", "FM"),
           ("mia", "MIA"))

PER_TASK = ("acc_task", "f1_task", "acc_class")


def _stat(values: list[float]) -> tuple[float, float]:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return math.nan, math.nan
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (step, strategy): means over seeds (``<key>_std`` beside each)."""
    out: list[dict[str, Any]] = []
    keys = sorted({(r["step"], r["strategy"]) for r in rows},
                  key=lambda k: (k[0], [r["strategy"] for r in rows].index(k[1])))
    for step, name in keys:
        group = [r for r in rows if r["step"] == step and r["strategy"] == name]
        s: dict[str, Any] = {"step": step, "operation": group[0]["operation"],
                             "strategy": name, "seeds": len(group)}
        for key in [k for k in group[0] if k.startswith(PER_TASK)] + [
                k for k, _ in SUMMARY] + ["seconds"]:
            s[key], s[f"{key}_std"] = _stat([g.get(key, math.nan) for g in group])
        out.append(s)
    return out


def cell(row: dict[str, Any], key: str) -> str:
    v, sd = row.get(key, math.nan), row.get(f"{key}_std", math.nan)
    if v is None or math.isnan(v):
        return "–"
    return f"{v:.3f} ± {sd:.3f}" if row.get("seeds", 1) > 1 else f"{v:.3f}"


def markdown_table(summary: list[dict[str, Any]]) -> str:
    head = ["step", "operation", "strategy", *(h for _, h in SUMMARY)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        lines.append("| " + " | ".join([str(r["step"]), r["operation"], r["strategy"],
                                        *(cell(r, k) for k, _ in SUMMARY)]) + " |")
    return "\n".join(lines)


def write_markdown(summary: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> Path:
    seeds = meta["seeds"]
    lines = [f"# Continual learning and unlearning: {meta['benchmark']} ({meta['setting']}-"
             f"incremental), {meta['model']}", "",
             f"Stream: `{meta['stream']}`. Seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}); "
             + ("mean ± sample std over seeds." if len(seeds) > 1 else "one seed."), "",
             "avg acc: mean test accuracy over the learned and kept tasks; avg F1: mean over "
             "the same tasks of the macro F1 (over each task's classes) on its test rows; "
             "forget acc: on the "
             "test rows of unlearned tasks and classes; gap / forget gap: strategy minus the "
             "oracle (retrained from scratch on the allowed tasks); BWT: backward transfer; "
             "FM: forgetting measure; MIA: MIA-efficacy, the fraction of the forgotten "
             "training rows an SVC on true-class confidence calls non-members.", "",
             markdown_table(summary), ""]
    last = max(r["step"] for r in summary)
    for prefix, what in (("acc_task", "accuracy"), ("f1_task", "macro F1")):
        lines += [f"Per-task {what} after the last step:", ""]
        tasks = sorted(k for k in summary[0] if k.startswith(prefix) and not k.endswith("std"))
        lines.append("| strategy | " + " | ".join(t.replace(prefix, "task ") for t in tasks)
                     + " |")
        lines.append("|" + "---|" * (len(tasks) + 1))
        for r in (r for r in summary if r["step"] == last):
            lines.append(f"| {r['strategy']} | " + " | ".join(cell(r, t) for t in tasks)
                         + " |")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def write_plot(summary: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["strategy"] for r in summary))
    tasks = sorted((k for k in summary[0] if k.startswith("acc_task") and not k.endswith("std")),
                   key=lambda k: int(k.removeprefix("acc_task")))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False,
                             sharey=True, constrained_layout=True)
    colors = plt.get_cmap("tab10").colors
    for ax, name in zip(axes[0], names, strict=True):
        rs = sorted((r for r in summary if r["strategy"] == name), key=lambda r: r["step"])
        steps = [r["step"] for r in rs]
        for i, t in enumerate(tasks):
            ax.plot(steps, [r[t] for r in rs], marker="o", ms=3, color=colors[i % 10],
                    label=t.replace("acc_task", "task "))
        ax.plot(steps, [r["avg_acc"] for r in rs], color="black", lw=2, ls="--",
                label="avg (kept)")
        for r in rs:
            if "unlearn" in r["operation"]:
                ax.axvline(r["step"], color="red", alpha=0.3, lw=6)
        ax.set_title(name)
        ax.set_xticks(steps)
        ax.set_xticklabels([r["operation"] for r in rs], rotation=35, ha="right", fontsize=7)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{meta['benchmark']} ({meta['setting']}-IL), {len(meta['seeds'])} seed(s); "
                 "red bands: unlearn steps")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_all(rows: list[dict[str, Any]], meta: dict[str, Any], out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows)
    return {"csv": str(write_csv(rows, out / "stream.csv")),
            "md": str(write_markdown(summary, meta, out / "stream.md")),
            "png": str(write_plot(summary, meta, out / "stream.png"))}
