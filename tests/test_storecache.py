"""The deletion service's caching store (``clul_ray/storage/cache.py``): a value derived
from files is reused only while those files are unchanged, whoever changes them; what it
hands out cannot be changed by a caller; a check run through it finds what a plain store
finds; and threads that read while another writes neither fail nor keep stale values."""

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


def test_memo_inserts_while_another_thread_forgets(tmp_path):
    """The deletion service reads through one caching store from several threads (request
    threads, the driver, lineage): values kept by some while another writes (and forgets
    what it changed) raise nothing and lose nothing."""
    import sys
    import threading

    cached = CachingStore(str(tmp_path))
    cached.write_bytes("w/file", b"x")
    for i in range(3000):  # a long memo: forgetting walks it while the others insert
        cached.memo((f"kept/{i}",), "n", lambda i=i: i)
    errors: list[BaseException] = []
    start, done = threading.Barrier(4), threading.Event()

    def reader(t: int) -> None:
        start.wait()
        j = 0
        while not done.is_set():  # values of the written file, forgotten by each write
            try:
                assert cached.memo(("w/file",), f"{t}:{j % 50}", lambda j=j: j % 50) == j % 50
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return
            j += 1

    def writer() -> None:
        start.wait()
        try:
            for _ in range(300):
                cached.write_bytes("w/file", b"x")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            done.set()

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        threads = [threading.Thread(target=reader, args=(t,)) for t in range(3)]
        threads.append(threading.Thread(target=writer))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        sys.setswitchinterval(before)
    assert not errors, f"{type(errors[0]).__name__}: {errors[0]}"
    assert all(cached.memo((f"kept/{i}",), "n", lambda: None) == i for i in range(3000))


def test_a_write_during_a_computation_is_not_kept(tmp_path):
    """A value computed from a file another thread rewrote meanwhile is returned to its
    caller but not kept, even when the rewrite leaves the file's size and mtime as they
    were (one timestamp tick): the next read computes from the new content."""
    import os
    import threading

    cached = CachingStore(str(tmp_path))
    cached.write_bytes("f", b"one")
    path = cached.path("f")
    reading, written = threading.Event(), threading.Event()

    def slow_read() -> bytes:
        data = cached.read_bytes("f")
        reading.set()
        written.wait(timeout=30)
        return data

    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(cached.memo(("f",), "bytes", slow_read)))
    t.start()
    assert reading.wait(timeout=30)
    st = os.stat(path)
    cached.write_bytes("f", b"two")  # same size; and the same mtime below
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    written.set()
    t.join(timeout=30)
    assert got == [b"one"]
    assert cached.memo(("f",), "bytes", lambda: cached.read_bytes("f")) == b"two"


def test_a_caching_store_travels_as_a_plain_store_of_its_root(tmp_path):
    """A Ray task's argument: the memory stays with the process that read it."""
    import pickle

    from clul_ray.storage.cache import CachingStore
    from clul_ray.storage.store import Store

    cs = CachingStore(str(tmp_path))
    cs.write_bytes("a.bin", b"x")
    cs.memo(("a.bin",), "t", lambda: 1)
    back = pickle.loads(pickle.dumps(cs))
    assert type(back) is Store and back.root == cs.root
    assert back.read_bytes("a.bin") == b"x"
