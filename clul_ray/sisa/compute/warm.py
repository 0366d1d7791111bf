"""Warm shard workers: long-lived Ray actors that train a root's shards, one per shard up
to the cluster's CPUs (:func:`pool_size`; shard ``k`` on worker ``k % n`` when that one is
free), so a retrain pays only its compute (no process start, no torch import, no
re-reading of unchanged slices); an approximate unlearning's shard edits run on them too
(``edit_job``: :func:`.approximate.unlearn_shard`). ``warm_up`` reads a shard's slices and
runs a throwaway training step before the first request.

Each actor keeps the Parquet tables it read in memory (``storage/cache.CachingStore``:
keyed by each file's path, size and modification time, one listing per folder), so a slice
a deletion rewrote is read again and every other one comes from memory. The actors run
the same :func:`.trainer.train_slice` as every other executor, so a warm retrain writes
the same checkpoints, bit for bit.

Two lives:

- the deletion service's workers (``WarmExecutor(root)``): owned by the service's process;
- a cluster's workers (``WarmExecutor(root, idle_seconds=T)``, what a command with
  ``--address`` or a job submitted to a cluster uses with backend ``ray``): *detached,
  named* actors that outlive the command, found by the next command or job on the same
  root (their names hold the root, the worker's number, the GPUs and the digest of this
  package's code, so a changed checkout never reuses an old worker). Each stops itself
  after ``T`` seconds without work (``compute.warm_idle_seconds``); ``clul-ray workers
  stop`` stops them at once.

Workers reserve no CPU while they wait (``num_cpus=0``), so idle workers never block other
Ray work; a shard on GPUs reserves its ``gpus_per_shard`` for as long as its worker lives.
They are spread over the nodes (``compute.placement: spread``: worker ``i`` on the
``i``-th node able to train a shard, round robin); a worker lost with its node is made
anew on a node alive and its job runs again from its first slice step (steps and edits
are idempotent). At most as many shard jobs run at once as the cluster has CPUs for
(``cpus_per_shard`` each), as Ray would schedule the same steps as tasks.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from ...config import PipelineConfig
from ...phases import compute
from ...runtime import gather, node_id
from ...storage import layout
from ...storage.cache import CachingStore
from ...storage.store import Store
from ..decisions.plan import ShardJob
from ..records.version import ShardState, SliceResult

NAMESPACE = "clul_ray"
PREFIX = "clul-ray-worker"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@cache
def code_digest() -> str:
    """The digest of this package's Python code (a worker runs the code it started with)."""
    pkg = Path(__file__).resolve().parents[2]
    parts = [p.relative_to(pkg).as_posix().encode() + b"\0" + p.read_bytes()
             for p in sorted(pkg.rglob("*.py"))]
    return _sha(b"\0".join(parts))[:12]


def absolute(root: str) -> str:
    """A root as every process names it: a local path made absolute (a worker's working
    folder is not the command's)."""
    return root if "://" in root else os.path.abspath(root)


def worker_name(root: str, worker: int, gpus: float) -> str:
    """The detached worker number ``worker`` of ``root``: a pure function of what it
    serves."""
    return f"{root_prefix(root)}{worker}:g{gpus:g}:{code_digest()}"


