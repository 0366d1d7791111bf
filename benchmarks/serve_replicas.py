"""Benchmark: the deletion service with 1, 2 and 4 prediction replicas on a local Ray
cluster -- prediction throughput and p99 latency without and with a deletion stream, and
the time from a commit to every replica voting with the new model.

One run: trains a digits root (S=3, R=3, 4 epochs) on an embedded Ray in a subprocess,
starts a one-node ``ray start --head`` cluster of its own (own temp dir, free ports, token
auth), and for each replica count N in ``--replicas``:

1. ``--threads`` clients POST ``/predict`` (``--rows`` raw rows each) for ``--seconds``:
   answers/s, rows/s, p50/p99 latency, non-200 answers;
2. the same while a thread sends one single-id deletion every ``--delete-every`` s (ids of
   shards 0 and 1, so shard 2 always votes and a 503 would be a gap);
3. predictions go on until every request of part 2 has committed; for each request whose
   shards no later request kept excluded, from its commit (its ledger history) to the first
   answer of *every* replica voting with the new model of its shards.

With the board, every replica excludes a request's shards before ``/delete`` answers 202,
by construction (the writer publishes, then answers), so (3) is what is left to measure.
N = 1 is the single replica that owns and serves (no board, no lag to measure).

    flock /tmp/clul-cluster.lock .venv/bin/python benchmarks/serve_replicas.py

Figures go to stdout and ``benchmarks/out/serve_replicas-*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ["RAY_AUTH_MODE"] = "token"
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from clul_ray.local_head import LocalHead, free_port  # noqa: E402

TRAIN = """
import sys
from clul_ray import Pipeline
from clul_ray.config import make_config
Pipeline(sys.argv[1]).train(make_config(dataset="digits", shards=3, slices=3, epochs=4,
    batch_size=32, model_args={"hidden": 32}, test_fraction=0.2))
