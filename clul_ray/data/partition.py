"""The pure, seeded placement of ids: (seed, id) -> (shard, slice), and the test split.

Each id's place depends only on the seed and the id (or its group), never on what else
the dataset holds: training on X and on X minus D put every common id in the same place.
"""

from __future__ import annotations

import numpy as np

from ..hashing import hash_ids

_SALT_TEST = 1
_SALT_SHARD = 2
_SALT_SLICE = 3
_SALT_GROUP = 4


def is_test(seed: int, ids: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the held-out test rows, by id hash (stable under deletions)."""
    if fraction <= 0:
        return np.zeros(len(ids), dtype=bool)
    h = hash_ids(seed, ids, _SALT_TEST)
    return (h % np.uint64(1_000_000)) < np.uint64(round(fraction * 1_000_000))


def group_keys(groups: np.ndarray) -> np.ndarray:
    """Map a group column (integers or strings) to int64 keys, stably."""
    arr = np.asarray(groups)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    import hashlib

    return np.array(
        [int.from_bytes(hashlib.sha256(str(g).encode()).digest()[:8], "little", signed=True)
         for g in arr],
        dtype=np.int64,
    )


def assign(
    seed: int, ids: np.ndarray, shards: int, slices: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(shard, slice) of each id. With `groups`, every row of a group lands in one shard."""
    ids = np.asarray(ids, dtype=np.int64)
    shard_src = group_keys(groups) if groups is not None else ids
    salt = _SALT_GROUP if groups is not None else _SALT_SHARD
    shard = (hash_ids(seed, shard_src, salt) % np.uint64(shards)).astype(np.int64)
    slc = (hash_ids(seed, ids, _SALT_SLICE) % np.uint64(slices)).astype(np.int64)
    return shard, slc