def pool_size(shards: int, cpus: float, cpus_per_shard: float, gpus_per_shard: float
              ) -> int:
    """How many warm workers serve ``shards``: one per shard, but no more than the
    cluster's CPUs train at once (``cpus / cpus_per_shard``, at least one): a worker beyond
    that is one more process to start (and one more torch) that could only wait. Shards on
    GPUs keep a worker each (it holds the shard's GPUs)."""
    if gpus_per_shard > 0:
        return shards
    return max(1, min(shards, int(cpus // (cpus_per_shard or 1.0))))


def root_prefix(root: str) -> str:
    return f"{PREFIX}:{_sha(absolute(root).encode())[:16]}:"


class ShardWorker:
    """The actor: trains slice steps of one shard against a caching store; with
    ``idle_seconds``, stops itself after that long without a call."""

    def __init__(self, root: str, idle_seconds: float | None = None):
        import torch  # noqa: F401  (imported once, here)

        self.root = root
        self.store = CachingStore(root)
        self.warmed: set[int] = set()  # shards whose slices warm_up read
        self.calls = 0
        self._last = time.monotonic()
        self._busy = 0
        self._mutex = threading.Lock()
        if idle_seconds:
            threading.Thread(target=self._watch, args=(float(idle_seconds),), daemon=True,
                             name="clul-ray-worker-idle").start()

    def _touch(self, delta: int) -> None:
        with self._mutex:
            self._busy += delta
            self._last = time.monotonic()

    @contextmanager
    def _working(self) -> Iterator[None]:
        """Busy for the block (the idle watchdog waits; its clock starts again after)."""
        self._touch(1)
        try:
            yield
        finally:
            self._touch(-1)

    def _watch(self, idle_seconds: float) -> None:
        while True:
            time.sleep(min(idle_seconds / 4, 5.0))
            with self._mutex:
                idle = self._busy == 0 and time.monotonic() - self._last > idle_seconds
            if idle:
                import ray

                ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
                return

    def train_job(self, cfg: PipelineConfig, shard: int, start: int, keys: list[str],
                  start_sha: str) -> tuple[list[SliceResult], float]:
        """A shard job's slice steps, in order, in one call (no round trip per step); then
        the new model's test-split predictions into the root's cache
        (:func:`.evaluation.cache_test_predictions`). The results and the seconds the
        predictions took."""
        from .evaluation import cache_test_predictions
        from .trainer import train_slice

        with self._working():
            out, prev = [], start_sha
            for r in range(start, cfg.partition.total_slices):
                out.append(train_slice(cfg, self.store, shard, r, keys, node_id(),
                                       prev_sha=prev))
                prev = out[-1].file_sha256
            self.calls += 1
            seconds = cache_test_predictions(cfg, self.store, out[-1]) if out else 0.0
            return out, seconds

    def edit_job(self, cfg: PipelineConfig, shard: ShardState, edit) -> dict:
        """A shard's approximate edit (``edit``: an :class:`.approximate.Edit`) against the
        caching store: its rows from memory unless a deletion rewrote them."""
        from .approximate import unlearn_shard

        with self._working():
            out = unlearn_shard(cfg, self.store, shard, edit, node_id())
            self.calls += 1
            return out

    def warm_up(self, cfg: PipelineConfig, shard: int) -> dict:
        """Before the first retrain: read the shard's slices and the test split into the
        cache (as a retrain and its predictions read them) and run one training step on a
        throwaway model (torch's first-use costs); nothing is written, and a retrain seeds
        everything it draws."""
        import numpy as np
        import torch

        from ...models import batch_loss
        from . import trainer

        with self._working():  # (a slow warm-up is not idleness)
            torch.set_num_threads(cfg.compute.threads_per_shard)
            if self.store.list_files(layout.TEST, ".parquet"):  # (a retrain predicts on it)
                self.store.read_tables(layout.TEST)
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

    def info(self) -> dict:
        return {"root": self.root, "calls": self.calls, **self.cache_stats(),
                "node_id": node_id(), "idle_seconds": round(time.monotonic() - self._last, 1)}

    def cache_stats(self) -> dict:
        return {"hits": self.store.hits, "misses": self.store.misses,
                "warmed": sorted(self.warmed)}


class WarmExecutor:
    """Runs shard jobs and edits on persistent :class:`ShardWorker` actors (created on first
    use, or found: detached ones): ``n`` workers by :func:`pool_size`, shard ``k``'s work on
    worker ``k % n`` (the one whose cache holds its slices) when that one is free, else on
    any free one; a job's slice steps in order in one call, work on different workers in
    parallel."""

    def __init__(self, root: str, idle_seconds: float | None = None):
        self.root = absolute(root)
        self.idle_seconds = idle_seconds
        self.detached = bool(idle_seconds)
        self.workers: dict[int, object] = {}
        self.size: int | None = None  # fixed by the first worker made
        self.nodes: list[str] | None = None  # the nodes workers are spread over

    def pool(self, cfg: PipelineConfig) -> int:
        if self.size is None:
            import ray

            c = cfg.compute
            self.size = pool_size(cfg.partition.shards, ray.cluster_resources().get("CPU", 1),
                                  c.cpus_per_shard, c.gpus_per_shard)
        return self.size

    def worker(self, cfg: PipelineConfig, shard: int, index: int | None = None):
        """The worker of ``shard`` (number ``shard % n``, or ``index``), made if needed."""
        i = shard % self.pool(cfg) if index is None else index
        if i not in self.workers:
            import ray

            gpus = cfg.compute.gpus_per_shard
            where = self.placement(cfg, i)
            pinned = not isinstance(where, str)  # (a lost node's worker is made anew)
            opts: dict = {"num_cpus": 0, "num_gpus": gpus, "max_restarts": 0 if pinned else 1,
                          "max_task_retries": 0 if pinned else 1,
                          "scheduling_strategy": where}
            if self.detached:
                opts |= {"name": worker_name(self.root, i, gpus), "namespace": NAMESPACE,
                         "lifetime": "detached", "get_if_exists": True}
            actor = ray.remote(ShardWorker).options(**opts)
            self.workers[i] = actor.remote(self.root, self.idle_seconds)
        return self.workers[i]

    def placement(self, cfg: PipelineConfig, i: int):
        """Where worker ``i`` starts: with ``placement: spread``, on the nodes that can
        train a shard (CPUs and GPUs for one), in a fixed order, round robin (Ray's
        ``SPREAD``, and a soft node affinity, may put every actor that reserves no CPU on
        one node); a worker lost with its node is made anew (:meth:`_on_pool`) on the
        nodes alive then. Else Ray's default."""
        if cfg.compute.placement != "spread":
            return "DEFAULT"
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if self.nodes is None:
            c = cfg.compute
            self.nodes = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive") and
                                n["Resources"].get("CPU", 0) >= c.cpus_per_shard and
                                n["Resources"].get("GPU", 0) >= c.gpus_per_shard)
        if not self.nodes:
            return "SPREAD"
        return NodeAffinitySchedulingStrategy(self.nodes[i % len(self.nodes)], soft=False)

    def run(self, cfg: PipelineConfig, store: Store, jobs: list[ShardJob],
            on_step=None) -> list[SliceResult]:
        out: list[SliceResult] = []

        def done(_: int, value: tuple[list[SliceResult], float]) -> None:
            compute("predict", value[1])  # (the new models' test predictions)
            for res in value[0]:
                out.append(res)
                if on_step is not None:
                    on_step(res)

        self._on_pool(cfg, [(j.shard, f"training shard {j.shard} from slice {j.start}",
                             lambda w, j=j: w.train_job.remote(
                                 cfg, j.shard, j.start, list(j.keys), j.start_sha))
                            for j in jobs], done)
        return out

    def edit(self, cfg: PipelineConfig, store: Store, shards: list[ShardState], edit
             ) -> dict[int, dict]:
        """Each shard's approximate edit (``edit``: an :class:`.approximate.Edit`) on the
        pool, as :meth:`run` places jobs: {shard: its result}."""
        out: dict[int, dict] = {}
        self._on_pool(cfg, [(s.shard, f"unlearning shard {s.shard}",
                             lambda w, s=s: w.edit_job.remote(cfg, s, edit))
                            for s in shards], out.__setitem__)
        return out

    def _on_pool(self, cfg: PipelineConfig, tasks: list[tuple[int, str, Callable]],
                 done: Callable[[int, object], None]) -> None:
        """Run ``tasks`` — (shard, label, ``call(worker)`` -> its ref), one per shard —
        each on worker ``shard % n`` if free, else on any free one, one at a time per
        worker; ``done(shard, value)`` as each finishes. A task whose worker died (its idle
        timeout, its node) runs once more on a worker made anew; a second death, or any
        other failure, is reported in one line."""
        import ray

        n = self.pool(cfg)
        waiting, running = list(tasks), {}
        busy, retried = set(), set()  # (workers; shards)
        while waiting or running:
            for task in list(waiting):  # its own worker if free, else any free one
                free = [i for i in range(n) if i not in busy]
                if not free:
                    break
                shard, _, call = task
                i = shard % n if shard % n in free else free[0]
                running[call(self.worker(cfg, shard, i))] = (task, i)
                busy.add(i)
                waiting.remove(task)
            ready, _ = ray.wait(list(running), num_returns=1)
            task, i = running.pop(ready[0])
            busy.discard(i)
            shard, label, _ = task
            try:
                value = ray.get(ready[0])
            except (ray.exceptions.ActorDiedError, ray.exceptions.ActorUnavailableError,
                    ray.exceptions.ActorUnschedulableError):
                if shard in retried:  # a second dead worker: report it
                    gather({ready[0]: label})
                retried.add(shard)  # (its idle timeout, or its node, ended it): anew
                self.workers.pop(i, None)
                self.nodes = None  # (on the nodes alive now)
                waiting.insert(0, task)
                continue
            except Exception:  # the one-line report of the failure
                gather({ready[0]: label})
                raise
            done(shard, value)

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


def cluster_workers(root: str | None = None) -> list[str]:
    """The names of the running detached shard workers (of ``root``, else of every
    root) on the connected cluster."""
    from ray.util import list_named_actors

    prefix = root_prefix(root) if root else f"{PREFIX}:"
    return sorted(a["name"] for a in list_named_actors(all_namespaces=True)
                  if a.get("namespace") == NAMESPACE and a["name"].startswith(prefix))


def stop_workers(root: str | None = None) -> list[str]:
    """Stop the detached shard workers of ``root`` (else of every root); their names."""
    import ray

    names = cluster_workers(root)
    for name in names:
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
        except ValueError:  # stopped meanwhile (its idle timeout)
            pass
    return names


def start_workers(root: str, cfg: PipelineConfig) -> list[str]:
    """Start (or find) the detached workers of ``root`` and have each read its shards'
    slices into its cache, all at once; their names."""
    import ray

    ex = WarmExecutor(root, cfg.compute.warm_idle_seconds or None)
    ray.get(list(ex.warm_up(cfg, list(range(cfg.partition.shards)))))
    return [worker_name(ex.root, i, cfg.compute.gpus_per_shard) for i in sorted(ex.workers)]


def worker_info(names: list[str]) -> list[dict]:
    """What each named worker reports (its root, calls, cache hits and misses, the shards
    it warmed, node, idle seconds); a worker that stopped meanwhile is left out."""
    import ray

    actors = []
    for name in names:
        try:
            actors.append((name, ray.get_actor(name, namespace=NAMESPACE)))
        except ValueError:
            continue
    infos = ray.get([a.info.remote() for _, a in actors])
    return [{"name": name, "worker": int(name.split(":")[2]), **info}
            for (name, _), info in zip(actors, infos, strict=True)]
