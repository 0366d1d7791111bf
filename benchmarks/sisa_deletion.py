"""Benchmark: SISA exact unlearning on Ray -- full training vs. deletion, and Ray's overhead.

One run measures, on one fresh storage root:

1. full ensemble training (all shards, all slices, from scratch) under Ray;
2. deleting 1 id (``--single-requests`` separate requests of one id each);
3. deleting a batch of ids (``--batch-ids``, drawn at random) in one request;
4. the pure compute of retraining exactly the slice steps each deletion retrained, run
   in-process with ``trainer.train_slice`` (no Ray), on a copy of the root;

and derives (5) Ray's overhead per deletion and (6) the speed-up over full retraining,
next to SISA's expected cost (``plan.expected_cost``) and the cost the deletion plan
actually implied (sample-epochs of the retrained slice steps).

    RAY_USAGE_STATS_ENABLED=0 .venv/bin/python benchmarks/sisa_deletion.py          # defaults
    .venv/bin/python benchmarks/sisa_deletion.py --n 20000 --epochs 5 --hidden 128   # quick

Figures go to a rich table on stdout and to ``benchmarks/out/sisa_deletion-*.json``.
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
from rich.console import Console
from rich.table import Table

from clul_ray.config import PipelineConfig, make_config
from clul_ray.sisa.compute.trainer import train_slice
from clul_ray.sisa.decisions.plan import epochs_per_slice, expected_cost
from clul_ray.sisa.driver.pipeline import Pipeline
from clul_ray.sisa.records.version import ModelVersion

# Ray is imported lazily (by the pipeline), so this still applies to it.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

OUT_DIR = Path(__file__).resolve().parent / "out"
console = Console(width=200)


def log(msg: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {msg}", highlight=False)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--n", type=int, default=300_000, help="rows of synthetic:N (before the "
                    "test split)")
    ap.add_argument("--dim", type=int, default=32, help="features of the synthetic set")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=60, help="e0, epochs of an unsliced model; "
                    "each slice step trains ceil(2*e0/(R+1)) epochs")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=512, help="MLP hidden width")
    ap.add_argument("--depth", type=int, default=2, help="MLP hidden layers")
    ap.add_argument("--batch-ids", type=int, default=100, help="ids in the batched request")
    ap.add_argument("--single-requests", type=int, default=3,
                    help="how many one-id requests to time (each its own request)")
    ap.add_argument("--seed", type=int, default=0, help="partition seed and id draw seed")
    ap.add_argument("--root", default=None, help="storage root (default: a fresh temp dir, "
                    "removed afterwards); must not hold a pipeline yet")
    ap.add_argument("--keep", action="store_true", help="keep the temporary root")
    ap.add_argument("--out", default=None, help="JSON output path (default: "
                    "benchmarks/out/sisa_deletion-<time>.json)")
    return ap.parse_args(argv)


# ---- CPU accounting (is anything else using the machine?) --------------------------------
def _tree_cpu(root_pid: int) -> dict[tuple[int, int], float]:
    """{(pid, start tick): utime+stime seconds} of ``root_pid`` and its descendants (Ray's
    raylet, GCS and workers). Linux /proc; empty elsewhere."""
    if not os.path.isdir("/proc"):
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    parent, cpu = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2:].split()
        pid = int(d)
        parent[pid] = int(rest[1])
        cpu[pid] = ((pid, int(rest[19])), (int(rest[11]) + int(rest[12])) / tick)
    children: dict[int, list[int]] = {}
    for pid, pp in parent.items():
        children.setdefault(pp, []).append(pid)
    out, todo = {}, [root_pid]
    while todo:
        pid = todo.pop()
        if pid in cpu:
            key, sec = cpu[pid]
            out[key] = sec
        todo.extend(children.get(pid, []))
    return out


def _machine_busy() -> float | None:
    """Busy CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(v[:8]) - v[3] - v[4]) / tick  # all but idle and iowait


