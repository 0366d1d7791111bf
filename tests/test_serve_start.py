"""The deletion service's start (in process, no HTTP): before it is built (so before
Serve reports it healthy) every shard model is loaded, every shard's worker has read its
slices, and the driver's store holds what the first commit reads; the first retrain then
reads from its worker's cache only the slice the deletion rewrote."""

from __future__ import annotations

import time

import pytest
import ray

from clul_ray.serve.service import DeletionService
from clul_ray.sisa.compute.warm import pool_size
from clul_ray.storage import layout


@pytest.mark.pure
def test_pool_size_is_one_worker_per_shard_up_to_the_cpus():
    assert pool_size(8, cpus=2, cpus_per_shard=1, gpus_per_shard=0) == 2
    assert pool_size(3, cpus=16, cpus_per_shard=1, gpus_per_shard=0) == 3
    assert pool_size(8, cpus=8, cpus_per_shard=2, gpus_per_shard=0) == 4
    assert pool_size(8, cpus=2, cpus_per_shard=0, gpus_per_shard=0) == 2
    assert pool_size(8, cpus=1, cpus_per_shard=4, gpus_per_shard=0) == 1
    assert pool_size(8, cpus=2, cpus_per_shard=1, gpus_per_shard=1) == 8  # a GPU each


def test_start_warms_every_worker_and_the_first_retrain_reads_from_cache(trained_root):
    root, _ = trained_root
    svc = DeletionService(str(root), lineage=False)
    try:
        cfg, store = svc.pipeline.config, svc.pipeline.store
        shards, slices = cfg.partition.shards, cfg.partition.total_slices
        # every shard's worker read its slices before the service was built
        assert set(svc.warm) == set(range(shards))
        for k, stats in svc.warm.items():
            assert k in stats["warmed"], (k, stats)
        stats = {k: ray.get(svc.executor.worker(cfg, k).cache_stats.remote())
                 for k in range(shards)}
        assert all(k in stats[k]["warmed"] for k in range(shards))
        per_worker = {id(svc.executor.worker(cfg, k)): stats[k] for k in range(shards)}
        # each slice file read once, and the test split once by each worker (its retrains
        # store their new models' test predictions)
        assert sum(s["misses"] for s in per_worker.values()) == len(
            store.list_files(layout.TRAIN, ".parquet")) + len(per_worker) * len(
            store.list_files(layout.TEST, ".parquet"))
        # every shard model loaded; the phases of the start reported
        assert sorted(svc.models) == list(range(shards))
        assert svc.describe()["start_seconds"]["total"] > 0
        assert set(svc.start_seconds) >= {"check data", "load models",
                                          "read for the first commit",
                                          "wait for the warm shard workers"}
        # the driver's store already holds the commit checks' reads: none misses again
        misses = store.misses
        from clul_ray.serve.startup import read_for_commit

        read_for_commit(store, svc.pipeline.state, slices)
        assert store.misses == misses
        # a deletion in the middle slice of shard 1: its retrain reads from the cache all
        # but the one slice file RemoveRows rewrote
        ids, shard, slc = store.read_index()
        worker = svc.executor.worker(cfg, 1)
        before = ray.get(worker.cache_stats.remote())
        ack = svc.submit([int(ids[(shard == 1) & (slc == 1)][0])])
        end = time.time() + 300
        while svc.request(ack["request_id"])["state"] != "committed":
            assert time.time() < end and not svc.errors, svc.errors
            time.sleep(0.1)
        after = ray.get(worker.cache_stats.remote())
        assert after["misses"] - before["misses"] == 1, (before, after)
        assert after["hits"] - before["hits"] >= 1, (before, after)
    finally:
        svc.close()


@pytest.mark.pure
def test_lineage_calls_wait_for_the_driver_idle_at_most_yield_s():
    import threading

    from clul_ray.serve.deferred import Deferred

    idle, ran = threading.Event(), []
    d = Deferred(object(), idle, yield_s=30.0)
    try:
        done = d.run_soon(ran.append, 1)
        assert not done.wait(0.3) and ran == []  # the driver is working: not yet
        idle.set()
        assert done.wait(10) and ran == [1]
    finally:
        d.close()
    busy = threading.Event()  # never idle: a call still runs after yield_s
    d = Deferred(object(), busy, yield_s=0.2)
    try:
        assert d.run_soon(ran.append, 2).wait(10) and ran == [1, 2]
    finally:
        d.close()
