import numpy as np
import pytest

from clul_ray.data.partition import assign, is_test

pytestmark = pytest.mark.pure


def test_placement_depends_only_on_seed_and_id():
    ids = np.arange(10_000, dtype=np.int64)
    s1, r1 = assign(3, ids, 5, 4)
    sub = ids[::7]
    s2, r2 = assign(3, sub, 5, 4)
    assert (s1[::7] == s2).all() and (r1[::7] == r2).all()
    s3, _ = assign(4, ids, 5, 4)
    assert (s1 != s3).any(), "the seed changes the placement"


def test_placement_is_balanced():
    ids = np.arange(100_000, dtype=np.int64)
    shard, slc = assign(0, ids, 8, 4)
    assert set(shard.tolist()) == set(range(8)) and set(slc.tolist()) == set(range(4))
    counts = np.bincount(shard)
    assert counts.min() > 0.9 * counts.mean()


def test_groups_land_in_one_shard():
    ids = np.arange(5_000, dtype=np.int64)
    groups = np.array([f"user{i % 37}" for i in ids])
    shard, slc = assign(1, ids, 6, 3, groups)
    for g in np.unique(groups):
        assert len(set(shard[groups == g].tolist())) == 1
    assert len(set(slc[groups == "user0"].tolist())) > 1, "slices still spread a group"
    assert len(set(shard.tolist())) > 1


def test_test_split_is_stable_and_sized():
    ids = np.arange(50_000, dtype=np.int64)
    mask = is_test(0, ids, 0.2)
    assert abs(mask.mean() - 0.2) < 0.01
    assert (is_test(0, ids[100:], 0.2) == mask[100:]).all()
    assert not is_test(0, ids, 0.0).any()