class CpuMeter:
    """Wall, machine-wide busy CPU, and this benchmark's own CPU over a phase.

    The machine may be shared: ``foreign_cpu`` (busy CPU seconds not spent by this process
    tree) says how much of the two cores other work took meanwhile. A thread samples the
    process tree twice a second so that Ray workers which exit during the phase still count
    (up to their last sample).
    """

    def __init__(self, every: float = 0.5) -> None:
        self.t, self.busy = time.perf_counter(), _machine_busy()
        self.first = _tree_cpu(os.getpid())
        self.last = dict(self.first)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.last.update(_tree_cpu(os.getpid()))

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        self.last.update(_tree_cpu(os.getpid()))
        wall = time.perf_counter() - self.t
        busy = _machine_busy()
        if busy is None or self.busy is None:
            return {"wall": wall}
        mb = busy - self.busy
        mo = sum(v - self.first.get(k, 0.0) for k, v in self.last.items())
        return {"wall": wall, "machine_cpu": mb, "own_cpu": mo,
                "foreign_cpu": max(0.0, mb - mo), "loadavg": os.getloadavg()}


# ---- the plan's own cost accounting ---------------------------------------------------
def plan_cost(index: tuple[np.ndarray, np.ndarray, np.ndarray], affected: dict[int, int],
              slices: int, eps: int) -> dict:
    """Sample-epochs the retraining of ``affected`` ({shard: earliest slice}) implies.

    Slice step r of a shard trains ``eps`` epochs on the union of slices 0..r, so a shard
    retrained from r0 costs eps * sum_{r>=r0} |rows in slices <= r|. ``index`` is the
    training index after the deletion (the rows the retrain actually saw).
    """
    _, shard, slc = index
    steps, sample_epochs, samples = [], 0, 0
    for k, r0 in sorted(affected.items()):
        sizes = np.bincount(slc[shard == k], minlength=slices)
        union = np.cumsum(sizes)
        samples += int(union[-1])
        for r in range(r0, slices):
            steps.append((k, r))
            sample_epochs += int(union[r]) * eps
    return {"steps": steps, "n_steps": len(steps), "sample_epochs": sample_epochs,
            "samples_in_affected_shards": samples}


def full_cost(index: tuple[np.ndarray, np.ndarray, np.ndarray], shards: int, slices: int,
              eps: int) -> int:
    return plan_cost(index, {k: 0 for k in range(shards)}, slices, eps)["sample_epochs"]


def lpt_makespan(chains: dict[int, float], workers: int) -> float:
    """Makespan of whole shard chains on ``workers`` CPUs (longest first, greedy)."""
    loads = [0.0] * max(1, workers)
    for t in sorted(chains.values(), reverse=True):
        loads[loads.index(min(loads))] += t
    return max(loads)


