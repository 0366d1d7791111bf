"""The warm shard worker: the Ray actor behind :class:`.warm.WarmExecutor` — trains slice
steps of a root's shards (and makes approximate edits) against a caching store, torch
imported once; with ``idle_seconds``, stops itself after that long without work. A
cluster's (detached) worker also opens a door (:mod:`.door`) for commands on its machine;
its jobs, through Ray or through the door, run one at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ...config import PipelineConfig
from ...runtime import node_id
from ...storage import layout
from ...storage.cache import CachingStore
from ..records.version import ShardState, SliceResult
from .door import Door, door_dir, socket_path

JOBS = ("train_job", "edit_job")  # what a door runs


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
        self._job = threading.Lock()  # one job at a time, through Ray or a door
        self.doors: dict[str, Door] = {}
        if idle_seconds:
            threading.Thread(target=self._watch, args=(float(idle_seconds),), daemon=True,
                             name="clul-ray-worker-idle").start()

    def _touch(self, delta: int) -> None:
        with self._mutex:
            self._busy += delta
            self._last = time.monotonic()

    @contextmanager
    def _working(self) -> Iterator[None]:
        """Busy for the block (the idle watchdog waits; its clock starts again after);
        one block at a time."""
        self._touch(1)
        try:
            with self._job:
                yield
        finally:
            self._touch(-1)

    def open_door(self, key: str, number: int) -> bool:
        """Open this worker's door (:mod:`.door`: pool ``key``, worker ``number``) for jobs
        from commands on its machine (idempotent); False where it cannot (their jobs then
        come through Ray)."""
        folder = door_dir()
        if folder is None:
            return False
        path = socket_path(folder, key, number)
        if str(path) not in self.doors:
            try:
                self.doors[str(path)] = Door(path, JOBS, lambda method, args: getattr(
                    self, method)(*args))
            except OSError:
                return False
        return True

    def close_doors(self) -> int:
        """Close this worker's doors (their sockets removed) before it is stopped."""
        for door in self.doors.values():
            door.close()
        n, self.doors = len(self.doors), {}
        return n

    def _watch(self, idle_seconds: float) -> None:
        while True:
            time.sleep(min(idle_seconds / 4, 5.0))
            with self._mutex:
                idle = self._busy == 0 and time.monotonic() - self._last > idle_seconds
            if idle:
                import ray

                self.close_doors()
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