"""


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def load(url: str, seconds: float, threads: int, rows: list, stop_early=None) -> list:
    from clul_ray.errors import ClulError
    from clul_ray.serve.client import call

    out: list = []
    end = time.time() + seconds

    def run() -> None:
        while time.time() < end:
            t0 = time.time()
            try:
                code, body = call(f"{url}/predict", "POST", {"rows": rows}, timeout=30)
            except ClulError:
                code, body = 0, {}
            out.append((t0, time.time(), code, body))

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def summary(answers: list, seconds: float, rows: int) -> dict:
    ok = [b - a for a, b, c, _ in answers if c == 200]
    lat = np.asarray(ok) * 1000 if ok else np.zeros(1)
    return {"answers_per_s": round(len(ok) / seconds, 1),
            "rows_per_s": round(len(ok) * rows / seconds, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1),
            "non_200": len(answers) - len(ok)}


def deletions(url: str, ids: list[int], every: float, seconds: float) -> list[dict]:
    from clul_ray.serve.client import call

    acked, end = [], time.time() + seconds
    for d in ids:
        if time.time() >= end:
            break
        code, ack = call(f"{url}/delete", "POST", {"ids": [d]}, timeout=60)
        if code == 202:
            acked.append(ack)
        time.sleep(every)
    return acked


def all_committed(url: str, acked: list[dict]) -> bool:
    from clul_ray.serve.client import call

    return all(call(f"{url}/requests/{a['request_id']}")[1].get("state") == "committed"
               for a in acked)


def deleting(box: dict, *args) -> None:
    box["acked"] = deletions(*args)


def lags(url: str, root: str, acked: list[dict], answers: list, replicas: set) -> list:
    """Per committed request: commit (ledger) -> first answer of every replica voting with
    the new model of each affected shard."""
    from clul_ray.serve.client import call
    from clul_ray.sisa.records.version import read_version
    from clul_ray.storage.store import Store

    out = []
    sts = {a["request_id"]: call(f"{url}/requests/{a['request_id']}")[1] for a in acked}
    span = {r: ({h["phase"]: h["time"] for h in st.get("timeline", [])}, set(st["affected"]))
            for r, st in sts.items() if st.get("state") == "committed"}
    for a in acked:
        st = sts[a["request_id"]]
        if a["request_id"] not in span:
            continue
        t_commit = span[a["request_id"]][0]["committed"]
        if any(o != a["request_id"] and aff & set(a["affected"])
               and ph["excluded"] < t_commit < ph["committed"]
               for o, (ph, aff) in span.items()):
            continue  # its shard stays excluded by a later request: not a loading lag
        v = read_version(Store(root), st["version"])
        new = {str(s.shard): s.model_sha256 for s in v.trained_shards()}
        first = {}
        for t0, _, code, body in sorted(answers, key=lambda x: x[0]):
            if code == 200 and body["replica"] not in first and all(
                    body["models"].get(k) == new[k] for k in a["affected"]):
                if t0 >= t_commit:
                    first[body["replica"]] = t0
        if set(first) == replicas:
            out.append(max(first.values()) - t_commit)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", default="1,2,4")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--delete-every", type=float, default=1.5)
    a = ap.parse_args(argv)

    import ray
    from ray import serve
    from sklearn.datasets import load_digits

    from clul_ray.serve.app import start, stop
    from clul_ray.storage.store import Store

    work = Path(tempfile.mkdtemp(prefix="clul_bench_replicas."))
    base = work / "base"
    log(f"training {base}")
    subprocess.run([sys.executable, "-c", TRAIN, str(base)], check=True,
                   capture_output=True, env={**os.environ, "CLUL_RAY_LINEAGE": "0"})
    head = LocalHead(2, prefix="clul_bench_ray.")
    if not head.ok:
        raise SystemExit(f"ray start --head failed: {head.output[-600:]}")
    address = head.address
    log(f"cluster at {address} ({head.temp_dir})")
    rows = load_digits().data[:a.rows].tolist()
    res = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "shared": True}, "args": vars(a), "runs": []}
    try:
        os.environ["CLUL_RAY_LINEAGE"] = "0"
        ray.init(address=address, logging_level="ERROR")
        for n in [int(x) for x in a.replicas.split(",")]:
            root = work / f"r{n}"
            shutil.copytree(base, root)
            ids, shard, slc = Store(str(root)).read_index()
            pick = [int(ids[(shard == k) & (slc == 2)][i]) for i in range(40) for k in (0, 1)]
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            start(str(root), port=port, replicas=n)
            load(url, 3, 2, rows)  # warm
            quiet = load(url, a.seconds, a.threads, rows)
            box: dict = {}
            t = threading.Thread(target=deleting,
                                 args=(box, url, pick, a.delete_every, a.seconds))
            t.start()
            busy = load(url, a.seconds, a.threads, rows)
            t.join()
            acked = box["acked"]
            tail = []  # predictions go on until every request committed (for the lags)
            end = time.time() + 120
            while time.time() < end and not all_committed(url, acked):
                tail += load(url, 3, a.threads, rows)
            tail += load(url, 3, a.threads, rows)
            reps = {b["replica"] for *_, c, b in busy if c == 200 and "replica" in b}
            lag = lags(url, str(root), acked, busy + tail, reps) if n > 1 else []
            run = {"replicas": n, "quiet": summary(quiet, a.seconds, a.rows),
                   "deleting": summary(busy, a.seconds, a.rows),
                   "deletions_acked": len(acked), "replicas_answering": len(reps),
                   "commit_to_all_replicas_s": {
                       "n": len(lag), "median": round(float(np.median(lag)), 3) if lag else None,
                       "max": round(float(np.max(lag)), 3) if lag else None}}
            res["runs"].append(run)
            log(json.dumps(run))
            stop()
            serve.shutdown()
    finally:
        ray.shutdown()
        head.kill()
        shutil.rmtree(work, ignore_errors=True)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    path = out / f"serve_replicas-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=1))
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