def ray_slots(cfg: PipelineConfig) -> int:
    """How many slice steps Ray can run at once: its CPUs / cpus_per_shard."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 1.0)
    per = cfg.compute.cpus_per_shard
    return max(1, int(cpus // per)) if per > 0 else 1


# ---- pure compute (no Ray) ------------------------------------------------------------
def pure_compute(root: str, cfg: PipelineConfig, steps: list[tuple[int, int]],
                 state: ModelVersion) -> dict:
    """Re-run exactly ``steps`` in this process with ``train_slice``, on a copy of ``root``.

    The copy holds the post-deletion data and checkpoints, so every step starts from the
    same checkpoint the Ray retrain started from; the pipeline's own root is not touched.
    Also checks that each retrained shard comes out bit-identical to the Ray retrain.
    """
    scratch = tempfile.mkdtemp(prefix="clul-bench-pure-")
    try:
        copy = os.path.join(scratch, "root")
        shutil.copytree(root, copy)
        p = Pipeline(copy)
        keys = {k: p.shard_keys(cfg, k) for k in sorted({k for k, _ in steps})}
        per_step, chains, last_sha = [], {}, {}
        t0 = time.perf_counter()
        for k, r in steps:
            res = train_slice(cfg, p.store, k, r, keys[k])
            per_step.append({"shard": k, "slice": r, "seconds": res.seconds,
                             "n_samples": res.n_samples})
            chains[k] = chains.get(k, 0.0) + res.seconds
            if r == cfg.partition.slices - 1:
                last_sha[k] = res.model_sha256
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ray_sha = {s.shard: s.model_sha256 for s in state.shards}
    return {"compute_seconds": sum(s["seconds"] for s in per_step), "wall_seconds": wall,
            "per_shard_seconds": {str(k): v for k, v in chains.items()},
            "per_step": per_step, "chains": chains,
            "bit_identical": all(ray_sha[k] == h for k, h in last_sha.items())}


# ---- one deletion request ---------------------------------------------------------------
def timed_delete(p: Pipeline, ids: list[int], cfg: PipelineConfig, eps: int,
                 n_before: int, label: str) -> dict:
    log(f"{label}: deleting {len(ids)} id(s)")
    meter = CpuMeter()
    out = p.delete(ids)
    cpu_delete = meter.stop()
    ws = out["wall_seconds"]
    affected = {int(k): int(v) for k, v in out["affected"].items()}
    index = p.store.read_index()
    pc = plan_cost(index, affected, cfg.partition.slices, eps)
    log(f"{label}: affected {affected}, retrain wall {ws['retrain_seconds']:.1f}s; "
        f"timing the same {pc['n_steps']} slice step(s) in-process")
    meter = CpuMeter()
    pure = pure_compute(p.store.root, cfg, pc["steps"], p.state)
    cpu_pure = meter.stop()
    chains = pure.pop("chains")
    workers = min(ray_slots(cfg), max(1, len(chains)))
    ideal = lpt_makespan(chains, workers)
    exp = expected_cost(n_before, cfg.partition.shards, cfg.partition.slices, len(ids),
                        cfg.train.epochs)
    return {
        "label": label, "ids": len(ids), "id_values": [int(i) for i in ids],
        "affected": affected,
        "retrained": out["retrained"], "delete_seconds": ws["delete"],
        "retrain_seconds": ws["retrain_seconds"],
        "retrain_compute_seconds_ray": ws["retrain_compute_seconds"],
        "per_shard_seconds_ray": {str(s["shard"]): s["train_seconds"] for s in out["per_shard"]
                                  if s["retrained_from"] is not None},
        "evaluate_seconds": ws["evaluate_seconds"],
        "other_seconds": ws["delete"] - ws["retrain_seconds"] - ws["evaluate_seconds"],
        "pure_compute_seconds": pure["compute_seconds"],
        "pure": pure,
        "parallel_workers": workers,
        "ideal_parallel_seconds": ideal,
        "ray_overhead_seconds": ws["retrain_seconds"] - ideal,
        "ray_overhead_vs_serial_seconds": ws["retrain_seconds"] - pure["compute_seconds"],
        "plan": {k: v for k, v in pc.items() if k != "steps"},
        "expected": exp,
        "ensemble_accuracy": out["ensemble_accuracy"],
        "samples_after": out["samples"],
        "cpu": {"delete": cpu_delete, "pure": cpu_pure},
    }


# ---- report -----------------------------------------------------------------------------
def fmt(x: float | None, nd: int = 1) -> str:
    return "-" if x is None else f"{x:,.{nd}f}"


def title(res: dict) -> str:
    cfg = PipelineConfig(**res["config"])  # the grouped config (or a flat one, from old runs)
    t, p = cfg.train, cfg.partition
    return (f"SISA deletion benchmark: {cfg.data.dataset}, S={p.shards}, R={p.slices}, "
            f"e0={t.epochs} (eps={res['epochs_per_slice']} per slice step), mlp "
            f"hidden={t.model_args['hidden']}x{t.model_args['depth']}, batch "
            f"{t.batch_size}, {res['machine']['cpus']} CPUs")


def rows(res: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the figures table (one column per operation)."""
    full, dels = res["full"], res["deletions"]
    header = ["figure", "full training"] + [
        f"{d['label']} ({d['ids']} id{'s' if d['ids'] > 1 else ''})" for d in dels]
    out: list[list[str]] = []

    def row(name: str, full_v: str, key) -> None:
        out.append([name, full_v, *[key(d) for d in dels]])

    row("training rows before", f"{full['samples']:,}", lambda d: f"{d['n_before']:,}")
    row("retrained {shard: from slice}", "all from 0", lambda d: str(d["affected"]))
    row("slice steps trained", str(full["steps"]), lambda d: str(d["plan"]["n_steps"]))
    row("partition s", fmt(full["partition_seconds"]), lambda d: "-")
    row("**train / retrain wall s (Ray)**", fmt(full["train_seconds"]),
        lambda d: fmt(d["retrain_seconds"]))
    row("in-task compute s, sum (Ray)", fmt(full["compute_seconds_ray"]),
        lambda d: fmt(d["retrain_compute_seconds_ray"]))
    row("pure compute s, sum (in-process, no Ray)", "-",
        lambda d: fmt(d["pure_compute_seconds"]))
    row("ideal wall s on Ray's CPUs (LPT of shard chains)",
        f"{fmt(full['ideal_parallel_seconds_ray_tasks'])} (of Ray in-task)",
        lambda d: f"{fmt(d['ideal_parallel_seconds'])} ({d['parallel_workers']} CPU)")
    row("**Ray overhead s = retrain wall - ideal**",
        fmt(full["train_seconds"] - full["ideal_parallel_seconds_ray_tasks"]),
        lambda d: fmt(d["ray_overhead_seconds"]))
    row("  retrain wall - pure compute sum", "-",
        lambda d: fmt(d["ray_overhead_vs_serial_seconds"]))
    row("  in-task sum (Ray) - pure compute sum", "-",
        lambda d: fmt(d["retrain_compute_seconds_ray"] - d["pure_compute_seconds"]))
    row("  retrain wall - in-task sum / parallel CPUs", "-",
        lambda d: fmt(d["retrain_seconds"] - d["retrain_compute_seconds_ray"]
                      / d["parallel_workers"]))
    row("evaluate s (test split)", fmt(full["evaluate_seconds"]),
        lambda d: fmt(d["evaluate_seconds"]))
    row("rest of the request s (plan, remove rows, ledger)", "-",
        lambda d: fmt(d["other_seconds"]))
    row("whole operation s", fmt(full["total_seconds"]), lambda d: fmt(d["delete_seconds"]))
    row("CPU s of this benchmark's processes (delete / pure)",
        fmt(full["cpu"]["train"].get("own_cpu")),
        lambda d: f"{fmt(d['cpu']['delete'].get('own_cpu'))} / "
                  f"{fmt(d['cpu']['pure'].get('own_cpu'))}")
    row("CPU s used by OTHER processes (delete / pure)",
        fmt(full["cpu"]["train"].get("foreign_cpu")),
        lambda d: f"{fmt(d['cpu']['delete'].get('foreign_cpu'))} / "
                  f"{fmt(d['cpu']['pure'].get('foreign_cpu'))}")
    row("retrain bit-identical in-process", "-",
        lambda d: "yes" if d["pure"]["bit_identical"] else "NO")
    row("sample-epochs, plan (actual)", f"{full['sample_epochs']:,}",
        lambda d: f"{d['plan']['sample_epochs']:,}")
    row("sample-epochs, formula (expected)", f"{full['formula_sample_epochs']:,.0f}",
        lambda d: (f"{d['expected']['one_request_sample_epochs']:,.0f}" if d["ids"] == 1
                   else "-"))
    row("samples in retrained shards, plan", f"{full['samples']:,}",
        lambda d: f"{d['plan']['samples_in_affected_shards']:,}")
    row("samples, formula N(1-(1-1/S)^K)-K", "-",
        lambda d: f"{d['expected']['batched_samples']:,.0f}")
    row("**speed-up, wall (train / retrain)**", "1", lambda d: f"{d['speedup']['wall']:.2f}x")
    row("speed-up, whole operation (incl. evaluate)", "1",
        lambda d: f"{d['speedup']['request']:.2f}x")
    row("speed-up, compute (Ray in-task sums)", "1",
        lambda d: f"{d['speedup']['compute']:.2f}x")
    row("speed-up, plan sample-epochs", "1", lambda d: f"{d['speedup']['plan']:.2f}x")
    row("speed-up, formula (expected)", "1",
        lambda d: f"{d['speedup']['formula']:.2f}x" if d["speedup"]["formula"] else "-")
    row("ensemble accuracy", fmt(full["ensemble_accuracy"], 4),
        lambda d: fmt(d["ensemble_accuracy"], 4))
    return header, out


