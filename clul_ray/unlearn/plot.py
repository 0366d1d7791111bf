"""compare.png: one panel per metric, one bar per method, retrain's value as a dashed line."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

PANELS = (("RA", "RA (retain acc.)", False), ("FA", "FA (forget acc.)", False),
          ("TA", "TA (test acc.)", False), ("TF1", "F1 on D_t (macro)", False),
          ("FF1", "F1 on D_f (macro)", False), ("MIA", "MIA-efficacy", False),
          ("ZRF", "ZRF", False), ("speedup", "speed-up vs retrain (log)", True))


def write_plot(rows: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["method"] for r in rows]
    # tab10 without its grey (grey marks the original model), then Dark2 for long lists
    palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]
    palette += list(plt.get_cmap("Dark2").colors)
    colors, k = [], 0
    for r in rows:
        if r["method"] == "retrain":
            colors.append("black")
        elif r["method"] == "original":
            colors.append("0.65")
        else:
            colors.append(palette[k % len(palette)])
            k += 1
    fig, axes = plt.subplots(2, len(PANELS) // 2, figsize=(5 * len(PANELS) // 2, 8.5),
                             constrained_layout=True)
    seeds = len(meta["seeds"])
    for ax, (key, title, log) in zip(axes.flat, PANELS, strict=True):
        vals = [_num(r.get(key)) for r in rows]
        errs = [_num(r.get(f"{key}_std"), 0.0) if seeds > 1 else 0.0 for r in rows]
        pos = range(len(rows))
        bars = ax.bar(pos, vals, yerr=errs,
                      color=colors, capsize=3, edgecolor="black", linewidth=0.5)
        for bar, r in zip(bars, rows, strict=True):
            if not r["changes_weights"] and r["method"] != "original":
                bar.set_hatch("//")
        ref = next((_num(r.get(key)) for r in rows if r["method"] == "retrain"), math.nan)
        if not math.isnan(ref):
            ax.axhline(ref, color="black", linestyle="--", linewidth=1, label="retrain")
        ax.set_title(title)
        ax.set_xticks(list(pos))
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=9)
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    axes.flat[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"{meta['dataset']} / {meta['model']} / forget {meta['forget']} — "
                 f"{seeds} seed(s); dashed: retrain; hatched: no weight update")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _num(v: Any, default: float = math.nan) -> float:
    if v is None:
        return default
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(f) else f
