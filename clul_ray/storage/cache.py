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
unchanged content. The CLI's writing commands (``train``, ``add``, ``delete``) read through
one for their life, so the index and the slices a command's plan, checks, commit and
certificate each read come from one read; ``clul-ray verify`` reads everything again with
a plain store.

Thread-safe: the deletion service reads through one caching store from its request
threads, its driver thread and its lineage thread while the driver writes. One lock guards
the memo and its counters; a value is computed outside it (a slow read never blocks the
others), and a value whose files this store wrote or deleted while it was being computed
is returned to its caller but not kept (it may have been read from the old content under
an identity the new content shares).
"""

from __future__ import annotations

import threading
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


def _under(rel: str, rels: tuple[str, ...]) -> bool:
    """Whether ``rel`` is one of ``rels`` or lies under one of them (a folder)."""
    return any(rel == r or rel.startswith(r.rstrip("/") + "/") for r in rels)


class _Computing:
    """A value being computed for ``rels``: ``stale`` once this store changes one of them."""

    __slots__ = ("rels", "stale")

    def __init__(self, rels: tuple[str, ...]):
        self.rels, self.stale = rels, False


class CachingStore(Store):
    """A store whose Parquet reads and derived values (:meth:`memo`) are kept while their
    files are unchanged."""

    keeps_reads = True

    def __init__(self, root: str):
        super().__init__(root)
        self._lock = threading.Lock()  # the memo, the values in flight and the counters
        self._memo: dict[tuple, tuple] = {}
        self._computing: set[_Computing] = set()
        self.hits = 0
        self.misses = 0

    def __reduce__(self):
        """Sent to another process (a Ray task's argument), a caching store is a plain
        store of the same root: its memory stays with the process that read it."""
        return (Store, (self.root,))

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
        """Remember ``value`` for ``rels`` as they are now (the caller just wrote them)."""
        entry = (tuple(self._identity(r) for r in rels), _frozen(value))
        with self._lock:
            self._memo[(rels, tag)] = entry
        return value

    def memo(self, rels: tuple[str, ...], tag: str, compute: Callable[[], T]) -> T:
        key = (rels, tag)
        computing = _Computing(rels)
        with self._lock:  # in flight before the identity is taken: no write is missed
            hit = self._memo.get(key)
            self._computing.add(computing)
        try:
            ident = tuple(self._identity(r) for r in rels)  # taken before computing
            if hit is not None and hit[0] == ident:
                with self._lock:
                    self.hits += 1
                return hit[1]
            value = _frozen(compute())
        finally:
            with self._lock:
                self._computing.discard(computing)
        with self._lock:
            self.misses += 1
            if not computing.stale:
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
        with self._lock:
            for k in [k for k in self._memo if _under(rel, k[0])]:
                del self._memo[k]
            for c in self._computing:
                if _under(rel, c.rels):
                    c.stale = True

    def write_bytes(self, rel: str, data: bytes) -> None:
        self._forget(rel)
        super().write_bytes(rel, data)
        self._forget(rel)

    def delete(self, rel: str) -> None:
        self._forget(rel)
        super().delete(rel)
        self._forget(rel)