def report(res: dict) -> None:
    header, body = rows(res)
    t = Table(title=title(res))
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i == 0 else "right")
    for r in body:
        t.add_row(*[c.replace("**", "") for c in r])
    console.print(t)
    if res.get("singles_mean"):
        console.print(summary_line(res), highlight=False)
    m = res["machine"]
    console.print(f"one-time costs outside the table: fresh python importing torch + trainer "
                  f"{m['fresh_process_import_seconds']:.1f}s; first slice step (2,000 rows) in a "
                  f"process {m['driver_warmup_seconds']:.2f}s (the pure-compute runs are "
                  f"timed after it)", highlight=False)


def singles_summary(res: dict) -> dict | None:
    """Means over the one-id requests (each hit a random slice; the formula is a mean)."""
    one = [d for d in res["deletions"] if d["ids"] == 1]
    if not one:
        return None
    full = res["full"]

    def mean(f) -> float:
        return float(np.mean([f(d) for d in one]))

    return {"requests": len(one),
            "retrain_seconds": mean(lambda d: d["retrain_seconds"]),
            "pure_compute_seconds": mean(lambda d: d["pure_compute_seconds"]),
            "ray_overhead_seconds": mean(lambda d: d["ray_overhead_seconds"]),
            "plan_sample_epochs": mean(lambda d: d["plan"]["sample_epochs"]),
            "formula_sample_epochs": one[0]["expected"]["one_request_sample_epochs"],
            "speedup_wall": full["train_seconds"] / mean(lambda d: d["retrain_seconds"]),
            "speedup_plan": full["sample_epochs"] / mean(lambda d: d["plan"]["sample_epochs"]),
            "speedup_formula": one[0]["speedup"]["formula"]}


