"""Benchmark: the approximate methods' defaults on the scenarios they were chosen on (TRAIN)
and on HELD-OUT scenarios, before (the earlier defaults, passed explicitly) and after.

One ``run_compare`` per scenario (2 seeds, the default recipe: 20 epochs of the MLP): each
method runs with its earlier defaults as ``params`` and with its current defaults as the
``"<method> (tuned)"`` row (``tuned={method: {}}``), so both share the original models and
retrain. Per method and scenario: FA − FA_retrain, TA − TA_retrain and compare's gap
(mean |Δ| over RA/FA/TA/MIA), each a mean over seeds; the summary gives the worst and mean
|FA − FA_retrain| and the worst TA − TA_retrain per method on each set.

wine, iris and breast_cancer are scikit-learn's, written once as Parquet files
(``parquet:PATH`` sources, columns id, label and the features; the recipe standardises).

    RAY_USAGE_STATS_ENABLED=0 .venv/bin/python benchmarks/defaults_study.py --out /tmp/defaults
    .venv/bin/python benchmarks/defaults_study.py --quick --backend local --out /tmp/dq
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from clul_ray.unlearn.base import method_names
from clul_ray.unlearn.compare import TUNED, CompareSpec, run_compare

# The defaults before this study, as params of the current code (which reproduce them).
BEFORE: dict[str, dict] = {
    "bad_teacher": {"temperature": 5.0, "min_steps": 0, "until_forgotten": False},
    "scrub": {"msteps": 3, "min_max_steps": 0},
    "neggrad": {"epochs": 5, "partial_epochs": 5, "until_forgotten": False},
    "neggrad+": {"epochs": 5, "partial_epochs": 5, "until_forgotten": False},
    "random_label": {"epochs": 5, "min_steps": 0},
    "neural_mask": {"rule": "absolute", "threshold": 0.5},
}
TRAIN = [("digits", "class:3"), ("digits", "class:7"), ("digits", "random:0.1"),
         ("wine", "class:1"), ("breast_cancer", "random:0.2")]
HELD_OUT = [("digits", "class:5"), ("digits", "class:8"), ("digits", "random:0.05"),
            ("iris", "class:2"), ("wine", "random:0.1")]
QUICK_TRAIN = [("digits", "class:3"), ("wine", "class:1")]
QUICK_HELD_OUT = [("digits", "class:5"), ("iris", "class:2")]
SKLEARN = ("wine", "iris", "breast_cancer")


def dataset_spec(name: str, data_dir: Path) -> str:
    """``digits`` as it is; a scikit-learn table as a Parquet file written once."""
    if name not in SKLEARN:
        return name
    path = data_dir / f"{name}.parquet"
    if not path.exists():
        import pyarrow as pa
        import pyarrow.parquet as pq
        import sklearn.datasets

        b = getattr(sklearn.datasets, f"load_{name}")()
        cols = {"id": np.arange(len(b.target), dtype=np.int64),
                "label": b.target.astype(np.int64)}
        cols.update({f"f{i}": b.data[:, i].astype(np.float32) for i in range(b.data.shape[1])})
        data_dir.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols), path)
    return f"parquet:{path}"


def scenario_rows(result: dict, dataset: str, forget: str, methods: list[str]) -> list[dict]:
    """Per method: before and after deltas to retrain (means over seeds); ``original`` (the
    model before unlearning, the same both times) first, as the do-nothing baseline."""
    by = {r["method"]: r for r in result["rows"]}
    ref = by["retrain"]
    out = []
    for m in ["original", *methods]:
        row = {"dataset": dataset, "forget": forget, "method": m}
        after = m if m == "original" else m + TUNED
        for when, label in (("before", m), ("after", after)):
            r = by[label]
            row[f"{when}_dFA"] = r["FA"] - ref["FA"]
            row[f"{when}_dTA"] = r["TA"] - ref["TA"]
            row[f"{when}_gap"] = r["gap"]
        out.append(row)
    return out


def summary(rows: list[dict], methods: list[str]) -> list[dict]:
    out = []
    for m in methods:
        s = {"method": m}
        for part in ("train", "held_out"):
            mine = [r for r in rows if r["method"] == m and r["set"] == part]
            for when in ("before", "after"):
                fa = np.abs([r[f"{when}_dFA"] for r in mine])
                s[f"{part}_{when}_worst_FA"] = float(fa.max())
                s[f"{part}_{when}_mean_FA"] = float(fa.mean())
                s[f"{part}_{when}_worst_dTA"] = float(min(r[f"{when}_dTA"] for r in mine))
        out.append(s)
    return out


def pivot(rows: list[dict], part: str) -> list[str]:
    """Method x scenario of one set: FA − FA_retrain before → after (TA − TA_retrain after)."""
    mine = [r for r in rows if r["set"] == part]
    scen = list(dict.fromkeys(f"{r['dataset']} {r['forget']}" for r in mine))
    lines = ["| method | " + " | ".join(scen) + " |", "|---" * (len(scen) + 1) + "|"]
    for m in dict.fromkeys(r["method"] for r in mine):
        cells = [next(r for r in mine if r["method"] == m
                      and f"{r['dataset']} {r['forget']}" == sc) for sc in scen]
        lines.append(f"| {m} | " + " | ".join(
            f"{c['before_dFA']:+.2f} → {c['after_dFA']:+.2f} ({c['after_dTA']:+.2f})"
            for c in cells) + " |")
    return lines


def markdown(rows: list[dict], summ: list[dict]) -> str:
    lines = []
    for part in ("train", "held_out"):
        lines += [f"{part}: FA − FA_retrain before → after (TA − TA_retrain after)", "",
                  *pivot(rows, part), ""]
    lines += ["| set | scenario | method | ΔFA before | ΔFA after | ΔTA before | ΔTA after "
             "| gap before | gap after |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['dataset']} {r['forget']} | {r['method']} | "
                     f"{r['before_dFA']:+.3f} | {r['after_dFA']:+.3f} | "
                     f"{r['before_dTA']:+.3f} | {r['after_dTA']:+.3f} | "
                     f"{r['before_gap']:.3f} | {r['after_gap']:.3f} |")
    lines += ["", "| method | set | worst abs ΔFA before → after | mean abs ΔFA before → after "
              "| worst ΔTA before → after |", "|---|---|---|---|---|"]
    for s in summ:
        for part in ("train", "held_out"):
            p = f"{part}_"
            lines.append(
                f"| {s['method']} | {part} | {s[p + 'before_worst_FA']:.3f} → "
                f"{s[p + 'after_worst_FA']:.3f} | {s[p + 'before_mean_FA']:.3f} → "
                f"{s[p + 'after_mean_FA']:.3f} | {s[p + 'before_worst_dTA']:+.3f} → "
                f"{s[p + 'after_worst_dTA']:+.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="2 + 2 scenarios, 1 seed")
    ap.add_argument("--seeds", type=int, default=None, help="default 2 (1 with --quick)")
    ap.add_argument("--backend", choices=("ray", "local"), default="ray")
    ap.add_argument("--methods", default="all", help="comma-separated, default all")
    args = ap.parse_args()
    seeds = args.seeds or (1 if args.quick else 2)
    methods = [m for m in (method_names(task="classify") if args.methods == "all"
                           else args.methods.split(",")) if m != "retrain"]
    sets = {"train": QUICK_TRAIN if args.quick else TRAIN,
            "held_out": QUICK_HELD_OUT if args.quick else HELD_OUT}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.backend == "ray":
        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False,
                 _temp_dir=str(Path(os.environ.get("TMPDIR", "/tmp")) / "clul_defaults_ray"))
    rows: list[dict] = []
    t0 = time.perf_counter()
    for part, scenarios in sets.items():
        for dataset, forget in scenarios:
            spec = CompareSpec(
                dataset=dataset_spec(dataset, args.out / "data"), forget=forget,
                methods=methods, seeds=seeds, backend=args.backend,
                params={m: BEFORE[m] for m in methods if m in BEFORE},
                tuned={m: {} for m in methods})
            t = time.perf_counter()
            result = run_compare(spec, args.out / "runs" / f"{dataset}_{forget.replace(':', '_')}")
            print(f"{part} {dataset} {forget}: {time.perf_counter() - t:.1f} s", flush=True)
            rows += [{"set": part, **r} for r in scenario_rows(result, dataset, forget, methods)]
    summ = summary(rows, ["original", *methods])
    md = markdown(rows, summ)
    (args.out / "defaults_study.md").write_text(md)
    (args.out / "defaults_study.json").write_text(json.dumps(
        {"seeds": seeds, "backend": args.backend, "wall_seconds": time.perf_counter() - t0,
         "rows": rows, "summary": summ}, indent=1))
    print(md)
    print(f"wall {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
