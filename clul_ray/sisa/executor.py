"""Executors run shard jobs (slice steps of shard trainers): in-process, or on Ray.

A shard's slice steps form a chain (slice r needs slice r-1's checkpoint); different
shards run in parallel. The Ray executor submits one task per slice step, each depending
on the previous step's result, so Ray orders them and retries a lost step alone (the
checkpoint of the previous slice is in the store).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..config import PipelineConfig
from ..errors import ClulError
from ..store import Store
from .trainer import SliceResult, train_slice

StepCallback = Callable[[SliceResult], None]


@dataclass(frozen=True)
class ShardJob:
    """Train ``shard`` from slice ``start`` to the last slice, with these checkpoint keys."""

    shard: int
    start: int
    keys: tuple[str, ...]


class LocalExecutor:
    """Runs every step in this process, one after another (tests, pure-compute timing)."""

    def run(self, cfg: PipelineConfig, store: Store, jobs: list[ShardJob],
            on_step: StepCallback | None = None) -> list[SliceResult]:
        out = []
        for job in jobs:
            for r in range(job.start, cfg.slices):
                res = train_slice(cfg, store, job.shard, r, list(job.keys))
                out.append(res)
                if on_step:
                    on_step(res)
        return out


def _remote_step(cfg: PipelineConfig, store: Store, shard: int, slc: int,
                 keys: list[str], _previous: SliceResult | None) -> SliceResult:
    import ray

    return train_slice(cfg, store, shard, slc, keys, ray.get_runtime_context().get_node_id())


class RayExecutor:
    """One Ray task per slice step, with ``cpus_per_shard`` / ``gpus_per_shard`` each."""

    def run(self, cfg: PipelineConfig, store: Store, jobs: list[ShardJob],
            on_step: StepCallback | None = None) -> list[SliceResult]:
        import ray

        step = ray.remote(_remote_step).options(
            num_cpus=cfg.cpus_per_shard, num_gpus=cfg.gpus_per_shard, max_retries=3,
            name="clul_ray.train_slice")
        refs, where = [], {}
        for job in jobs:
            prev = None
            for r in range(job.start, cfg.slices):
                prev = step.remote(cfg, store, job.shard, r, list(job.keys), prev)
                refs.append(prev)
                where[prev] = (job.shard, r)
        out, pending = [], list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    res = ray.get(ref)
                except ray.exceptions.RayError as e:
                    shard, r = where[ref]
                    cause = str(getattr(e, "cause", None) or e).strip().splitlines()[-1]
                    raise ClulError(f"training shard {shard} slice {r} failed: {cause}") from e
                out.append(res)
                if on_step:
                    on_step(res)
        return out


def make_executor(backend: str):
    if backend == "local":
        return LocalExecutor()
    if backend == "ray":
        return RayExecutor()
    raise ClulError(f"unknown backend '{backend}' (ray or local)")
