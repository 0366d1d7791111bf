"""What ``serve_deletion.py`` and ``serve_fresh.py`` share: the root's options and its
training by a checkout's CLI (``synthetic:N``, mlp), the service started on it, the run's
scratch folder and JSON record, and the request-to-commit measurement (part 2 of
``serve_deletion.py``). Not a benchmark of its own."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from clul_ray.local_head import free_port

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "out"
AFTER = str(HERE.parent)


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def add_root_args(ap: argparse.ArgumentParser) -> None:
    """The served root's data and layout: ``synthetic:N``, S x R, the mlp's training."""
    ap.add_argument("--n", type=int, default=200_000, help="rows of synthetic:N")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=256)


def add_run_args(ap: argparse.ArgumentParser) -> None:
    """The run's seed, scratch folder and output file."""
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp dir, "
                    "removed afterwards)")
    ap.add_argument("--out", default=None)


@contextmanager
def bench_run(a, name: str, **machine) -> Iterator[tuple[Path, dict]]:
    """The run's scratch folder (``--work``, or a temp dir removed afterwards) and its
    record (``args``, ``started``, ``machine``, plus ``machine``'s extra keys), written to
    ``--out`` or ``benchmarks/out/NAME-TIME.json`` however the run ends."""
    work = Path(a.work or tempfile.mkdtemp(prefix=f"{name}-"))
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {"args": vars(a), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                           time.gmtime()),
                 "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                             "python": sys.version.split()[0], **machine}}
    OUT_DIR.mkdir(exist_ok=True)
    out_path = Path(a.out or OUT_DIR / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    try:
        yield work, res
    finally:
        out_path.write_text(json.dumps(res, indent=1, default=str))
        log(f"wrote {out_path}")
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


def pct(xs, q) -> float | None:
    return float(np.percentile(np.asarray(xs, dtype=float), q)) if len(xs) else None


def summary(xs) -> dict:
    return {"n": len(xs), "p50": pct(xs, 50), "p99": pct(xs, 99),
            "mean": float(np.mean(xs)) if len(xs) else None,
            "max": float(np.max(xs)) if len(xs) else None}


# ---- roots, trained by a given checkout's CLI ------------------------------------------
def config_yaml(a, shards: int, slices: int, path: Path) -> Path:
    path.write_text(
        f'data: {{dataset: "synthetic:{a.n}"}}\n'
        f"partition: {{shards: {shards}, slices: {slices}}}\n"
        f"train: {{model: mlp, model_args: {{hidden: {a.hidden}}}, epochs: {a.epochs}, "
        f"batch_size: {a.batch_size}}}\n"
        "compute: {cpus_per_shard: 1, threads_per_shard: 1}\n")
    return path


def cli(code: str, *args: str) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": code, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "clul_ray.cli", *args], env=env, cwd=code,
                       capture_output=True, text=True)
    took = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"clul-ray {' '.join(args)} ({code}): {p.stderr[-2000:]}")
    return took, p.stdout


def train_root(code: str, root: Path, cfg: Path) -> float:
    took, _ = cli(code, "train", "--root", str(root), "--config", str(cfg), "--json")
    return took


def train_ids(root: Path) -> np.ndarray:
    from clul_ray.storage.store import Store

    return Store(str(root)).read_index()[0]


def train_layout(a, root: Path, shards: int, slices: int, cfg: Path) -> float:
    """``root`` trained by this checkout's CLI at S x R = ``shards`` x ``slices`` (its
    config written to ``cfg``): the command's wall seconds."""
    log(f"training {root}")
    return train_root(AFTER, root, config_yaml(a, shards, slices, cfg))


# ---- the service -------------------------------------------------------------------------
def serve_root(root: Path) -> str:
    from clul_ray.runtime import ensure_ray
    from clul_ray.serve.app import start

    ensure_ray()
    port = free_port()
    start(str(root), port=port)
    return f"http://127.0.0.1:{port}"


def stop_serving() -> None:
    from ray import serve

    serve.shutdown()


def wait_idle(url: str, timeout: float = 1800.0) -> float:
    from clul_ray.serve.client import call

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        code, v = call(f"{url}/version")
        if code == 200 and not v["pending"] and not v.get("busy"):
            return time.perf_counter() - t0
        time.sleep(0.1)
    raise RuntimeError("the service did not drain")


def post_delete(url: str, i: int) -> tuple[float, float, dict]:
    """(sent, acknowledged) client times (time.time) and the 202 answer."""
    from clul_ray.serve.client import call

    t0 = time.time()
    code, out = call(f"{url}/delete", "POST", {"ids": [int(i)]})
    t1 = time.time()
    if code != 202:
        raise RuntimeError(f"/delete {i}: {code} {out}")
    return t0, t1, out


def request_to_commit(url: str, root: Path, ids: np.ndarray, layout: str) -> dict:
    """Part 2 of ``serve_deletion.py`` (and ``serve_fresh.py``'s measure): single-id
    requests one after another, each waited for (committed, then the service idle):
    ``committed - planned`` of its ledger history against its version's
    ``retrain_compute_seconds``, and where the rest went."""
    from clul_ray.serve.client import call
    from clul_ray.sisa.records.ledger import Ledger
    from clul_ray.sisa.records.version import read_version
    from clul_ray.storage.store import Store

    store = Store(str(root))
    rows = []
    for i in ids:
        _, _, ack = post_delete(url, i)
        rid = ack["request_id"]
        while True:
            code, st = call(f"{url}/requests/{rid}")
            if code == 200 and st["state"] == "committed":
                break
            time.sleep(0.02)
        wait_idle(url)  # the version's evaluation done; the next request finds it idle
        req = Ledger(store).request(rid)
        h = {x["state"]: x["time"] for x in req.history}
        v = read_version(store, int(st["version"]))
        tm = v.timings
        commit_s = h["committed"] - h["planned"]
        compute = tm.get("retrain_compute_seconds", 0.0)
        retrain_stage = h["retrained"] - h["checkpoints_discarded"]
        row = {"id": int(i), "request_id": rid, "affected": ack["affected"],
               "version": v.version, "history": req.history, "timings": tm,
               "exclusion_s": ack["exclusion_seconds"],
               "request_to_commit_s": commit_s, "retrain_compute_s": compute,
               "overhead_s": commit_s - compute,
               # after the commit, off the request's path (the version's metrics)
               "evaluate_s": tm.get("evaluate_seconds", 0.0),
               "split": {
                   "recording (receipt to ledger + exclusion)": ack["exclusion_seconds"],
                   "wake + RemoveRows": h["data_removed"] - h["planned"],
                   "DiscardCheckpoints": h["checkpoints_discarded"] - h["data_removed"],
                   "retrain wall (retrain_seconds)": tm.get("retrain_seconds", 0.0),
                   "rest of Retrain step (commit checks, version write)":
                       retrain_stage - tm.get("retrain_seconds", 0.0),
                   "Certify": h["committed"] - h["retrained"]}}
        rows.append(row)
        log(f"part 2 {layout}: id {int(i)} {ack['affected']}: commit {commit_s:.2f} s, "
            f"compute {compute:.2f} s, overhead {commit_s - compute:.2f} s")
    wait_idle(url)
    med = {k: float(np.median([r["split"][k] for r in rows])) for k in rows[0]["split"]}
    return {"layout": layout, "requests": rows,
            "median_request_to_commit_s": float(np.median([r["request_to_commit_s"]
                                                           for r in rows])),
            "median_compute_s": float(np.median([r["retrain_compute_s"] for r in rows])),
            "median_overhead_s": float(np.median([r["overhead_s"] for r in rows])),
            "median_split_s": med}
