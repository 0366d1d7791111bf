"""Benchmark: the deletion service's fixed costs on a FRESH service -- start to healthy,
and request-to-commit over compute of the first requests it takes.

One run, on a storage root of ``synthetic:N`` (mlp) trained here (or ``--root``, copied):

1. **start to healthy**: Ray's start, Serve's start, the application's start (the replica:
   the service's own phases, as ``GET /version`` reports them in ``start_seconds``), and
   the first ``GET /healthz`` answered;
2. **fresh requests**: ``--fresh-requests`` single-id ``/delete`` requests sent one after
   another, each waited for (committed, then the service idle), on the service just
   started: ``committed - planned`` of each request's ledger history against
   ``retrain_compute_seconds`` of its version (as part 2 of ``serve_deletion.py``);
   p50, p90 and max of the overhead, and the first requests' own rows.

    RAY_USAGE_STATS_ENABLED=0 .venv/bin/python benchmarks/serve_fresh.py --n 200000 \\
        --epochs 4 --fresh-requests 30

Figures go to stdout and to ``benchmarks/out/serve_fresh-*.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _serve_common import (  # noqa: E402
    add_root_args,
    add_run_args,
    bench_run,
    log,
    pct,
    request_to_commit,
    stop_serving,
    train_ids,
    train_layout,
)

from clul_ray.local_head import free_port  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_root_args(ap)
    ap.add_argument("--fresh-requests", type=int, default=30)
    ap.add_argument("--root", default=None, help="a trained root to copy (default: train "
                    "one of synthetic:N)")
    add_run_args(ap)
    return ap.parse_args(argv)


def start_service(root: Path) -> tuple[str, dict]:
    """Ray, Serve and the application started here, timed; the first healthz answered."""
    from ray import serve

    from clul_ray.runtime import ensure_ray
    from clul_ray.serve.app import APP_NAME, application
    from clul_ray.serve.client import call

    t: dict = {}
    t0 = time.perf_counter()
    ensure_ray()
    t["ray_start_s"] = time.perf_counter() - t0
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t1 = time.perf_counter()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    t["serve_start_s"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    serve.run(application(str(root), url), name=APP_NAME, route_prefix="/")
    t["application_start_s"] = time.perf_counter() - t1
    while True:
        try:
            code, _ = call(f"{url}/healthz")
        except Exception:  # noqa: BLE001 - the proxy not answering yet
            code = 0
        if code == 200:
            break
        time.sleep(0.02)
    t["start_to_healthy_s"] = time.perf_counter() - t0
    _, v = call(f"{url}/version")
    t["service_start_seconds"] = v.get("start_seconds", {})
    return url, t


def table(rows: list[tuple[str, str]]) -> None:
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{w}}  {v}", flush=True)


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    rng = np.random.default_rng(a.seed)
    with bench_run(a, "serve_fresh", load_avg_at_start=os.getloadavg()) as (work, res):
        root = work / "served"
        if a.root:
            shutil.copytree(a.root, root)
        else:
            res["train_s"] = train_layout(a, root, a.shards, a.slices, work / "a.yaml")
        ids = rng.permutation(train_ids(root))[:a.fresh_requests]
        url, res["start"] = start_service(root)
        log(f"serving {root} at {url}")
        print("start to healthy (s):")
        table([(k, f"{v:.2f}") for k, v in res["start"].items() if k.endswith("_s")]
              + [(f"  service: {k}", f"{v:.2f}")
                 for k, v in res["start"]["service_start_seconds"].items()])
        commit = request_to_commit(url, root, ids, "fresh")
        over = [r["overhead_s"] for r in commit["requests"]]
        res["fresh"] = {
            "n": len(over), "overhead_p50_s": pct(over, 50), "overhead_p90_s": pct(over, 90),
            "overhead_max_s": float(max(over)),
            "compute_p50_s": pct([r["retrain_compute_s"] for r in commit["requests"]], 50),
            "request_to_commit_p50_s": pct([r["request_to_commit_s"]
                                            for r in commit["requests"]], 50),
            "overheads_s": over, "median_split_s": commit["median_split_s"],
            "requests": commit["requests"]}
        f = res["fresh"]
        print(f"request-to-commit over compute, {f['n']} requests on a fresh service (s):")
        table([("p50", f"{f['overhead_p50_s']:.3f}"), ("p90", f"{f['overhead_p90_s']:.3f}"),
               ("max", f"{f['overhead_max_s']:.3f}"),
               ("first three", " ".join(f"{x:.3f}" for x in over[:3])),
               ("compute p50", f"{f['compute_p50_s']:.3f}"),
               ("request-to-commit p50", f"{f['request_to_commit_p50_s']:.3f}")])
        stop_serving()
    return res


if __name__ == "__main__":
    main()
