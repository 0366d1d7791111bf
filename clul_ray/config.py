"""Pipeline configuration: pydantic models in groups, loadable from YAML, with digests.

Groups: ``data`` (what to read), ``partition`` (where every id lives: fixed for a storage
root), ``train`` (what a shard model is), ``compute`` (where and how it runs) and
``serve`` (how the ensemble predicts). The training digest keys every checkpoint, so a
changed training config can never reuse a stale checkpoint; the partition seed and the
training seed are separate, so changing training randomness never repartitions.

A flat mapping (``{"dataset": "digits", "shards": 4, "seed": 0}``, the format of the
first stored configs and YAML files) loads too: each key is routed to its group, and a
flat ``seed`` is the placement seed (training follows it unless ``train.seed`` is set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .data.text import is_text
from .errors import ClulError, first_line
from .hashing import sha256_json


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Group):
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    num_classes: int | None = Field(default=None, ge=2)
    input_shape: list[int] | None = None
    tokenizer: str = Field(
        default="bytes", description="text datasets: 'bytes' (learns nothing from the rows) "
        "or a tokenizer JSON learned from a never-deletable corpus (stored with the root as "
        "'sha256:DIGEST')")


class PartitionConfig(_Group):
    shards: int = Field(default=4, ge=1, le=4096)
    slices: int = Field(default=4, ge=1, le=1024)
    seed: int = Field(default=0, ge=0, description="seed of placement and the test split")
    test_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    group_column: str | None = None
    added_slices: int = Field(default=0, ge=0, description="slices appended by `clul-ray "
                              "add` (state of the root, kept in its stored config)")

    @property
    def total_slices(self) -> int:
        """The slices every shard has now: the first ``slices`` and one per ``add``."""
        return self.slices + self.added_slices


class TrainConfig(_Group):
    model: str = "mlp"
    model_args: dict[str, Any] = Field(default_factory=dict)
    epochs: int = Field(default=20, ge=1, description="epochs e0 of a plain (unsliced) model")
    epochs_per_slice: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(default=0.9, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    normalize: bool = True
    seed: int | None = Field(default=None, ge=0,
                             description="seed of training randomness (default: the "
                                         "partition seed)")


class ComputeConfig(_Group):
    backend: Literal["ray", "ray_train", "local"] = "ray"
    threads_per_shard: int = Field(default=1, ge=1)
    train_workers_per_shard: int = Field(
        default=1, ge=1, le=1024,
        description="DDP workers per shard (backend ray_train); more than 1 changes float "
                    "sums, so it is part of the training digest")
    shared_storage: bool = Field(
        default=False, description="a local-path root is a mount shared by every node")
    placement: Literal["spread", "default"] = Field(
        default="spread",
        description="where Ray puts slice steps: spread over the nodes (shards are independent)"
                    " or Ray's default (fill the local node first); never changes a model")
    cpus_per_shard: float = Field(default=1.0, ge=0)
    gpus_per_shard: float = Field(default=0.0, ge=0)
    warm_idle_seconds: float = Field(
        default=900.0, ge=0,
        description="on a cluster (--address, RAY_ADDRESS) with backend ray, each shard's "
                    "worker stays warm between commands until it has been idle this long; "
                    "0: plain Ray tasks")

    @model_validator(mode="after")
    def _whole_gpus(self) -> ComputeConfig:
        if self.gpus_per_shard > 1 and self.gpus_per_shard != int(self.gpus_per_shard):
            raise ValueError("gpus_per_shard above 1 must be a whole number")
        return self


def resolve_device(gpus_per_shard: float, cuda_available: bool) -> str:
    """The device a slice step trains on: ``cuda`` when the config asks for GPUs and CUDA
    is available where the step runs, else ``cpu`` (a GPU config on a machine without CUDA
    trains on the CPU, and is keyed as the CPU config). The one rule of both sides: the
    worker applies it to what it finds (``trainer.device_for``), the driver to what it
    knows of where the steps run (:attr:`PipelineConfig.device`)."""
    return "cuda" if gpus_per_shard > 0 and cuda_available else "cpu"


def cuda_here() -> bool:
    import torch  # asked for GPU configs only: a CPU config never imports torch here

    return torch.cuda.is_available()


class ServeConfig(_Group):
    aggregation: Literal["vote", "mean"] = "vote"


GROUPS: dict[str, type[_Group]] = {"data": DataConfig, "partition": PartitionConfig,
                                   "train": TrainConfig, "compute": ComputeConfig,
                                   "serve": ServeConfig}
# flat key -> its group (a flat "seed" is the placement seed)
FLAT = {k: g for g, cls in GROUPS.items() for k in cls.model_fields
        if not (g == "train" and k == "seed")}


def route(flat: dict[str, Any], into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Move flat keys into their groups (over ``into``'s nested values); unknown keys stay
    at the top, where validation refuses them."""
    out = {g: dict(v) for g, v in (into or {}).items()}
    for k, v in flat.items():
        if k in GROUPS and isinstance(v, dict):
            out.setdefault(k, {}).update(v)
        elif k in FLAT:
            out.setdefault(FLAT[k], {})[k] = v
        else:
            out[k] = v
    return out


