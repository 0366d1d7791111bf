"""The model versions of a root.

A model version says, per shard, which checkpoint chain (or edited artefact) it serves;
``state.json`` is the current one and ``versions/vNNNNNN.json`` keeps every one. They are
read and written here only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from ...storage import layout
from ...storage.store import Store


@dataclass
class SliceResult:
    """What one slice step of one shard reports: the checkpoint it wrote and its model."""

    shard: int
    slice: int
    key: str
    n_samples: int
    seconds: float
    node_id: str
    model_sha256: str
    file_sha256: str = ""  # the checkpoint file's digest


class ShardState(BaseModel):
    """One shard of a version: its checkpoint keys and the model it serves."""

    model_config = ConfigDict(extra="ignore")

    shard: int
    keys: list[str]
    n_samples: int
    model_sha256: str
    node_id: str = "unknown"
    seconds: float = 0.0
    retrained_from: int | None = None
    step_nodes: dict[str, str] = Field(default_factory=dict)
    checkpoint_sha256: list[str] = Field(default_factory=list)  # per slice; "" unknown
    artifact: str | None = None  # an edited model (approximate unlearning), else None

    @property
    def approximate(self) -> bool:
        return self.artifact is not None

    def checkpoint_paths(self) -> list[str]:
        return [layout.checkpoint_path(self.shard, r, k) for r, k in enumerate(self.keys)]


class Metrics(BaseModel):
    ensemble_accuracy: float | None = None
    # the ensemble's macro precision, recall and F1 over classes (none before they were kept)
    ensemble_precision: float | None = None
    ensemble_recall: float | None = None
    ensemble_f1: float | None = None
    test_samples: int = 0
    shard_accuracy: dict[str, float] = Field(default_factory=dict)
    ensemble_perplexity: float | None = None  # language models: on the test documents
    shard_perplexity: dict[str, float] = Field(default_factory=dict)


class ModelVersion(BaseModel):
    """A committed model version of a root."""

    model_config = ConfigDict(extra="ignore")

    version: int
    parent: int | None = None
    operation: str
    request_id: str | None = None
    created: float = Field(default_factory=time.time)
    training_digest: str
    shards: list[ShardState]
    timings: dict[str, float] = Field(default_factory=dict)
    metrics: Metrics = Field(default_factory=Metrics)

    @property
    def samples(self) -> int:
        return sum(s.n_samples for s in self.shards)

    def shard(self, k: int) -> ShardState:
        return next(s for s in self.shards if s.shard == k)

    def recorded_digest(self, shard: int, slc: int, key: str) -> str:
        """The file digest recorded for a checkpoint, "" when none is recorded for it."""
        s = self.shard(shard)
        ok = slc < len(s.keys) and s.keys[slc] == key and slc < len(s.checkpoint_sha256)
        return s.checkpoint_sha256[slc] if ok else ""

    def trained_shards(self) -> list[ShardState]:
        """The shards that hold rows (an empty shard has no model to ask)."""
        return [s for s in self.shards if s.n_samples > 0]

    def checkpoint_paths(self) -> set[str]:
        return {p for s in self.shards for p in s.checkpoint_paths()}

    def artifacts(self) -> set[str]:
        return {s.artifact for s in self.shards if s.artifact}

    def with_digests(self, digests: dict[int, list[str]]) -> ModelVersion:
        """A copy whose shards in ``digests`` record those checkpoint file digests."""
        return self.model_copy(update={"shards": [
            s.model_copy(update={"checkpoint_sha256": digests[s.shard]})
            if s.shard in digests else s for s in self.shards]})


# ---- reading and writing --------------------------------------------------------------
def read_current(store: Store) -> ModelVersion | None:
    return store.read_record(layout.STATE, ModelVersion)


def require_current(store: Store) -> ModelVersion:
    return store.require_record(layout.STATE, ModelVersion, f"no trained model under "
                                f"{store.root}: run `clul-ray train`")


def read_version(store: Store, version: int) -> ModelVersion | None:
    return store.read_record(layout.version_path(version), ModelVersion)


def list_versions(store: Store) -> list[ModelVersion]:
    """Every committed version, oldest first."""
    return sorted((store.read_record(f, ModelVersion)
                   for f in store.list_files(layout.VERSIONS, ".json")),
                  key=lambda v: v.version)


def write_version(store: Store, v: ModelVersion) -> None:
    """Commit ``v``: its own record first, then ``state.json`` (the commit point)."""
    raw = v.model_dump(mode="json")
    store.write_json(layout.version_path(v.version), raw)
    store.write_json(layout.STATE, raw)


def rewrite_version(store: Store, v: ModelVersion) -> None:
    """Rewrite a committed version's record (its metrics, evaluated after the commit), and
    ``state.json`` while it is the current version."""
    raw = v.model_dump(mode="json")
    store.write_json(layout.version_path(v.version), raw)
    current = read_current(store)
    if current is not None and current.version == v.version:
        store.write_json(layout.STATE, raw)
