"""The ε-score audit: every method at its defaults and tuned, and the audit's scaling.

``methods`` (per forget scenario): ``clul-ray tune --method all`` (the gap objective,
``--num-samples`` trials per method), then ``clul-ray compare --methods all --audit N
--tuned`` — every method at its defaults and at its tuned params, N runs each, against N
retrained models — and prints the Markdown table (F, final score, RA/TA ratios, seconds).

``scaling``: one ``clul-ray audit`` (cold cache) on Ray started with 1, then 2, ... CPUs:
wall seconds, the models' summed seconds and the parallel efficiency (summed seconds /
(wall × CPUs)) of the model phase.

    python benchmarks/audit.py methods --models 64 --forget class:3 --forget random:0.1
    python benchmarks/audit.py scaling --models 16 --cpus 1 --cpus 2
    python benchmarks/audit.py null    (the estimator on two samples of one distribution)
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

CLI = [sys.executable, "-m", "clul_ray.cli"]


def run(args: list[str]) -> dict:
    t0 = time.perf_counter()
    p = subprocess.run([*CLI, *args, "--json"], capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{' '.join(args)} failed: {p.stderr.strip()[-2000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["_seconds"] = time.perf_counter() - t0
    return out


def methods(models: int, forgets: list[str], samples: int, work: Path) -> None:
    for forget in forgets:
        tag = forget.replace(":", "-")
        tuned = run(["tune", "--method", "all", "--forget", forget, "--num-samples",
                     str(samples), "--out", str(work / f"tune-{tag}")])
        cmp = run(["compare", "--forget", forget, "--methods", "all", "--audit", str(models),
                   "--tuned", str(work / f"tune-{tag}"), "--out", str(work / f"cmp-{tag}")])
        secs = {r["method"]: r["seconds"] for r in cmp["rows"]}
        print(f"\n### digits, forget {forget}: N = {models} (tune {tuned['_seconds']:.0f} s, "
              f"compare + audit {cmp['_seconds']:.0f} s)\n")
        print("| method | F | final score | median ε | FA | RA ratio | TA ratio | F1(test) "
              "| seconds / run |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in sorted(cmp["audit"], key=lambda r: -r["score"]):
            print(f"| {r['method']} | {r['F']:.3f} | {r['score']:.3f} | {r['eps_median']:.2f} "
                  f"| {r['FA']:.3f} | {r['RA_ratio']:.3f} | {r['TA_ratio']:.3f} | "
                  f"{r['F1']:.4f} | {secs.get(r['method'], r['seconds']):.2f} |")
        sys.stdout.flush()


SCALE = """
import json, sys, time, ray
from clul_ray.audit.run import run_audit
from clul_ray.audit.spec import AuditSpec
cpus, models, cache, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
r = run_audit(AuditSpec(method="finetune", models=models, cache=cache, null=False), out)
print(json.dumps({"wall": r["meta"]["wall_seconds"], "phases": r["meta"]["phase_seconds"],
                  "busy": models * (r["reference"]["seconds"] + r["rows"][0]["seconds"])}))
"""


def scaling(models: int, cpus: list[int], work: Path) -> None:
    print(f"\n| CPUs | wall s | models phase s | ε phase s | models' summed s | parallel "
          f"efficiency (models phase) |  (N = {models}, finetune, digits class:3)")
    print("|---:|---:|---:|---:|---:|---:|")
    for k in cpus:
        p = subprocess.run([sys.executable, "-c", SCALE, str(k), str(models),
                            str(work / f"cache-{k}"), str(work / f"scale-{k}")],
                           capture_output=True, text=True)
        if p.returncode:
            raise SystemExit(p.stderr[-2000:])
        r = json.loads(p.stdout.strip().splitlines()[-1])
        ph = r["phases"]
        print(f"| {k} | {r['wall']:.1f} | {ph['models']:.1f} | {ph['epsilon']:.1f} | "
              f"{r['busy']:.1f} | {r['busy'] / (ph['models'] * k):.2f} |")
        sys.stdout.flush()


def null(models: list[int], examples: int = 200) -> None:
    """The estimator on two samples of one distribution (and of a shifted one): what a
    perfect method scores at N."""
    import numpy as np

    from clul_ray.audit import epsilon as E

    print("\n| N | median ε, same distribution | F, same distribution | F, shifted by 1 sd |")
    print("|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for n in models:
        a, b = rng.normal(0, 1, (n, examples)), rng.normal(0, 1, (n, examples))
        eps = E.epsilons(a, b)
        shifted = E.epsilons(rng.normal(1, 1, (n, examples)), b)
        print(f"| {n} | {np.median(eps):.2f} | {E.forgetting_quality(eps, n):.3f} | "
              f"{E.forgetting_quality(shifted, n):.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["methods", "scaling", "null"])
    ap.add_argument("--models", type=int, default=64)
    ap.add_argument("--forget", action="append", default=None)
    ap.add_argument("--num-samples", type=int, default=8)
    ap.add_argument("--cpus", type=int, action="append", default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="clul-audit-bench-") as tmp:
        os.environ["CLUL_RAY_CACHE"] = str(Path(tmp) / "cache")  # a cold cache of references
        if a.what == "null":
            null(a.cpus or [8, 16, 64, 512])
        elif a.what == "methods":
            methods(a.models, a.forget or ["class:3", "random:0.1"], a.num_samples, Path(tmp))
        else:
            scaling(a.models, a.cpus or [1, 2], Path(tmp))


if __name__ == "__main__":
    main()
