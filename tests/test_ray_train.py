"""Ray Train backend: one TorchTrainer per shard, DDP inside the shard, same checkpoints.

Exactness holds per backend and per DDP world size: 1 worker equals the default backend
bit for bit; 2 workers (gloo DDP) differ from 1 (gradient averaging changes float sums),
but a deletion on 2 workers equals a fresh 2-worker training without the deleted ids.
"""

from __future__ import annotations

import pytest
from conftest import digits_parquet, tiny_config

from clul_ray import Pipeline
from clul_ray.errors import ClulError
from clul_ray.faults import Faults
from clul_ray.runtime import check_storage_root

SMALL = dict(shards=2, slices=2, epochs=2, model_args={"hidden": 16})


def shas(result):
    return {s["shard"]: s["model_sha256"] for s in result["per_shard"]}


def test_one_worker_equals_the_default_backend(tmp_path):
    """Bit for bit (one shard: shards train apart, and each fit costs a Ray Train
    start-up); the pipeline's progress counts every Ray Train step once."""
    one = dict(SMALL, shards=1)
    calls = []
    ref = Pipeline(str(tmp_path / "ray")).train(tiny_config(**one))
    got = Pipeline(str(tmp_path / "rt"), progress=lambda d, done, total: calls.append(
        (d, done, total))).train(tiny_config(**one, backend="ray_train"))
    assert shas(got) == shas(ref)
    assert not (tmp_path / "rt" / "_ray_train").exists(), "Ray Train run folders cleaned"
    steps = [c for c in calls if c[0] == "training slices"]
    assert steps[-1][1] == steps[-1][2] == SMALL.get("slices", 3)
    assert [c[1] for c in steps] == sorted({c[1] for c in steps})  # each count once


@pytest.mark.slow  # three 2-worker fits, run one after another (2 CPUs)
def test_two_worker_ddp_deletion_equals_fresh_training(tmp_path):
    """One shard (a 2-worker fit costs a Ray Train start-up; minimality across shards is
    tested on the other backends)."""
    ddp = dict(SMALL, shards=1, backend="ray_train", train_workers_per_shard=2)
    p = Pipeline(str(tmp_path / "root"))
    before = p.train(tiny_config(**ddp))
    ids, shard, slc = p.store.read_index()
    d = [int(ids[(shard == 0) & (slc == 1)][0]), int(ids[(shard == 0) & (slc == 1)][2])]
    after = p.delete(d)  # from slice 1: one 2-worker fit
    assert after["retrained"] == {"0": 1}
    data = digits_parquet(tmp_path / "minus_d.parquet", d)
    ref = Pipeline(str(tmp_path / "ref")).train(tiny_config(
        **ddp, dataset=data, input_shape=[1, 8, 8], num_classes=10))
    assert shas(after) == shas(ref), "2-worker retrain is exact within the backend"
    one = Pipeline(str(tmp_path / "one")).train(tiny_config(  # == 1-worker ray_train
        **dict(SMALL, shards=1), dataset=data, input_shape=[1, 8, 8], num_classes=10))
    assert shas(one) != shas(ref), "DDP over 2 workers changes float sums"
    assert before["samples"] == after["samples"] + len(d)


@pytest.mark.slow
def test_failed_worker_resumes_from_the_stored_checkpoint(tmp_path):
    p = Pipeline(str(tmp_path / "root"), faults=Faults(fail_after_slice=0))
    got = p.train(tiny_config(**dict(SMALL, shards=1), backend="ray_train"))
    ref = Pipeline(str(tmp_path / "ref")).train(tiny_config(**dict(SMALL, shards=1)))
    assert shas(got) == shas(ref)


def test_local_root_on_a_multi_node_cluster_is_refused():
    check_storage_root("/data/run", True, 1, False)
    check_storage_root("s3://b/run", False, 3, False)
    check_storage_root("/mnt/nfs/run", True, 3, True)
    with pytest.raises(ClulError, match="local path but the Ray cluster has 3 nodes"):
        check_storage_root("/data/run", True, 3, False)


def test_progress_reports_each_step_once_as_its_checkpoint_lands(tmp_path):
    """The Ray Train backend's per-step progress: a step is reported when its checkpoint
    appears in the store (before its trainer returns), and never twice."""
    import time

    from clul_ray.sisa.compute.executor import _CheckpointWatcher
    from clul_ray.sisa.decisions.plan import ShardJob
    from clul_ray.sisa.records.checkpoint import SliceResult
    from clul_ray.storage.layout import checkpoint_path
    from clul_ray.storage.store import Store

    store = Store(str(tmp_path / "root"))
    jobs = [ShardJob(shard=0, start=1, keys=("k0", "k1", "k2")),
            ShardJob(shard=1, start=0, keys=("j0", "j1", "j2"))]
    got = []
    w = _CheckpointWatcher(store, jobs, 3, got.append, poll_seconds=0.05)
    try:
        store.write_bytes(checkpoint_path(1, 0, "j0"), b"x")
        store.write_bytes(checkpoint_path(0, 0, "k0"), b"x")  # before start: not a step
        store.write_bytes(checkpoint_path(1, 1, "stale"), b"x")  # another key
        deadline = time.time() + 5
        while not got and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        assert [(r.shard, r.slice, r.node_id) for r in got] == [(1, 0, "pending")]
        w.notify(SliceResult(1, 0, "j0", 10, 1.0, "node-a", "sha"))  # already reported
        w.notify(SliceResult(0, 2, "k2", 10, 1.0, "node-a", "sha"))
        assert [(r.shard, r.slice) for r in got] == [(1, 0), (0, 2)]
    finally:
        w.stop()
