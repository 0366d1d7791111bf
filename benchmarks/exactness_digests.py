"""The exactness digests of a fixed CLI run (the one every refactoring is checked against):
``train --dataset digits --shards 3 --slices 3 --epochs 4``, then ``delete --ids
5,17,101,333,1200``, then ``unlearn --method neggrad --forget random:0.02``. Prints each
command's per-shard model digests and accuracy as JSON; two trees give the same lines when
a change keeps every model bit for bit.

    python benchmarks/exactness_digests.py [--tree PATH]   # PATH: another checkout's root
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RUN = [["train", "--dataset", "digits", "--shards", "3", "--slices", "3", "--epochs", "4"],
       ["delete", "--ids", "5,17,101,333,1200"],
       ["unlearn", "--method", "neggrad", "--forget", "random:0.02"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", default=str(Path(__file__).resolve().parents[1]))
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": args.tree, "CLUL_RAY_LINEAGE": "0",
           "RAY_USAGE_STATS_ENABLED": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        root = str(Path(tmp) / "root")
        for cmd in RUN:
            res = subprocess.run([sys.executable, "-m", "clul_ray.cli", *cmd, "--root", root,
                                  "--json"], env=env, capture_output=True, text=True,
                                 check=False)
            if res.returncode:
                sys.exit(f"{cmd[0]} failed: {res.stderr.strip().splitlines()[-1:]}")
            out = json.loads(res.stdout)
            print(json.dumps({"command": cmd[0],
                              "models": [s["model_sha256"] for s in out["per_shard"]],
                              "affected": out.get("affected"),
                              "accuracy": out.get("ensemble_accuracy")}))


if __name__ == "__main__":
    main()
