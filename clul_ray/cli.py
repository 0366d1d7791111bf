"""The ``clul-ray`` command line."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .config import PipelineConfig, make_config
from .errors import ClulError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Exact (SISA) and approximate unlearning on Ray.")
out = Console()
err = Console(stderr=True)

Root = Annotated[str, typer.Option("--root", help="storage root: a folder or a pyarrow.fs URI")]
Address = Annotated[str | None, typer.Option(
    "--address", envvar="RAY_ADDRESS", help="Ray cluster address (default: start local Ray)")]
AsJson = Annotated[bool, typer.Option("--json", help="print one JSON object")]


class RichProgress:
    """Pipeline progress callback -> rich progress bars on stderr."""

    def __init__(self, enabled: bool = True):
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=err, disable=not enabled,
                            transient=False)
        self.tasks: dict[str, int] = {}

    def __call__(self, desc: str, done: int, total: int) -> None:
        if desc not in self.tasks:
            self.tasks[desc] = self.bar.add_task(desc, total=max(total, 1))
        self.bar.update(self.tasks[desc], completed=done if total else 1, total=max(total, 1))

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()


def fail(msg: str) -> None:
    err.print(f"[red]error:[/red] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def run(fn):
    """Run a command body, turning ClulError into a one-line error and exit code 2."""
    try:
        return fn()
    except ClulError as e:
        fail(str(e))


def pipeline(root: str, address: str | None, progress=None):
    from .sisa.pipeline import Pipeline

    return Pipeline(root, address=address, progress=progress)


def emit(result: dict, as_json: bool, printer: Callable[[dict], None] | None = None) -> None:
    """One JSON object with --json, else a table (``show``, or the command's own printer)."""
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    else:
        (printer or show)(result)


def show(r: dict) -> None:
    acc = r.get("ensemble_accuracy")
    out.print(f"[bold]{r['root']}[/bold]  version {r['version']} ({r.get('operation')}), "
              f"{r['shards']} shards x {r['slices']} slices, {r.get('samples')} training rows, "
              f"ensemble accuracy {acc:.4f}" if acc is not None else
              f"[bold]{r['root']}[/bold]  version {r['version']}", highlight=False)
    if r.get("per_shard"):
        t = Table("shard", "rows", "accuracy", "retrained from", "model sha256", "node")
        for s in r["per_shard"]:
            a = s["accuracy"]
            t.add_row(str(s["shard"]), str(s["samples"]), f"{a:.4f}" if a is not None else "-",
                      "-" if s["retrained_from"] is None else f"slice {s['retrained_from']}",
                      s["model_sha256"][:12], str(s["node_id"])[:12])
        out.print(t)
    extra = {k: r[k] for k in ("request_id", "deleted", "already_deleted", "affected",
                               "requests", "deleted_ids", "checkpoints") if k in r}
    for k, v in extra.items():
        out.print(f"{k}: {v}", highlight=False)
    if r.get("locked_by"):
        from .lock import describe

        out.print(f"locked by {describe(r['locked_by'])}", highlight=False)
    if r.get("wall_seconds"):
        out.print("seconds: " + ", ".join(f"{k}={v:.2f}" for k, v in r["wall_seconds"].items()),
                  highlight=False)


@app.command()
def train(
    root: Root = "runs/default",
    config: Annotated[Path | None, typer.Option(help="pipeline YAML (pipelines/*.yaml)")] = None,
    dataset: Annotated[str | None, typer.Option(help="digits | synthetic:N | parquet:PATH | "
                                                     "cifar10 | cifar100 | mnist | "
                                                     "fashion_mnist")] = None,
    data_dir: Annotated[str | None, typer.Option(help="folder of torchvision datasets")] = None,
    download: Annotated[bool, typer.Option(help="download a torchvision dataset")] = False,
    shards: Annotated[int | None, typer.Option(help="S: number of shards")] = None,
    slices: Annotated[int | None, typer.Option(help="R: slices per shard")] = None,
    model: Annotated[str | None, typer.Option(help="mlp | cnn | resnet18 | module:fn")] = None,
    epochs: Annotated[int | None, typer.Option(help="e0: epochs of a plain model")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of placement and training")] = None,
    group_column: Annotated[str | None, typer.Option(help="keep a group in one shard")] = None,
    backend: Annotated[str | None, typer.Option(help="ray | ray_train | local")] = None,
    train_workers_per_shard: Annotated[int | None, typer.Option(
        help="DDP workers per shard (ray_train)")] = None,
    shared_storage: Annotated[bool, typer.Option(
        help="the local-path root is a mount shared by every node")] = False,
    cpus_per_shard: Annotated[float | None, typer.Option(help="CPUs per shard worker")] = None,
    gpus_per_shard: Annotated[float | None, typer.Option(help="GPUs per shard (0.25 ok)")] = None,
    address: Address = None,
    as_json: AsJson = False,
) -> None:
    """Partition a dataset with Ray Data and train one model per shard, slice by slice."""
    opts = {"dataset": dataset, "data_dir": data_dir, "download": download or None,
            "shards": shards, "slices": slices, "model": model, "epochs": epochs, "seed": seed,
            "group_column": group_column, "backend": backend,
            "train_workers_per_shard": train_workers_per_shard,
            "shared_storage": shared_storage or None,
            "cpus_per_shard": cpus_per_shard, "gpus_per_shard": gpus_per_shard}

    def body():
        if config is not None:
            cfg = PipelineConfig.from_yaml(config, **opts)
        else:
            cfg = make_config(**{k: v for k, v in opts.items() if v is not None})
        with RichProgress(not as_json) as prog:
            result = pipeline(root, address, prog).train(cfg)
        emit(result, as_json)

    run(body)


def parse_ids(ids: str | None, ids_file: Path | None) -> list[int]:
    if (ids is None) == (ids_file is None):
        raise ClulError("give exactly one of --ids or --ids-file")
    if ids is not None:
        parts = [p.strip() for p in ids.split(",") if p.strip()]
        where = "--ids"
        lines = list(enumerate(parts, 1))
    else:
        if not ids_file.is_file():
            raise ClulError(f"ids file not found: {ids_file}")
        where = str(ids_file)
        lines = [(i, ln.strip()) for i, ln in enumerate(ids_file.read_text().splitlines(), 1)
                 if ln.strip()]
    out_ids = []
    for i, tok in lines:
        try:
            out_ids.append(int(tok))
        except ValueError:
            what = f"line {i}" if ids_file is not None else f"item {i}"
            raise ClulError(f"{where}: {what} is not an integer id: {tok!r}") from None
    if not out_ids:
        raise ClulError(f"{where}: no ids given")
    return out_ids


@app.command()
def delete(
    root: Root = "runs/default",
    ids: Annotated[str | None, typer.Option(help="comma-separated ids, e.g. 1,2,3")] = None,
    ids_file: Annotated[Path | None, typer.Option(help="a file of one id per line")] = None,
    address: Address = None,
    as_json: AsJson = False,
) -> None:
    """Forget ids exactly: retrain only the affected shards from their earliest slice."""

    def body():
        id_list = parse_ids(ids, ids_file)
        with RichProgress(not as_json) as prog:
            result = pipeline(root, address, prog).delete(id_list)
        emit(result, as_json)

    run(body)


@app.command()
def evaluate(root: Root = "runs/default", address: Address = None,
             as_json: AsJson = False) -> None:
    """Ensemble and per-shard accuracy on the held-out split (batch prediction on Ray Data)."""
    run(lambda: emit(pipeline(root, address).evaluate(), as_json))


@app.command()
def status(root: Root = "runs/default", as_json: AsJson = False) -> None:
    """The current version, its shards, and the deletion ledger (starts no Ray)."""
    run(lambda: emit(pipeline(root, None).status(), as_json))


@app.command()
def unlock(root: Root = "runs/default") -> None:
    """Remove the root's lock left by a command that died (only when none is running)."""

    def body():
        from .lock import describe
        from .lock import unlock as do_unlock
        from .store import Store

        held = do_unlock(Store(root))
        out.print(f"removed the lock of {describe(held)}" if held else f"{root} is not locked",
                  highlight=False)

    run(body)


@app.command()
def quickstart(
    root: Annotated[str, typer.Option(help="storage root (default: a fresh runs/quickstart)")]
    = "",
    address: Address = None,
    delete_count: Annotated[int, typer.Option("--delete", help="ids to delete")] = 12,
) -> None:
    """The main job on bundled digits: train S=4, R=4, delete a batch of ids, compare."""

    def body():
        from .sisa.plan import epochs_per_slice, sample_epochs

        target = root or "runs/quickstart"
        if not root and Path(target).exists():
            shutil.rmtree(target)
        elif root and Path(root).exists() and any(Path(root).iterdir()):
            raise ClulError(f"--root {root} is not empty; quickstart needs a fresh folder")
        out.rule("[bold]clul-ray quickstart[/bold]: SISA on Ray, bundled digits")
        out.print(f"storage root: {os.path.abspath(target)}  (Ray: "
                  f"{address or os.environ.get('RAY_ADDRESS') or 'local, embedded'})")
        cfg = make_config(dataset="digits", shards=4, slices=4, model="mlp", epochs=20)
        with RichProgress() as prog:
            p = pipeline(target, address, prog)
            trained = p.train(cfg)
        out.print(f"trained version {trained['version']}: {trained['samples']} rows, "
                  f"ensemble accuracy {trained['ensemble_accuracy']:.4f}")
        # A batch of ids from two of the shards, so the minimality shows.
        before_index = p.store.read_index()
        ids, shard, _ = before_index
        rng = np.random.default_rng(7)
        chosen = [int(i) for k in (0, 2) for i in
                  rng.choice(ids[shard == k], delete_count // 2, replace=False)]
        out.print(f"deleting {len(chosen)} ids: {chosen}")
        with RichProgress() as prog:
            p.progress = prog
            deleted = p.delete(chosen)
        t = Table("", "before", "after", title="exact deletion")
        t.add_row("model version", str(trained["version"]), str(deleted["version"]))
        t.add_row("training rows", str(trained["samples"]), str(deleted["samples"]))
        t.add_row("ensemble accuracy", f"{trained['ensemble_accuracy']:.4f}",
                  f"{deleted['ensemble_accuracy']:.4f}")
        for b, a in zip(trained["per_shard"], deleted["per_shard"], strict=True):
            how = ("kept" if a["retrained_from"] is None
                   else f"retrained from slice {a['retrained_from']}")
            t.add_row(f"shard {a['shard']} accuracy", f"{b['accuracy']:.4f}",
                      f"{a['accuracy']:.4f} ({how})")
        out.print(t)
        tw, dw = trained["wall_seconds"], deleted["wall_seconds"]
        full = tw["train_seconds"]
        tt = Table("step", "seconds", title="cost")
        tt.add_row("full training (all shards, all slices)", f"{full:.2f}")
        tt.add_row("deletion: retraining affected slices", f"{dw['retrain_seconds']:.2f}")
        tt.add_row("deletion: whole request (ledger, rewrite, retrain, evaluate)",
                   f"{dw['delete']:.2f}")
        out.print(tt)
        # The work this deletion redid, against a full training, in sample-epochs.
        _, shard_b, slc_b = before_index
        counts = np.zeros((cfg.partition.shards, cfg.partition.slices), np.int64)
        np.add.at(counts, (shard_b, slc_b), 1)
        eps = epochs_per_slice(cfg.train.epochs, cfg.partition.slices, cfg.train.epochs_per_slice)
        full_work = sample_epochs(counts, {k: 0 for k in range(cfg.partition.shards)}, eps)
        redo = sample_epochs(counts, {int(k): v for k, v in deleted["affected"].items()}, eps)
        out.print(f"affected shards -> earliest slice: {deleted['affected']}; "
                  f"checkpoints discarded: {deleted['checkpoints_discarded']}", highlight=False)
        out.print(f"work redone: {redo} of {full_work} sample-epochs "
                  f"({redo / full_work:.0%}), an ideal speed-up of {full_work / redo:.1f}x; "
                  f"measured {full / max(dw['retrain_seconds'], 1e-9):.1f}x in wall time. On "
                  "data this small, Ray task start-up and data loading dominate; "
                  "benchmarks/RESULTS.md measures large data.", highlight=False)
        out.print(f"request {deleted['request_id']} committed. Try: clul-ray status --root "
                  f"{target}", highlight=False)

    run(body)


from .lineage.cli import register as _register_lineage; _register_lineage(app)  # noqa: E402, E702, I001


from .unlearn.cli import register as _register_unlearn; _register_unlearn(app)  # noqa: E402,E702,I001


def main() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    app()


if __name__ == "__main__":
    main()
