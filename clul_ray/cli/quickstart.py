"""``clul-ray quickstart``: the main job on bundled digits, end to end, with its cost."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from ..config import PipelineConfig, make_config
from ..errors import ClulError
from .common import (
    Address,
    RichProgress,
    Verbose,
    checked_root,
    macro_scores,
    open_root,
    out,
    run,
    verbose_ray,
)

ENSEMBLE_ROWS = (("ensemble_accuracy", "accuracy"), ("ensemble_precision", "macro precision"),
                 ("ensemble_recall", "macro recall"), ("ensemble_f1", "macro F1"))


def deletion_table(trained: dict, deleted: dict) -> Table:
    """Before and after the deletion: version, rows, the ensemble's accuracy and macro
    precision / recall / F1, and each shard's accuracy."""
    t = Table("", "before", "after", title="exact deletion")
    t.add_row("model version", str(trained["version"]), str(deleted["version"]))
    t.add_row("training rows", str(trained["samples"]), str(deleted["samples"]))
    for key, name in ENSEMBLE_ROWS:
        if trained.get(key) is not None and deleted.get(key) is not None:
            t.add_row(f"ensemble {name}", f"{trained[key]:.4f}", f"{deleted[key]:.4f}")
    for b, a in zip(trained["per_shard"], deleted["per_shard"], strict=True):
        how = ("kept" if a["retrained_from"] is None
               else f"retrained from slice {a['retrained_from']}")
        t.add_row(f"shard {a['shard']} accuracy", f"{b['accuracy']:.4f}",
                  f"{a['accuracy']:.4f} ({how})")
    return t


def cost_report(cfg: PipelineConfig, shard: np.ndarray, slc: np.ndarray, trained: dict,
                deleted: dict) -> tuple[Table, list[str]]:
    """The deletion's cost against the full training, like with like: compute seconds of
    the slice steps (summed over shards; no Ray start-up, data loading or evaluation in
    them) and sample-epochs of work. ``shard``/``slc`` place every training row before
    the deletion."""
    from ..sisa.decisions.plan import epochs_per_slice, sample_epochs

    shards, slices = cfg.partition.shards, cfg.partition.total_slices
    affected = {int(k): int(v) for k, v in deleted["affected"].items()}
    full_s = sum(s["train_seconds"] for s in trained["per_shard"])
    redo_s = deleted["wall_seconds"]["retrain_compute_seconds"]
    t = Table("step", "seconds", title="cost: compute seconds of the slice steps, all shards")
    t.add_row(f"full training ({shards} shards x {slices} slices)", f"{full_s:.2f}")
    t.add_row(f"deletion: retraining {len(affected)} shard(s) from the earliest affected "
              "slice", f"{redo_s:.2f}")

    counts = np.zeros((shards, slices), np.int64)
    np.add.at(counts, (shard, slc), 1)
    eps = epochs_per_slice(cfg.train.epochs, slices, cfg.train.epochs_per_slice)
    full_work = sample_epochs(counts, {k: 0 for k in range(shards)}, eps)
    redo_work = sample_epochs(counts, affected, eps)
    lines = [f"affected shards -> earliest slice: {deleted['affected']}; "
             f"checkpoints discarded: {deleted['checkpoints_discarded']}"]
    if redo_work:
        lines.append(
            f"work redone: {redo_work} of {full_work} sample-epochs "
            f"({redo_work / full_work:.0%}): the deletion costs {full_work / redo_work:.1f}x "
            "less training work than a full training. The seconds above are not that ratio "
            "on data this small: each slice step takes a fraction of a second, and fixed "
            "costs (a new Ray worker's first torch and storage calls) fall in the full "
            "training; benchmarks/RESULTS.md measures the speed-up where the work dominates.")
    else:
        lines.append(f"work redone: none of {full_work} sample-epochs (no shard retrained).")
    lines.append(
        f"The whole deletion request took {deleted['wall_seconds']['delete']:.2f} s of wall "
        "time (ledger, data rewrite, retraining, evaluation), where Ray task start-up and "
        "data loading dominate on data this small; benchmarks/RESULTS.md measures large "
        "data.")
    return t, lines


def quickstart(
    root: Annotated[str, typer.Option(help="storage root (default: a fresh runs/quickstart)")]
    = "",
    address: Address = None,
    delete_count: Annotated[int, typer.Option("--delete", help="ids to delete")] = 12,
    verbose: Verbose = False,
) -> None:
    """The main job on bundled digits: train S=4, R=4, delete a batch of ids, compare."""

    def body() -> None:
        target = checked_root(root) if root else "runs/quickstart"
        if not root and Path(target).exists():
            shutil.rmtree(target)
        elif root and Path(root).exists() and any(Path(root).iterdir()):
            raise ClulError(f"--root {root} is not empty; quickstart needs a fresh folder")
        verbose_ray(verbose)
        out.rule("[bold]clul-ray quickstart[/bold]: SISA on Ray, bundled digits")
        out.print(f"storage root: {os.path.abspath(target)}  (Ray: "
                  f"{address or os.environ.get('RAY_ADDRESS') or 'local, embedded'})")
        cfg = make_config(dataset="digits", shards=4, slices=4, model="mlp", epochs=20)
        from ..runtime import ensure_ray

        ensure_ray(address)  # the main job on Ray, though digits alone would not need it
        with RichProgress() as prog:
            p = open_root(target, address, prog)
            trained = p.train(cfg)
        out.print(f"trained version {trained['version']}: {trained['samples']} rows, "
                  f"ensemble accuracy {trained['ensemble_accuracy']:.4f}"
                  f"{macro_scores(trained)}")
        # A batch of ids from two of the shards, so the minimality shows.
        ids, shard, slc = p.store.read_index()
        rng = np.random.default_rng(7)
        chosen = [int(i) for k in (0, 2) for i in
                  rng.choice(ids[shard == k], delete_count // 2, replace=False)]
        out.print(f"deleting {len(chosen)} ids: {chosen}")
        with RichProgress() as prog:
            p.progress = prog
            deleted = p.delete(chosen)
        out.print(deletion_table(trained, deleted))
        table, lines = cost_report(cfg, shard, slc, trained, deleted)
        out.print(table)
        for line in lines:
            out.print(line, highlight=False)
        out.print(f"request {deleted['request_id']} committed. Try: clul-ray status --root "
                  f"{target}", highlight=False)

    run(body)
