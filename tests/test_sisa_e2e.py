"""End to end on a local Ray: exactness, minimality, refusals, durability, no residue."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import tiny_config

from clul_ray import Pipeline
from clul_ray.errors import ClulError
from clul_ray.faults import Faults


def shas(result):
    return {s["shard"]: s["model_sha256"] for s in result["per_shard"]}


def pick(root, shard_slices):
    """One training id from each requested (shard, slice)."""
    ids, shard, slc = Pipeline(str(root)).store.read_index()
    return [int(ids[(shard == k) & (slc == r)][0]) for k, r in shard_slices]


def snapshot(root):
    """Digest of every file under the root (path and bytes)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_deletion_equals_training_without_the_data(trained_root, deletion_case):
    root, before = trained_root
    d, ref = deletion_case
    after = Pipeline(str(root)).delete(d)
    assert after["samples"] == before["samples"] - len(d) == ref["samples"]
    assert shas(after) == shas(ref), "every shard model is bit-for-bit the retrained one"
    for key in ("ensemble_accuracy", "ensemble_precision", "ensemble_recall", "ensemble_f1"):
        assert after[key] == ref[key], key


def test_deletion_is_minimal(trained_root, deletion_case):
    root, before = trained_root
    d, _ = deletion_case
    keys_before = {s.shard: s.keys for s in Pipeline(str(root)).state.shards}
    after = Pipeline(str(root)).delete(d)
    assert after["affected"] == {"0": 1, "2": 2}
    assert after["retrained"] == after["affected"], "retrained from the earliest slice only"
    assert after["checkpoints_discarded"] == 2 + 1
    keys_after = {s.shard: s.keys for s in Pipeline(str(root)).state.shards}
    assert keys_after[1] == keys_before[1] and shas(after)[1] == shas(before)[1]
    assert keys_after[0][:1] == keys_before[0][:1] and keys_after[0][1] != keys_before[0][1]
    assert keys_after[2][:2] == keys_before[2][:2] and keys_after[2][2] != keys_before[2][2]


def test_no_residue_after_deletion(trained_root, deletion_case):
    root, _ = trained_root
    d, _ = deletion_case
    p = Pipeline(str(root))
    p.delete(d)
    for f in root.joinpath("data").rglob("*.parquet"):
        assert not np.isin(pq.read_table(f, columns=["id"]).column("id").to_numpy(), d).any()
    assert not np.isin(p.store.read_index()[0], d).any()
    assert set(p.store.checkpoint_files()) == p.state.checkpoint_paths(), \
        "only current checkpoints remain"


def test_in_process_and_ray_workers_train_identically(trained_base, tmp_path):
    """Backend local (partitioning, training and evaluation in this process, no Ray) gives
    the Ray backend's models and accuracy."""
    _, ray_result = trained_base
    local = Pipeline(str(tmp_path / "local")).train(tiny_config(backend="local"))
    assert shas(local) == shas(ray_result)
    for key in ("ensemble_accuracy", "ensemble_precision", "ensemble_recall", "ensemble_f1"):
        assert local[key] == ray_result[key], key
    assert local["test_samples"] == ray_result["test_samples"]


def test_training_seed_changes_models_not_placement(trained_base, tmp_path):
    """train.seed apart from the placement seed: other weights, the same partitions, and
    the root accepts it (no repartitioning)."""
    base_root, base = trained_base
    p = Pipeline(str(tmp_path / "root"))
    other = p.train(tiny_config(train={"seed": 7}))
    assert all(a != b for a, b in zip(shas(other).values(), shas(base).values(), strict=True))
    ids, shard, slc = p.store.read_index()
    b_ids, b_shard, b_slc = Pipeline(str(base_root)).store.read_index()
    order, b_order = np.argsort(ids), np.argsort(b_ids)
    assert (ids[order] == b_ids[b_order]).all() and (shard[order] == b_shard[b_order]).all()
    assert (slc[order] == b_slc[b_order]).all()
    back = p.train(tiny_config())  # the same root, the placement seed's training again
    assert shas(back) == shas(base)


