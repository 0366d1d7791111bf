"""The site of the running command (see :mod:`..compute.site`): decided once when a
command starts — a command it calls keeps the decision — and Ray started at most once
for it. Outside a command, work runs on Ray (the deletion service fixes its site)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np

from ...config import PipelineConfig
from ...errors import ClulError
from ...storage.store import CorruptFile, Store
from ..compute.site import Site, on_ray
from ..decisions.plan import ShardJob, plan_training
from ..records.certify import check_index
from ..records.version import read_current


class CommandSites:
    def __init__(self, fixed: Site | None, address: str | None):
        self.fixed, self.address = fixed, address
        self._site: Site | None = None
        self._started = self._deferred = False

    @property
    def current(self) -> Site:
        return self._site or self.fixed or on_ray(self.address)

    @contextmanager
    def command(self, where: Callable[[str | None], Site]) -> Iterator[Site]:
        """Decide where this command runs: ``where(address)`` (:func:`..compute.site.decide`
        with the command's work), asked only by the outermost command of a site not
        fixed."""
        if self._site is not None:
            yield self._site
            return
        self._site = self.fixed or where(self.address)
        try:
            yield self._site
        finally:
            self._site, self._started, self._deferred = None, False, False

    def start(self, cfg: PipelineConfig, store: Store, timings: dict | None = None,
              deferred: bool = False) -> None:
        """Start or join Ray where the command's site uses it, and check the cluster
        (:meth:`Site.start`); once per command. ``deferred``: the command's only Ray work
        is its shard jobs — where the warm workers have doors here
        (:meth:`Site.defers_ray`), Ray is joined only if one fails (:meth:`join`)."""
        if not self._started:
            self._deferred = deferred and self.current.defers_ray(cfg, store.root)
            if not self._deferred:
                self.current.start(cfg, store.root, store.is_local, timings)
            self._started = True

    def join(self, cfg: PipelineConfig, store: Store) -> None:
        """Join Ray now where :meth:`start` deferred it."""
        if self._deferred:
            self._deferred = False
            self.current.start(cfg, store.root, store.is_local)


def root_rows(store: Store) -> int:
    """A root's training and test rows (an unreadable index counts as large)."""
    try:
        return len(store.read_index()[0]) + len(store.test_ids())
    except CorruptFile:
        return 1 << 62


def deletion_rows(store: Store, ids: np.ndarray) -> int:
    """The work of deleting ``ids``, in rows: those of the shards that hold any of them
    (only those retrain; an unreadable index counts as large)."""
    try:
        index_ids, shard, _ = store.read_index()
    except CorruptFile:
        return 1 << 62
    affected = np.unique(shard[np.isin(index_ids, ids)])
    return int(np.isin(shard, affected).sum())


def refuse_unlike_index(store: Store, cfg: PipelineConfig,
                        only: frozenset[int] | None = None) -> None:
    """Refuse to train on partitions (of the shards ``only`` names, else all) that differ
    from the index (a lost or truncated file), naming the slice and the rows."""
    findings: list = []  # certify.Finding; the first file named, with all found there
    check_index(store, cfg.partition.shards, cfg.partition.total_slices, findings.append,
                only)
    if findings:
        path = findings[0].path
        message = "; ".join(f.message for f in findings if f.path == path)
        raise ClulError(f"{store.path(path)}: {message}; nothing trained (restore the file, "
                        "or `clul-ray repair` to see what can be rebuilt)")


def stored_result(cfg: PipelineConfig, store: Store, shard: int, slc: int, key: str):
    """A stored step's result, read back from its checkpoint (torch, imported here only
    when a version needs it)."""
    from ..records.checkpoint import result_from_checkpoint

    return result_from_checkpoint(cfg, store, shard, slc, key)


def shard_jobs(store: Store, keys: dict[int, list[str]]) -> list[ShardJob]:
    """The shard jobs of a training: each shard of ``keys`` from its first slice without a
    checkpoint under its key, starting from the checkpoint digest the current version
    records (:func:`..decisions.plan.plan_training`)."""
    jobs = plan_training(keys, store.has_checkpoint)
    prev = read_current(store)
    return [j if j.start == 0 or prev is None else replace(
        j, start_sha=prev.recorded_digest(j.shard, j.start - 1, j.keys[j.start - 1]))
        for j in jobs]
