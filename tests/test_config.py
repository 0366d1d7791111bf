"""The grouped pipeline config: flat files keep loading, digests keep their values, the
training seed is apart from the placement seed, refusals name the setting."""

from __future__ import annotations

import pytest

from clul_ray.config import PipelineConfig, make_config
from clul_ray.errors import ClulError

pytestmark = pytest.mark.pure

TINY = dict(dataset="digits", shards=3, slices=3, epochs=4, batch_size=32,
            model_args={"hidden": 32}, num_classes=10, input_shape=[1, 8, 8])


def test_flat_and_grouped_settings_give_one_config():
    grouped = make_config(data={"dataset": "digits", "num_classes": 10,
                                "input_shape": [1, 8, 8]},
                          partition={"shards": 3, "slices": 3},
                          train={"epochs": 4, "batch_size": 32, "model_args": {"hidden": 32}})
    assert make_config(**TINY) == grouped
    assert PipelineConfig(**grouped.model_dump()) == grouped  # a stored config reloads


def test_the_training_digest_keeps_the_value_of_the_first_flat_config():
    """Checkpoint keys of roots written before the grouping stay valid (digest recorded with
    the flat config)."""
    assert make_config(**TINY).training_digest() == \
        "5a795e76796a48063b6727f402eb9de681ab1a8337eb0882b7b5dc2e135db340"
    assert make_config().training_digest() == \
        "f256b055dc3522e2741f8108be397adec53c30b4ba832e17f0b93829c7b4c794"


def test_training_seed_changes_the_training_digest_not_the_partition():
    base = make_config(**TINY)
    other = base.updated(train={"seed": 5})
    assert other.train_seed == 5 and base.train_seed == base.partition.seed == 0
    assert other.partition_dict() == base.partition_dict()
    assert other.training_digest() != base.training_digest()
    moved = base.updated(seed=5)  # a flat seed is the placement seed; training follows it
    assert moved.partition_dict() != base.partition_dict() and moved.train_seed == 5


def test_backend_and_placement_are_not_in_the_training_digest():
    base = make_config(**TINY)
    assert base.updated(backend="local", placement="default").training_digest() == \
        base.training_digest()


@pytest.mark.parametrize("settings, message", [
    ({"shards": 0}, "invalid config: partition.shards: Input should be greater than"),
    ({"lr": -1}, "invalid config: train.lr"),
    ({"gpus_per_shard": 1.5}, "gpus_per_shard above 1 must be a whole number"),
    ({"shard": 3}, "invalid config: shard: Extra inputs are not permitted"),
    ({"shards": 2, "partition": {"shards": 3}}, "shards is given both flat and under"),
])
def test_bad_settings_are_refused_in_one_line(settings, message):
    with pytest.raises(ClulError, match=message) as e:
        make_config(**settings)
    assert "\n" not in str(e.value)


def test_yaml_flat_or_grouped_with_overrides(tmp_path):
    flat = tmp_path / "flat.yaml"
    flat.write_text("dataset: digits\nshards: 2\nslices: 2\nepochs: 2\n")
    grouped = tmp_path / "grouped.yaml"
    grouped.write_text("data: {dataset: digits}\npartition: {shards: 2, slices: 2}\n"
                       "train: {epochs: 2}\n")
    a = PipelineConfig.from_yaml(flat, epochs=3, shards=None)
    b = PipelineConfig.from_yaml(grouped, epochs=3)
    assert a == b and a.train.epochs == 3 and a.partition.shards == 2


def test_a_gpu_config_without_cuda_is_keyed_as_the_cpu_it_trains_on(monkeypatch):
    """Steps of backend local run in this process: without CUDA here a GPU config trains on
    the CPU, so its training digest (every checkpoint key) is the CPU config's."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = make_config(**TINY, backend="local")
    gpu = cpu.updated(gpus_per_shard=1)
    assert gpu.device == "cpu"
    assert gpu.training_digest() == cpu.training_digest() == make_config(**TINY).training_digest()


GPU_DIGEST = "5778f9759bbe0e2045163761d5c3be3de38c0ec4dbd9a892f749942fdcdc0b1d"


def test_a_gpu_config_with_cuda_keeps_its_cuda_digest(monkeypatch):
    """Where steps do run on CUDA (backend local with CUDA here, or Ray tasks holding GPUs,
    which Ray grants only on nodes that have them) the digest is the one recorded before."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert make_config(**TINY, gpus_per_shard=1, backend="local").training_digest() == GPU_DIGEST
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a head node without GPUs
    for backend in ("ray", "ray_train"):
        cfg = make_config(**TINY, gpus_per_shard=1, backend=backend)
        assert cfg.device == "cuda" and cfg.training_digest() == GPU_DIGEST


@pytest.mark.parametrize("gpus, cuda, device", [
    (0, False, "cpu"), (0, True, "cpu"), (1, False, "cpu"), (0.5, True, "cuda"), (2, True, "cuda")])
def test_one_rule_decides_the_device(gpus, cuda, device):
    from clul_ray.config import resolve_device

    assert resolve_device(gpus, cuda) == device
