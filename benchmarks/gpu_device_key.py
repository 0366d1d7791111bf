"""The device in the checkpoint key, checked on a machine with a CUDA device (backend
``local``: no Ray needed).

    python benchmarks/gpu_device_key.py [--out DIR]   # needs a GPU (exit 2 without one)

On digits (S=4, R=2, ``gpus_per_shard: 1``):

  A  trains on CUDA, keyed ``cuda`` (the training digest of a CUDA config as before)
  B  A again on a fresh root: GPU training is deterministic (same model digests)
  C  A, then delete two ids, against D = a fresh GPU training without them (exact on GPU)
  E  the same GPU config in a process that sees no CUDA (``CUDA_VISIBLE_DEVICES=``): it
     trains on the CPU under the CPU config's keys, with the CPU config's models

Prints a markdown table and writes DIR/gpu_device_key.json; exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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

GRID = dict(dataset="digits", shards=4, slices=2, epochs=8, backend="local", num_classes=10,
            input_shape=[1, 8, 8])
DELETED = [5, 17]


def shas(result: dict) -> list[str]:
    return [s["model_sha256"] for s in result["per_shard"]]


def cpu_side(out: str) -> None:
    """E, in a process without CUDA: the GPU config's digest and models, and the CPU
    config's."""
    gpu = make_config(**GRID, gpus_per_shard=1)
    cpu = make_config(**GRID)
    a = Pipeline(f"{out}/e_gpu_cfg").train(gpu)
    b = Pipeline(f"{out}/e_cpu_cfg").train(cpu)
    print(json.dumps({"device": gpu.device, "gpu_digest": gpu.training_digest(),
                      "cpu_digest": cpu.training_digest(), "gpu_models": shas(a),
                      "cpu_models": shas(b)}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--cpu-side", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cpu_side:
        cpu_side(args.cpu_side)
        return 0
    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA device here", file=sys.stderr)
        return 2
    out = Path(args.out or tempfile.mkdtemp(prefix="clul-device-key-"))
    cfg = make_config(**GRID, gpus_per_shard=1)
    rows, t0 = [], time.perf_counter()
    a = Pipeline(str(out / "a")).train(cfg)
    t_a = time.perf_counter() - t0
    b = Pipeline(str(out / "b")).train(cfg)
    recorded = Pipeline(str(out / "a")).state.training_digest
    c = Pipeline(str(out / "a")).delete(DELETED)
    t = next(open_source("digits").iter_tables())
    keep = ~np.isin(t.column("id").to_numpy(), np.asarray(DELETED, dtype=np.int64))
    pq.write_table(t.filter(pa.array(keep)), out / "minus.parquet")
    d = Pipeline(str(out / "d")).train(make_config(
        **{**GRID, "dataset": f"parquet:{out / 'minus.parquet'}"}, gpus_per_shard=1))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    e = json.loads(subprocess.run(
        [sys.executable, __file__, "--cpu-side", str(out)], env=env, check=True,
        capture_output=True, text=True).stdout.strip().splitlines()[-1])
    checks = [
        ("A: the GPU config resolves to cuda", cfg.device == "cuda"),
        ("A's version records the cuda training digest", recorded == cfg.training_digest()),
        ("B == A (deterministic on GPU)", shas(a) == shas(b)),
        ("C: delete(A) == D, a fresh GPU training without the ids", shas(c) == shas(d)),
        ("E: without CUDA the GPU config resolves to cpu", e["device"] == "cpu"),
        ("E: its training digest is the CPU config's", e["gpu_digest"] == e["cpu_digest"]),
        ("E: its models are the CPU config's", e["gpu_models"] == e["cpu_models"]),
        ("E: the CPU keys differ from the CUDA keys", e["cpu_digest"] != cfg.training_digest()),
    ]
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
          f"python {sys.version.split()[0]}")
    print("| check | result |\n|---|---|")
    for name, ok in checks:
        print(f"| {name} | {'yes' if ok else 'NO'} |")
        rows.append({"check": name, "ok": bool(ok)})
    print(f"A trained in {t_a:.1f} s; accuracy A {a['ensemble_accuracy']:.4f}, "
          f"D {d['ensemble_accuracy']:.4f}; retrained {c['retrained']}")
    (out / "gpu_device_key.json").write_text(json.dumps({
        "checks": rows, "digest_cuda": cfg.training_digest(), "e": e,
        "a": shas(a), "d": shas(d)}, indent=1))
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
