"""Warm shard workers: one long-lived Ray actor per shard of a root, so a retrain pays only
its compute (no process start, no torch import, no re-reading of unchanged slices).

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
  root (their names hold the root, the shard, the GPUs and the digest of this package's
  code, so a changed checkout never reuses an old worker). Each stops itself after ``T``
  seconds without work (``compute.warm_idle_seconds``); ``clul-ray workers stop`` stops
  them at once.

Workers reserve no CPU while they wait (``num_cpus=0``), so idle workers never block other
Ray work; a shard on GPUs reserves its ``gpus_per_shard`` for as long as its worker lives.
They are spread over the nodes (``compute.placement: spread``, as slice steps are); a
worker lost with its node restarts elsewhere and its call is retried (``max_restarts``,
``max_task_retries``), from the job's first slice step (steps are idempotent).
At most as many shard jobs run at once as the cluster has CPUs for (``cpus_per_shard``
each), as Ray would schedule the same steps as tasks.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from functools import cache
from pathlib import Path

from ...config import PipelineConfig
from ...phases import compute
from ...runtime import gather, node_id
from ...storage.cache import CachingStore
from ...storage.store import Store
from ..decisions.plan import ShardJob
from ..records.version import SliceResult

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


def worker_name(root: str, shard: int, gpus: float) -> str:
    """The detached worker of ``shard`` of ``root``: a pure function of what it serves."""
    return f"{root_prefix(root)}{shard}:g{gpus:g}:{code_digest()}"


def root_prefix(root: str) -> str:
    return f"{PREFIX}:{_sha(absolute(root).encode())[:16]}:"


class ShardWorker:
    """The actor: trains slice steps of one shard against a caching store; with
    ``idle_seconds``, stops itself after that long without a call."""

    def __init__(self, root: str, idle_seconds: float | None = None):
        import torch  # noqa: F401  (imported once, here)

        self.root = root
        self.store = CachingStore(root)
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

        self._touch(1)
        try:
            out, prev = [], start_sha
            for r in range(start, cfg.partition.total_slices):
                out.append(train_slice(cfg, self.store, shard, r, keys, node_id(),
                                       prev_sha=prev))
                prev = out[-1].file_sha256
            self.calls += 1
            seconds = cache_test_predictions(cfg, self.store, out[-1]) if out else 0.0
            return out, seconds
        finally:
            self._touch(-1)

    def preload(self, shard: int, slices: int) -> int:
        """Read the shard's slices into the cache (a later retrain finds them there);
        the rows read."""
        self._touch(0)
        t = self.store.read_shard(shard, slices - 1, ["id", "label", "x"])
        return 0 if t is None else t.num_rows

    def info(self) -> dict:
        self._touch(0)
        return {"root": self.root, "calls": self.calls, "hits": self.store.hits,
                "misses": self.store.misses, "node_id": node_id(),
                "idle_seconds": round(time.monotonic() - self._last, 1)}

    def cache_stats(self) -> dict[str, int]:
        self._touch(0)
        return {"hits": self.store.hits, "misses": self.store.misses}


class WarmExecutor:
    """Runs shard jobs on the persistent :class:`ShardWorker` of each shard (created on
    first use, or found: detached ones): a job's slice steps in order in one call on its
    worker, different shards in parallel."""

    def __init__(self, root: str, idle_seconds: float | None = None):
        self.root = absolute(root)
        self.idle_seconds = idle_seconds
        self.detached = bool(idle_seconds)
        self.workers: dict[int, object] = {}

    def worker(self, cfg: PipelineConfig, shard: int):
        if shard not in self.workers:
            import ray

            gpus = cfg.compute.gpus_per_shard
            opts: dict = {"num_cpus": 0, "num_gpus": gpus, "max_restarts": 1,
                          "max_task_retries": 1, "scheduling_strategy": "SPREAD"
                          if cfg.compute.placement == "spread" else "DEFAULT"}
            if self.detached:
                opts |= {"name": worker_name(self.root, shard, gpus), "namespace": NAMESPACE,
                         "lifetime": "detached", "get_if_exists": True}
            actor = ray.remote(ShardWorker).options(**opts)
            self.workers[shard] = actor.remote(self.root, self.idle_seconds)
        return self.workers[shard]

    def width(self, cfg: PipelineConfig) -> int:
        """How many shard jobs run at once: the cluster's CPUs over ``cpus_per_shard``."""
        import ray

        per = max(cfg.compute.cpus_per_shard, 1e-9)
        return max(1, int(ray.cluster_resources().get("CPU", 1) // per))

    def _submit(self, cfg: PipelineConfig, job: ShardJob):
        return self.worker(cfg, job.shard).train_job.remote(
            cfg, job.shard, job.start, list(job.keys), job.start_sha)

    def run(self, cfg: PipelineConfig, store: Store, jobs: list[ShardJob],
            on_step=None) -> list[SliceResult]:
        import ray

        waiting, running, out = list(jobs), {}, []
        width = self.width(cfg) if len(jobs) > 1 else 1
        retried: set[int] = set()
        while waiting or running:
            while waiting and len(running) < width:
                job = waiting.pop(0)
                running[self._submit(cfg, job)] = job
            ready, _ = ray.wait(list(running), num_returns=1)
            job = running.pop(ready[0])
            try:
                results, predict_seconds = ray.get(ready[0])
            except (ray.exceptions.ActorDiedError, ray.exceptions.ActorUnavailableError):
                if job.shard in retried:  # a second dead worker: report it
                    gather({ready[0]: f"training shard {job.shard} from slice {job.start}"})
                retried.add(job.shard)  # (its idle timeout, or its node, ended it): anew
                self.workers.pop(job.shard, None)
                waiting.insert(0, job)
                continue
            except Exception:  # the one-line report of the failure
                gather({ready[0]: f"training shard {job.shard} from slice {job.start}"})
                raise
            compute("predict", predict_seconds)
            for res in results:
                out.append(res)
                if on_step is not None:
                    on_step(res)
        return out

    def warm_up(self, cfg: PipelineConfig, shards: list[int], preload: bool = False) -> None:
        """Start every shard's worker now (torch imported), not at the first request; with
        ``preload``, each reads its slices into its cache (all in parallel)."""
        import ray

        if preload:
            ray.get([self.worker(cfg, k).preload.remote(k, cfg.partition.total_slices)
                     for k in shards])
        else:
            ray.get([self.worker(cfg, k).cache_stats.remote() for k in shards])

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
    """Start (or find) every shard's detached worker of ``root`` and read its slices into
    its cache, all shards at once; their names."""
    ex = WarmExecutor(root, cfg.compute.warm_idle_seconds or None)
    shards = list(range(cfg.partition.shards))
    ex.warm_up(cfg, shards, preload=True)
    return [worker_name(ex.root, k, cfg.compute.gpus_per_shard) for k in shards]


def worker_info(names: list[str]) -> list[dict]:
    """What each named worker reports (its root, calls, cache hits and misses, node, idle
    seconds); a worker that stopped meanwhile is left out."""
    import ray

    actors = []
    for name in names:
        try:
            actors.append((name, ray.get_actor(name, namespace=NAMESPACE)))
        except ValueError:
            continue
    infos = ray.get([a.info.remote() for _, a in actors])
    return [{"name": name, "shard": int(name.split(":")[2]), **info}
            for (name, _), info in zip(actors, infos, strict=True)]
