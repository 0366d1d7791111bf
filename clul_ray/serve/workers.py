"""Warm shard workers: long-lived Ray actors, one per shard up to the cluster's CPUs
(:func:`pool_size`), so a retrain pays only its compute (no process start, no torch
import, no re-reading of unchanged slices). ``warm_up`` reads a shard's slices and runs a
throwaway training step before the service's first request.

Each actor keeps the Parquet tables it read in memory, keyed by the file's path, size and
modification time: a slice a deletion rewrote is read again, every other one comes from
memory. The actors run the same :func:`clul_ray.sisa.compute.trainer.train_slice` as every other
executor, so a warm retrain writes the same checkpoints, bit for bit.

The actors reserve no CPU while they wait (``num_cpus=0``; a retrain uses the config's
``threads_per_shard`` torch threads), so idle workers never block other Ray work; a shard
on GPUs reserves its ``gpus_per_shard`` for as long as its worker lives.
"""

from __future__ import annotations

import numpy as np

from ..config import PipelineConfig
from ..models import batch_loss
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
        self.warmed: set[int] = set()  # shards whose slices warm_up read

    def train_job(self, cfg: PipelineConfig, shard: int, start: int, keys: list[str],
                  start_sha: str) -> list[SliceResult]:
        """A shard job's slice steps, in order, in one call (no round trip per step)."""
        out, prev = [], start_sha
        for r in range(start, cfg.partition.total_slices):
            out.append(train_slice(cfg, self.store, shard, r, keys, node_id(), prev_sha=prev))
            prev = out[-1].file_sha256
        return out

    def cache_stats(self) -> dict:
        return {"hits": self.store.hits, "misses": self.store.misses,
                "warmed": sorted(self.warmed)}

    def warm_up(self, cfg: PipelineConfig, shard: int) -> dict:
        """Before the first retrain: read the shard's slices into the cache (as a retrain
        reads them) and run one training step on a throwaway model (torch's first-use
        costs); nothing is written, and a retrain seeds everything it draws."""
        import torch

        from ..sisa.compute import trainer

        torch.set_num_threads(cfg.compute.threads_per_shard)
        dim = int(np.prod(cfg.data.input_shape))
        x, y = trainer.load_union(self.store, shard, cfg.partition.total_slices - 1, dim)
        if len(y):
            device = trainer.device_for(cfg, node_id())
            model = trainer.init_model(cfg, shard).to(device)
            opt = trainer.make_shard_optimizer(cfg, model)
            n = min(len(y), cfg.train.batch_size)
            batch_loss(model, torch.tensor(x[:n], device=device),
                       torch.tensor(y[:n], device=device)).backward()
            opt.step()
        self.warmed.add(shard)
        return self.cache_stats()


def pool_size(shards: int, cpus: float, cpus_per_shard: float, gpus_per_shard: float
              ) -> int:
    """How many warm workers serve ``shards``: one per shard, but no more than the
    cluster's CPUs train at once (``cpus / cpus_per_shard``, at least one): a worker beyond
    that is one more process to start (and one more torch) that could only wait. Shards on
    GPUs keep a worker each (it holds the shard's GPUs)."""
    if gpus_per_shard > 0:
        return shards
    return max(1, min(shards, int(cpus // (cpus_per_shard or 1.0))))


class WarmExecutor:
    """Runs shard jobs on persistent :class:`ShardWorker` actors (created on first use):
    shard ``k`` on worker ``k % n``, n by :func:`pool_size`; a job's slice steps in order
    in one call on its worker, jobs on different workers in parallel."""

    def __init__(self, root: str):
        self.root = root
        self.workers: dict[int, object] = {}
        self.size: int | None = None  # fixed by the first worker made

    def worker(self, cfg: PipelineConfig, shard: int):
        import ray

        if self.size is None:
            c = cfg.compute
            self.size = pool_size(cfg.partition.shards, ray.cluster_resources().get("CPU", 1),
                                  c.cpus_per_shard, c.gpus_per_shard)
        i = shard % self.size
        if i not in self.workers:
            actor = ray.remote(ShardWorker).options(
                num_cpus=0, num_gpus=cfg.compute.gpus_per_shard,
                name=None, max_restarts=1, max_task_retries=1)
            self.workers[i] = actor.remote(self.root)
        return self.workers[i]

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

    def warm_up(self, cfg: PipelineConfig, shards: list[int]) -> dict:
        """Start every shard's worker now and have it read its shard's slices (all of them
        at once, in parallel), so the first retrain pays only its compute: {ref to the
        worker's cache stats once warm: shard} (wait for them before serving)."""
        return {self.worker(cfg, k).warm_up.remote(cfg, k): k for k in shards}

    def close(self) -> None:
        import ray

        for w in self.workers.values():
            ray.kill(w)
        self.workers.clear()
