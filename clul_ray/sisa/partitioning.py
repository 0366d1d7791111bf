"""Writing a dataset's partitions under a root: ``data/train/shard=K/slice=R/``,
``data/test/`` and the index, placed by :func:`clul_ray.data.partition.assign`.

Ray Data streams and writes the rows on the Ray backends; backend ``local`` writes them
in-process with pyarrow (no Ray). Both give the same rows in the same places.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from .. import layout
from ..config import PipelineConfig
from ..data.partition import assign, is_test
from ..data.sources import DataSource
from ..errors import ClulError
from ..store import Store

Progress = Callable[[str, int, int], None]


def placer(cfg: PipelineConfig) -> Callable[[pa.Table], pa.Table]:
    """Canonical rows -> the same rows with ``shard``, ``slice`` and ``test`` columns."""
    p = cfg.partition

    def place(t: pa.Table) -> pa.Table:
        ids = t.column("id").to_numpy()
        groups = (t.column(p.group_column).to_numpy(zero_copy_only=False)
                  if p.group_column else None)
        shard, slc = assign(p.seed, ids, p.shards, p.slices, groups)
        return (t.append_column("shard", pa.array(shard))
                .append_column("slice", pa.array(slc))
                .append_column("test", pa.array(is_test(p.seed, ids, p.test_fraction))))

    return place


def train_rows(t: pa.Table) -> pa.Table:
    return t.filter(pc.invert(t["test"])).drop_columns(["test"])


def test_rows(t: pa.Table) -> pa.Table:
    return t.filter(t["test"]).drop_columns(["test", "shard", "slice"])


def partition(store: Store, cfg: PipelineConfig, source: DataSource, progress: Progress,
              use_ray: bool) -> int:
    """Validate the source and write its partitions (replacing any); returns the row count."""
    for d in ("data", layout.INDEX, layout.CHECKPOINTS):
        store.delete(d)
    progress("validating data", 0, 1)
    n = source.validate()
    progress("validating data", 1, 1)
    progress("partitioning", 0, n)
    (_with_ray if use_ray else _in_process)(store, placer(cfg), source)
    if not store.list_files(layout.INDEX, ".parquet"):
        raise ClulError("no training rows left after holding out the test split")
    progress("partitioning", n, n)
    return n


def _with_ray(store: Store, place, source: DataSource) -> None:
    placed = source.ray_dataset().map_batches(place, batch_format="pyarrow").materialize()
    train = placed.map_batches(train_rows, batch_format="pyarrow").materialize()
    if train.count() == 0:
        return
    fs = store.fs
    train.write_parquet(store.path(layout.TRAIN), filesystem=fs,
                        partition_cols=["shard", "slice"])
    train.select_columns(["id", "shard", "slice"]).write_parquet(
        store.path(layout.INDEX), filesystem=fs)
    placed.map_batches(test_rows, batch_format="pyarrow").write_parquet(
        store.path(layout.TEST), filesystem=fs)


def _in_process(store: Store, place, source: DataSource) -> None:
    for i, block in enumerate(source.iter_tables()):
        t = place(block)
        train, test = train_rows(t), test_rows(t)
        if train.num_rows:
            pads.write_dataset(train, store.path(layout.TRAIN), filesystem=store.fs,
                               format="parquet", partitioning=["shard", "slice"],
                               partitioning_flavor="hive", basename_template=f"b{i}-{{i}}.parquet",
                               existing_data_behavior="overwrite_or_ignore")
            store.write_table(f"{layout.INDEX}/b{i}.parquet",
                              train.select(["id", "shard", "slice"]))
        if test.num_rows:
            store.write_table(f"{layout.TEST}/b{i}.parquet", test)
