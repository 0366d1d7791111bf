"""Where a command's work runs: in this process, on an embedded Ray, or on a cluster —
decided once per command (:func:`decide`) and asked by every step (:class:`Site`).

In this process (Ray is not imported) when nothing asks for Ray and the work is small:
backend ``local`` always; backend ``ray`` without GPUs, no ``--address`` /
``RAY_ADDRESS``, Ray not already started in this process (a library user's or a test
session's Ray is used), the rows at most ``data.blocks.IN_PROCESS_MAX_ROWS`` and rows x
epochs e0 at most ``IN_PROCESS_MAX_SAMPLE_EPOCHS`` (``CLUL_RAY_IN_PROCESS_MAX`` overrides
it; 0 turns the in-process path off). Starting Ray and its workers costs more than such
work, and the in-process path gives bit-for-bit the models Ray workers give
(``tests/test_sisa_e2e.py::test_in_process_and_ray_workers_train_identically``; and
``unlearn``'s shard edits the ones Ray tasks make:
``tests/test_warm_workers.py::test_in_process_edits_equal_the_ray_tasks_ones``).

With Ray, the finer choices are also made here: the executor of slice steps, whether a
small source is written by this process rather than by Ray writer tasks, and whether an
evaluation goes through Ray Data. The decision is pure given what it reads (the config,
the address, the row count, the environment and whether Ray is started).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from ...config import PipelineConfig
from ...data.blocks import IN_PROCESS_MAX_ROWS
from ...phases import phase

IN_PROCESS_MAX_SAMPLE_EPOCHS = 300_000
ENV = "CLUL_RAY_IN_PROCESS_MAX"
# Up to this many row predictions (test rows x shards to predict) run in this process: Ray
# Data's start-up costs far more than predicting them (benchmarks/eval_cache.py). The bound
# keeps the driver's copy of the test split small.
IN_PROCESS_MAX_PREDICTIONS = 2_000_000


class Where(StrEnum):
    PROCESS = "process"  # this process; Ray is not imported
    RAY = "ray"  # Ray: the one this process started or joined (embedded, or `ray start`)
    CLUSTER = "cluster"  # a Ray cluster at an address (`--address`, RAY_ADDRESS)


def ray_started() -> bool:
    """Whether Ray is initialised in this process (without importing it)."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


@dataclass(frozen=True)
class Site:
    """Where one command's work runs; every step asks it."""

    where: Where
    address: str | None = None

    @property
    def in_process(self) -> bool:
        return self.where == Where.PROCESS

    @property
    def uses_ray(self) -> bool:
        return self.where != Where.PROCESS

    def backend(self, cfg: PipelineConfig) -> str:
        """The executor of slice steps: ``local`` in process; on a cluster (an address)
        with backend ``ray``, ``warm`` (the root's detached shard workers, kept between
        commands; unless ``compute.warm_idle_seconds`` is 0); else the config's."""
        if self.in_process:
            return "local"
        c = cfg.compute
        if self.where == Where.CLUSTER and c.backend == "ray" and c.warm_idle_seconds > 0:
            return "warm"
        return c.backend

    def writes_in_process(self, small: bool) -> bool:
        """Whether the partition writer runs in this process: always in process, and for
        a small source (``data.blocks.small_data``) with Ray too — one writer does it in
        less time than starting Ray writer tasks costs."""
        return self.in_process or small

    def ray_data(self, rows: int, shards: int) -> bool:
        """Whether an evaluation of ``rows`` test rows by ``shards`` models goes through Ray
        Data (else this process predicts): with Ray joined (not where :meth:`defers_ray`
        left it), above ``IN_PROCESS_MAX_PREDICTIONS`` row predictions."""
        return self.uses_ray and ray_started() and rows * shards > IN_PROCESS_MAX_PREDICTIONS

    def defers_ray(self, cfg: PipelineConfig, root: str) -> bool:
        """Whether a command whose only Ray work is its shard jobs (a deletion, an
        ``unlearn``) may leave Ray unjoined: on a cluster, the root's warm workers have
        doors on this machine (:mod:`.door`); it joins (:meth:`start`) only where a door
        fails."""
        if self.where != Where.CLUSTER or self.backend(cfg) != "warm":
            return False
        from .door import pool_doors
        from .warm import door_key

        return pool_doors(door_key(root, self.address), cfg.compute.gpus_per_shard) is not None

    def start(self, cfg: PipelineConfig, root: str, root_is_local: bool,
              timings: dict | None = None) -> None:
        """Start or join Ray (nothing in process; the start-up time into ``timings``
        when this call started it) and check the root and the shard resources against the
        cluster: a local-path root on several nodes only as a declared shared mount; shard
        resources some node can hold (unless ``CLUL_RAY_WAIT_FOR_RESOURCES=1``: an
        autoscaler adds such nodes). Idempotent."""
        if self.in_process:
            return
        from ...runtime import check_shard_fits, check_storage_root, ensure_ray, node_resources

        t0, started = time.perf_counter(), ray_started()
        ensure_ray(self.address)
        if timings is not None and not started:
            timings["ray_start_seconds"] = time.perf_counter() - t0
        with phase("checks"):
            nodes = node_resources()
            check_storage_root(root, root_is_local, len(nodes), cfg.compute.shared_storage)
            if os.environ.get("CLUL_RAY_WAIT_FOR_RESOURCES", "0") not in ("1", "true", "yes"):
                check_shard_fits(nodes, cfg.compute.cpus_per_shard, cfg.compute.gpus_per_shard,
                                 cfg.ddp_world_size)


def in_process_limit(cfg: PipelineConfig, address: str | None) -> int:
    """The rows x epochs bound of in-process work; 0 where something asks for Ray."""
    c = cfg.compute
    limit = int(os.environ.get(ENV, IN_PROCESS_MAX_SAMPLE_EPOCHS))
    if (c.backend != "ray" or c.gpus_per_shard or address or os.environ.get("RAY_ADDRESS")
            or limit <= 0 or ray_started()):
        return 0
    return limit


def on_ray(address: str | None = None) -> Site:
    """Ray: a cluster at ``address`` (or ``RAY_ADDRESS``), else the local one."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    return Site(Where.CLUSTER if address else Where.RAY, address)


def decide(cfg: PipelineConfig, address: str | None, rows: Callable[[], int] | None
           ) -> Site:
    """Where a command runs: ``rows()`` is its work's row count (the source's for a first
    training, the rows of the shards a deletion retrains, the root's training rows for an
    approximate unlearning), None when unknown (then Ray); asked only where its answer
    matters."""
    small = cfg.compute.backend == "local"
    if not small and (limit := in_process_limit(cfg, address)) and rows is not None:
        n = rows()
        small = n <= IN_PROCESS_MAX_ROWS and n * cfg.train.epochs <= limit
    if small:
        return Site(Where.PROCESS)
    return on_ray(address)
