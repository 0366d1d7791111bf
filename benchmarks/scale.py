"""Benchmark: the data path at scale, against one pyarrow process and a plain torch loop.

For each row count (synthetic, 32 float32 features, 10 classes) it runs, each stage in a
fresh process whose peak RSS (and its Ray processes' peaks, from ``/proc/PID/status``
``VmHWM``, sampled every 0.2 s) is recorded:

- ``ref``: one Python process with pyarrow: generates the same rows, hashes ids to (test,
  shard, slice) with the same pure functions and writes hive-partitioned Parquet (one
  streamed ``pyarrow.dataset.write_dataset``), plus the test split and the index;
- ``before`` (with ``--before DIR``, a checkout of the old code): that code's partitioning
  alone (Ray started first, not counted);
- ``train``: ``clul-ray train --shards 4 --slices 4 --epochs 1 --json`` (its breakdown:
  Ray start, partition, train, evaluate, commit);
- ``delete``: ``clul-ray delete --ids ID`` of one training id (one shard retrains from the
  id's slice; evaluation predicts with that shard only, the others come from the cache);
- ``evaluate``: ``clul-ray evaluate`` afterwards (every shard cached);
- ``torch``: a plain torch loop in one process: one epoch over the same training rows
  (same MLP, Adam, batch 64, one thread), then one prediction of the test split.

    RAY_USAGE_STATS_ENABLED=0 CLUL_RAY_LINEAGE=0 .venv/bin/python benchmarks/scale.py \\
        --rows 10000 100000 1000000 10000000 --before /tmp/before

Writes ``benchmarks/scale.json`` and the log-log plot ``benchmarks/scale.png``.
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARDS, SLICES = 4, 4


# ---- stages run in their own process --------------------------------------------------
def stage_ref(n: int, out: str) -> dict:
    """One process: generate every block, place the rows, write hive-partitioned Parquet
    (one ``write_dataset`` of the whole table: fastest in one process, memory ~ dataset)."""
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    from clul_ray.data.partition import assign, is_test
    from clul_ray.data.sources import SYNTHETIC_BLOCK, synthetic_block

    t0 = time.perf_counter()
    t = pa.concat_tables([synthetic_block(b, n, 0, 10, 32)
                          for b in range(-(-n // SYNTHETIC_BLOCK))])
    ids = t.column("id").to_numpy()
    shard, slc = assign(0, ids, SHARDS, SLICES)
    test = is_test(0, ids, 0.2)
    os.makedirs(f"{out}/test", exist_ok=True)
    os.makedirs(f"{out}/index", exist_ok=True)
    # no dictionaries, as clul_ray's writers (2.4x faster for float columns)
    pq.write_table(t.filter(pa.array(test)), f"{out}/test/part-0.parquet", use_dictionary=False)
    tr = t.append_column("shard", pa.array(shard)).append_column("slice", pa.array(slc)) \
        .filter(pa.array(~test))
    del t
    pq.write_table(tr.select(["id", "shard", "slice"]), f"{out}/index/part-0.parquet",
                   use_dictionary=False)
    pads.write_dataset(tr, f"{out}/train", format="parquet", partitioning=["shard", "slice"],
                       partitioning_flavor="hive", existing_data_behavior="overwrite_or_ignore",
                       file_options=pads.ParquetFileFormat().make_write_options(
                           use_dictionary=False))
    files = sum(1 for _ in Path(out).rglob("*.parquet"))
    return {"seconds": time.perf_counter() - t0, "files": files}


def stage_partition(n: int, out: str) -> dict:
    """This checkout's partitioning alone (the old code's for ``before``), Ray started first."""
    from clul_ray.config import make_config
    from clul_ray.data.sources import open_source
    from clul_ray.runtime import ensure_ray
    from clul_ray.sisa.compute.partitioning import partition
    from clul_ray.storage.store import Store

    src = open_source(f"synthetic:{n}")
    cfg = make_config(dataset=f"synthetic:{n}", shards=SHARDS, slices=SLICES, epochs=1
                      ).updated(num_classes=10, input_shape=[32])
    t0 = time.perf_counter()
    ensure_ray()
    t1 = time.perf_counter()
    partition(Store(out), cfg, src, lambda *a: None, True)
    files = sum(1 for _ in Path(out).rglob("*.parquet"))
    return {"ray_start_seconds": t1 - t0, "seconds": time.perf_counter() - t1, "files": files}


def stage_torch(n: int, out: str) -> dict:
    """A plain torch loop: one epoch over the training rows, one test-split prediction."""
    import numpy as np
    import torch

    from clul_ray.data.partition import is_test
    from clul_ray.data.sources import SYNTHETIC_BLOCK, features, synthetic_block
    from clul_ray.models import build_model

    torch.set_num_threads(1)  # as a shard worker; more threads only slow batches of 64
    t0 = time.perf_counter()
    xs, ys, xt = [], [], []
    for b in range(-(-n // SYNTHETIC_BLOCK)):
        t = synthetic_block(b, n, 0, 10, 32)
        test = is_test(0, t.column("id").to_numpy(), 0.2)
        x = features(t)
        xs.append(x[~test])
        ys.append(t.column("label").to_numpy()[~test])
        xt.append(x[test])
    x, y = torch.tensor(np.concatenate(xs)), torch.tensor(np.concatenate(ys))
    t1 = time.perf_counter()
    model = build_model("mlp", [32], 10, {})
    model.norm.fit(x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    model.train()
    for i in range(0, len(y), 64):
        idx = perm[i:i + 64]
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x[idx]), y[idx]).backward()
        opt.step()
    t2 = time.perf_counter()
    model.eval()
    with torch.no_grad():
        for chunk in np.array_split(np.concatenate(xt), max(1, len(xt))):
            model(torch.tensor(chunk)).argmax(1)
    return {"load_seconds": t1 - t0, "train_seconds": t2 - t1,
            "predict_seconds": time.perf_counter() - t2, "train_rows": len(y)}


STAGES = {"ref": stage_ref, "partition": stage_partition, "torch": stage_torch}


# ---- the driver ------------------------------------------------------------------------
def _tree_hwm(root: int) -> dict[int, tuple[int, str]]:
    """VmHWM (kB) and command line of ``root`` and its descendants."""
    parent, out = {}, {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1]
                                     .split()[1])
            except (OSError, IndexError, ValueError):
                pass
    keep = {root}
    changed = True
    while changed:
        changed = False
        for pid, pp in parent.items():
            if pp in keep and pid not in keep:
                keep.add(pid)
                changed = True
    for pid in keep:
        try:
            hwm = next(int(line.split()[1]) for line in
                       Path(f"/proc/{pid}/status").read_text().splitlines()
                       if line.startswith("VmHWM"))
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
            out[pid] = (hwm, cmd)
        except (OSError, StopIteration):
            pass
    return out


def run(cmd: list[str], env: dict | None = None, cwd: str | Path = REPO) -> tuple[dict, dict]:
    """Run ``cmd``, parse the last JSON object it prints; peak RSS (MiB) of the process, of
    the largest Ray worker and of the largest other Ray process."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, cwd=cwd)
    peaks: dict[int, tuple[int, str]] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid, (hwm, cmdline) in _tree_hwm(proc.pid).items():
                if hwm >= peaks.get(pid, (0, ""))[0]:
                    peaks[pid] = (hwm, cmdline)
            stop.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    text = stdout[stdout.index("{"):stdout.rindex("}") + 1]
    driver = peaks.get(proc.pid, (0, ""))[0]
    workers = [h for p, (h, c) in peaks.items() if p != proc.pid and
               ("ray::" in c or "default_worker" in c)]
    system = [h for p, (h, c) in peaks.items() if p != proc.pid and not
              ("ray::" in c or "default_worker" in c)]
    mem = {"process_mib": driver / 1024, "ray_worker_max_mib": max(workers, default=0) / 1024,
           "ray_system_max_mib": max(system, default=0) / 1024, "ray_workers": len(workers)}
    return {**json.loads(text), "process_wall_seconds": wall}, mem


