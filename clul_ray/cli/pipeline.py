"""``clul-ray train``, ``add``, ``delete``, ``evaluate``, ``status`` and ``unlock``: the
SISA pipeline on one storage root."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import PipelineConfig, make_config
from ..data.ids import parse_ids
from ..errors import ClulError
from ..storage.lock import refuse_if_served
from ..storage.store import Store
from .common import (
    Address,
    AsJson,
    DataDir,
    Dataset,
    Model,
    Root,
    Verbose,
    emit,
    emit_progress,
    open_root,
    out,
    parse_model_args,
    probed_root,
    run,
    verbose_ray,
    with_progress,
)


def train_config(config: Path | None, flat: dict[str, Any],
                 train_seed: int | None = None) -> PipelineConfig:
    """The config of ``train``: the YAML file (if any) with the flags over it (flat settings,
    None = not given); ``--train-seed`` is the grouped ``train.seed``."""
    overrides: dict[str, Any] = {k: v for k, v in flat.items() if v is not None}
    if train_seed is not None:
        overrides["train"] = {"seed": train_seed}
    if config is not None:
        return PipelineConfig.from_yaml(config, **overrides)
    return make_config(**overrides)


def train(
    root: Root = "runs/default",
    config: Annotated[Path | None, typer.Option(help="pipeline YAML (pipelines/*.yaml)")] = None,
    dataset: Dataset = None,
    data_dir: DataDir = None,
    download: Annotated[bool, typer.Option(help="download a torchvision dataset")] = False,
    shards: Annotated[int | None, typer.Option(help="S: number of shards")] = None,
    slices: Annotated[int | None, typer.Option(help="R: slices per shard")] = None,
    model: Model = None,
    model_arg: Annotated[list[str] | None, typer.Option(
        help="a model argument KEY=VALUE (repeatable), e.g. d_model=64")] = None,
    context: Annotated[int | None, typer.Option(
        help="text datasets: tokens per document (longer ones are cut)")] = None,
    tokenizer: Annotated[str | None, typer.Option(
        help="text datasets: bytes (default; learns nothing) or a tokenizer JSON learned "
             "from a never-deletable corpus (clul-ray tokenizer)")] = None,
    epochs: Annotated[int | None, typer.Option(help="e0: epochs of a plain model")] = None,
    seed: Annotated[int | None, typer.Option(
        help="seed of placement and the test split (and of training, unless --train-seed)")]
    = None,
    train_seed: Annotated[int | None, typer.Option(
        help="seed of training randomness only: retrains without repartitioning")] = None,
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
    verbose: Verbose = False,
) -> None:
    """Partition a dataset into shards and slices and train one model per shard, slice by slice."""
    flat = {"dataset": dataset, "data_dir": data_dir, "download": download or None,
            "shards": shards, "slices": slices, "model": model, "epochs": epochs, "seed": seed,
            "group_column": group_column, "backend": backend,
            "train_workers_per_shard": train_workers_per_shard,
            "shared_storage": shared_storage or None,
            "cpus_per_shard": cpus_per_shard, "gpus_per_shard": gpus_per_shard,
            "tokenizer": tokenizer, "input_shape": [context] if context else None}

    def body() -> None:
        if model_arg:
            flat["model_args"] = parse_model_args(model_arg)
        cfg = train_config(config, flat, train_seed)
        verbose_ray(verbose)
        result = with_progress(lambda prog: open_root(root, address, prog, True).train(cfg),
                               not as_json)
        from ..phases import current

        p = current()  # (run's: measured from the process's start)
        if "startup" in p.seconds:  # the interpreter and the imports; the process so far
            result["wall_seconds"].update(startup_seconds=p.seconds["startup"],
                                          process_seconds=p.report()["total"])
        emit(result, as_json)

    run(body)


def add(
    root: Root = "runs/default",
    dataset: Annotated[str, typer.Option(
        help="the new rows: digits, synthetic:N, parquet:PATH or a torchvision name; new ids "
             "only, labels within the root's classes")] = ...,
    data_dir: DataDir = None,
    download: Annotated[bool, typer.Option(help="download a torchvision dataset")] = False,
    address: Address = None,
    as_json: AsJson = False,
    verbose: Verbose = False,
) -> None:
    """Grow the ensemble: new rows go to their shards, in a new last slice that alone trains."""

    def body() -> None:
        verbose_ray(verbose)
        emit_progress(lambda prog: open_root(root, address, prog, True).add(
            dataset, data_dir, download), as_json)

    run(body)


def delete(
    root: Root = "runs/default",
    ids: Annotated[str | None, typer.Option(help="comma-separated ids, e.g. 1,2,3")] = None,
    ids_file: Annotated[Path | None, typer.Option(help="a file of one id per line")] = None,
    group: Annotated[str | None, typer.Option(
        help="comma-separated values of the root's group column (every row of each)")] = None,
    service: Annotated[str | None, typer.Option(
        help="send the request to the deletion service at this URL (clul-ray serve)")] = None,
    wait: Annotated[bool, typer.Option(help="with --service: wait until it commits")] = False,
    address: Address = None,
    as_json: AsJson = False,
    verbose: Verbose = False,
) -> None:
    """Forget ids exactly: retrain only the affected shards from their earliest slice."""

    def body() -> None:
        if group is not None:
            if ids is not None or ids_file is not None or service is not None:
                raise ClulError("--group names the rows itself: not with --ids, --ids-file "
                                "or --service")
            groups = [g.strip() for g in group.split(",") if g.strip()]
            refuse_if_served(Store(probed_root(root)))
            verbose_ray(verbose)
            emit_progress(lambda prog: (p := open_root(root, address, prog, True)).delete(
                p.group_ids(groups)), as_json)
            return
        id_list = parse_ids(ids, ids_file)
        if service is not None:
            from ..serve.client import send_deletion

            emit(send_deletion(service, id_list, wait), as_json, lambda r: out.print_json(
                data=r))
            return
        refuse_if_served(Store(probed_root(root)))
        verbose_ray(verbose)
        emit_progress(lambda prog: open_root(root, address, prog, True).delete(id_list),
                      as_json)

    run(body)


def evaluate(root: Root = "runs/default", address: Address = None,
             as_json: AsJson = False, verbose: Verbose = False) -> None:
    """Ensemble and per-shard accuracy on the held-out split (batch prediction on Ray Data)."""
    verbose_ray(verbose)
    run(lambda: emit(open_root(root, address).evaluate(), as_json))


def status(root: Root = "runs/default", as_json: AsJson = False) -> None:
    """The current version, its shards, and the deletion ledger (starts no Ray)."""
    run(lambda: emit(open_root(root).status(), as_json))


def unlock(root: Root = "runs/default") -> None:
    """Remove the root's lock left by a command that died (only when none is running)."""

    def body() -> None:
        from ..storage.lock import describe
        from ..storage.lock import unlock as do_unlock
        from ..storage.store import Store

        held = do_unlock(Store(probed_root(root)))
        out.print(f"removed the lock of {describe(held)}" if held else f"{root} is not locked",
                  highlight=False)

    run(body)
