"""Pure SISA logic: epoch schedule, checkpoint keys, which slice steps to run, deletion
planning, expected cost."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field

from ...hashing import chain, sha256_ids


def epochs_per_slice(epochs: int, slices: int, override: int | None = None) -> int:
    """SISA's schedule: e' = 2R/(R+1) * e0 epochs in all, e'/R per slice (at least 1)."""
    if override is not None:
        return override
    return max(1, math.ceil(2 * epochs / (slices + 1)))


def checkpoint_keys(training_digest: str, shard: int, slice_ids: list[np.ndarray]) -> list[str]:
    """Key of the checkpoint after each slice: a hash chain over the ids each slice holds.

    key_r = H(key_{r-1}, r, sha256(ids of slice r)), key_{-1} = H(config digest, shard).
    An unchanged prefix keeps its keys (and is reused); a changed slice changes its key
    and every later one.
    """
    return chained_keys(training_digest, shard, [sha256_ids(ids) for ids in slice_ids])


def chained_keys(training_digest: str, shard: int, slice_digests: list[str]) -> list[str]:
    """:func:`checkpoint_keys` from each slice's id digest (``sha256_ids``)."""
    key = chain(training_digest, f"shard={shard}")
    keys = []
    for r, digest in enumerate(slice_digests):
        key = chain(key, f"slice={r}", digest)
        keys.append(key)
    return keys


@dataclass(frozen=True)
class ShardJob:
    """Train ``shard`` from slice ``start`` to the last slice, with these checkpoint keys."""

    shard: int
    start: int
    keys: tuple[str, ...]
    start_sha: str = ""  # file digest of the checkpoint the job starts from ("" unknown)


def first_missing(keys: list[str] | tuple[str, ...], has: Callable[[int, str], bool],
                  start: int = 0) -> int:
    """The first slice from ``start`` on whose checkpoint (under its key) is missing, or
    ``len(keys)``. A key digests the training config and the ids of slices 0..r, so a
    checkpoint found under its key was trained on exactly this data and is reused."""
    return next((r for r in range(start, len(keys)) if not has(r, keys[r])), len(keys))


def plan_training(keys: dict[int, list[str]], has: Callable[[int, int, str], bool]
                  ) -> list[ShardJob]:
    """The shard jobs that bring every shard to its last slice: each from its first slice
    without a matching checkpoint (``has(shard, slice, key)``); complete shards need none."""
    jobs = []
    for k, ks in sorted(keys.items()):
        start = first_missing(ks, lambda r, key, k=k: has(k, r, key))
        if start < len(ks):
            jobs.append(ShardJob(k, start, tuple(ks)))
    return jobs


class RequestPlan(BaseModel):
    """The rows a request changes and where: per shard, the earliest slice holding one of
    them (a deletion's or unlearning's removed ids, an addition's new slice), the training
    and test ids, and (not stored) the ids the root does not know."""

    affected: dict[int, int] = Field(default_factory=dict)
    train_ids: list[int] = Field(default_factory=list)
    test_ids: list[int] = Field(default_factory=list)
    unknown: list[int] = Field(default_factory=list, exclude=True)

    @property
    def ids(self) -> np.ndarray:
        """Every id the plan removes (training and test), sorted."""
        return np.array(sorted(self.train_ids + self.test_ids), dtype=np.int64)


def plan_deletion(index_ids: np.ndarray, index_shard: np.ndarray, index_slice: np.ndarray,
                  test_ids: np.ndarray, request: np.ndarray) -> RequestPlan:
    """(index, test ids, requested ids) -> affected shards with earliest slices, unknown ids."""
    request = np.unique(np.asarray(request, dtype=np.int64))
    in_train = np.isin(request, index_ids)
    in_test = np.isin(request, test_ids)
    plan = RequestPlan(
        train_ids=request[in_train].tolist(),
        test_ids=request[in_test & ~in_train].tolist(),
        unknown=request[~in_train & ~in_test].tolist(),
    )
    if plan.train_ids:
        mask = np.isin(index_ids, request)
        for s, r in zip(index_shard[mask].tolist(), index_slice[mask].tolist(), strict=True):
            if s not in plan.affected or r < plan.affected[s]:
                plan.affected[s] = r
    return plan


def expected_cost(n: int, shards: int, slices: int, requests: int, epochs: int) -> dict:
    """SISA's expected retraining cost, in samples and sample-epochs (Bourtoule et al.,
    "Machine Unlearning", IEEE S&P 2021)."""
    s, k = shards, requests
    batched = n * (1 - (1 - 1 / s) ** k) - k
    sequential = (n / s + 1 / (2 * s) - 1) * k - k * k / (2 * s)
    one_sliced = epochs * (n / s) * (2 / 3 + 1 / (3 * slices))
    return {"batched_samples": batched, "sequential_samples": sequential,
            "one_request_sample_epochs": one_sliced, "full_sample_epochs": epochs * n}


def sample_epochs(counts: np.ndarray, starts: dict[int, int], eps: int) -> int:
    """Training work, in sample-epochs, of retraining shard k from slice starts[k] on.

    ``counts[k, r]`` is the number of rows in slice r of shard k; slice step r trains
    ``eps`` epochs on slices 0..r.
    """
    union = np.cumsum(np.asarray(counts), axis=1)
    return int(sum(union[k, r0:].sum() for k, r0 in starts.items()) * eps)


def critical_path(results) -> float:
    """The compute on a training's critical path: shards train in parallel, a shard's
    slice steps one after another, so the most any shard's steps took (each result has
    ``shard`` and ``seconds``)."""
    per: dict[int, float] = {}
    for r in results:
        per[r.shard] = per.get(r.shard, 0.0) + r.seconds
    return max(per.values(), default=0.0)
