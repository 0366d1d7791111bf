"""Pipeline configuration: one pydantic model, loadable from YAML, with digests.

The *partition* fields decide where every id lives; they are fixed for a storage root.
The *training* fields decide what a shard model is; their digest keys every checkpoint,
so a changed config can never reuse a stale checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ClulError
from .hashing import sha256_json

PARTITION_FIELDS = ("dataset", "shards", "slices", "seed", "test_fraction", "group_column")
TRAINING_FIELDS = (
    "model", "model_args", "epochs", "epochs_per_slice", "batch_size", "lr", "optimizer",
    "momentum", "weight_decay", "seed", "normalize", "threads_per_shard", "num_classes",
    "input_shape", "slices", "train_workers_per_shard",
)


class PipelineConfig(BaseModel):
    """Everything that defines a SISA pipeline on one storage root."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    num_classes: int | None = Field(default=None, ge=2)
    input_shape: list[int] | None = None

    shards: int = Field(default=4, ge=1, le=4096)
    slices: int = Field(default=4, ge=1, le=1024)
    seed: int = Field(default=0, ge=0)
    test_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    group_column: str | None = None

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

    aggregation: Literal["vote", "mean"] = "vote"
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

    @model_validator(mode="after")
    def _check(self) -> PipelineConfig:
        if self.gpus_per_shard > 1 and self.gpus_per_shard != int(self.gpus_per_shard):
            raise ValueError("gpus_per_shard above 1 must be a whole number")
        return self

    @property
    def device(self) -> str:
        return "cuda" if self.gpus_per_shard > 0 else "cpu"

    @property
    def ddp_world_size(self) -> int:
        """Workers that average gradients per shard: 1 unless the backend is ray_train."""
        return self.train_workers_per_shard if self.backend == "ray_train" else 1

    def training_digest(self) -> str:
        d = self.model_dump()
        fields = {k: d[k] for k in TRAINING_FIELDS}
        fields["train_workers_per_shard"] = self.ddp_world_size
        fields["device"] = self.device
        return sha256_json(fields)

    def partition_dict(self) -> dict[str, Any]:
        d = self.model_dump()
        return {k: d[k] for k in PARTITION_FIELDS}

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> PipelineConfig:
        p = Path(path)
        if not p.is_file():
            raise ClulError(f"config file not found: {p}")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ClulError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from e
        if not isinstance(raw, dict):
            raise ClulError(f"config file {p} must hold a mapping of settings")
        raw.pop("root", None)
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return make_config(**raw)


def make_config(**kwargs: Any) -> PipelineConfig:
    """Build a config, turning validation errors into one-line ClulErrors."""
    try:
        return PipelineConfig(**kwargs)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "config"
        raise ClulError(f"invalid config: {loc}: {err['msg']}") from None