def summary_line(res: dict) -> str:
    m = res.get("singles_mean")
    if not m:
        return ""
    return (f"Mean of {m['requests']} one-id requests: retrain wall {m['retrain_seconds']:.1f}s, "
            f"pure compute {m['pure_compute_seconds']:.1f}s, Ray overhead "
            f"{m['ray_overhead_seconds']:.1f}s; sample-epochs {m['plan_sample_epochs']:,.0f} "
            f"(formula {m['formula_sample_epochs']:,.0f}); speed-up wall "
            f"{m['speedup_wall']:.2f}x, plan {m['speedup_plan']:.2f}x, formula "
            f"{m['speedup_formula']:.2f}x.")


def markdown(res: dict) -> str:
    header, body = rows(res)
    lines = [f"**{title(res)}**", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    m = res["machine"]
    lines += ["", summary_line(res), "",
              f"Fresh python importing torch + trainer: {m['fresh_process_import_seconds']:.1f}s; "
              f"first slice step (2,000 rows) in a fresh process: "
              f"{m['driver_warmup_seconds']:.2f}s."]
    return "\n".join(lines) + "\n"


def warm_up(cfg: PipelineConfig) -> float:
    """Warm this process up for the pure-compute timings; returns the first step's seconds.

    The first slice step in a process pays one-time costs (torch's first optimizer step
    alone takes ~1 s, plus first Parquet reads and ``torch.save``). A tiny pipeline with
    the same model, trained in-process (backend local), goes through every such path once.
    """
    dataset = "synthetic:2000"
    if cfg.data.dataset.count(":") > 1:  # keep the same feature dimension
        dataset += ":" + cfg.data.dataset.split(":", 2)[2]
    tiny = cfg.updated(dataset=dataset, shards=1, slices=1, epochs=1, backend="local",
                       num_classes=None, input_shape=None)
    scratch = tempfile.mkdtemp(prefix="clul-bench-warm-")
    try:
        out = Pipeline(os.path.join(scratch, "root")).train(tiny)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out["per_shard"][0]["train_seconds"]


def fresh_import_seconds() -> float:
    """Start-up of a fresh python that imports torch and the trainer (what a new worker pays)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c",
                    "import torch, clul_ray.sisa.compute.trainer"], check=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    tmp = None
    if a.root is None:
        tmp = tempfile.mkdtemp(prefix="clul-bench-")
        root = os.path.join(tmp, "root")
    else:
        root = a.root
    dataset = f"synthetic:{a.n}" + (f":dim={a.dim}" if a.dim != 32 else "")
    cfg = make_config(dataset=dataset, shards=a.shards, slices=a.slices, seed=a.seed,
                      model="mlp", model_args={"hidden": a.hidden, "depth": a.depth},
                      epochs=a.epochs, batch_size=a.batch_size, backend="ray",
                      threads_per_shard=1, cpus_per_shard=1.0)
    eps = epochs_per_slice(cfg.train.epochs, cfg.partition.slices, cfg.train.epochs_per_slice)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "processor": platform.processor(), "python": sys.version.split()[0]}
    try:
        import ray
        import torch

        machine.update({"ray": ray.__version__, "torch": torch.__version__,
                        "cuda": torch.cuda.is_available()})
        from clul_ray.runtime import ensure_ray

        ensure_ray()  # the runs measured are on Ray (small data would else train in process)
        p = Pipeline(root)
        log(f"root {root}; training {dataset} S={cfg.partition.shards} "
            f"R={cfg.partition.slices} e0={cfg.train.epochs} (eps={eps}) "
            f"batch {cfg.train.batch_size}")
        meter = CpuMeter()
        tr = p.train(cfg)
        cpu_train = meter.stop()
        total = cpu_train["wall"]
        cfg = p.config
        ws = tr["wall_seconds"]
        log(f"trained {tr['samples']:,} rows in {ws['train_seconds']:.1f}s "
            f"(partition {ws['partition_seconds']:.1f}s, evaluate {ws['evaluate_seconds']:.1f}s)")
        index = p.store.read_index()
        n_train = len(index[0])
        per_shard = {s["shard"]: s["train_seconds"] for s in tr["per_shard"]}
        fc = full_cost(index, cfg.partition.shards, cfg.partition.slices, eps)
        full = {"samples": tr["samples"], "steps": cfg.partition.shards * cfg.partition.slices,
                "partition_seconds": ws["partition_seconds"],
                "train_seconds": ws["train_seconds"],
                "evaluate_seconds": ws["evaluate_seconds"], "total_seconds": total,
                "compute_seconds_ray": sum(per_shard.values()),
                "per_shard_seconds_ray": {str(k): v for k, v in per_shard.items()},
                "ideal_parallel_seconds_ray_tasks": lpt_makespan(
                    per_shard, min(cfg.partition.shards, ray_slots(cfg))),
                "sample_epochs": fc,
                "formula_sample_epochs": expected_cost(
                    n_train, cfg.partition.shards, cfg.partition.slices, 1,
                    cfg.train.epochs)["full_sample_epochs"],
                "ensemble_accuracy": tr["ensemble_accuracy"], "cpu": {"train": cpu_train}}

        machine["driver_warmup_seconds"] = warm_up(cfg)
        machine["fresh_process_import_seconds"] = fresh_import_seconds()

        # the index's row order follows the writers' order, so sort before drawing
        rng = np.random.default_rng([a.seed, 0xBE9C])
        draw = rng.choice(np.sort(index[0]), size=a.single_requests + a.batch_ids,
                          replace=False)
        requests = [(f"delete #{i + 1}", [int(draw[i])]) for i in range(a.single_requests)]
        if a.batch_ids:
            requests.append(("batch", [int(x) for x in draw[a.single_requests:]]))
        deletions = []
        for label, ids in requests:
            n_before = len(p.store.read_index()[0])
            d = timed_delete(p, ids, cfg, eps, n_before, label)
            d["n_before"] = n_before
            exp = d["expected"]
            one = exp["one_request_sample_epochs"] if len(ids) == 1 else None
            d["speedup"] = {
                "wall": full["train_seconds"] / d["retrain_seconds"],
                "request": full["total_seconds"] / d["delete_seconds"],
                "compute": full["compute_seconds_ray"] / d["retrain_compute_seconds_ray"],
                "pure_compute_vs_ray_full_compute":
                    full["compute_seconds_ray"] / d["pure_compute_seconds"],
                "plan": fc / d["plan"]["sample_epochs"],
                "formula": exp["full_sample_epochs"] / one if one else None,
                "formula_batched_unsliced": n_before / exp["batched_samples"]
                if exp["batched_samples"] > 0 else None,
            }
            deletions.append(d)
            log(f"{label}: request {d['delete_seconds']:.1f}s, retrain wall "
                f"{d['retrain_seconds']:.1f}s, pure compute {d['pure_compute_seconds']:.1f}s")

        res = {"command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
               "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine,
               "config": cfg.model_dump(), "epochs_per_slice": eps,
               "full": full, "deletions": deletions}
        res["singles_mean"] = singles_summary(res)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(a.out) if a.out else OUT_DIR / f"sisa_deletion-{stamp}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2, default=str))  # before the report: kept
        report(res)
        out.with_suffix(".md").write_text(markdown(res))
        log(f"wrote {out} and {out.with_suffix('.md').name}")
    finally:
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        finally:
            if tmp and not a.keep:
                shutil.rmtree(tmp, ignore_errors=True)
            elif tmp:
                log(f"kept {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
