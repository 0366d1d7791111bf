"""Executors run shard jobs (slice steps of shard trainers): in-process, or on Ray.

A shard's slice steps form a chain (slice r needs slice r-1's checkpoint); different
shards run in parallel. The Ray executor submits one task per slice step, each depending
on the previous step's result, so Ray orders them and retries a lost step alone (the
checkpoint of the previous slice is in the store). The Ray Train executor runs one
``TorchTrainer`` per shard job (DDP over ``train_workers_per_shard`` workers inside the
shard); see :class:`RayTrainExecutor`.

An executor also runs an approximate unlearning's shard edits (``edit``,
:func:`.approximate.unlearn_shard` per shard): in process for the local one, one Ray task
per shard for the Ray ones (an edit is one process's work, Ray Train's too), and on the
warm workers for :class:`.warm.WarmExecutor`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

from ...config import PipelineConfig
from ...errors import ClulError, last_line
from ...faults import NONE as NO_FAULTS
from ...faults import Faults
from ...runtime import gather, node_id
from ...storage import layout
from ...storage.store import Store
from ..decisions.plan import ShardJob, first_missing
from ..records.version import ShardState, SliceResult

StepCallback = Callable[[SliceResult], None]


class LocalExecutor:
    """Runs every step in this process, one after another (tests, pure-compute timing)."""

    def run(self, cfg: PipelineConfig, store: Store, jobs: list[ShardJob],
            on_step: StepCallback | None = None) -> list[SliceResult]:
        from .trainer import train_slice

        out = []
        for job in jobs:
            prev = job.start_sha
            for r in range(job.start, cfg.partition.total_slices):
                res = train_slice(cfg, store, job.shard, r, list(job.keys), prev_sha=prev)
                prev = res.file_sha256
                out.append(res)
                if on_step:
                    on_step(res)
        return out

    def edit(self, cfg: PipelineConfig, store: Store, shards: list[ShardState], edit
             ) -> dict[int, dict]:
        """Each shard's approximate edit (``edit``: an :class:`.approximate.Edit`), one
        after another: {shard: its result}."""
        from .approximate import unlearn_shard

        return {s.shard: unlearn_shard(cfg, store, s, edit) for s in shards}


def _remote_step(cfg: PipelineConfig, store: Store, shard: int, slc: int,
                 keys: list[str], previous: SliceResult | str) -> SliceResult:
    """One slice step; ``previous`` is the previous step's result (Ray orders the steps
    by it) or, for a job's first step, the digest of the checkpoint it starts from. The
    last slice's step also stores the new model's test-split predictions, so the command's
    evaluation reads them (:func:`.evaluation.cache_test_predictions`)."""
    from .evaluation import cache_test_predictions
    from .trainer import train_slice

    prev_sha = previous.file_sha256 if isinstance(previous, SliceResult) else previous
    res = train_slice(cfg, store, shard, slc, keys, node_id(), prev_sha=prev_sha)
    if slc == cfg.partition.total_slices - 1:
        cache_test_predictions(cfg, store, res)
    return res


def _remote_edit(cfg: PipelineConfig, store: Store, shard: ShardState, edit) -> dict:
    from .approximate import unlearn_shard

    return unlearn_shard(cfg, store, shard, edit, node_id())


class RayExecutor:
    """One Ray task per slice step, with ``cpus_per_shard`` / ``gpus_per_shard`` each.

    Steps are placed with Ray's ``SPREAD`` strategy unless ``placement: default``: shards are
    independent and every step reads its start checkpoint from the shared store, so spreading
    them balances a multi-node cluster (one node is no different)."""

    def run(self, cfg: PipelineConfig, store: Store, jobs: list[ShardJob],
            on_step: StepCallback | None = None) -> list[SliceResult]:
        import ray

        step = ray.remote(_remote_step).options(
            num_cpus=cfg.compute.cpus_per_shard, num_gpus=cfg.compute.gpus_per_shard, max_retries=3,
            name="clul_ray.train_slice",
            scheduling_strategy="SPREAD" if cfg.compute.placement == "spread" else "DEFAULT")
        labels = {}
        for job in jobs:
            prev = job.start_sha
            for r in range(job.start, cfg.partition.total_slices):
                prev = step.remote(cfg, store, job.shard, r, list(job.keys), prev)
                labels[prev] = f"training shard {job.shard} slice {r}"
        results = gather(labels, None if on_step is None else lambda _, res: on_step(res))
        return list(results.values())

    def edit(self, cfg: PipelineConfig, store: Store, shards: list[ShardState], edit
             ) -> dict[int, dict]:
        """One Ray task per shard's approximate edit, in parallel: {shard: its result}."""
        import ray

        task = ray.remote(_remote_edit).options(
            num_cpus=cfg.compute.cpus_per_shard, num_gpus=cfg.compute.gpus_per_shard,
            max_retries=3, name="clul_ray.unlearn_shard")
        refs = {task.remote(cfg, store, s, edit): s.shard for s in shards}
        done = gather({ref: f"unlearning shard {k}" for ref, k in refs.items()})
        return {refs[ref]: out for ref, out in done.items()}


