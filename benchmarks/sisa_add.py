"""Benchmark: growing a SISA ensemble (``add``) against retraining the grown ensemble.

One run, on one fresh storage root and the Ray backend:

1. trains the ensemble on X (synthetic rows with ids ``0..n-1``);
2. adds A (``--added`` new rows, ids ``n..``): one new slice per shard, the only one that
   trains;
3. retrains the grown ensemble from scratch on a copy of the root (every checkpoint
   removed, then ``train``: every slice step of the same layout), and checks that it gives
   the same models bit for bit as the addition did;

and reports wall time and training work (sample-epochs) of (2) against (3), with the
ratio of both. Figures go to a table on stdout and to ``benchmarks/out/sisa_add-*.json``.

    RAY_USAGE_STATS_ENABLED=0 .venv/bin/python benchmarks/sisa_add.py
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from clul_ray.config import make_config
from clul_ray.data.sources import open_source
from clul_ray.sisa.decisions.plan import epochs_per_slice, sample_epochs
from clul_ray.sisa.driver.pipeline import Pipeline

OUT_DIR = Path(__file__).resolve().parent / "out"
console = Console(width=160)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--n", type=int, default=60_000, help="rows of X (before the test split)")
    ap.add_argument("--added", type=int, default=6_000, help="rows of the addition A")
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--backend", default="ray", choices=["ray", "local"])
    ap.add_argument("--out", default=None)
    return ap.parse_args(argv)


def counts(p: Pipeline, shards: int, slices: int) -> np.ndarray:
    _, shard, slc = p.store.read_index()
    c = np.zeros((shards, slices), np.int64)
    np.add.at(c, (shard, slc), 1)
    return c


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="sisa_add-"))
    t = pa.concat_tables(open_source(f"synthetic:{a.n + a.added}:dim={a.dim}").iter_tables())
    ids = t.column("id").to_numpy()
    pq.write_table(t.filter(pa.array(ids < a.n)), work / "x.parquet")
    pq.write_table(t.filter(pa.array(ids >= a.n)), work / "a.parquet")
    cfg = make_config(dataset=f"parquet:{work / 'x.parquet'}", num_classes=10,
                      shards=a.shards, slices=a.slices, epochs=a.epochs, batch_size=a.batch_size,
                      model_args={"hidden": a.hidden}, backend=a.backend)
    p = Pipeline(str(work / "root"))
    t0 = time.perf_counter()
    first = p.train(cfg)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    grown = p.add(f"parquet:{work / 'a.parquet'}")
    add_s = time.perf_counter() - t0
    console.print(f"trained X in {train_s:.1f} s; added {grown['added']} rows in {add_s:.1f} s")

    shutil.copytree(work / "root", work / "scratch")
    q = Pipeline(str(work / "scratch"))
    q.store.delete("checkpoints")
    t0 = time.perf_counter()
    again = q.train(q.config)
    scratch_s = time.perf_counter() - t0
    same = [s["model_sha256"] for s in grown["per_shard"]] == \
        [s["model_sha256"] for s in again["per_shard"]]

    total = a.slices + 1
    eps = epochs_per_slice(a.epochs, a.slices)
    c = counts(p, a.shards, total)
    add_work = sample_epochs(c, {k: a.slices for k in range(a.shards)}, eps)
    full_work = sample_epochs(c, {k: 0 for k in range(a.shards)}, eps)
    res = {
        "machine": f"{platform.node()} ({platform.machine()}, {__import__('os').cpu_count()} "
                   "CPUs)", "args": vars(a),
        "rows_x": first["samples"], "rows_added": grown["added"],
        "train_x_seconds": train_s, "add_seconds": add_s, "scratch_seconds": scratch_s,
        "add_sample_epochs": add_work, "scratch_sample_epochs": full_work,
        "wall_speedup": scratch_s / add_s, "work_ratio": full_work / add_work,
        "add_timings": grown["wall_seconds"], "scratch_timings": again["wall_seconds"],
        "same_models_as_scratch": same,
        "accuracy_before": first["ensemble_accuracy"],
        "accuracy_after_add": grown["ensemble_accuracy"],
        "accuracy_scratch": again["ensemble_accuracy"],
    }
    table = Table("what", "wall s", "sample-epochs", title=f"add {grown['added']} rows to "
                  f"{first['samples']} ({a.shards} shards x {a.slices}+1 slices, {a.backend})")
    table.add_row("add (new slice only)", f"{add_s:.1f}", f"{add_work:,}")
    table.add_row("retrain grown ensemble", f"{scratch_s:.1f}", f"{full_work:,}")
    table.add_row("ratio", f"{res['wall_speedup']:.2f}x", f"{res['work_ratio']:.2f}x")
    a_t, s_t = grown["wall_seconds"], again["wall_seconds"]
    table.add_row("  of which training: add / retrain",
                  f"{a_t.get('train_seconds', 0):.1f} / {s_t.get('train_seconds', 0):.1f}", "")
    table.add_row("  of which evaluation: add / retrain",
                  f"{a_t.get('evaluate_seconds', 0):.1f} / "
                  f"{s_t.get('evaluate_seconds', 0):.1f}", "")
    console.print(table)
    console.print(f"same models as the retrain from scratch: {same}; accuracy "
                  f"{res['accuracy_before']:.4f} -> {res['accuracy_after_add']:.4f}")
    OUT_DIR.mkdir(exist_ok=True)
    out = Path(a.out) if a.out else OUT_DIR / f"sisa_add-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(res, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return res


if __name__ == "__main__":
    main()
