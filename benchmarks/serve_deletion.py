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

Figures go to stdout and to ``benchmarks/out/serve_deletion-*.json`` (its run times in
``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from _serve_common import (  # noqa: E402
    AFTER,
    add_root_args,
    add_run_args,
    bench_run,
    cli,
    config_yaml,
    log,
    post_delete,
    request_to_commit,
    serve_root,
    stop_serving,
    summary,
    train_ids,
    train_layout,
    train_root,
    wait_idle,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_root_args(ap)
    ap.add_argument("--shards2", type=int, default=4, help="second layout of part 2")
    ap.add_argument("--slices2", type=int, default=20)
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
    add_run_args(ap)
    return ap.parse_args(argv)


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
    with bench_run(a, "serve_deletion") as (work, res):
        if 3 in parts and a.before:  # subprocesses only, before this process starts Ray
            res["cli_delete"] = part3(a, work, rng)
        if parts & {1, 2, 4}:
            root = work / "served"
            res["train_s"] = train_layout(a, root, a.shards, a.slices, work / "a.yaml")
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
                res["commit"] = [request_to_commit(url, root, ids,
                                                   f"S={a.shards} R={a.slices}")]
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
            res["train2_s"] = train_layout(a, root, a.shards2, a.slices2, work / "b.yaml")
            ids = rng.choice(train_ids(root), a.commit_requests, replace=False)
            url = serve_root(root)
            res.setdefault("commit", []).append(
                request_to_commit(url, root, ids, f"S={a.shards2} R={a.slices2}"))
            stop_serving()
    return res


if __name__ == "__main__":
    main()