def _train_shard_loop(config: dict) -> None:
    """Ray Train worker loop: the shard's slice steps, resumed from the store's checkpoints."""
    import ray.train

    from ...config import PipelineConfig
    from .trainer import train_slice

    cfg = PipelineConfig(**config["cfg"])
    store = Store(config["root"])
    shard, keys = config["shard"], list(config["keys"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    node = node_id()
    # all ranks see the same store, so they agree on the resume point (rank 0 wrote it
    # before the barrier of the previous attempt's last finished slice)
    start = first_missing(keys, lambda r, key: store.has_checkpoint(shard, r, key),
                          config["start"])
    done: list[dict] = []
    prev = config["start_sha"] if start == config["start"] else ""
    for r in range(start, cfg.partition.total_slices):
        res = train_slice(cfg, store, shard, r, keys, node, rank, world, prev)
        prev = res.file_sha256 if rank == 0 else ""
        done.append(asdict(res))
        if config.get("fail_after_slice") == r and rank == 0:  # fault injection, once
            marker = f"_ray_train/fail-once-{shard}"
            if not store.exists(marker):
                store.write_bytes(marker, b"1")
                raise RuntimeError(f"injected failure after shard {shard} slice {r}")
        ray.train.report({"shard": shard, "slices": done})


class RayTrainExecutor:
    """One Ray Train ``TorchTrainer`` per shard job: ``train_workers_per_shard`` workers
    (gloo / nccl DDP) train the shard's slice steps; rank 0 writes the same checkpoints as
    the other backends.

    Shard trainers run concurrently (``fit()`` in threads) as far as the cluster's CPUs
    hold them all (``train_workers_per_shard * cpus_per_shard`` each), else in waves; with
    one CPU per trainer's worth they run one after another. A failed worker restarts the
    trainer (``FailureConfig(max_failures=2)``), which resumes from the shard's last slice
    checkpoint in the store. Ray Train's own run folders go under ``_ray_train/`` in the
    storage root.

    Progress: ``on_step`` is called once per slice step as soon as its checkpoint lands in
    the store (one listing of ``checkpoints/`` every ``poll_seconds``, so object stores see
    one LIST per poll, not a request per step); such an early result carries only shard,
    slice and key (``node_id`` "pending"). The full results are the ones ``run`` returns.
    """

    max_failures = 2
    poll_seconds = 2.0

    def __init__(self, faults: Faults = NO_FAULTS):
        self.faults = faults

    def _fit(self, cfg: PipelineConfig, store: Store, job: ShardJob) -> list[SliceResult]:
        import uuid

        import ray.train
        from ray.train.torch import TorchTrainer

        per_worker = {"CPU": cfg.compute.cpus_per_shard}
        if cfg.compute.gpus_per_shard > 0:
            per_worker["GPU"] = cfg.compute.gpus_per_shard
        trainer = TorchTrainer(
            _train_shard_loop,
            train_loop_config={"cfg": cfg.model_dump(), "root": store.root, "shard": job.shard,
                               "start": job.start, "keys": list(job.keys),
                               "start_sha": job.start_sha,
                               "fail_after_slice": self.faults.fail_after_slice},
            scaling_config=ray.train.ScalingConfig(
                num_workers=cfg.compute.train_workers_per_shard,
                use_gpu=cfg.compute.gpus_per_shard > 0,
                resources_per_worker=per_worker),
            run_config=ray.train.RunConfig(
                name=f"shard-{job.shard}-{uuid.uuid4().hex[:8]}",
                storage_path=store.path("_ray_train"), storage_filesystem=store.fs,
                failure_config=ray.train.FailureConfig(max_failures=self.max_failures)),
        )
        try:
            result = trainer.fit()
        except Exception as e:  # TrainingFailedError and friends, after the retries
            raise ClulError(f"training shard {job.shard} failed: {last_line(e)}") from e
        reported = {d["slice"]: SliceResult(**d)
                    for d in (result.metrics or {}).get("slices", [])}
        out = []
        for r in range(job.start, cfg.partition.total_slices):
            if r in reported:
                out.append(reported[r])
            else:  # trained by an attempt that failed later: read the stored checkpoint
                from ..records.checkpoint import result_from_checkpoint

                out.append(result_from_checkpoint(cfg, store, job.shard, r, job.keys[r]))
        return out

    def run(self, cfg: PipelineConfig, store: Store, jobs: list[ShardJob],
            on_step: StepCallback | None = None) -> list[SliceResult]:
        from concurrent.futures import ThreadPoolExecutor

        import ray

        need = cfg.compute.train_workers_per_shard * max(cfg.compute.cpus_per_shard, 1e-9)
        fit = int(ray.cluster_resources().get("CPU", 1) // need) if jobs else 1
        out: list[SliceResult] = []
        progress = _CheckpointWatcher(store, jobs, cfg.partition.total_slices, on_step,
                                      self.poll_seconds)
        try:
            with ThreadPoolExecutor(max_workers=max(1, min(fit, len(jobs)))) as pool:
                for results in pool.map(lambda j: self._fit(cfg, store, j), jobs):
                    for res in results:
                        out.append(res)
                        progress.notify(res)
        finally:
            progress.stop()
        store.delete("_ray_train")
        return out

    def edit(self, cfg: PipelineConfig, store: Store, shards: list[ShardState], edit
             ) -> dict[int, dict]:
        """As Ray tasks, as :meth:`RayExecutor.edit` (an edit is one process's work)."""
        return RayExecutor().edit(cfg, store, shards, edit)


class _CheckpointWatcher:
    """Calls ``on_step`` once per expected slice step: when its checkpoint appears in the
    store (a background thread) or when its trainer returns, whichever comes first."""

    def __init__(self, store: Store, jobs: list[ShardJob], slices: int,
                 on_step: StepCallback | None, poll_seconds: float):
        import threading

        self.on_step = on_step
        self.expected = {layout.checkpoint_path(j.shard, r, j.keys[r]): (j.shard, r, j.keys[r])
                         for j in jobs for r in range(j.start, slices)}
        self.seen: set[tuple[int, int]] = set()
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = None
        if on_step is not None and self.expected:
            self.store, self.poll_seconds = store, poll_seconds
            self.thread = threading.Thread(target=self._watch, daemon=True,
                                           name="clul-ray-train-progress")
            self.thread.start()

    def notify(self, res: SliceResult) -> None:
        with self.lock:
            if (res.shard, res.slice) in self.seen or self.on_step is None:
                return
            self.seen.add((res.shard, res.slice))
            self.on_step(res)

    def _watch(self) -> None:
        while not self.done.wait(self.poll_seconds):
            try:
                present = set(self.store.checkpoint_files())
            except OSError:  # a listing racing a write; the next poll sees it
                continue
            for path in present & self.expected.keys():
                shard, r, key = self.expected[path]
                self.notify(SliceResult(shard, r, key, 0, 0.0, "pending", ""))

    def stop(self) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join()


def make_executor(backend: str, faults: Faults = NO_FAULTS, root: str = "",
                  idle_seconds: float = 0.0, address: str | None = None,
                  join: Callable[[], None] | None = None):
    """The executor a site names (:meth:`.site.Site.backend`); ``warm``: the root's
    detached shard workers on the cluster at ``address`` (:mod:`.warm`), idle
    ``idle_seconds`` at most, reached through their doors here where they have them
    (``join`` joins Ray where the command deferred it)."""
    if backend == "local":
        return LocalExecutor()
    if backend == "warm":
        from .warm import WarmExecutor

        return WarmExecutor(root, idle_seconds, address, join)
    if backend == "ray":
        return RayExecutor()
    if backend == "ray_train":
        return RayTrainExecutor(faults)
    raise ClulError(f"unknown backend '{backend}' (ray, ray_train, local or warm)")
