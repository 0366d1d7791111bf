"""The deletion service's caching store (``clul_ray/storecache.py``): a value derived from
files is reused only while those files are unchanged, whoever changes them; what it hands
out cannot be changed by a caller; and a check run through it finds what a plain store
finds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from clul_ray.sisa.records.certify import FindingKind, index_findings
from clul_ray.storage import layout
from clul_ray.storage.cache import CachingStore
from clul_ray.storage.store import Store

pytestmark = pytest.mark.pure


def _slice(store: Store, k: int, r: int, ids) -> None:
    store.write_table(f"{layout.slice_dir(k, r)}/part-0.parquet",
                      pa.table({"id": np.asarray(ids, np.int64)}))


def test_values_follow_the_files_whoever_writes_them(tmp_path):
    plain, cached = Store(str(tmp_path)), CachingStore(str(tmp_path))
    _slice(plain, 0, 0, [3, 1, 2])
    assert cached.slice_ids(0, 0).tolist() == [1, 2, 3]
    digest = cached.slice_digest(0, 0)
    misses = cached.misses
    assert cached.slice_ids(0, 0).tolist() == [1, 2, 3] and cached.misses == misses
    _slice(plain, 0, 0, [1, 2])  # another store (another process) rewrites the slice
    assert cached.slice_ids(0, 0).tolist() == [1, 2]
    assert cached.slice_digest(0, 0) != digest
    plain.write_table(f"{layout.slice_dir(0, 0)}/part-1.parquet",
                      pa.table({"id": np.array([7], np.int64)}))  # a file added
    assert cached.slice_ids(0, 0).tolist() == [1, 2, 7]
    cached.delete(f"{layout.slice_dir(0, 0)}/part-1.parquet")  # its own delete
    assert cached.slice_ids(0, 0).tolist() == [1, 2]
    with pytest.raises(ValueError):
        cached.slice_ids(0, 0)[0] = 99  # shared between callers: read-only


def test_own_rewrite_within_one_timestamp_is_not_served_stale(tmp_path):
    cached = CachingStore(str(tmp_path))
    _slice(cached, 1, 0, [5, 6])
    assert cached.slice_ids(1, 0).tolist() == [5, 6]
    _slice(cached, 1, 0, [5, 8])  # same size, possibly the same mtime: forgotten on write
    assert cached.slice_ids(1, 0).tolist() == [5, 8]


def test_rewritten_index_equals_a_fresh_read_and_checks_agree(tmp_path):
    plain, cached = Store(str(tmp_path)), CachingStore(str(tmp_path))
    ids = np.array([10, 11, 12, 13], np.int64)
    shard, slc = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 0])
    for k, r, want in [(0, 0, [10]), (0, 1, [11]), (1, 0, [12, 13])]:
        _slice(plain, k, r, want)
    plain.rewrite_index(ids, shard, slc)
    assert index_findings(cached, 2, 2) == index_findings(plain, 2, 2) == ()
    cached.rewrite_index(ids[:3], shard[:3], slc[:3])  # 13 leaves the index, not its slice
    for a, b in zip(cached.read_index(), Store(str(tmp_path)).read_index(), strict=True):
        assert a.tolist() == b.tolist()
    (f,) = index_findings(cached, 2, 2)
    assert (f.kind, f.area, f.path, f.ids.tolist(), f.shard, f.slice) == (
        FindingKind.EXTRA_ROWS, "data", layout.slice_dir(1, 0), [13], 1, 0)
    assert "1 rows are not in the index" in f.message
    assert index_findings(plain, 2, 2) == (f,)
