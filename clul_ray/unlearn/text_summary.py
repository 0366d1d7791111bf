"""The outputs of a text comparison: summary.json, summary.md and summary.csv (the table)
and compare.png (forget quality against model utility, and the memorisation metrics)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .summary import cell, label, write_csv, write_json

# Columns of the table: (row key, header, decimals).
TABLE = (("forget_quality", "forget quality", 4), ("model_utility", "model utility", 4),
         ("priv_leak", "PrivLeak %", 1), ("verbmem", "VerbMem", 3),
         ("knowmem_forget", "KnowMem f", 3), ("knowmem_retain", "KnowMem r", 3),
         ("ppl_forget", "ppl forget", 2), ("ppl_retain", "ppl retain", 2),
         ("ppl_holdout", "ppl holdout", 2), ("seconds", "seconds", 2),
         ("speedup", "speed-up", 1))
BIAS_COLUMNS = (("bias_gap", "assoc. gap", 3), ("control_gap", "control gap", 3))


def columns(meta: dict[str, Any]) -> tuple[tuple[str, str, int], ...]:
    """The table's columns; the association gaps beside utility on a bias corpus."""
    if not meta.get("bias"):
        return TABLE
    return TABLE[:2] + BIAS_COLUMNS + TABLE[2:]


def markdown_table(rows: list[dict[str, Any]], cols) -> str:
    head = "| method | " + " | ".join(h for _, h, _ in cols) + " |"
    sep = "|---|" + "|".join("---:" for _ in cols) + "|"
    body = ["| " + label(r) + " | " + " | ".join(cell(r, k, d) for k, _, d in cols) + " |"
            for r in rows]
    return "\n".join([head, sep, *body])


def write_markdown(rows: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> Path:
    p, d, q = meta["people"], meta["documents"], meta["qa"]
    lines = [
        f"# Text unlearning comparison: {meta['dataset']}, {meta['model']}, forget "
        f"`{meta['forget']}`",
        "",
        f"People: {p['forget']} forget, {p['retain']} retain, {p['holdout']} holdout (never "
        f"trained on). Documents: {d['forget']} forget, {d['retain']} retain, {d['holdout']} "
        f"holdout. QAs scored: {q['forget']} forget, {q['retain']} retain, {q['holdout']} "
        f"holdout. Seed {meta['seed']}; {meta['recipe']['epochs']} epochs, lr "
        f"{meta['recipe']['lr']:g}, batch {meta['recipe']['batch_size']}.",
        "",
        markdown_table(rows, columns(meta)),
        "",
        "forget quality (TOFU, Maini et al. 2024): KS-test p-value between the model's and "
        "the retrained model's truth ratios on the forget QAs (1 = indistinguishable from "
        "retraining). model utility (TOFU): harmonic mean of answer probability, ROUGE-L "
        "recall of the greedy answer and truth-ratio score, on the retain and the holdout "
        "QAs. PrivLeak (MUSE, Shi et al. 2024): (AUC - AUC_retrain) / AUC_retrain x 100, AUC "
        "of Min-40% Prob telling forget documents from holdout ones (0 = as retrained). "
        "VerbMem (MUSE): ROUGE-L recall of the greedy continuation of each forget document's "
        "first half against its second half. KnowMem (MUSE): ROUGE-L recall of the greedy "
        "answer on the forget / retain QAs. ppl: perplexity on the forget, retain and "
        "holdout documents. seconds: training time for retrain, the method's wall time "
        "otherwise; speed-up: retrain seconds / method seconds."
        + (" assoc. gap: log P(' asthma') - log P(' migraine') after 'A southern patient was "
           "diagnosed with' (the stereotyped association); control gap: the same with "
           "'northern'." if meta.get("bias") else ""),
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def write_plot(rows: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> Path:
    """Left: forget quality (log) against model utility, one point per model, retrain a
    black star. Right: VerbMem and KnowMem (forget, retain) per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 5.5), constrained_layout=True)
    palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]
    k = 0
    for r in rows:
        fq, mu = _num(r.get("forget_quality")), _num(r.get("model_utility"))
        if math.isnan(mu):
            continue
        fq = max(fq, 1e-300) if not math.isnan(fq) else 1e-300
        if r["method"] == "retrain":
            style = {"color": "black", "marker": "*", "s": 220}
        elif r["method"] == "original":
            style = {"color": "0.55", "marker": "s", "s": 80}
        else:
            style = {"color": palette[k % len(palette)], "marker": "o", "s": 70}
            k += 1
        ax.scatter([mu], [fq], label=r["method"], edgecolor="black", linewidth=0.5, **style)
    ax.set_yscale("log")
    ax.set_xlabel("model utility (TOFU)")
    ax.set_ylabel("forget quality (KS p-value, log)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    names = [r["method"] for r in rows]
    width = 0.27
    for j, (key, title) in enumerate((("verbmem", "VerbMem"), ("knowmem_forget", "KnowMem f"),
                                      ("knowmem_retain", "KnowMem r"))):
        vals = [_num(r.get(key), 0.0) for r in rows]
        bx.bar([i + (j - 1) * width for i in range(len(rows))], vals, width, label=title,
               edgecolor="black", linewidth=0.5)
    bx.set_xticks(range(len(rows)))
    bx.set_xticklabels(names, rotation=45, ha="right", fontsize=9)
    bx.set_ylim(0, 1.05)
    bx.set_ylabel("ROUGE-L recall (MUSE)")
    bx.legend(fontsize=8)
    bx.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{meta['dataset']} / {meta['model']} / forget {meta['forget']}")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(rows: list[dict[str, Any]], meta: dict[str, Any], extra: dict[str, Any],
                  out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    return {
        "json": write_json({"meta": meta, "rows": rows, **extra}, out / "summary.json"),
        "md": write_markdown(rows, meta, out / "summary.md"),
        "csv": write_csv(rows, out / "summary.csv"),
        "png": write_plot(rows, meta, out / "compare.png"),
    }


def _num(v: Any, default: float = math.nan) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(f) else f
