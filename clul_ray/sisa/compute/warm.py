"""Warm shard workers (:class:`.shard_worker.ShardWorker`): long-lived Ray actors that
train a root's shards, one per shard up to the cluster's CPUs (:func:`pool_size`; shard
``k`` on worker ``k % n`` when that one is free), so a retrain pays only its compute (no
process start, no torch import, no re-reading of unchanged slices); an approximate
unlearning's shard edits run on them too
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
  stop`` stops them at once. Each also opens a door (:mod:`.door`): a command on its
  machine hands it a job without joining Ray, and joins Ray only where a door fails.

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

from ...config import PipelineConfig
from ...phases import compute
from ...runtime import gather
from ...storage.store import Store
from ..decisions.plan import ShardJob
from ..records.version import ShardState, SliceResult
from . import door
from .shard_worker import ShardWorker

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


def door_key(root: str, address: str) -> str:
    """The key of the doors (:mod:`.door`) of ``root``'s detached workers for commands
    naming the cluster ``address``, running this code."""
    return door.pool_key(absolute(root), address, code_digest())


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


class WarmExecutor:
    """Runs shard jobs and edits on persistent :class:`ShardWorker` actors (created on first
    use, or found: detached ones): ``n`` workers by :func:`pool_size`, shard ``k``'s work on
    worker ``k % n`` (the one whose cache holds its slices) when that one is free, else on
    any free one; a job's slice steps in order in one call, work on different workers in
    parallel."""

    def __init__(self, root: str, idle_seconds: float | None = None,
                 address: str | None = None, join: Callable[[], None] | None = None):
        self.root = absolute(root)
        self.idle_seconds = idle_seconds
        self.detached = bool(idle_seconds)
        # a cluster's workers have doors (:mod:`.door`): a command on their machine knocks
        # first, and joins Ray (``join``, where its site deferred that) only if one fails
        self.door_key = door_key(self.root, address) if self.detached and address else None
        self.join = join or (lambda: None)
        self.workers: dict[int, object] = {}
        self.size: int | None = None  # fixed by the first worker made
        self.nodes: list[str] | None = None  # the nodes workers are spread over

    def pool(self, cfg: PipelineConfig) -> int:
        if self.size is None:
            import ray

            c = cfg.compute
            self.size = pool_size(cfg.partition.shards, ray.cluster_resources().get("CPU", 1),
                                  c.cpus_per_shard, c.gpus_per_shard)
            if self.door_key:
                door.write_pool(self.door_key, self.size, c.gpus_per_shard)
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
            if self.door_key:  # (on the worker's machine; its answer is not awaited)
                self.workers[i].open_door.remote(self.door_key, i)
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
                             "train_job", (cfg, j.shard, j.start, list(j.keys), j.start_sha))
                            for j in jobs], done)
        return out

    def edit(self, cfg: PipelineConfig, store: Store, shards: list[ShardState], edit
             ) -> dict[int, dict]:
        """Each shard's approximate edit (``edit``: an :class:`.approximate.Edit`) on the
        pool, as :meth:`run` places jobs: {shard: its result}."""
        out: dict[int, dict] = {}
        self._on_pool(cfg, [(s.shard, f"unlearning shard {s.shard}", "edit_job",
                             (cfg, s, edit)) for s in shards], out.__setitem__)
        return out

    def _on_pool(self, cfg: PipelineConfig, tasks: list[tuple[int, str, str, tuple]],
                 done: Callable[[int, object], None]) -> None:
        """Run ``tasks`` — (shard, label, the worker's method, its arguments), one per
        shard — through the workers' doors on this machine where they answer
        (:meth:`_through_doors`); the rest through Ray, each on worker ``shard % n`` if
        free, else on any free one, one at a time per worker; ``done(shard, value)`` as
        each finishes. A task whose worker died (its idle timeout, its node) runs once more
        on a worker made anew; a second death, or any other failure, is reported in one
        line."""
        if self.door_key and not (tasks := self._through_doors(cfg, tasks, done)):
            return
        self.join()
        import ray

        n = self.pool(cfg)
        waiting, running = list(tasks), {}
        busy, retried = set(), set()  # (workers; shards)
        while waiting or running:
            for task in list(waiting):  # its own worker if free, else any free one
                free = [i for i in range(n) if i not in busy]
                if not free:
                    break
                shard, _, method, args = task
                i = shard % n if shard % n in free else free[0]
                running[getattr(self.worker(cfg, shard, i), method).remote(*args)] = (task, i)
                busy.add(i)
                waiting.remove(task)
            ready, _ = ray.wait(list(running), num_returns=1)
            task, i = running.pop(ready[0])
            busy.discard(i)
            shard, label = task[:2]
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

    def _through_doors(self, cfg: PipelineConfig, tasks: list, done: Callable) -> list:
        """Run the tasks whose workers have a door on this machine (:mod:`.door`): each
        worker's in order, the workers in parallel; ``done`` for each. The tasks left:
        no door, or it shut (they go through Ray)."""
        found = door.pool_doors(self.door_key, cfg.compute.gpus_per_shard)
        if found is None:
            return tasks
        folder, n = found
        queues: dict[Path, list] = {}
        left = []
        for task in tasks:
            path = door.socket_path(folder, self.door_key, task[0] % n)
            (queues.setdefault(path, []) if path.exists() else left).append(task)

        def knock(path: Path, queue: list) -> tuple[list, list]:
            answered = []
            for i, (shard, label, method, args) in enumerate(queue):
                try:
                    answered.append((shard, door.call(path, method, args, label)))
                except door.DoorShut:
                    return answered, queue[i:]
            return answered, []

        if len(queues) > 1:
            with ThreadPoolExecutor(len(queues)) as pool:
                outcomes = list(pool.map(knock, queues, queues.values()))
        else:
            outcomes = [knock(path, queue) for path, queue in queues.items()]
        for answered, rest in outcomes:
            for shard, value in answered:
                done(shard, value)
            left.extend(rest)
        return left

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
            actor = ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:  # stopped meanwhile (its idle timeout)
            continue
        try:  # its doors first (a busy worker's are left: a shut door is harmless)
            ray.get(actor.close_doors.remote(), timeout=5)
        except Exception:  # noqa: BLE001  (busy, or dying: it is stopped all the same)
            pass
        ray.kill(actor, no_restart=True)
    return names


def start_workers(root: str, cfg: PipelineConfig, address: str | None = None) -> list[str]:
    """Start (or find) the detached workers of ``root`` and have each read its shards'
    slices into its cache, all at once (their doors open for commands naming
    ``address``); their names."""
    import ray

    ex = WarmExecutor(root, cfg.compute.warm_idle_seconds or None, address)
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