class PipelineConfig(BaseModel):
    """Everything that defines a SISA pipeline on one storage root."""

    model_config = ConfigDict(extra="forbid")

    data: DataConfig = Field(default_factory=DataConfig)
    partition: PartitionConfig = Field(default_factory=PartitionConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and any(k in FLAT for k in raw):
            nested = {k: v for k, v in raw.items() if k in GROUPS}
            for k, v in nested.items():
                if not isinstance(v, dict):
                    raise ValueError(f"{k} must be a mapping of its settings, got "
                                     f"{type(v).__name__}")
            clash = [k for k, v in raw.items() if k in FLAT and k in nested.get(FLAT[k], {})]
            if clash:
                raise ValueError(f"{clash[0]} is given both flat and under "
                                 f"{FLAT[clash[0]]}")
            return route({k: v for k, v in raw.items() if k not in GROUPS}, nested)
        return raw

    @property
    def train_seed(self) -> int:
        return self.partition.seed if self.train.seed is None else self.train.seed

    @property
    def device(self) -> str:
        """The device slice steps train on, as the driver knows it before they run; the
        training digest (so every checkpoint key) names it. No GPUs requested: ``cpu``.
        Backend ``local`` (steps in this process): CUDA here decides. Backends ``ray`` and
        ``ray_train``: each step (or Train worker) holds ``gpus_per_shard`` GPUs, which Ray
        grants only on a node that has them, so ``cuda`` — the driver, often a head node
        without GPUs, cannot look. The step checks it (``trainer.device_for``) and refuses
        to train on the CPU under a key that names ``cuda``."""
        c = self.compute
        if c.gpus_per_shard <= 0:
            return "cpu"
        return resolve_device(c.gpus_per_shard, c.backend != "local" or cuda_here())

    @property
    def task(self) -> str:
        """``lm`` for a text dataset (a language model, next-token loss), else ``classify``."""
        return "lm" if is_text(self.data.dataset) else "classify"

    @property
    def prediction_width(self) -> int:
        """Values a shard model predicts per test row: class probabilities, or (language
        models) the probability of each next token of the row, ``context - 1``."""
        if self.task == "lm":
            return int(self.data.input_shape[0]) - 1
        return int(self.data.num_classes)

    @property
    def ddp_world_size(self) -> int:
        """Workers that average gradients per shard: 1 unless the backend is ray_train."""
        c = self.compute
        return c.train_workers_per_shard if c.backend == "ray_train" else 1

    def training_digest(self) -> str:
        """What a shard model depends on; keys every checkpoint (its field names are those
        of the first, flat config, so stored checkpoints keep their keys). Its device is
        the one the steps train on (:attr:`device`), not the one asked for."""
        t = self.train
        return sha256_json({
            "model": t.model, "model_args": t.model_args, "epochs": t.epochs,
            "epochs_per_slice": t.epochs_per_slice, "batch_size": t.batch_size, "lr": t.lr,
            "optimizer": t.optimizer, "momentum": t.momentum,
            "weight_decay": t.weight_decay, "seed": self.train_seed,
            "normalize": t.normalize, "threads_per_shard": self.compute.threads_per_shard,
            "num_classes": self.data.num_classes, "input_shape": self.data.input_shape,
            "slices": self.partition.slices, "train_workers_per_shard": self.ddp_world_size,
            "device": self.device})

    def partition_dict(self) -> dict[str, Any]:
        """What decides where every id lives; fixed for a storage root."""
        out = {"dataset": self.data.dataset,
               **self.partition.model_dump(exclude={"added_slices"})}
        if self.task == "lm":  # the rows are token ids: the tokenizer places nothing but
            out["tokenizer"] = self.data.tokenizer  # makes them (text roots only)
        return out

    def updated(self, **flat: Any) -> PipelineConfig:
        """A copy with flat or grouped settings replaced."""
        return make_config(**route(flat, self.model_dump()))

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> PipelineConfig:
        """A YAML file (flat or grouped); ``overrides`` (flat, None ignored) win."""
        raw = read_yaml(path, "config file") or {}
        if not isinstance(raw, dict):
            raise ClulError(f"config file {path} must hold a mapping of settings")
        raw.pop("root", None)
        return make_config(**raw).updated(**{k: v for k, v in overrides.items()
                                             if v is not None})


def read_yaml(path: str | Path, what: str) -> Any:
    """A YAML file's content; a missing file or bad YAML is a one-line ClulError that calls
    the file ``what``."""
    import yaml  # (here: a command given no YAML file never imports it)

    p = Path(path)
    if not p.is_file():
        raise ClulError(f"{what} not found: {p}")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ClulError(f"{what} {p} is not valid YAML: {first_line(e)}") from None


def make_config(**kwargs: Any) -> PipelineConfig:
    """Build a config from flat or grouped settings; a validation error becomes a one-line
    ClulError naming the setting."""
    try:
        return PipelineConfig(**kwargs)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(x if isinstance(x, str) and x.isidentifier() else repr(x)
                       for x in err["loc"]) or "config"  # a key like "\n" stays on one line
        msg = " ".join(err["msg"].removeprefix("Value error, ").split())
        raise ClulError(f"invalid config: {loc}: {msg}") from None
