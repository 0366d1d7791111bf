"""Benchmark: an ``s3://`` root (a local moto S3 server) beside a local-folder root, same
data: the train's partition throughput (rows/s of its partition phase) and the time of a
one-id deletion.

moto runs as its own process (``moto_server``) on a free localhost port; its endpoint and
credentials reach pyarrow, boto3 and Ray's workers through ``AWS_ENDPOINT_URL`` and the
other standard variables, set before Ray starts:

    RAY_USAGE_STATS_ENABLED=0 .venv/bin/python benchmarks/s3_root.py \\
        --dataset synthetic:50000 --shards 4 --slices 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clul_ray.config import make_config
from clul_ray.phases import measuring
from clul_ray.sisa.driver.pipeline import Pipeline


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto_server did not start")


def run(root: str, a) -> dict:
    p = Pipeline(root)
    t0 = time.perf_counter()
    out = p.train(make_config(dataset=a.dataset, shards=a.shards, slices=a.slices,
                              epochs=a.epochs, batch_size=256, model_args={"hidden": 32},
                              backend=a.backend))
    train_s = time.perf_counter() - t0
    rows = out["samples"] + out["test_samples"]
    part = out["wall_seconds"]["partition_seconds"]
    ids, _, _ = p.store.read_index()
    t0 = time.perf_counter()
    with measuring() as ph:  # the deletion's own account of its time (clul_ray.phases)
        d = p.delete([int(ids[len(ids) // 2])])
    return {"root": root.split("://")[0] if "://" in root else "local folder", "rows": rows,
            "partition_seconds": round(part, 2), "partition_rows_per_s": round(rows / part),
            "train_seconds": round(train_s, 2), "delete_seconds":
            round(time.perf_counter() - t0, 2), "delete_phases": {
                k: round(v, 2) for k, v in ph.report().items()},
            "delete_in_process": d["in_process"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="synthetic:50000")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--slices", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--backend", default="ray")
    a = ap.parse_args()
    proc, url = start_moto()
    os.environ.update({"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                       "CLUL_RAY_LINEAGE": "0"})  # MLflow is not what is measured
    try:
        from clul_ray.storage import s3

        s3.client().create_bucket(Bucket="bench")
        rows = [run(tempfile.mkdtemp(prefix="s3bench-") + "/root", a),
                run(f"s3://bench/root-{time.time_ns()}", a)]
    finally:
        proc.kill()
    for r in rows:
        print(json.dumps(r))
    print("| root | rows | partition s | partition rows/s | train s | one-id delete s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['root']} | {r['rows']} | {r['partition_seconds']} | "
              f"{r['partition_rows_per_s']} | {r['train_seconds']} | {r['delete_seconds']} |")


if __name__ == "__main__":
    main()
