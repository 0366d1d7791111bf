"""GPU paths of the SISA pipeline, checked end to end on a machine with a CUDA device.

    python benchmarks/gpu_check.py [--out DIR]     # needs a GPU (exit 2 without one)
    python benchmarks/gpu_check.py --cpu           # the same checks on CPU (dry run)

Four runs on digits (S=4, R=2), each on a fresh root under DIR:

  A  backend ray, gpus_per_shard=0.25: four shard tasks share one GPU
  B  A again: GPU training is deterministic (same model digests)
  C  A, then delete two ids, against D = a fresh run without them: deletion is exact on GPU
  E  backend ray_train, one worker with use_gpu=True: the same digests as A

Prints a markdown table (for benchmarks/RESULTS.md) and writes DIR/gpu_check.json; exits 1
if a digest check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clul_ray.config import make_config
from clul_ray.data.sources import open_source
from clul_ray.sisa.driver.pipeline import Pipeline


def shas(result: dict) -> dict[int, str]:
    return {s["shard"]: s["model_sha256"] for s in result["per_shard"]}


def step_seconds(result: dict) -> float:
    return sum(s["train_seconds"] for s in result["per_shard"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder for the roots and the JSON")
    ap.add_argument("--cpu", action="store_true", help="run the checks on CPU (dry run)")
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args()

    import ray
    import torch

    from clul_ray.runtime import ensure_ray

    if not args.cpu and not torch.cuda.is_available():
        print("error: no CUDA device here (use --cpu for a dry run on CPU)", file=sys.stderr)
        return 2
    out = Path(args.out or tempfile.mkdtemp(prefix="clul-gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    ensure_ray()
    gpus = float(ray.cluster_resources().get("GPU", 0))
    frac = 0.0 if args.cpu else 0.25
    base = dict(dataset="digits", shards=4, slices=2, epochs=args.epochs, batch_size=64,
                model_args={"hidden": 64}, cpus_per_shard=0.5 if not args.cpu else 1)
    runs: dict[str, dict] = {}

    def train(name: str, **kw) -> dict:
        t0 = time.perf_counter()
        res = Pipeline(str(out / name)).train(make_config(**{**base, **kw}))
        res["wall"] = time.perf_counter() - t0
        runs[name] = res
        print(f"{name}: accuracy {res['ensemble_accuracy']:.4f}, train "
              f"{res['wall_seconds']['train_seconds']:.1f} s", flush=True)
        return res

    a = train("A", gpus_per_shard=frac)
    b = train("B", gpus_per_shard=frac)
    p = Pipeline(str(out / "A"))
    ids, shard, slc = p.store.read_index()
    drop = [int(ids[(shard == 0) & (slc == 1)][0]), int(ids[(shard == 2) & (slc == 0)][0])]
    c = p.delete(drop)
    t = next(open_source("digits").iter_tables())
    keep = ~np.isin(t.column("id").to_numpy(), np.asarray(drop, dtype=np.int64))
    pq.write_table(t.filter(pa.array(keep)), out / "minus.parquet")
    d = train("D", gpus_per_shard=frac, dataset=f"parquet:{out / 'minus.parquet'}",
              num_classes=10, input_shape=[1, 8, 8])
    e = train("E", gpus_per_shard=0.0 if args.cpu else 1.0, backend="ray_train",
              train_workers_per_shard=1)
    checks = {
        "B == A (deterministic)": shas(b) == shas(a),
        "delete(A) == D (exact)": shas(c) == shas(d),
        "ray_train E == A": shas(e) == shas(a),
        "delete retrained only shards 0 and 2": c["retrained"] == {"0": 1, "2": 0},
    }
    info = {"device": "cpu (dry run)" if args.cpu else torch.cuda.get_device_name(0),
            "cluster_gpus": gpus, "torch": torch.__version__, "ray": ray.__version__,
            "python": platform.python_version(), "checks": checks,
            "runs": {k: {"wall_seconds": v["wall_seconds"], "accuracy": v["ensemble_accuracy"],
                         "step_seconds_sum": step_seconds(v), "shas": shas(v)}
                     for k, v in runs.items()},
            "delete": {"ids": drop, "retrained": c["retrained"],
                       "wall_seconds": c["wall_seconds"]}}
    (out / "gpu_check.json").write_text(json.dumps(info, indent=1))
    overlap = step_seconds(a) / max(a["wall_seconds"]["train_seconds"], 1e-9)
    print(f"\n{info['device']}, {gpus:g} GPU in the cluster, torch {torch.__version__}, "
          f"Ray {ray.__version__}\n")
    print("| check | result |\n|---|---|")
    for k, v in checks.items():
        print(f"| {k} | {'yes' if v else 'NO'} |")
    print(f"| A: sum of shard step seconds / train wall (>1: shards overlapped on the "
          f"{'CPU' if args.cpu else 'shared GPU'}) | {overlap:.2f} |")
    print(f"| A train wall s (gpus_per_shard={frac:g}) | "
          f"{a['wall_seconds']['train_seconds']:.1f} |")
    print(f"| E train wall s (ray_train, 1 worker) | {e['wall_seconds']['train_seconds']:.1f} |")
    print(f"\nroots and JSON under {out}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    sys.exit(main())
