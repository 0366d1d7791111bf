"""Utility and independence of transformed features, and the curve over the strength t
(pure: scikit-learn, numpy, matplotlib).

On a sample of rows (the report's rows, at most ``report_rows``) split 70/30 by a seeded
shuffle, for each t:

- **utility**: accuracy on the label of a logistic regression trained on x_t (train part)
  and scored on the test part, with its macro precision, recall and F1
  (:func:`clul_ray.metrics.classification_scores`);
- **independence**: balanced accuracy of a gradient-boosted classifier
  (``HistGradientBoostingClassifier``: it sees scale and shape, not only means) predicting
  z from x_t; chance is 1/|Z|;
- **HSIC** between x_t (RBF kernel, median-heuristic bandwidth) and z (delta kernel) on
  ``HSIC_N`` = 1000 test rows (biased estimator, trace(KHLH)/n²), with a permutation p-value
  from ``HSIC_PERMS`` = 200 shuffles of z.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..metrics.accuracy import classification_scores

CURVE_T = (0.0, 0.25, 0.5, 0.75, 1.0)
HSIC_N = 1000
HSIC_PERMS = 200


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng([seed, 0x5917]).permutation(n)
    cut = int(0.7 * n)
    return perm[:cut], perm[cut:]


def hsic(x: np.ndarray, z: np.ndarray, seed: int = 0, perms: int = HSIC_PERMS,
         n: int = HSIC_N) -> tuple[float, float]:
    """(HSIC_b of x and z, permutation p-value) on at most ``n`` rows."""
    rng = np.random.default_rng([seed, 0x4551C])
    idx = rng.choice(len(x), min(n, len(x)), replace=False)
    x, z = np.asarray(x[idx], dtype=np.float64), np.asarray(z)[idx]
    m = len(x)
    sq = np.sum(x * x, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    med = np.median(d2[np.triu_indices(m, 1)]) or 1.0
    k = np.exp(-d2 / med)
    kc = k - k.mean(axis=0)[None, :] - k.mean(axis=1)[:, None] + k.mean()  # H K H

    def stat(zz: np.ndarray) -> float:  # trace(Kc L) with L the delta kernel of z
        onehot = (zz[:, None] == np.unique(zz)[None, :]).astype(np.float64)
        return float(np.sum(onehot * (kc @ onehot)) / m ** 2)

    value = stat(z)
    null = [stat(rng.permutation(z)) for _ in range(perms)]
    return value, float((1 + sum(v >= value for v in null)) / (perms + 1))


def metrics(xt: np.ndarray, y: np.ndarray, z: np.ndarray, seed: int = 0) -> dict[str, float]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # OpenMP threads on a shared machine: far slower, not faster
        return _metrics(xt, y, z, seed)


def _metrics(xt: np.ndarray, y: np.ndarray, z: np.ndarray, seed: int) -> dict[str, float]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    tr, te = _split(len(xt), seed)
    scaler = StandardScaler().fit(xt[tr])
    a, b = scaler.transform(xt[tr]), scaler.transform(xt[te])
    clf = LogisticRegression(max_iter=1000).fit(a, y[tr])
    zc = np.unique(z, return_inverse=True)[1]
    adv = HistGradientBoostingClassifier(max_iter=50, random_state=seed).fit(a, zc[tr])
    h, p = hsic(b, zc[te], seed)
    pred = clf.predict(b)
    label = classification_scores(pred, y[te])
    return {"label_accuracy": float(accuracy_score(y[te], pred)),
            "label_precision": label["precision"], "label_recall": label["recall"],
            "label_f1": label["F1"],
            "z_balanced_accuracy": float(balanced_accuracy_score(zc[te], adv.predict(b))),
            "z_chance": 1.0 / len(np.unique(zc)), "hsic": h, "hsic_p": p}


def curve(x: np.ndarray, y: np.ndarray, z: np.ndarray, mapped: Callable[[float], np.ndarray],
          ts=CURVE_T, seed: int = 0) -> list[dict[str, float]]:
    """One row of metrics per t; ``mapped(t)`` gives x_t for the report's rows."""
    return [{"t": float(t), **metrics(np.asarray(mapped(t)), y, z, seed)} for t in ts]


def summary(rows: list[dict], t: float) -> dict[str, float]:
    """Before (t = 0) and after (the chosen t) from the curve's rows."""
    before = next(r for r in rows if r["t"] == 0.0)
    after = min(rows, key=lambda r: abs(r["t"] - t))
    return {"label_accuracy_before": before["label_accuracy"],
            "label_accuracy_after": after["label_accuracy"],
            "label_f1_before": before["label_f1"], "label_f1_after": after["label_f1"],
            "z_balanced_accuracy_before": before["z_balanced_accuracy"],
            "z_balanced_accuracy_after": after["z_balanced_accuracy"],
            "z_chance": after["z_chance"], "hsic_before": before["hsic"],
            "hsic_after": after["hsic"], "hsic_p_after": after["hsic_p"]}


COLUMNS = ("t", "label_accuracy", "label_precision", "label_recall", "label_f1",
           "z_balanced_accuracy", "z_chance", "hsic", "hsic_p")


def write_curve(rows: list[dict], folder: Path, title: str) -> dict[str, str]:
    """curve.csv, curve.md and curve.png in ``folder``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = {k: str(folder / f"curve.{k}") for k in ("csv", "md", "png")}
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[c for c in rows[0] if c in COLUMNS or c == "method"])
        w.writeheader()
        w.writerows([{k: r[k] for k in w.fieldnames} for r in rows])
    Path(paths["md"]).write_text(markdown(rows))
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    for method in dict.fromkeys(r.get("method", "") for r in rows):
        rs = [r for r in rows if r.get("method", "") == method]
        ts = [r["t"] for r in rs]
        ax[0].plot(ts, [r["label_accuracy"] for r in rs], "o-", label=method or None)
        ax[1].plot(ts, [r["z_balanced_accuracy"] for r in rs], "o-", label=method or None)
    ax[1].axhline(rows[0]["z_chance"], color="grey", ls="--", label="chance")
    ax[0].set(xlabel="t", ylabel="label accuracy (logistic)", title="utility")
    ax[1].set(xlabel="t", ylabel="z balanced accuracy (boosted trees)", title="independence")
    ax[1].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=110)
    plt.close(fig)
    return paths


def markdown(rows: list[dict]) -> str:
    cols = [c for c in ("method", *COLUMNS) if c in rows[0]]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.4f}" if isinstance(r[c], float) and c != "t"
                                       else str(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_json(obj: dict, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str) + "\n")
