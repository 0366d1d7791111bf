"""Benchmark: deletion and training commands at the compute limit -- whole CLI processes,
side by side in one run, on a running local cluster (``ray start --head``, every command
given ``--address``, as a submitted job is) and cold (embedded Ray, or none).

On one fresh root (default: ``synthetic:200000``, S=8, R=4, mlp, e0=4; lineage on, MLflow
in a SQLite file beside the root), each a subprocess of ``clul-ray ... --json`` timed from
outside:

1. ``train`` on the cluster (the root's warm shard workers start and keep its slices);
2. a one-id ``delete`` on the cluster for an id in each slice position r = 0..R-1 (of
   shards chosen so that no two share one): whole-process wall time against the retrain's
   compute (the slowest retrained shard's slice steps, as its worker measured them), and
   the ratio ``train`` wall / ``delete`` wall against the cost model's ratio for slice r
   (sample-epochs of the training over the cluster's CPUs, against those of the retrain);
3. ``add`` of new rows on the cluster against ``train`` of the grown layout from scratch
   (a copy of the root without its checkpoints), wall and sample-epochs, with the models
   compared bit for bit;
4. ``unlearn`` (finetune, one epoch) of 10 ids of one shard on the cluster: its whole
   process against the edit's compute on the warm worker;
5. cold one-id deletions on copies of the root, no ``--address``: as decided (one shard's
   work runs in this process) and forced onto an embedded Ray (``CLUL_RAY_IN_PROCESS_MAX=0``);
6. ``clul-ray lineage --json`` after all: every version has its MLflow run.

Every command's ``phases`` (its own account of its wall time) is kept; the table shows the
process wall time, what the command accounted for, and the named fixed costs.

    RAY_USAGE_STATS_ENABLED=0 .venv/bin/python benchmarks/compute_limit.py

Figures go to stdout and to ``benchmarks/out/compute_limit-*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from clul_ray.local_head import LocalHead

HERE = Path(__file__).resolve().parent
BIN = Path(os.environ.get("VIRTUAL_ENV", HERE.parent / ".venv")) / "bin"
OUT_DIR = HERE / "out"
console = Console(width=180)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="rows of the training dataset")
    ap.add_argument("--added", type=int, default=20_000, help="rows of the addition")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local cluster")
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--out", default=None)
    return ap.parse_args(argv)


def cli(args: list[str], env: dict) -> dict:
    """One ``clul-ray`` process: its JSON, and its wall time measured here; then
    ``clul-ray lineage --sync`` on its root (timed apart: it completes what the command's
    detached MLflow sync does, so the next command starts on a quiet machine)."""
    t0 = time.perf_counter()
    r = subprocess.run([str(BIN / "clul-ray"), *args, "--json"], capture_output=True,
                       text=True, env=env, timeout=3600)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"clul-ray {' '.join(args)} failed: {r.stderr.strip()[-600:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["process_wall"] = wall
    root = args[args.index("--root") + 1]
    t0 = time.perf_counter()
    s = subprocess.run([str(BIN / "clul-ray"), "lineage", "--root", root, "--sync",
                        "--json"], capture_output=True, text=True, env=env, timeout=900)
    out["lineage_sync_wall"] = time.perf_counter() - t0
    out["lineage_sync_ok"] = s.returncode == 0
    return out


def index(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from clul_ray.storage.store import Store

    return Store(str(root)).read_index()


def counts(root: Path, shards: int, slices: int) -> np.ndarray:
    _, shard, slc = index(root)
    c = np.zeros((shards, slices), np.int64)
    np.add.at(c, (shard, slc), 1)
    return c


def fixed(ph: dict) -> dict:
    """The phases that are not the training itself."""
    return {k: round(v, 3) for k, v in ph.items() if k not in ("train", "total")}


def row(what: str, r: dict, compute: float | None = None) -> dict:
    ph = r.get("phases", {})
    return {"what": what, "wall": r["process_wall"], "accounted": ph.get("total"),
            "compute": compute, "train_phase": ph.get("train"),
            "fixed": fixed(ph), "version": r.get("version"),
            "lineage_sync": r.get("lineage_sync_wall"), "lineage_ok": r.get("lineage_sync_ok")}


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="compute_limit-"))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db"}
    env.pop("RAY_ADDRESS", None)
    env.pop("CLUL_RAY_LINEAGE", None)
    from clul_ray.data.sources import open_source  # (the benchmark's own data)
    from clul_ray.sisa.decisions.plan import epochs_per_slice, sample_epochs

    t = pa.concat_tables(open_source(f"synthetic:{a.n + a.added}").iter_tables())
    ids = t.column("id").to_numpy()
    pq.write_table(t.filter(pa.array(ids < a.n)), work / "x.parquet")
    pq.write_table(t.filter(pa.array(ids >= a.n)), work / "a.parquet")
    root = work / "root"
    rows: list[dict] = []
    res: dict = {"machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs)",
                 "args": vars(a), "rows": rows}
    cluster = LocalHead(a.cpus, env, prefix="clul_bench_ray.", ray=str(BIN / "ray"))
    if not cluster.ok:
        raise SystemExit(f"ray start --head failed: {cluster.output[-600:]}")
    res["ray_start_head_seconds"] = cluster.start_seconds
    on = ["--address", cluster.address]
    try:
        console.print(f"cluster at {cluster.address}; training {root}")
        tr = cli(["train", "--root", str(root), "--dataset", f"parquet:{work / 'x.parquet'}",
                  "--shards", str(a.shards), "--slices", str(a.slices),
                  "--model", "mlp", "--epochs", str(a.epochs), *on], env)
        rows.append(row("train (cluster)", tr, tr["compute_seconds"].get("train")))
        eps = epochs_per_slice(a.epochs, a.slices)
        c = counts(root, a.shards, a.slices)
        train_work = sample_epochs(c, {k: 0 for k in range(a.shards)}, eps)
        parallel = min(a.shards, a.cpus)
        # keep a copy for the cold deletions (before the cluster's deletions change it)
        shutil.copytree(root, work / "cold")
        idx_ids, shard, slc = index(root)
        deletes = []
        for r in range(a.slices):
            k = (3 + r) % a.shards
            one = int(idx_ids[(shard == k) & (slc == r)][7])
            d = cli(["delete", "--root", str(root), "--ids", str(one), *on], env)
            compute = d["compute_seconds"].get("train", 0.0)
            work_r = sample_epochs(c, {k: r}, eps)
            model_ratio = (train_work / parallel) / work_r
            deletes.append({"slice": r, "shard": k, "id": one, "wall": d["process_wall"],
                            "compute": compute, "over_compute": d["process_wall"] - compute,
                            "ratio_to_train": tr["process_wall"] / d["process_wall"],
                            "cost_model_ratio": model_ratio,
                            "ratio_vs_model": tr["process_wall"] / d["process_wall"]
                            / model_ratio,
                            "phases": d["phases"], "compute_seconds": d["compute_seconds"],
                            "shas": {s["shard"]: s["model_sha256"] for s in d["per_shard"]}})
            rows.append(row(f"delete, id in slice {r} (cluster)", d, compute))
        res["deletes"] = deletes

        ad = cli(["add", "--root", str(root), "--dataset", f"parquet:{work / 'a.parquet'}",
                  *on], env)
        rows.append(row("add (cluster)", ad, ad["compute_seconds"].get("train")))
        shutil.copytree(root, work / "scratch", ignore=shutil.ignore_patterns("lock.json"))
        shutil.rmtree(work / "scratch" / "checkpoints")
        shutil.rmtree(work / "scratch" / "cache", ignore_errors=True)
        config = json.loads((root / "config.json").read_text())
        sc = cli(["train", "--root", str(work / "scratch"), "--config",
                  str(_yaml(work, config)), *on], env)
        rows.append(row("train grown layout from scratch (cluster)", sc,
                        sc["compute_seconds"].get("train")))
        cg = counts(root, a.shards, a.slices + 1)
        add_work = sample_epochs(cg, {k: a.slices for k in range(a.shards)}, eps)
        full_work = sample_epochs(cg, {k: 0 for k in range(a.shards)}, eps)
        res["add"] = {"wall": ad["process_wall"], "scratch_wall": sc["process_wall"],
                      "wall_ratio": sc["process_wall"] / ad["process_wall"],
                      "work_ratio": full_work / add_work,
                      "same_models": [s["model_sha256"] for s in ad["per_shard"]] ==
                      [s["model_sha256"] for s in sc["per_shard"]]}
        # an approximate unlearning of ids of one shard on the root's warm workers: the
        # edit (finetune, 1 epoch on the shard's retain rows) and its test predictions run
        # there; the command pays the rest
        gi, gs, _ = index(root)
        forget = work / "forget.txt"
        forget.write_text("\n".join(str(int(i)) for i in gi[gs == 5][:10]))
        un = cli(["unlearn", "--root", str(root), "--method", "finetune", "--forget",
                  f"ids:{forget}", "--param", "epochs=1", *on], env)
        edit = un["compute_seconds"].get("edit", 0.0)
        rows.append(row("unlearn, 10 ids of one shard (cluster)", un, edit))
        res["unlearn"] = {"wall": un["process_wall"], "edit": edit,
                          "predict": un["compute_seconds"].get("predict", 0.0),
                          "over_compute": un["process_wall"] - edit, "phases": un["phases"]}
        res["lineage_complete"] = lineage_complete(root, env)
        stop = subprocess.run([str(BIN / "clul-ray"), "workers", "stop", "--all", *on],
                              capture_output=True, text=True, env=env, timeout=300)
        res["workers_stopped"] = stop.stdout.strip()
    finally:
        cluster.kill()

    if not a.skip_cold:
        k, r = 3, 1
        one = int(idx_ids[(shard == k) & (slc == r)][11])
        cold = {}
        for name, extra in (("cold, as decided", {}),
                            ("cold, embedded Ray", {"CLUL_RAY_IN_PROCESS_MAX": "0"})):
            dst = work / f"cold-{len(cold)}"
            shutil.copytree(work / "cold", dst)
            d = cli(["delete", "--root", str(dst), "--ids", str(one)], {**env, **extra})
            compute = d["compute_seconds"].get("train", 0.0)
            cold[name] = {"wall": d["process_wall"], "compute": compute,
                          "over_compute": d["process_wall"] - compute,
                          "in_process": d.get("in_process"), "phases": d["phases"],
                          "shas": {s["shard"]: s["model_sha256"] for s in d["per_shard"]}}
            rows.append(row(f"delete, id in slice {r}, {name}", d, compute))
        res["cold"] = cold
        a_shas = [v["shas"] for v in cold.values()]
        res["cold_same_models"] = a_shas[0] == a_shas[1]

    table = Table("what", "wall s", "accounted s", "compute s", "train phase s",
                  "largest fixed costs (s)", "lineage --sync after (s)")
    for x in rows:
        top = sorted(x["fixed"].items(), key=lambda kv: -kv[1])[:6]
        table.add_row(x["what"], f"{x['wall']:.2f}", f"{x['accounted'] or 0:.2f}",
                      "" if x["compute"] is None else f"{x['compute']:.2f}",
                      f"{x['train_phase'] or 0:.2f}",
                      ", ".join(f"{k} {v:.2f}" for k, v in top),
                      f"{x['lineage_sync'] or 0:.2f} ({'ok' if x['lineage_ok'] else 'FAILED'})")
    console.print(table)
    t2 = Table("slice", "wall s", "compute s", "over compute s", "train/delete",
               "cost model", "ratio / model")
    for d in res["deletes"]:
        t2.add_row(str(d["slice"]), f"{d['wall']:.2f}", f"{d['compute']:.2f}",
                   f"{d['over_compute']:.2f}", f"{d['ratio_to_train']:.2f}",
                   f"{d['cost_model_ratio']:.2f}", f"{d['ratio_vs_model']:.2f}")
    console.print(t2)
    console.print(f"lineage after the syncs: {res['lineage_complete']}")
    u = res["unlearn"]
    console.print(f"unlearn: {u['wall']:.2f} s for {u['edit']:.2f} s of edit compute "
                  f"(+{u['over_compute']:.2f}; its test predictions {u['predict']:.2f})")
    console.print(f"add: wall ratio {res['add']['wall_ratio']:.2f} vs work ratio "
                  f"{res['add']['work_ratio']:.2f} (same models: {res['add']['same_models']})")
    for name, v in res.get("cold", {}).items():
        console.print(f"{name}: {v['wall']:.2f} s for {v['compute']:.2f} s of compute "
                      f"(+{v['over_compute']:.2f}; in process {v['in_process']})")
    OUT_DIR.mkdir(exist_ok=True)
    out = Path(a.out) if a.out else OUT_DIR / f"compute_limit-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(res, indent=1, default=str))
    console.print(f"wrote {out}")
    shutil.rmtree(work, ignore_errors=True)
    return res


def lineage_complete(root: Path, env: dict) -> dict:
    """Every version of the root has its finished MLflow run and registered model version,
    every committed request's certificate is logged (read from MLflow after the syncs)."""
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    from clul_ray.lineage.tracking import TAG, Tracking
    from clul_ray.sisa.records.ledger import Ledger
    from clul_ray.sisa.records.version import list_versions
    from clul_ray.storage.store import Store

    store = Store(str(root))
    t = Tracking(store)
    runs = t.version_runs()
    versions = [v.version for v in list_versions(store)]
    recorded = [n for n in versions if n in runs and
                runs[n].data.tags.get(f"{TAG}recorded") == "true"]
    certs = {r.data.tags.get(f"{TAG}certificate") for r in runs.values()}
    committed = [r.request_id for r in Ledger(store).requests() if r.state == "committed"]
    return {"versions": versions, "recorded": recorded,
            "model_versions": len(t.model_versions()),
            "certificates_logged": sorted(c for c in certs if c),
            "committed_requests": committed,
            "complete": recorded == versions and set(committed) <= certs}


def _yaml(work: Path, config: dict) -> Path:
    """The root's stored config as a pipeline YAML (train of the same layout)."""
    import yaml

    path = work / "grown.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


if __name__ == "__main__":
    main()
