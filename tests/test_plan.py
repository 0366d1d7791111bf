import numpy as np
import pytest

from clul_ray.sisa.decisions.aggregate import aggregate
from clul_ray.sisa.decisions.plan import (
    checkpoint_keys,
    epochs_per_slice,
    expected_cost,
    plan_deletion,
)

pytestmark = pytest.mark.pure


def test_sisa_epoch_schedule():
    # e' = 2R/(R+1) e0 in all, e'/R per slice
    assert epochs_per_slice(20, 4) == 8
    assert epochs_per_slice(10, 1) == 10
    assert epochs_per_slice(1, 50) == 1
    assert epochs_per_slice(20, 4, override=3) == 3


def test_keys_keep_prefix_and_change_from_affected_slice():
    slices = [np.array([1, 5]), np.array([2, 9]), np.array([3, 4])]
    k1 = checkpoint_keys("cfg", 0, slices)
    k2 = checkpoint_keys("cfg", 0, [slices[0], np.array([2]), slices[2]])
    assert k1[0] == k2[0]
    assert k1[1] != k2[1] and k1[2] != k2[2]
    assert checkpoint_keys("other", 0, slices)[0] != k1[0]
    assert checkpoint_keys("cfg", 1, slices)[0] != k1[0]
    assert checkpoint_keys("cfg", 0, [np.array([5, 1]), *slices[1:]]) == k1  # order-free


def test_plan_finds_earliest_slice_per_shard_and_unknowns():
    ids = np.array([10, 11, 12, 13, 14, 15])
    shard = np.array([0, 0, 1, 1, 2, 2])
    slc = np.array([2, 0, 1, 3, 0, 0])
    plan = plan_deletion(ids, shard, slc, np.array([99]), np.array([10, 11, 13, 99, 77]))
    assert plan.affected == {0: 0, 1: 3}
    assert plan.train_ids == [10, 11, 13]
    assert plan.test_ids == [99]
    assert plan.unknown == [77]


def test_expected_cost_matches_formula():
    c = expected_cost(1000, 10, 5, 1, 2)
    assert c["batched_samples"] == pytest.approx(1000 * 0.1 - 1)
    assert c["one_request_sample_epochs"] == pytest.approx(2 * 100 * (2 / 3 + 1 / 15))


def test_vote_ties_go_to_lowest_class_and_mean_differs():
    p = np.array([
        [[0.6, 0.4, 0.0]],
        [[0.0, 0.45, 0.55]],
        [[0.1, 0.0, 0.9]],
        [[0.4, 0.6, 0.0]],
    ])
    # labels 0, 2, 2, 1 -> class 2 wins the vote
    assert aggregate(p, "vote").tolist() == [2]
    tie = p[[0, 1]]  # labels 0 and 2: a tie goes to class 0
    assert aggregate(tie, "vote").tolist() == [0]
    confident = np.array([[[0.51, 0.49]], [[0.51, 0.49]], [[0.0, 1.0]]])
    assert aggregate(confident, "vote").tolist() == [0]
    assert aggregate(confident, "mean").tolist() == [1]
    with pytest.raises(ValueError):
        aggregate(p, "median")


def test_sample_epochs_counts_the_union_of_slices():
    from clul_ray.sisa.decisions.plan import sample_epochs

    counts = np.array([[2, 3, 5], [1, 1, 1]])
    # shard 0 from slice 1: unions 5 and 10; shard 1 from slice 2: union 3; 2 epochs each
    assert sample_epochs(counts, {0: 1, 1: 2}, 2) == (5 + 10 + 3) * 2
    assert sample_epochs(counts, {}, 2) == 0
