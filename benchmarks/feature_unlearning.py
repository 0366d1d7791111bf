"""Benchmark: feature unlearning by Wasserstein barycenters (``clul-ray feature-unlearn``).

Two parts:

``curve``: utility / independence over t ∈ {0, .25, .5, .75, 1} for the three methods on
``synthetic-fair:N`` (in memory; ``ot`` on the first ``--ot-rows`` rows), the table in
markdown and ``benchmarks/figures/feature_curve.png``.

``throughput``: fit + apply on N rows (``--rows 1000000 10000000``) written once as Parquet
(files of 1 M rows): the Ray Data path (``feature.apply``: two fit passes, then
``map_batches`` + ``write_parquet``) against a single-process numpy implementation of the
same map (read everything, exact per-group ``np.quantile`` / moments, ``np.interp`` /
affine map, write one Parquet file), each in a fresh process. Ray's start (``ray.init`` and
a first one-row read) is timed apart, not in fit. Peak memory: the driver's ``VmHWM``;
Ray's worker processes' ``VmHWM`` (the raylet's descendants, read from
/proc); and each process's resident memory once its imports are done (``import_mib``:
importing ``clul_ray`` loads torch, about 0.5 GiB, in the driver and in every worker).

    RAY_USAGE_STATS_ENABLED=0 .venv/bin/python benchmarks/feature_unlearning.py curve
    RAY_USAGE_STATS_ENABLED=0 .venv/bin/python benchmarks/feature_unlearning.py \\
        throughput --rows 1000000 10000000 --method quantile gaussian
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent


def peak_mib() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss can carry the parent's across
    fork + exec)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- curve ----------------------------------------------------------------------------------
def curve(a) -> None:
    from clul_ray.feature import report as rp
    from clul_ray.feature.synthetic import fair_block
    from clul_ray.feature.transform import fit_tables, table_features

    t = fair_block(0, a.n, a.seed, 3, 8)
    rows = []
    for method in ("quantile", "gaussian", "ot"):
        tt = t.slice(0, a.ot_rows) if method == "ot" else t
        x, y, z = table_features(tt), tt.column("label").to_numpy(), tt.column("z").to_numpy()
        t0 = time.perf_counter()
        tr = fit_tables([tt], "z", method)
        fit_s = time.perf_counter() - t0
        codes = tr.codes(tt.column("z"))
        for r in rp.curve(x, y, z, lambda s, tr=tr, x=x, codes=codes: tr.apply(x, codes, s)):
            rows.append({"method": method, "rows": tt.num_rows, **r, "fit_s": round(fit_s, 2)})
    paths = rp.write_curve(rows, Path(tempfile.mkdtemp()), f"synthetic-fair:{a.n} "
                           f"(ot: first {a.ot_rows} rows), 70/30 split")
    fig = HERE / "figures" / "feature_curve.png"
    shutil.copy(paths["png"], fig)
    print(rp.markdown(rows))
    print(json.dumps({"figure": str(fig), "fit_seconds": {r["method"]: r["fit_s"]
                                                         for r in rows}}))


# ---- throughput -------------------------------------------------------------------------
def make_parquet(n: int, folder: Path) -> None:
    """synthetic-fair:n as Parquet files of 1 M rows (id, label, x, z)."""
    from clul_ray.feature.synthetic import FAIR_BLOCK, fair_block

    folder.mkdir(parents=True)
    per_file = 1_000_000 // FAIR_BLOCK
    blocks = -(-n // FAIR_BLOCK)
    for f in range(-(-blocks // per_file)):
        with pq.ParquetWriter(folder / f"part-{f:03d}.parquet",
                              fair_block(0, 1, 0, 3, 8).schema) as w:
            for b in range(f * per_file, min(blocks, (f + 1) * per_file)):
                w.write_table(fair_block(b, n, 0, 3, 8))


def rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _worker_import_mib() -> float:
    import clul_ray.feature.transform  # noqa: F401  (what a map_batches worker imports)

    return rss_mib()


def ray_worker_peaks() -> list[float]:
    """VmHWM (MiB) of every descendant of this session's raylet."""
    import ray

    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    children: dict[int, list[int]] = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                ppid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(p))
    out, todo = [], list(children.get(raylet, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmHWM:"):
                    out.append(int(line.split()[1]) / 1024)
        except OSError:
            pass
    return sorted(out, reverse=True)


def run_ray(data: str, method: str, out: str) -> dict:
    import ray

    from clul_ray.data.sources import open_source
    from clul_ray.feature.apply import fit_dataset, write_dataset
    from clul_ray.runtime import ensure_ray

    t0 = time.perf_counter()
    ensure_ray(num_cpus=2)
    ds = open_source(f"parquet:{data}", group_column="z").ray_dataset()
    ds.limit(1).take_all()  # Ray and Ray Data's workers up: started once, not per fit
    start_s = time.perf_counter() - t0
    import_mib, worker_import = rss_mib(), ray.get(ray.remote(_worker_import_mib).remote())
    t0 = time.perf_counter()
    tr, _ = fit_dataset(ds, "z", method)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_dataset(ds, tr, 1.0, out)
    apply_s = time.perf_counter() - t0
    workers = ray_worker_peaks()
    ray.shutdown()
    return {"fit_s": fit_s, "apply_s": apply_s, "ray_start_s": start_s,
            "driver_import_mib": import_mib, "worker_import_mib": worker_import,
            "driver_peak_mib": peak_mib(), "worker_peak_mib_max": max(workers, default=0.0),
            "workers": len(workers)}


def run_numpy(data: str, method: str, out: str) -> dict:
    """The same map, one process, all rows in memory: exact group quantiles / moments."""
    from clul_ray.feature import fit

    import_mib = rss_mib()
    t0 = time.perf_counter()
    t = pads.dataset(data, format="parquet").to_table()
    col = t.column("x").combine_chunks()
    x = col.flatten().to_numpy().reshape(len(col), col.type.list_size)
    z = t.column("z").to_numpy()
    groups, codes = np.unique(z, return_inverse=True)
    p = np.bincount(codes) / len(z)
    if method == "quantile":
        u = np.linspace(0.0, 1.0, 1001)
        grids = np.stack([np.quantile(x[codes == g], u, axis=0) for g in range(len(groups))])
        bar = np.tensordot(p, grids, axes=1)
    else:
        means = np.stack([x[codes == g].mean(0, dtype=np.float64) for g in range(len(groups))])
        covs = np.stack([np.cov(x[codes == g].T, bias=True) for g in range(len(groups))])
        sbar, _ = fit.gaussian_barycenter(covs, p)
        maps = fit.gaussian_maps(covs, sbar)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    xh = np.empty(x.shape, np.float32)
    for g in range(len(groups)):
        m = codes == g
        if method == "quantile":
            for j in range(x.shape[1]):
                xp, inv = np.unique(grids[g, :, j], return_inverse=True)
                fp = np.bincount(inv, weights=u) / np.bincount(inv)
                xh[m, j] = np.interp(np.interp(x[m, j], xp, fp), u, bar[:, j])
        else:
            xh[m] = (x[m] - means[g]) @ maps[g].T + p @ means
    flat = pa.array(xh.reshape(-1))
    pq.write_table(pa.table({"id": t.column("id"), "label": t.column("label"),
                             "x": pa.FixedSizeListArray.from_arrays(flat, x.shape[1])}),
                   f"{out}.parquet")
    apply_s = time.perf_counter() - t0
    return {"fit_s": fit_s, "apply_s": apply_s, "driver_import_mib": import_mib,
            "driver_peak_mib": peak_mib()}


def throughput(a) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="feature-bench-", dir=a.tmp))
    try:
        for n in a.rows:
            data = tmp / f"data-{n}"
            t0 = time.perf_counter()
            make_parquet(n, data)
            gen = time.perf_counter() - t0
            for method in a.method:
                for impl in ("ray", "numpy"):
                    res = subprocess.run(
                        [sys.executable, __file__, "one", impl, str(data), method,
                         str(tmp / f"out-{n}-{method}-{impl}")],
                        capture_output=True, text=True, env={**os.environ,
                                                             "RAY_USAGE_STATS_ENABLED": "0"})
                    if res.returncode:
                        print(res.stderr[-3000:], file=sys.stderr)
                        raise SystemExit(res.returncode)
                    r = json.loads(res.stdout.strip().splitlines()[-1])
                    r |= {"rows": n, "method": method, "impl": impl,
                          "fit_rows_per_s": n / r["fit_s"], "apply_rows_per_s": n / r["apply_s"],
                          "make_parquet_s": gen}
                    print(json.dumps(r), flush=True)
                    shutil.rmtree(tmp / f"out-{n}-{method}-{impl}", ignore_errors=True)
                    Path(tmp / f"out-{n}-{method}-{impl}.parquet").unlink(missing_ok=True)
            shutil.rmtree(data)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("curve")
    c.add_argument("--n", type=int, default=20_000)
    c.add_argument("--ot-rows", type=int, default=3000)
    c.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("throughput")
    t.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    t.add_argument("--method", nargs="+", default=["quantile", "gaussian"])
    t.add_argument("--tmp", default=None)
    o = sub.add_parser("one")
    o.add_argument("impl")
    o.add_argument("data")
    o.add_argument("method")
    o.add_argument("out")
    a = ap.parse_args()
    if a.cmd == "curve":
        curve(a)
    elif a.cmd == "throughput":
        throughput(a)
    else:
        fn = run_ray if a.impl == "ray" else run_numpy
        print(json.dumps(fn(a.data, a.method, a.out)))


if __name__ == "__main__":
    main()