def stage_cmd(stage: str, n: int, out: str, pythonpath: str) -> tuple[dict, dict]:
    return run([sys.executable, __file__, "--stage", stage, "--n", str(n), "--out", out],
               {"PYTHONPATH": pythonpath}, cwd=pythonpath)  # Ray workers import from cwd


def cli(*args: str) -> tuple[dict, dict]:
    return run([sys.executable, "-m", "clul_ray.cli", *args, "--json"],
               {"PYTHONPATH": str(REPO)})


def one_size(n: int, before: str | None, tmp: str, partition_only: bool = False) -> dict:
    row: dict = {"rows": n}
    d = f"{tmp}/n{n}"
    row["ref"], row["ref_mem"] = stage_cmd("ref", n, f"{d}/ref", str(REPO))
    row["after"], row["after_mem"] = stage_cmd("partition", n, f"{d}/after", str(REPO))
    if before:
        row["before"], row["before_mem"] = stage_cmd("partition", n, f"{d}/before", before)
    shutil.rmtree(d, ignore_errors=True)
    if partition_only:
        return row
    root = f"{d}/root"
    row["train"], row["train_mem"] = cli("train", "--root", root, "--dataset",
                                         f"synthetic:{n}", "--shards", str(SHARDS),
                                         "--slices", str(SLICES), "--epochs", "1")
    row["files"] = sum(1 for p in ("data", "index") for _ in Path(root, p).rglob("*.parquet"))
    import pyarrow.parquet as pq

    first = sorted(Path(root, "index").glob("*.parquet"))[0]
    victim = int(pq.read_table(first, columns=["id"]).column("id")[0].as_py())
    row["delete"], row["delete_mem"] = cli("delete", "--root", root, "--ids", str(victim))
    row["evaluate"], row["evaluate_mem"] = cli("evaluate", "--root", root)
    shutil.rmtree(d, ignore_errors=True)
    row["torch"], row["torch_mem"] = stage_cmd("torch", n, f"{d}/torch", str(REPO))
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["rows"] for r in rows]
    series = {
        "partition: one pyarrow process": [r["ref"]["seconds"] for r in rows],
        "partition: clul_ray": [r["after"]["seconds"] if "after" in r else
                                r["train"]["wall_seconds"]["partition_seconds"] for r in rows],
        "train 1 epoch (4x4 SISA): clul_ray": [r["train"]["wall_seconds"]["train_seconds"]
                                               for r in rows],
        "train 1 epoch: plain torch loop": [r["torch"]["train_seconds"] for r in rows],
        "evaluate after train (all shards)": [r["train"]["wall_seconds"]["evaluate_seconds"]
                                              for r in rows],
        "delete one id (whole command)": [r["delete"]["process_wall_seconds"] for r in rows],
    }
    if all("before" in r for r in rows):
        series["partition: clul_ray before (Ray Data)"] = [r["before"]["seconds"] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for label, ys in series.items():
        ax.loglog(n, ys, marker="o", label=label)
    ax.loglog(n, [n_ / n[-1] * series["partition: one pyarrow process"][-1] for n_ in n],
              ls=":", color="grey", label="linear in rows")
    ax.set_xlabel("rows (synthetic, 32 float32 features)")
    ax.set_ylabel("seconds")
    ax.set_title(f"clul_ray at scale ({os.cpu_count()} cores, shared)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(rows: list[dict]) -> str:
    """The markdown table of RESULTS.md."""
    def f(x: float) -> str:
        return f"{x:,.2f}" if x < 10 else f"{x:,.1f}"

    def rate(n: float, sec: float) -> str:
        return f"{n / sec / 1e3:,.0f} k" if sec > 0 else "-"

    head = ["figure"] + [f"{r['rows']:,} rows" for r in rows]
    lines = []

    def add(name: str, fn) -> None:
        vals = []
        for r in rows:
            try:
                vals.append(fn(r))
            except (KeyError, TypeError, ZeroDivisionError):
                vals.append("-")
        lines.append([name] + vals)

    w = lambda r: r["train"]["wall_seconds"]  # noqa: E731
    add("partition, one pyarrow process: s", lambda r: f(r["ref"]["seconds"]))
    add("  rows/s", lambda r: rate(r["rows"], r["ref"]["seconds"]))
    add("  files / peak RSS MiB", lambda r:
        f"{r['ref']['files']} / {r['ref_mem']['process_mib']:.0f}")
    for key, title in (("before", "partition, before (Ray Data; Ray start not counted): s"),
                       ("after", "**partition, clul_ray now (alone; Ray start not counted): "
                                 "s**")):
        add(title, lambda r, k=key: f(r[k]["seconds"]))
        add("  rows/s", lambda r, k=key: rate(r["rows"], r[k]["seconds"]))
        add("  files / peak RSS MiB driver, largest Ray worker", lambda r, k=key:
            f"{r[k]['files']} / {r[f'{k}_mem']['process_mib']:.0f}, "
            f"{r[f'{k}_mem']['ray_worker_max_mib']:.0f}")
    add("**speed vs one pyarrow process (ref s / clul s)**",
        lambda r: f"{r['ref']['seconds'] / r['after']['seconds']:.2f}x")
    add("  speed vs before (before s / clul s)",
        lambda r: f"{r['before']['seconds'] / r['after']['seconds']:.1f}x")
    add("  before vs one pyarrow process", lambda r:
        f"{r['ref']['seconds'] / r['before']['seconds']:.2f}x")
    add("train command: Ray start s", lambda r: f(w(r).get("ray_start_seconds", 0.0)))
    add("train command: partition s / files / in process", lambda r:
        f"{f(w(r)['partition_seconds'])} / {r['files']} / "
        f"{'yes' if r['train']['in_process'] else 'no'}")
    add("train 1 epoch, SISA 4x4 (2.5 sample-epochs/row): s", lambda r: f(w(r)["train_seconds"]))
    add("  sample-epochs/s", lambda r: rate(2.5 * r["train"]["samples"], w(r)["train_seconds"]))
    add("train 1 epoch, plain torch loop (1 thread): s",
        lambda r: f(r["torch"]["train_seconds"]))
    add("  samples/s / peak RSS MiB", lambda r:
        f"{rate(r['torch']['train_rows'], r['torch']['train_seconds'])} / "
        f"{r['torch_mem']['process_mib']:.0f}")
    add("evaluate after train (all 4 shards predict): s", lambda r: f(w(r)["evaluate_seconds"]))
    add("  plain torch: predict the test split once: s",
        lambda r: f(r["torch"]["predict_seconds"]))
    add("delete one id: whole command s", lambda r: f(r["delete"]["process_wall_seconds"]))
    add("  retrain s / retrained {shard: from slice}", lambda r:
        f"{f(r['delete']['wall_seconds']['retrain_seconds'])} / {r['delete']['retrained']}")
    add("  its evaluate (1 shard predicts, 3 cached): s",
        lambda r: f(r["delete"]["wall_seconds"]["evaluate_seconds"]))
    add("  peak RSS MiB driver, largest Ray worker", lambda r:
        f"{r['delete_mem']['process_mib']:.0f}, {r['delete_mem']['ray_worker_max_mib']:.0f}")
    add("evaluate command afterwards (all cached): s",
        lambda r: f(r["evaluate"]["wall_seconds"]["evaluate"]))
    out = ["| " + " | ".join(head) + " |", "|---" + "|---:" * len(rows) + "|"]
    out += ["| " + " | ".join(str(c) for c in line) + " |" for line in lines]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--before", help="a checkout of the old code (its partitioning is timed)")
    ap.add_argument("--before-max", type=int, default=10**12, help="largest n for --before")
    ap.add_argument("--stage", choices=sorted(STAGES))
    ap.add_argument("--n", type=int)
    ap.add_argument("--out")
    ap.add_argument("--json", default=str(HERE / "scale.json"))
    ap.add_argument("--table", action="store_true", help="print the table of --json, plot")
    ap.add_argument("--partition-only", action="store_true",
                    help="only the partitioners (ref, this checkout's, --before), back to back")
    ap.add_argument("--merge", help="a JSON whose figures fill what --json lacks (e.g. before)")
    a = ap.parse_args()
    if a.table:
        rows = json.loads(Path(a.json).read_text())["rows"]
        if a.merge:
            part = {r["rows"]: r for r in json.loads(Path(a.merge).read_text())["rows"]}
            rows = [{**part.get(r["rows"], {}), **r} for r in rows]  # fills what r lacks
        print(table(rows))
        plot(rows, HERE / "scale.png")
        return
    if a.stage:
        print(json.dumps(STAGES[a.stage](a.n, a.out)))
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("CLUL_RAY_LINEAGE", "0")
    tmp = tempfile.mkdtemp(prefix="clul-scale-")
    rows = []
    for n in a.rows:
        rows.append(one_size(n, a.before if n <= a.before_max else None, tmp,
                             a.partition_only))
        print(json.dumps(rows[-1]), flush=True)
        Path(a.json).write_text(json.dumps({
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                       f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f}"
                       " GiB", "rows": rows}, indent=1))
    plot(rows, HERE / "scale.png")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
