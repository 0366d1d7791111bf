"""The device in the checkpoint key is the device a step trains on: a GPU config on a
machine without CUDA trains on the CPU under the CPU config's keys, and a step whose keys
name cuda refuses to train where CUDA is absent."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from clul_ray.errors import ClulError
from clul_ray.sisa.compute.trainer import train_slice
from clul_ray.sisa.driver.pipeline import Pipeline
from clul_ray.sisa.records.checkpoint import read_checkpoint

pytestmark = pytest.mark.pure  # backend local: no Ray


def test_a_gpu_config_without_cuda_trains_on_cpu_under_the_cpu_keys(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = tiny_config(backend="local", epochs=1)
    gpu = cpu.updated(gpus_per_shard=1)
    a, b = Pipeline(str(tmp_path / "cpu")), Pipeline(str(tmp_path / "gpu"))
    a.train(cpu)
    b.train(gpu)
    va, vb = a.state, b.state
    assert b.config.device == "cpu" and b.config.compute.gpus_per_shard == 1
    assert vb.training_digest == va.training_digest == a.config.training_digest()
    assert [s.keys for s in vb.shards] == [s.keys for s in va.shards]
    assert [s.model_sha256 for s in vb.shards] == [s.model_sha256 for s in va.shards]
    last = gpu.partition.total_slices - 1
    ck = read_checkpoint(b.store, 0, last, vb.shards[0].keys[last])
    assert ck["training_digest"] == a.config.training_digest()

    # a step whose keys were made for GPU workers (backend ray: Ray grants the GPUs) finds
    # no CUDA here: it refuses rather than write a CPU model under a cuda key
    ray_gpu = b.config.updated(backend="ray")
    keys = b.shard_keys(ray_gpu, 0)
    with pytest.raises(ClulError, match="CUDA is not available"):
        train_slice(ray_gpu, b.store, 0, 0, keys)
    assert not b.store.has_checkpoint(0, 0, keys[0])