@pytest.mark.parametrize("ids, message", [
    ([], "empty"),
    ([5, 5], "repeated"),
    ([10**9], "unknown ids"),
])
def test_bad_requests_change_nothing(trained_root, ids, message):
    root, _ = trained_root
    before = snapshot(root)
    with pytest.raises(ClulError, match=message):
        Pipeline(str(root)).delete(ids)
    assert snapshot(root) == before


def test_mixed_unknown_ids_change_nothing(trained_root):
    root, _ = trained_root
    before = snapshot(root)
    good = pick(root, [(0, 0)])
    with pytest.raises(ClulError, match="1 unknown ids"):
        Pipeline(str(root)).delete(good + [-3])
    assert snapshot(root) == before


def test_already_deleted_ids_retrain_nothing(trained_root):
    root, _ = trained_root
    ids = pick(root, [(1, 2)])
    first = Pipeline(str(root)).delete(ids)
    before = snapshot(root)
    again = Pipeline(str(root)).delete(ids)
    assert again["already_deleted"] == ids and again["retrained"] == {}
    assert again["version"] == first["version"]
    assert snapshot(root) == before


def test_test_split_ids_are_removed_without_retraining(trained_root):
    root, before = trained_root
    p = Pipeline(str(root))
    tid = int(p.store.test_ids()[0])
    out = p.delete([tid])
    assert out["affected"] == {} and out["retrained"] == {}
    assert tid not in p.store.test_ids()
    assert out["test_samples"] == before["test_samples"] - 1
    assert shas(out) == shas(before)


@pytest.mark.parametrize("stage", ["data_removed", "checkpoints_discarded", "retrained"])
def test_crash_is_resumed_from_the_ledger(trained_root, deletion_case, stage):
    root, _ = trained_root
    d, ref = deletion_case
    p = Pipeline(str(root), faults=Faults(crash_after=stage))
    with pytest.raises(RuntimeError, match="injected crash"):
        p.delete(d)
    assert Pipeline(str(root)).status()["requests"]["pending"], "the request is still open"
    resumed = Pipeline(str(root)).evaluate()  # the next command finishes the request
    assert shas(resumed) == shas(ref)
    st = Pipeline(str(root)).status()
    assert st["requests"] == {"committed": 1, "pending": []}
    assert st["version"] == 2, "one version for one request, even across a crash"
    again = Pipeline(str(root)).delete(d)
    assert again["already_deleted"] == sorted(d)


def test_changed_partition_config_is_refused(trained_root):
    root, _ = trained_root
    with pytest.raises(ClulError, match="partitioned with other shards"):
        Pipeline(str(root)).train(tiny_config(shards=5))


def test_retrain_with_same_config_reuses_every_checkpoint(trained_root):
    root, before = trained_root
    again = Pipeline(str(root)).train(tiny_config())
    assert all(s["retrained_from"] is None for s in again["per_shard"])
    assert shas(again) == shas(before)


# ---- shard resources no node can hold are refused, not queued forever -------------------
@pytest.mark.parametrize("nodes,cpus,gpus,ok", [
    ([{"CPU": 2.0}], 1, 0.0, True),
    ([{"CPU": 2.0}], 1, 0.25, False),            # fractional GPU on a CPU-only cluster
    ([{"CPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}], 4, 0.25, True),
    ([{"CPU": 2.0}, {"CPU": 1.0, "GPU": 1.0}], 2, 0.5, False),  # no single node has both
    ([], 1, 0.0, False),
])
def test_check_shard_fits(nodes, cpus, gpus, ok):
    from clul_ray.runtime import check_shard_fits

    if ok:
        check_shard_fits(nodes, cpus, gpus)
    else:
        with pytest.raises(ClulError, match="no node of the Ray cluster has that"):
            check_shard_fits(nodes, cpus, gpus)


def test_gpu_shards_on_a_cluster_without_them_are_refused_before_writing(tmp_path,
                                                                          monkeypatch):
    monkeypatch.delenv("CLUL_RAY_WAIT_FOR_RESOURCES", raising=False)
    root = tmp_path / "root"
    with pytest.raises(ClulError, match=r"needs 1 CPU and 64 GPU on one node"):
        Pipeline(str(root)).train(tiny_config(gpus_per_shard=64))
    assert not root.exists()
