"""Warm shard workers: one long-lived Ray actor per shard, so a retrain pays only its
compute (no process start, no torch import, no re-reading of unchanged slices).

Each actor keeps the Parquet tables it read in memory, keyed by the file's path, size and
modification time: a slice a deletion rewrote is read again, every other one comes from
memory. The actors run the same :func:`clul_ray.sisa.compute.trainer.train_slice` as every other
executor, so a warm retrain writes the same checkpoints, bit for bit.

The actors reserve no CPU while they wait (``num_cpus=0``; a retrain uses the config's
``threads_per_shard`` torch threads), so idle workers never block other Ray work; a shard
on GPUs reserves its ``gpus_per_shard`` for as long as its worker lives.
"""

from __future__ import annotations

from ..config import PipelineConfig
from ..runtime import gather, node_id
from ..sisa.compute.executor import StepCallback
from ..sisa.compute.trainer import train_slice
from ..sisa.decisions.plan import ShardJob
from ..sisa.records.checkpoint import SliceResult
from ..storage.cache import CachingStore
from ..storage.store import Store


class ShardWorker:
    """The actor: trains slice steps of one shard against a caching store."""

    def __init__(self, root: str):
        import torch  # noqa: F401  (imported once, here)

        self.store = CachingStore(root)

    def train_job(self, cfg: PipelineConfig, shard: int, start: int, keys: list[str],
                  start_sha: str) -> list[SliceResult]:
        """A shard job's slice steps, in order, in one call (no round trip per step)."""
        out, prev = [], start_sha
        for r in range(start, cfg.partition.total_slices):
            out.append(train_slice(cfg, self.store, shard, r, keys, node_id(), prev_sha=prev))
            prev = out[-1].file_sha256
        return out

    def cache_stats(self) -> dict[str, int]:
        return {"hits": self.store.hits, "misses": self.store.misses}


class WarmExecutor:
    """Runs shard jobs on the persistent :class:`ShardWorker` of each shard (created on
    first use): a job's slice steps in order in one call on its worker, different shards
    in parallel."""

    def __init__(self, root: str):
        self.root = root
        self.workers: dict[int, object] = {}

    def worker(self, cfg: PipelineConfig, shard: int):
        if shard not in self.workers:
            import ray

            actor = ray.remote(ShardWorker).options(
                num_cpus=0, num_gpus=cfg.compute.gpus_per_shard,
                name=None, max_restarts=1, max_task_retries=1)
            self.workers[shard] = actor.remote(self.root)
        return self.workers[shard]

    def run(self, cfg: PipelineConfig, store: Store, jobs: list[ShardJob],
            on_step: StepCallback | None = None) -> list[SliceResult]:
        labels = {self.worker(cfg, job.shard).train_job.remote(
            cfg, job.shard, job.start, list(job.keys), job.start_sha):
            f"training shard {job.shard} from slice {job.start}" for job in jobs}

        def done(_, results: list[SliceResult]) -> None:
            for res in results:
                on_step(res)

        out = gather(labels, None if on_step is None else done)
        return [res for results in out.values() for res in results]

    def warm_up(self, cfg: PipelineConfig, shards: list[int]) -> None:
        """Start every shard's worker now (torch imported), not at the first request."""
        import ray

        ray.get([self.worker(cfg, k).cache_stats.remote() for k in shards])

    def close(self) -> None:
        import ray

        for w in self.workers.values():
            ray.kill(w)
        self.workers.clear()
