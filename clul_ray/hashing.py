"""Pure, vectorised hashing: seeds, id placement, digests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser over a uint64 array (wrapping arithmetic)."""
    z = np.asarray(x, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
    return z


def hash_ids(seed: int, ids: np.ndarray, salt: int = 0) -> np.ndarray:
    """A stable 64-bit hash of each id under (seed, salt); independent of other ids."""
    key = splitmix64(np.array([(seed * 1_000_003 + salt) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    ids64 = np.asarray(ids, dtype=np.int64).view(np.uint64)
    return splitmix64(ids64 ^ key[0])


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integer parts, e.g. (seed, shard, slice, epoch)."""
    h = hashlib.sha256(":".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def sha256_ids(ids: Iterable[int] | np.ndarray) -> str:
    """SHA-256 of a set of ids: sorted int64 little-endian bytes."""
    arr = np.unique(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids,
                               dtype=np.int64))
    return hashlib.sha256(arr.astype("<i8").tobytes()).hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def chain(prev: str, *parts: str) -> str:
    h = hashlib.sha256(prev.encode())
    for p in parts:
        h.update(b"\0")
        h.update(p.encode())
    return h.hexdigest()
