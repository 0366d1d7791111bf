"""Growing an ensemble: new rows in a new last slice of every shard (``clul-ray add``).

An addition never moves a row that is already placed. Each new row goes to its shard by the
same seeded function of its id as the first training (:func:`clul_ray.data.partition.assign`),
and to the test split by the same id hash; its slice is a new one at the end of every
shard, numbered ``total_slices`` before the addition. Only the new slice trains, from each
shard's last checkpoint, so an addition costs one slice step per shard.

A shard the addition does not reach still gets the (empty) new slice. An appended slice
that holds no rows trains nothing: its checkpoint is the previous slice's state
(:func:`clul_ray.sisa.compute.trainer.train_slice`). The same rule serves a deletion that empties
an appended slice, which is what keeps deletions exact on a grown ensemble: train on X,
add A, delete D gives every shard the model of training on X \\ D and adding A \\ D in the
same layout, bit for bit.

The class count is fixed when a root is first trained: labels of added rows must lie in
``[0, data.num_classes)``. A root that expects classes to arrive later declares room for
them (``num_classes`` in its config); the output layer never grows, so the checkpoints of
earlier slices stay valid.

The rows are staged under ``staging/`` before the ledger records the request, so a
resumed addition finds them; the last step deletes the staged copy.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import BaseModel

from ...config import PipelineConfig
from ...data.partition import assign, is_test
from ...data.sources import DataSource
from ...errors import ClulError
from ...hashing import sha256_ids
from ...phases import phase
from ...storage import layout
from ...storage.store import Store
from ..decisions.plan import RequestPlan
from ..records.rootconfig import write_config


class Addition(BaseModel):
    """What an addition writes: the new slice, and per shard the rows it gets."""

    slice: int
    per_shard: dict[int, int]
    train_ids: list[int]
    test_ids: list[int]

    def as_plan(self) -> RequestPlan:
        """The ledger's plan form: ``affected`` holds the shards that get rows, each at the
        new slice."""
        return RequestPlan(affected={k: self.slice for k in self.per_shard},
                            train_ids=self.train_ids, test_ids=self.test_ids)


def read_rows(source: DataSource, cfg: PipelineConfig) -> pa.Table:
    """Every row of ``source``, validated against the root: the root's feature count and
    class count."""
    with phase("source"):
        return _read_rows(source, cfg)


def _read_rows(source: DataSource, cfg: PipelineConfig) -> pa.Table:
    source.validate()  # features, NaN, duplicate ids, negative labels
    d = int(np.prod(cfg.data.input_shape))
    if int(np.prod(source.input_shape)) != d:
        raise ClulError(f"{source.spec}: rows have {int(np.prod(source.input_shape))} "
                        f"features, the root's model takes {d}")
    t = pa.concat_tables(list(source.iter_tables()))
    top = int(np.asarray(t.column("label")).max())
    if top >= cfg.data.num_classes:
        raise ClulError(f"{source.spec}: label {top} is outside the root's "
                        f"{cfg.data.num_classes} classes (the class count is fixed when a "
                        "root is first trained: declare num_classes there to leave room "
                        "for classes that arrive later)")
    return t


def refuse_known(ids: np.ndarray, present: np.ndarray, deleted: np.ndarray) -> None:
    """New ids only: refuse ids the root holds (``present``) or has deleted (mask)."""
    held = ids[np.isin(ids, present)]
    if len(held):
        shown = ", ".join(str(i) for i in held[:5])
        raise ClulError(f"{len(held)} ids are already in the root (e.g. {shown}); an "
                        "addition takes new ids only; nothing added")
    gone = ids[deleted]
    if len(gone):
        shown = ", ".join(str(i) for i in gone[:5])
        raise ClulError(f"{len(gone)} ids were deleted from the root (e.g. {shown}); a "
                        "deleted id is never taken back; nothing added")


def place(cfg: PipelineConfig, rows: pa.Table) -> tuple[pa.Table, Addition]:
    """Rows -> the same rows with ``shard`` and ``test`` columns, and the addition's plan
    (pure: the placement of the first training, and the next slice number)."""
    p = cfg.partition
    ids = rows.column("id").to_numpy()
    groups = (rows.column(p.group_column).to_numpy(zero_copy_only=False)
              if p.group_column else None)
    shard, _ = assign(p.seed, ids, p.shards, p.slices, groups)
    test = is_test(p.seed, ids, p.test_fraction)
    placed = rows.append_column("shard", pa.array(shard)).append_column(
        "test", pa.array(test))
    train = ~test
    ks, counts = np.unique(shard[train], return_counts=True)
    add = Addition(slice=p.total_slices,
                   per_shard={int(k): int(c) for k, c in zip(ks, counts, strict=True)},
                   train_ids=sorted(ids[train].tolist()), test_ids=sorted(ids[test].tolist()))
    if not add.train_ids:
        raise ClulError("every added row falls in the test split; nothing to train, nothing "
                        "added")
    return placed, add


def staging_path(ids: np.ndarray) -> str:
    return f"{layout.STAGING}/add-{sha256_ids(np.sort(ids))[:16]}.parquet"


def stage(store: Store, placed: pa.Table) -> str:
    """Write the placed rows where a resumed addition finds them; returns the path."""
    rel = staging_path(placed.column("id").to_numpy())
    with phase("stage"):
        store.write_table(rel, placed)
    return rel


def add_rows(store: Store, cfg: PipelineConfig, request_id: str, staged: str,
             new_slice: int) -> PipelineConfig:
    """Write the staged rows into slice ``new_slice`` of their shards, the test split and
    the index, and store the config with the new slice count (idempotent: the same file
    names each time). Returns that config."""
    placed = store.read_parquet(staged)
    test = placed.column("test").to_numpy(zero_copy_only=False)
    shard = placed.column("shard").to_numpy()
    rows = placed.drop_columns(["shard", "test"])
    name = f"add-{request_id}.parquet"
    for k in np.unique(shard[~test]).tolist():
        store.write_table(f"{layout.slice_dir(k, new_slice)}/{name}",
                          rows.filter(pa.array(~test & (shard == k))))
    if test.any():
        store.write_table(f"{layout.TEST}/{name}", rows.filter(pa.array(test)))
    train = placed.filter(pa.array(~test))
    store.write_table(f"{layout.INDEX}/{name}", pa.table({
        "id": train.column("id"), "shard": train.column("shard"),
        "slice": pa.array(np.full(train.num_rows, new_slice, np.int64))}))
    grown = cfg.updated(added_slices=new_slice + 1 - cfg.partition.slices)
    write_config(store, grown)
    return grown
