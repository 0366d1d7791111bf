"""Benchmark: one Ray Tune sweep (``clul-ray tune`` submitted as a Ray job) on one node
against the same sweep on two nodes, in one run.

Runs ``cluster/two_node_sweep.sh`` twice with the same sweep (``--samples`` trials of
``--method`` on ``--dataset``, fifo, ``--epochs``): first on the head alone (``--cpus``
CPUs), then on the head plus a second node with the same CPUs each. For each: the Tune wall
time (the trials, from the first to the last), the job's wall time, trials per node, and
what went through the object store: the bytes put once by the job's driver, and the copies
on the other node (each a transfer of that object, counted from Ray's object locations when
the trials are done). Parallel efficiency = T1 / (2 · T2) on the Tune wall times.

    flock /tmp/clul-cluster.lock env RAY_USAGE_STATS_ENABLED=0 \\
        .venv/bin/python benchmarks/sweep_nodes.py

Figures go to stdout and to ``benchmarks/out/sweep_nodes.json``; each run's folder (the
script's summary and logs) under ``--out`` (a fresh temp folder by default).
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

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "cluster" / "two_node_sweep.sh"


def one_run(nodes: int, out: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "CLUL_BIN": str(Path(sys.executable).parent),
           "CLUL_NODES": str(nodes), "CLUL_HEAD_CPUS": str(args.cpus),
           "CLUL_NODE2_CPUS": str(args.cpus), "CLUL_SWEEP_SAMPLES": str(args.samples),
           "CLUL_SWEEP_METHOD": args.method, "CLUL_SWEEP_DATASET": args.dataset,
           "CLUL_EPOCHS": str(args.epochs), "CLUL_SWEEP_REFUSAL": "0"}
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], env=env, capture_output=True,
                          text=True)
    (out / "script.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"the {nodes}-node run failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    s = json.loads((out / "summary.json").read_text())
    s["run_seconds"] = time.perf_counter() - t0
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--method", default="finetune")
    ap.add_argument("--dataset", default="synthetic:400")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--cpus", type=int, default=1, help="CPUs per node")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    base = args.out or Path(tempfile.mkdtemp(prefix="clul_sweep_nodes_"))
    runs = {}
    for nodes in (1, 2):
        out = base / f"nodes{nodes}"
        out.mkdir(parents=True, exist_ok=True)
        runs[nodes] = one_run(nodes, out, args)
        r = runs[nodes]
        print(f"{nodes} node(s): tune {r['wall_seconds']['tune']:.1f} s, job "
              f"{r['wall_seconds']['job']:.0f} s, trials {r['completed']}/{r['trials']}, "
              f"per node {sorted(r['trials_per_node'].values())}", flush=True)
    t1, t2 = runs[1]["wall_seconds"]["tune"], runs[2]["wall_seconds"]["tune"]
    store = runs[2]["object_store"]
    result = {
        "sweep": {"samples": args.samples, "method": args.method, "dataset": args.dataset,
                  "epochs": args.epochs, "cpus_per_node": args.cpus, "scheduler": "fifo"},
        "tune_seconds": {"1": t1, "2": t2}, "speedup": t1 / t2,
        "parallel_efficiency": t1 / (2 * t2),
        "job_seconds": {str(n): r["wall_seconds"]["job"] for n, r in runs.items()},
        "reference_seconds": {str(n): r["wall_seconds"]["references"]
                              for n, r in runs.items()},
        "trials_per_node": {str(n): sorted(r["trials_per_node"].values())
                            for n, r in runs.items()},
        "put_bytes": store["put_bytes"],
        "put": {k: v["bytes"] for k, v in store["put"].items()},
        "transferred_bytes_to_second_node": store["transferred_bytes"],
        "trainable_bytes": store["trainable_bytes"],
        "runs": {str(n): r for n, r in runs.items()},
    }
    dest = REPO / "benchmarks" / "out"
    dest.mkdir(exist_ok=True)
    (dest / "sweep_nodes.json").write_text(json.dumps(result, indent=1))
    print(f"speed-up {t1 / t2:.2f}x, parallel efficiency T1/(2·T2) = "
          f"{result['parallel_efficiency']:.2f}; put once {store['put_bytes']} B, copied to "
          f"the second node {store['transferred_bytes']} B; trainable "
          f"{store['trainable_bytes']} B")


if __name__ == "__main__":
    main()
