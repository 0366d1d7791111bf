"""An ``s3://`` root on the local S3 server (``tests/s3server.py``): the one-writer lock by
conditional create, records written by one PUT (a cut write leaves the old version whole),
and the refusal of an object store without a conditional create."""

from __future__ import annotations

import json
import multiprocessing as mp
import socket
import threading

import pyarrow.fs as pafs
import pytest

from clul_ray.errors import ClulError
from clul_ray.storage import lock, s3
from clul_ray.storage.store import Store

pytestmark = pytest.mark.pure  # no Ray


def _racer(root: str, rounds: int, barrier, results) -> None:
    """One writer process (its own boto3 client): every round, try to take the lock at the
    same moment as the other; the winner releases it after both have tried."""
    store = Store(root)
    for r in range(rounds):
        barrier.wait()
        try:
            held = lock.acquire(store, f"racer round {r}")
        except ClulError:
            held = None
        results.put((r, held is not None))
        barrier.wait()
        if held is not None:
            lock.release(store, held)
        barrier.wait()


def test_two_processes_racing_for_the_lock_exactly_one_wins_every_round(s3_url):
    rounds = 60
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(s3_url, rounds, barrier, results))
             for _ in range(2)]
    for p in procs:
        p.start()
    wins: dict[int, int] = {}
    for _ in range(2 * rounds):
        r, won = results.get(timeout=120)
        wins[r] = wins.get(r, 0) + won
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert wins == {r: 1 for r in range(rounds)}
    assert lock.read_lock(Store(s3_url)) is None  # every winner released


def test_conditional_create_by_threads_each_with_its_own_client(s3_url):
    import boto3
    from botocore.exceptions import ClientError

    bucket, prefix = s3.location(s3_url)
    bad = []
    for r in range(50):
        won, barrier = [], threading.Barrier(2)

        def put(i, key=f"{prefix}/race-{r}", won=won, barrier=barrier):
            c = boto3.client("s3")
            barrier.wait()
            try:
                c.put_object(Bucket=bucket, Key=key, Body=str(i).encode(), IfNoneMatch="*")
                won.append(i)
            except ClientError as e:
                assert e.response["Error"]["Code"] == "PreconditionFailed"

        ts = [threading.Thread(target=put, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        bad += [r] if len(won) != 1 else []
    assert bad == []


def test_release_deletes_only_our_own_lock(s3_url):
    store = Store(s3_url)
    mine = lock.acquire(store, "delete")
    with pytest.raises(ClulError, match="in use by `delete`"):
        lock.acquire(store, "train")
    lock.unlock(store)  # an operator removes it; another writer takes the root
    theirs = lock.acquire(store, "train")
    lock.release(store, mine)  # a late release of the first holder
    assert lock.read_lock(store)["token"] == theirs["token"]
    lock.release(store, theirs)
    assert lock.read_lock(store) is None


def test_delete_if_match_keeps_a_lock_rewritten_since_it_was_read(s3_url):
    store = Store(s3_url)
    assert store.create_exclusive("lock.json", b'{"token": "a"}') is True
    assert store.create_exclusive("lock.json", b'{"token": "b"}') is False
    _, etag = store.read_versioned("lock.json")
    store.write_bytes("lock.json", b'{"token": "c"}')  # another content since our read
    assert store.delete_version("lock.json", etag) is False
    assert json.loads(store.read_bytes("lock.json")) == {"token": "c"}


def test_stale_lock_on_s3_is_broken(s3_url):
    import subprocess
    import sys
    import time

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    store = Store(s3_url)
    store.write_json("lock.json", {"token": "gone", "host": socket.gethostname(),
                                   "pid": p.pid, "command": "delete", "since": time.time()})
    held = lock.acquire(store, "train")
    assert lock.read_lock(store)["token"] == held["token"]
    lock.release(store, held)


def test_object_store_without_conditional_create_is_refused_unless_opted_in(monkeypatch):
    store = Store("mock:///root")
    with pytest.raises(ClulError, match="no atomic create-if-absent.*CLUL_RAY_BEST_EFFORT_LOCK"):
        lock.acquire(store, "delete")
    assert not store.exists(lock.LOCK)
    monkeypatch.setenv(lock.BEST_EFFORT_ENV, "1")
    held = lock.acquire(store, "delete", settle=0.0)
    assert lock.read_lock(store)["token"] == held["token"]


class _CuttingProxy:
    """A TCP proxy to the S3 server that forwards ``limit`` bytes of each request, then
    drops the connection: a writer whose upload dies halfway."""

    def __init__(self, upstream_port: int, limit: int):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port, self.up, self.limit, self.cut = self.sock.getsockname()[1], upstream_port, \
            limit, 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        u = socket.create_connection(("127.0.0.1", self.up))
        sent = 0
        while sent < self.limit:
            data = c.recv(min(65536, self.limit - sent))
            if not data:
                break
            u.sendall(data)
            sent += len(data)
        self.cut += 1
        for s in (c, u):
            s.shutdown(socket.SHUT_RDWR)
            s.close()


def test_a_record_write_cut_halfway_leaves_the_previous_version_whole(s3_url, s3_server):
    from s3server import env_set

    store = Store(s3_url)
    old = json.dumps({"v": 1, "pad": "a" * 1000}).encode()
    store.write_bytes("ledger/rec.json", old)
    proxy = _CuttingProxy(s3_server.port, limit=200_000)
    new = json.dumps({"v": 2, "pad": "b" * 2_000_000}).encode()
    with env_set({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"}):
        with pytest.raises(ClulError, match="cannot write .*rec.json"):
            Store(s3_url).write_bytes("ledger/rec.json", new)
    proxy.sock.close()
    assert proxy.cut >= 1
    assert store.read_bytes("ledger/rec.json") == old
    assert store.list_files("ledger") == ["ledger/rec.json"]  # no temporary object


def test_pyarrow_stream_closed_after_an_exception_uploads_the_partial_object(s3_url):
    """Why records are not written through pyarrow's output stream on S3: leaving its
    ``with`` block by an exception still completes the upload."""
    fs, base = s3.filesystem(s3_url)
    with pytest.raises(RuntimeError):
        with fs.open_output_stream(f"{base}/partial") as f:
            f.write(b"half")
            raise RuntimeError("the writer fails halfway")
    assert fs.get_file_info(f"{base}/partial").type == pafs.FileType.File
