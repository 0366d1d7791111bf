"""The next model version, built from what changed (pure).

Per shard, a version serves, in order of precedence: the model an approximate method just
edited; the model this operation just trained; the previous version's model when its
checkpoint chain is unchanged; else the model stored under the shard's last key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...config import PipelineConfig
from ..records.version import ModelVersion, ShardState

if TYPE_CHECKING:
    from ..records.checkpoint import SliceResult


def build_version(cfg: PipelineConfig, prev: ModelVersion | None,
                  keys: dict[int, list[str]], results: list[SliceResult],
                  starts: dict[int, int], operation: str, request_id: str | None,
                  timings: dict[str, float], edited: dict[int, dict] | None,
                  stored: Callable[[int, str], SliceResult]) -> ModelVersion:
    """The next version. ``stored(shard, key)`` reads a last-slice result from storage."""
    last_slice = cfg.partition.total_slices - 1
    last = {r.shard: r for r in results if r.slice == last_slice}
    seconds: dict[int, float] = {}
    for r in results:
        seconds[r.shard] = seconds.get(r.shard, 0.0) + r.seconds
    by_step = {(r.shard, r.slice): r for r in results}

    def digests(k: int, old) -> list[str]:
        """Each slice checkpoint's file digest: this run's, else the previous version's
        under the same key, else "" (the commit check reads it)."""
        out = []
        for r, key in enumerate(keys[k]):
            res = by_step.get((k, r))
            if res is not None and res.file_sha256:
                out.append(res.file_sha256)
            elif old is not None and old.keys[r:r + 1] == [key] \
                    and r < len(old.checkpoint_sha256):
                out.append(old.checkpoint_sha256[r])
            else:
                out.append("")
        return out

    shards = []
    for k in range(cfg.partition.shards):
        base = {"shard": k, "keys": keys[k], "retrained_from": starts.get(k)}
        old = prev.shard(k) if prev is not None else None
        if edited and k in edited:
            e = edited[k]
            s = ShardState(**base, artifact=e["artifact"], **{x: e[x] for x in (
                "n_samples", "model_sha256", "node_id", "seconds")})
        elif k in last:
            res = last[k]
            s = ShardState(**base, n_samples=res.n_samples, model_sha256=res.model_sha256,
                           node_id=res.node_id, seconds=seconds[k],
                           step_nodes={str(r.slice): r.node_id for r in results
                                       if r.shard == k}, checkpoint_sha256=digests(k, old))
        elif old is not None and old.keys == keys[k]:
            s = old.model_copy(update={"retrained_from": starts.get(k),
                                       "checkpoint_sha256": digests(k, old)})
        else:
            res = stored(k, keys[k][-1])
            s = ShardState(**base, n_samples=res.n_samples, model_sha256=res.model_sha256,
                           node_id=res.node_id, seconds=res.seconds,
                           checkpoint_sha256=digests(k, old))
        shards.append(s)
    return ModelVersion(version=prev.version + 1 if prev else 1,
                        parent=prev.version if prev else None, operation=operation,
                        request_id=request_id, created=time.time(),
                        training_digest=cfg.training_digest(), shards=shards,
                        timings=timings)
