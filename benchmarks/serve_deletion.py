"""Benchmark: the deletion service (Ray Serve) -- exclusion, request-to-commit, the CLI's
``delete`` before and after the service's session, and predictions during deletions.

One run measures, on fresh storage roots of ``synthetic:N`` (mlp):

1. **time to exclusion**: ``--exclusion-requests`` single-id ``/delete`` requests sent one
   after another (ids drawn at random, so in every shard): the client's round trip and the
   server-side ``exclusion_seconds`` of each 202 answer; then the service drains;
2. **request-to-commit against the retrain's pure compute**: ``--commit-requests``
   single-id requests one after another, each waited for, at (S, R) = ``--shards`` x
   ``--slices`` and at ``--shards2`` x ``--slices2``: ``committed - recorded`` of the
   request's ledger history against ``retrain_compute_seconds`` of its version, split into
   recording, data steps, retrain, commit/evaluation, certify;
3. **the CLI's whole ``clul-ray delete``** (a subprocess, wall time), on a root trained by
   the code at ``--before`` (a checkout, e.g. commit ab4069c) and by this checkout, same
   data and layout (skipped without ``--before``);
4. **predictions during deletions**: ``--predict-threads`` clients POSTing ``/predict``
   (``--predict-rows`` rows each) for ``--predict-seconds``, once with no deletions and
   once while a thread sends one single-id deletion every ``--delete-every`` s; rows/s,
   latency, 503s, and two checks: every acknowledged request commits, and no answer sent
   after a request's acknowledgement and returned before its commit lists its shards.

    RAY_USAGE_STATS_ENABLED=0 .venv/bin/python benchmarks/serve_deletion.py \\
        --before /path/to/checkout-at-ab4069c

Figures go to stdout and to ``benchmarks/out/serve_deletion-*.json``. On a 2-core machine
the defaults take about 9.5 min (part 1's 100 requests take 4 min to drain), plus 3 min
for part 3 with ``--before``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "out"
AFTER = str(HERE.parent)


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="rows of synthetic:N")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--shards2", type=int, default=4, help="second layout of part 2")
    ap.add_argument("--slices2", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--exclusion-requests", type=int, default=100)
    ap.add_argument("--commit-requests", type=int, default=5)
    ap.add_argument("--cli-repeats", type=int, default=3)
    ap.add_argument("--before", default=None, help="a checkout of the code to compare the "
                    "CLI's delete against (part 3 is skipped without it)")
    ap.add_argument("--predict-threads", type=int, default=4)
    ap.add_argument("--predict-rows", type=int, default=16)
    ap.add_argument("--predict-seconds", type=float, default=20.0)
    ap.add_argument("--delete-every", type=float, default=0.5)
    ap.add_argument("--parts", default="1,2,3,4")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp dir, "
                    "removed afterwards)")
    ap.add_argument("--out", default=None)
    return ap.parse_args(argv)


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


# ---- part 3: the CLI's delete, before and after ----------------------------------------
def part3(a, work: Path, rng) -> dict:
    out = {}
    cfg = config_yaml(a, a.shards, a.slices, work / "cli.yaml")
    for name, code in (("before", a.before), ("after", AFTER)):
        root = work / f"cli-{name}"
        log(f"part 3: training {root} with {code}")
        train_s = train_root(code, root, cfg)
        ids = rng.choice(train_ids(root), a.cli_repeats, replace=False)
        runs = []
        for i in ids:
            took, stdout = cli(code, "delete", "--root", str(root), "--ids", str(int(i)),
                               "--json")
            res = json.loads(stdout)
            runs.append({"id": int(i), "wall_s": took, "retrained": res.get("retrained"),
                         "wall_seconds": res.get("wall_seconds")})
            log(f"part 3: {name} delete {int(i)}: {took:.2f} s {res.get('retrained')}")
        out[name] = {"code": code, "train_wall_s": train_s, "deletes": runs,
                     "median_wall_s": float(np.median([r["wall_s"] for r in runs]))}
    return out


# ---- the service -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def part1(a, url: str, ids: np.ndarray) -> dict:
    rtt, excl, shards, rids = [], [], [], []
    for i in ids:
        t0, t1, out = post_delete(url, i)
        rtt.append(t1 - t0)
        excl.append(out["exclusion_seconds"])
        shards.append([int(k) for k in out["affected"]])
        rids.append(out["request_id"])
    drain = wait_idle(url)
    return {"round_trip_s": summary(rtt), "exclusion_s": summary(excl),
            "shards_hit": sorted({k for s in shards for k in s}), "drain_s": drain,
            "raw": {"round_trip_s": rtt, "exclusion_s": excl, "shards": shards,
                    "request_ids": rids}}


def part2(a, url: str, root: Path, ids: np.ndarray, layout: str) -> dict:
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


def predict_load(a, url: str, seconds: float, deleter_ids: np.ndarray | None) -> dict:
    from clul_ray.serve.client import call

    rng = np.random.default_rng(a.seed + 7)
    body = {"rows": rng.normal(size=(a.predict_rows, 32)).round(4).tolist()}
    stop = threading.Event()
    answers: list[list] = [[] for _ in range(a.predict_threads)]
    deletions: list[dict] = []

    def client(k: int) -> None:
        while not stop.is_set():
            t0 = time.time()
            code, out = call(f"{url}/predict", "POST", body)
            t1 = time.time()
            if code == 200:
                answers[k].append((t0, t1, 200, out["version"], out["shards"]))
            else:
                answers[k].append((t0, t1, code, None, None))

    def deleter() -> None:
        j = 0
        while not stop.is_set() and j < len(deleter_ids):
            t0, t1, out = post_delete(url, deleter_ids[j])
            deletions.append({"id": int(deleter_ids[j]), "sent": t0, "ack": t1,
                              "request_id": out["request_id"],
                              "excluded": [int(k) for k in out["affected"]]})
            j += 1
            stop.wait(max(0.0, a.delete_every - (time.time() - t0)))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(a.predict_threads)]
    if deleter_ids is not None:
        threads.append(threading.Thread(target=deleter))
    t_start = time.time()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.time() - t_start
    drain = wait_idle(url)
    flat = [x for xs in answers for x in xs]
    ok = [x for x in flat if x[2] == 200]
    lat = [x[1] - x[0] for x in ok]
    out = {"seconds": elapsed, "answers": len(flat), "ok": len(ok),
           "status_counts": {str(c): sum(1 for x in flat if x[2] == c)
                             for c in sorted({x[2] for x in flat})},
           "rows_per_s": len(ok) * a.predict_rows / elapsed,
           "latency_s": summary(lat), "drain_s": drain,
           "versions_seen": sorted({x[3] for x in ok})}
    if deleter_ids is not None:
        for d in deletions:
            code, st = call(f"{url}/requests/{d['request_id']}")
            d["state"] = st.get("state")
            d["committed"] = next((p["time"] for p in st["timeline"]
                                   if p["phase"] == "committed"), None)
        lost = [d["request_id"] for d in deletions if d["state"] != "committed"]
        violations = []
        for d in deletions:
            bad = set(d["excluded"])
            for t0, t1, _, ver, shards in ok:
                if t0 > d["ack"] and t1 < d["committed"] and bad & set(shards):
                    violations.append({"request_id": d["request_id"], "sent": t0,
                                       "returned": t1, "version": ver, "shards": shards})
        out.update({"deletions": len(deletions), "not_committed": lost,
                    "answers_checked_against_a_pending_request": sum(
                        1 for t0, t1, *_ in ok for d in deletions
                        if t0 > d["ack"] and t1 < d["committed"]),
                    "violations": violations[:20], "n_violations": len(violations),
                    "commit_after_ack_s": summary([d["committed"] - d["ack"]
                                                   for d in deletions])})
        out["raw_deletions"] = deletions
    out["raw_answers"] = [list(x) for x in flat]
    return out


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    parts = {int(p) for p in a.parts.split(",")}
    rng = np.random.default_rng(a.seed)
    work = Path(a.work or tempfile.mkdtemp(prefix="serve-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {"args": vars(a), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                           time.gmtime()),
                 "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                             "python": sys.version.split()[0]}}
    OUT_DIR.mkdir(exist_ok=True)
    out_path = Path(a.out or OUT_DIR / f"serve_deletion-{time.strftime('%Y%m%d-%H%M%S')}.json")
    try:
        if 3 in parts and a.before:  # subprocesses only, before this process starts Ray
            res["cli_delete"] = part3(a, work, rng)
        if parts & {1, 2, 4}:
            root = work / "served"
            log(f"training {root}")
            res["train_s"] = train_root(AFTER, root, config_yaml(
                a, a.shards, a.slices, work / "a.yaml"))
            pool = rng.permutation(train_ids(root))
            url = serve_root(root)
            log(f"serving {root} at {url}")
            if 1 in parts:
                ids, pool = pool[:a.exclusion_requests], pool[a.exclusion_requests:]
                res["exclusion"] = part1(a, url, ids)
                shown = ("round_trip_s", "exclusion_s", "drain_s")
                log(f"part 1: {json.dumps({k: res['exclusion'][k] for k in shown})}")
            if 2 in parts:
                ids, pool = pool[:a.commit_requests], pool[a.commit_requests:]
                res["commit"] = [part2(a, url, root, ids, f"S={a.shards} R={a.slices}")]
            if 4 in parts:
                log("part 4: predictions, no deletions")
                quiet = predict_load(a, url, a.predict_seconds, None)
                log("part 4: predictions during deletions")
                n_del = int(a.predict_seconds / a.delete_every) + 5
                ids, pool = pool[:n_del], pool[n_del:]
                busy = predict_load(a, url, a.predict_seconds, ids)
                res["predict"] = {"no_deletions": quiet, "deletions": busy}
                for name, r in res["predict"].items():
                    log(f"part 4 {name}: {r['rows_per_s']:.0f} rows/s, "
                        f"p50 {r['latency_s']['p50']}, p99 {r['latency_s']['p99']}, "
                        f"codes {r['status_counts']}, violations {r.get('n_violations')}")
            stop_serving()
        if 2 in parts:
            root = work / "served2"
            log(f"training {root}")
            res["train2_s"] = train_root(AFTER, root, config_yaml(
                a, a.shards2, a.slices2, work / "b.yaml"))
            ids = rng.choice(train_ids(root), a.commit_requests, replace=False)
            url = serve_root(root)
            res.setdefault("commit", []).append(
                part2(a, url, root, ids, f"S={a.shards2} R={a.slices2}"))
            stop_serving()
    finally:
        out_path.write_text(json.dumps(res, indent=1, default=str))
        log(f"wrote {out_path}")
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    return res


if __name__ == "__main__":
    main()
