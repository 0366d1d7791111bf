"""A source's rows as numbered blocks, and the checks of one block and their reduction.

Partitioning reads a source block by block (:func:`source_blocks`, :func:`read_block`),
so a writer holds one block at a time whatever the dataset's size, and checks each block
as it goes (:func:`check_block`: labels, feature width, finite features, ids repeated
within the block). The driver reduces the blocks' small summaries
(:func:`reduce_checks`): the first problem in block order, the row count, the largest
label, and whether ids could repeat across blocks (their id ranges overlap), which only
then needs a look at all ids. Pure: no Ray.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ClulError
from .sources import DataSource, canonicalize, features, synthetic_block

TABLE_BLOCK = 50_000
"""Rows per block of a source held in memory (digits, torchvision sets)."""


def source_blocks(source: DataSource) -> list[tuple]:
    """The source's blocks, each a small picklable reference that :func:`read_block` reads:
    ``("rows", start, stop)`` of an in-memory table, ``("synthetic", b)``, or
    ``("parquet", file, row_group)``."""
    if source.table is not None:
        n = source.table.num_rows
        return [("rows", s, min(n, s + TABLE_BLOCK)) for s in range(0, max(n, 1), TABLE_BLOCK)]
    if source.kind == "synthetic":
        return [("synthetic", b) for b in range(source.options["blocks"])]
    import pyarrow.dataset as pads

    ds = pads.dataset(source.options["path"], format="parquet",
                      filesystem=source.options["fs"])
    return [("parquet", frag.path, rg.id) for frag in ds.get_fragments()
            for rg in frag.row_groups]


def read_block(source: DataSource, block: tuple) -> pa.Table:
    """Canonical rows of one block (see :func:`source_blocks`)."""
    kind = block[0]
    if kind == "rows":
        return source.table.slice(block[1], block[2] - block[1])
    if kind == "synthetic":
        o = source.options
        return synthetic_block(block[1], o["n"], o["seed"], source.num_classes, o["dim"])
    import pyarrow.parquet as pq

    f = pq.ParquetFile(block[1], filesystem=source.options["fs"])
    return canonicalize(f.read_row_group(block[2]), source.group_column, source.spec)


IN_PROCESS_MAX_ROWS = 200_000
"""Data up to this many rows is partitioned in one process: one writer does it in less
time than starting Ray writer tasks costs (benchmarks/RESULTS.md, the scale table)."""


def source_rows(source: DataSource) -> int:
    """The source's row count (Parquet: from the files' metadata)."""
    if source.table is not None:
        return source.table.num_rows
    if source.kind == "synthetic":
        return int(source.options["n"])
    import pyarrow.dataset as pads

    return pads.dataset(source.options["path"], format="parquet",
                        filesystem=source.options["fs"]).count_rows()


def small_data(source: DataSource) -> bool:
    """Small data, where fanning writers out over Ray costs more than it saves."""
    return source_rows(source) <= IN_PROCESS_MAX_ROWS


def check_block(t: pa.Table, width: int) -> dict[str, Any]:
    """One block's summary: rows, id range, largest label, the first problem (one line,
    or None) and the ids repeated within the block (at most 5 of them, and their count)."""
    n = t.num_rows
    out: dict[str, Any] = {"n": n, "problem": None, "max_label": -1, "dups": [],
                           "n_dups": 0, "min_id": None, "max_id": None}
    if n == 0:
        return out
    ids, labels = t.column("id").to_numpy(), t.column("label").to_numpy()
    out.update(min_id=int(ids.min()), max_id=int(ids.max()), max_label=int(labels.max()))
    d = t.column("x").type.list_size
    if labels.min() < 0:
        out["problem"] = f"negative label {int(labels.min())}"
    elif d != width:
        out["problem"] = f"rows have {d} features, expected {width}"
    else:
        bad = ~np.isfinite(features(t)).all(axis=1)
        if bad.any():
            out["problem"] = (f"NaN or infinite features in {int(bad.sum())} rows "
                              f"(first id {int(ids[bad][0])})")
    srt = np.sort(ids)
    dup = np.unique(srt[1:][srt[1:] == srt[:-1]])
    out.update(dups=dup[:5].tolist(), n_dups=len(dup))
    return out


def ranges_overlap(checks: list[dict[str, Any]]) -> bool:
    """Whether two blocks' id ranges overlap (only then can an id repeat across blocks)."""
    spans = sorted((c["min_id"], c["max_id"]) for c in checks if c["n"])
    return any(b[0] <= a[1] for a, b in zip(spans, spans[1:], strict=False))


def duplicate_error(spec: str, dup: np.ndarray) -> ClulError:
    shown = ", ".join(str(int(i)) for i in dup[:5])
    return ClulError(f"{spec}: {len(dup)} duplicate ids (e.g. {shown})")


def reduce_checks(spec: str, num_classes: int, checks: list[dict[str, Any]]) -> int:
    """Refuse bad data from the blocks' summaries (in block order); returns the row count.
    Ids repeated across blocks are not seen here: see :func:`ranges_overlap`."""
    for c in checks:
        if c["problem"]:
            raise ClulError(f"{spec}: {c['problem']}")
    n = sum(c["n"] for c in checks)
    if n == 0:
        raise ClulError(f"{spec}: the dataset is empty")
    max_label = max(c["max_label"] for c in checks)
    if max_label >= num_classes:
        raise ClulError(f"{spec}: label {max_label} is outside [0, {num_classes})")
    if any(c["n_dups"] for c in checks):
        dup = np.unique(np.concatenate([np.asarray(c["dups"], np.int64) for c in checks]))
        err = duplicate_error(spec, dup)
        total = sum(c["n_dups"] for c in checks)
        raise ClulError(str(err).replace(f"{len(dup)} duplicate", f"{total} duplicate", 1))
    return n
