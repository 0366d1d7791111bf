"""Benchmark: evaluation's own work with every shard's predictions cached, as the test
split grows (200 k -> 2 M rows): reading the cache files (Parquet bytes held in memory, so
disk speed is left out), aligning and stacking them (``merge``) and scoring. Best of 3.

    .venv/bin/python benchmarks/eval_growth.py [--rows 200000 2000000] [--shards 4]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import pyarrow.parquet as pq

from clul_ray.sisa.records.predcache import (
    ShardPredictions,
    from_table,
    merge,
    score_probs,
    to_table,
)


def measure(n: int, shards: int, classes: int = 10, repeats: int = 3) -> dict[str, float]:
    rng = np.random.default_rng(0)
    ids = rng.permutation(n * 3)[:n].astype(np.int64)
    files = []
    for _ in range(shards):
        p = ShardPredictions(ids, rng.random((n, classes), dtype=np.float32))
        buf = io.BytesIO()
        pq.write_table(to_table(p, "m"), buf, use_dictionary=False)
        files.append(buf.getvalue())
    labels = rng.integers(0, classes, n)
    best: dict[str, float] = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        cached = {k: from_table(pq.read_table(io.BytesIO(f)), "m", classes)
                  for k, f in enumerate(files)}
        t1 = time.perf_counter()
        probs = merge(list(range(shards)), cached, {}, ids)
        t2 = time.perf_counter()
        score_probs(labels, probs, list(range(shards)), "vote")
        t3 = time.perf_counter()
        for key, s in (("read", t1 - t0), ("merge", t2 - t1), ("score", t3 - t2),
                       ("all", t3 - t0)):
            best[key] = min(best.get(key, float("inf")), s)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[200_000, 2_000_000])
    ap.add_argument("--shards", type=int, default=4)
    a = ap.parse_args()
    out = {n: measure(n, a.shards) for n in a.rows}
    for n, m in out.items():
        print(n, {k: round(v, 3) for k, v in m.items()})
    first, last = a.rows[0], a.rows[-1]
    print(f"growth for {last / first:.0f}x rows:",
          {k: round(out[last][k] / out[first][k], 1) for k in out[first]})


if __name__ == "__main__":
    main()
