"""A store for a long-lived process that owns its root (the deletion service and its warm
shard workers): what it reads and derives from files no step changed comes from memory.

Every cached value is keyed by the identity of the files it was read or derived from:
path, size and modification time of each file (of every file under a folder, for a
folder). Checking that identity costs one ``stat`` per file or one listing per folder; a
changed, added or removed file changes it, and the value is read or derived again. The
store also forgets what it cached for a path it writes or deletes itself, so a rewrite
within the filesystem's timestamp resolution cannot serve old content.

Only a process that holds the root's lock (or reads files that are never rewritten in
place, like content-addressed checkpoints) should use it: it trusts (size, mtime) to mean
unchanged content. ``clul-ray verify`` reads everything again with a plain store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from . import layout
from .store import Store

T = TypeVar("T")


def _frozen(value):
    """Cached arrays are shared between callers: make them read-only."""
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif isinstance(value, tuple):
        for v in value:
            _frozen(v)
    return value


class CachingStore(Store):
    """A store whose Parquet reads and derived values (:meth:`memo`) are kept while their
    files are unchanged."""

    def __init__(self, root: str):
        super().__init__(root)
        self._memo: dict[tuple, tuple] = {}
        self.hits = 0
        self.misses = 0

    def _identity(self, rel: str) -> tuple | None:
        """(size, mtime) of a file, those of every file under a folder, None if absent."""
        info = self.fs.get_file_info(self.path(rel))
        if info.type == pafs.FileType.File:
            return (info.size, info.mtime_ns)
        if info.type != pafs.FileType.Directory:
            return None
        sel = pafs.FileSelector(self.path(rel), recursive=True)
        return tuple(sorted((i.path, i.size, i.mtime_ns) for i in self.fs.get_file_info(sel)
                            if i.type == pafs.FileType.File and ".tmp-" not in i.path))

    def _keep(self, rels: tuple[str, ...], tag: str, value):
        """Remember ``value`` for ``rels`` as they are now."""
        self._memo[(rels, tag)] = (tuple(self._identity(r) for r in rels), _frozen(value))
        return value

    def memo(self, rels: tuple[str, ...], tag: str, compute: Callable[[], T]) -> T:
        ident = tuple(self._identity(r) for r in rels)  # taken before computing
        key = (rels, tag)
        hit = self._memo.get(key)
        if hit is not None and hit[0] == ident:
            self.hits += 1
            return hit[1]
        self.misses += 1
        value = _frozen(compute())
        self._memo[key] = (ident, value)
        return value

    def rewrite_index(self, ids: np.ndarray, shard: np.ndarray, slc: np.ndarray) -> None:
        """The new index, remembered as written (it is not read back)."""
        super().rewrite_index(ids, shard, slc)
        self._keep((layout.INDEX,), "index", (np.array(ids, np.int64),
                                              np.array(shard, np.int64),
                                              np.array(slc, np.int64)))

    def read_parquet(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        return self.memo((rel,), f"parquet:{columns}",
                         lambda: Store.read_parquet(self, rel, columns))

    # ---- what this store changes, it forgets ------------------------------------------
    def _forget(self, rel: str) -> None:
        for k in [k for k in self._memo if any(rel == r or rel.startswith(r.rstrip("/") + "/")
                                               for r in k[0])]:
            del self._memo[k]

    def write_bytes(self, rel: str, data: bytes) -> None:
        self._forget(rel)
        super().write_bytes(rel, data)
        self._forget(rel)

    def delete(self, rel: str) -> None:
        self._forget(rel)
        super().delete(rel)
        self._forget(rel)
