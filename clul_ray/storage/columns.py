"""Arrow columns to and from numpy without pandas.

pyarrow converts through its pandas layer — ``Array.to_numpy``, ``pa.array`` and
``pa.table`` of numpy arrays all import pandas when it is installed, which costs a
deletion's driver more than its whole plan (``benchmarks/compute_limit.py``, phase
``plan``). Numeric columns without nulls are what the storage layer reads and writes on
that path (ids, shards, slices, labels, masks, probabilities): those go through pyarrow's
zero-copy buffer and DLPack interfaces instead. Anything else falls back to pyarrow's own
conversion, so the values are always the same.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def to_numpy(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The values of ``col`` (read-only when zero-copy), as ``col.to_numpy()`` gives them."""
    if not (_numeric(col.type) and col.null_count == 0):
        return (col.to_numpy() if isinstance(col, pa.ChunkedArray)
                else col.to_numpy(zero_copy_only=False))
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    if not chunks:
        chunks = [pa.Array.from_buffers(col.type, 0, [None, pa.py_buffer(b"")])]
    if len(chunks) == 1:
        return np.from_dlpack(chunks[0])
    return np.concatenate([np.from_dlpack(c) for c in chunks])


def from_numpy(values: np.ndarray) -> pa.Array:
    """A 1-D numeric or boolean numpy array as an Arrow array (no nulls), as
    ``pa.array(values)`` makes it."""
    a = np.asarray(values)
    if a.ndim != 1:
        return pa.array(a)
    if a.dtype == np.bool_:
        bits = np.packbits(a, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(a), [None, pa.py_buffer(bits)])
    if a.dtype.kind not in "iuf" or a.dtype.byteorder == ">":
        return pa.array(a)
    a = np.ascontiguousarray(a)
    return pa.Array.from_buffers(pa.from_numpy_dtype(a.dtype), len(a),
                                 [None, pa.py_buffer(a)])


def table(columns: dict[str, np.ndarray]) -> pa.Table:
    """``pa.table(columns)`` for 1-D numpy columns."""
    return pa.Table.from_arrays([from_numpy(v) for v in columns.values()],
                                names=list(columns))


def list_values(col: pa.FixedSizeListArray) -> np.ndarray:
    """The values of a fixed-size list array without null lists, row after row:
    ``col.flatten()`` without pyarrow.compute (whose import that call triggers)."""
    size = col.type.list_size
    return to_numpy(col.values.slice(col.offset * size, len(col) * size))


MAX_RUNS = 64


def keep_rows(t: pa.Table, keep: np.ndarray) -> pa.Table:
    """``t.filter(keep)``: a few runs of kept rows (a deletion's usual case) as zero-copy
    slices of ``t``, without pyarrow.compute; more runs through ``filter``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], np.asarray(keep, np.int8), [0]))))
    runs = list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
    if len(runs) > MAX_RUNS:
        return t.filter(from_numpy(np.asarray(keep, bool)))
    return pa.concat_tables([t.slice(a, b - a) for a, b in runs]) if runs else t.slice(0, 0)
