"""Benchmark: evaluation time per commit, with and without the prediction cache.

Trains a fresh root, deletes one training id (one shard retrains), runs ``evaluate``, and
prints each commit's ``evaluate_seconds`` (recorded by the pipeline) and the evaluate
command's wall time. It uses only the pipeline's API, so it runs on a checkout from before
the cache too (the "before" figures):

    RAY_USAGE_STATS_ENABLED=0 .venv/bin/python benchmarks/eval_cache.py \\
        --dataset synthetic:200000 --shards 8 --backend ray
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from clul_ray.config import make_config
from clul_ray.sisa.driver.pipeline import Pipeline
from clul_ray.sisa.records.version import list_versions


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--slices", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--backend", default="ray")
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="eval-cache-") + "/root"
    p = Pipeline(root)
    p.train(make_config(dataset=a.dataset, shards=a.shards, slices=a.slices, epochs=a.epochs,
                        batch_size=256, model_args={"hidden": 64}, backend=a.backend))
    ids, shard, _ = p.store.read_index()
    p.delete([int(ids[shard == 0][0])])
    t0 = time.perf_counter()
    p.evaluate()
    evaluate_cmd = time.perf_counter() - t0
    rows = [{"version": v.version, "operation": v.operation,
             "evaluate_seconds": round(v.timings.get("evaluate_seconds", float("nan")), 3),
             "test_samples": v.metrics.test_samples,
             "ensemble_accuracy": v.metrics.ensemble_accuracy}
            for v in list_versions(p.store)]
    print(json.dumps({"dataset": a.dataset, "shards": a.shards, "backend": a.backend,
                      "versions": rows, "evaluate_command_seconds": round(evaluate_cmd, 3)}))


if __name__ == "__main__":
    main()
