"""The SISA pipeline on one storage root: train, add, delete, unlearn, evaluate, resume.

A facade: it holds the root's lock while changing it and composes the layers — where a
command runs (:mod:`..compute.site`, decided once per command), the partition writers
(:mod:`..compute.partitioning`), the pure planning (:mod:`..decisions.plan`), the executors
(:mod:`..compute.executor`), the next version (:mod:`..decisions.next_version`) and its
commit (:mod:`..records.commit`), evaluation (:mod:`..compute.evaluation`), and for every
ledgered request the pure controller (:mod:`..decisions.controller`) whose steps
:mod:`.steps` runs. Observers (lineage) hear of every committed version and request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from ...config import PipelineConfig
from ...data.blocks import source_rows
from ...data.ids import repeated_ids
from ...errors import ClulError
from ...faults import NONE as NO_FAULTS
from ...faults import Faults
from ...phases import compute, phase
from ...storage.columns import to_numpy
from ...storage.lock import describe, is_stale, locked, read_lock
from ...storage.store import Store
from ..compute.evaluation import evaluate, reading_ahead
from ..compute.executor import make_executor
from ..compute.partitioning import partition
from ..compute.site import Site, decide
from ..decisions.controller import Current, Kind, Stage, next_step
from ..decisions.next_version import build_version
from ..decisions.plan import chained_keys, critical_path, plan_deletion
from ..records.certify import commit_findings, commit_scope, refuse_commit
from ..records.commit import commit
from ..records.ledger import Ledger, Request
from ..records.rootconfig import read_config, require_config, write_config, write_tokenizer
from ..records.version import ModelVersion, SliceResult, read_current, require_current
from . import commands as cmd
from .observers import Observer, ObserverWarning, notify  # noqa: F401 (re-exported)
from .sources import added_source, check_base, group_ids, training_source
from .steps import Context, run_step
from .summary import request_summary, summarize

Progress = Callable[[str, int, int], None]  # (description, done, total)


class Pipeline:
    """All operations on one storage root. ``executor`` defaults to the one the command's
    site names; ``site`` fixes where every command runs (else each command decides, see
    :mod:`..compute.site`); ``evaluate_at_commit`` off commits versions without metrics
    (the deletion service evaluates after a request commits); ``faults`` are a test's."""

    def __init__(self, root: str, address: str | None = None, executor=None,
                 progress: Progress | None = None, observers: Sequence[Observer] = (),
                 store: Store | None = None, site: Site | None = None,
                 evaluate_at_commit: bool = True, faults: Faults = NO_FAULTS):
        self.store = store or Store(root)
        self.ledger = Ledger(self.store)
        self.address = address
        self._executor = executor
        self.progress = progress or (lambda desc, done, total: None)
        self.observers = list(observers)
        self.evaluate_at_commit = evaluate_at_commit
        self.faults = faults
        self._sites = cmd.CommandSites(site, address)
        self._lock: dict | None = None

    @property
    def config(self) -> PipelineConfig:
        return require_config(self.store)

    @property
    def state(self) -> ModelVersion:
        return require_current(self.store)

    @contextmanager
    def writing(self, command: str) -> Iterator[None]:
        """Hold the root's lock (see :mod:`clul_ray.storage.lock`) while changing it; reentrant
        within this Pipeline, so ``train`` can ``resume`` under the lock it holds."""
        if self._lock is not None:
            yield
            return
        with locked(self.store, command) as holder:
            self._lock = holder
            try:
                yield
            finally:
                self._lock = None

    @property
    def site(self) -> Site:
        """Where the running command's work runs (:mod:`.commands`)."""
        return self._sites.current

    def _command(self, rows: Callable[[], int] | None, cfg: PipelineConfig | None = None):
        """Where this command runs (:mod:`.commands`)."""
        return self._sites.command(lambda address: decide(cfg or self.config, address, rows))

    def _start(self, cfg: PipelineConfig, timings: dict | None = None, deferred=False) -> None:
        self._sites.start(cfg, self.store, timings, deferred)

    def _notify(self, event: str, *args) -> None:
        with phase("lineage"):
            notify(self.observers, self.store, event, *args)

    def train(self, cfg: PipelineConfig) -> dict:
        """Partition (once per root) and train every shard; reuse matching checkpoints."""
        t_in = time.perf_counter()
        with phase("source"):  # (the model is checked against the data)
            cfg, source, tok = training_source(cfg)
        timings: dict = {"setup_seconds": time.perf_counter() - t_in}  # source, model check
        with self._command(lambda: source_rows(source), cfg=cfg) as site:
            self._start(cfg, timings)  # before the lock or any writer touch the root
            out = self._train(cfg, source, tok, timings)
            out["in_process"] = site.in_process
        return out

    def _train(self, cfg: PipelineConfig, source, tok, timings: dict) -> dict:
        with self.writing("train"):
            existing = read_config(self.store)  # read under the lock
            if existing is not None:
                diff = [k for k, v in cfg.partition_dict().items()
                        if existing.partition_dict()[k] != v]
                if diff:
                    raise ClulError(f"{self.store.root} was partitioned with other "
                                    f"{', '.join(diff)}; use a new --root")
                cfg = cfg.updated(added_slices=existing.partition.added_slices)
                self.resume()
            else:
                t0 = time.perf_counter()
                with phase("partition"):
                    write_tokenizer(self.store, cfg, tok)
                    partition(self.store, cfg, source, self.progress, self.site)
                timings["partition_seconds"] = time.perf_counter() - t0
            write_config(self.store, cfg)
            t0 = time.perf_counter()
            results, starts = self.train_shards(cfg, list(range(cfg.partition.shards)),
                                                 timings)
            timings["train_seconds"] = time.perf_counter() - t0
            v = self.commit_version(cfg, "train", None, starts, results, timings)
        return summarize(self.store.root, cfg, v)

    def shard_keys(self, cfg: PipelineConfig, shard: int) -> list[str]:
        return chained_keys(cfg.training_digest(), shard, [
            self.store.slice_digest(shard, r) for r in range(cfg.partition.total_slices)])

    def train_shards(self, cfg: PipelineConfig, shards: list[int], timings: dict | None = None
                     ) -> tuple[list[SliceResult], dict[int, int]]:
        """Train each shard from its first slice without a matching checkpoint (the data of
        those shards checked against the index first)."""
        with phase("plan"):
            jobs = cmd.shard_jobs(self.store, {k: self.shard_keys(cfg, k) for k in shards})
        if jobs:
            self.check_data(cfg, frozenset(j.shard for j in jobs))
        total, done = sum(cfg.partition.total_slices - j.start for j in jobs), 0
        self.progress("training slices", 0, total)

        def on_step(_: SliceResult) -> None:
            nonlocal done
            done += 1
            self.progress("training slices", done, total)

        if not jobs:
            return [], {}
        self._start(cfg, timings)
        with phase("train"), reading_ahead(cfg, self.store, {j.shard for j in jobs}):
            results = self.executor(cfg).run(cfg, self.store, jobs, on_step)
        compute("train", critical_path(results))
        return results, {j.shard: j.start for j in jobs}

    def executor(self, cfg: PipelineConfig):
        """The executor of the command's shard work (slice steps, approximate edits): the
        pipeline's (the service's warm workers), else the one the command's site names."""
        return self._executor or make_executor(
            self.site.backend(cfg), self.faults, self.store.root, cfg.compute.warm_idle_seconds,
            self.site.address, lambda: self._sites.join(cfg, self.store))

    def commit_version(self, cfg: PipelineConfig, operation: str, request_id: str | None,
                       starts: dict[int, int], results: list[SliceResult], timings: dict,
                       edited: dict[int, dict] | None = None) -> ModelVersion:
        """Build, evaluate and commit a new version; tell the observers."""
        with phase("commit"):
            keys = {k: self.shard_keys(cfg, k) for k in range(cfg.partition.shards)}
            v = build_version(cfg, prev := read_current(self.store), keys, results, starts,
                              operation, request_id, timings, edited,
                              lambda k, key: cmd.stored_result(
                                  cfg, self.store, k, cfg.partition.total_slices - 1, key))
            req = self.ledger.request(request_id) if request_id else None
        removed = req.ids if req and req.kind != Kind.ADD else np.zeros(0, np.int64)
        with phase("checks"):
            findings, digests = commit_findings(
                self.store, v, removed, cfg.partition.total_slices,
                commit_scope(prev, v, req.plan.affected if req else ()), results)
        refuse_commit(self.store, v.version, findings)  # (the previous version serves on)
        v = v.with_digests(digests)
        t1 = t0 = time.perf_counter()
        if self.evaluate_at_commit:  # else evaluation.evaluate_committed, after the commit
            v.metrics = evaluate(cfg, self.store, v, self.site, self.progress)
            t1 = time.perf_counter()
            v.timings["evaluate_seconds"] = t1 - t0
        with phase("commit"):
            commit(self.store, v)
        t2 = time.perf_counter()
        self._notify("version_committed", cfg, v)
        # after the version was written: in the command's output, not in versions/
        v.timings.update(commit_seconds=t2 - t1, observers_seconds=time.perf_counter() - t2)
        return v

    def check_data(self, cfg: PipelineConfig, only: frozenset[int] | None = None) -> None:
        """Refuse to train on partitions (of the shards ``only`` names, else all) that differ
        from the index (:func:`.commands.refuse_unlike_index`)."""
        with phase("checks"):
            cmd.refuse_unlike_index(self.store, cfg, only)

    def evaluate(self) -> dict:
        holder = read_lock(self.store)
        if holder is not None and self._lock is None and not is_stale(holder):
            raise ClulError(f"{self.store.root} is being changed by {describe(holder)}; "
                            "evaluate when it has finished")
        with self._command(lambda: cmd.root_rows(self.store)):
            self.resume()
            cfg = self.config
            self._start(cfg)
            t0 = time.perf_counter()
            v = self.state
            v.metrics = evaluate(cfg, self.store, v, self.site, self.progress)
        out = summarize(self.store.root, cfg, v)
        out["wall_seconds"] = {"evaluate": time.perf_counter() - t0}
        return out

    # ---- ledgered requests: add, delete, unlearn, resume -----------------------------
    def add(self, dataset: str, data_dir: str | None = None, download: bool = False) -> dict:
        """Append new rows (see :mod:`.grow`): a new last slice in every shard, the only
        one that trains. New ids only; the class count is the root's."""
        from .grow import place, read_rows, refuse_known, stage

        t0 = time.perf_counter()
        cfg, _ = self.config, self.state  # refuses a root with no trained model
        rows = read_rows(added_source(self.store, cfg, dataset, data_dir, download), cfg)
        with self._command(lambda: cmd.root_rows(self.store) + rows.num_rows), \
                self.writing("add"):
            self.resume()
            cfg = self.config
            ids = to_numpy(rows.column("id"))
            refuse_known(ids, np.concatenate([self.store.read_index()[0],
                                              self.store.test_ids()]), self.ledger.deleted(ids))
            placed, addition = place(cfg, rows)
            self._start(cfg, deferred=True)  # (as a deletion's)
            self.check_data(cfg)  # refuse lost rows before anything changes
            staged = stage(self.store, placed)
            req = self.ledger.record(addition.as_plan(), Kind.ADD, {
                "slice": addition.slice, "staging": staged, "dataset": dataset})
            self._drive(req)
        out = summarize(self.store.root, self.config, self.state)
        out.update({"request_id": req.request_id, "added": len(addition.train_ids),
                    "added_test": len(addition.test_ids), "new_slice": addition.slice,
                    "rows_per_shard": {str(k): n for k, n in addition.per_shard.items()}})
        out["wall_seconds"]["add"] = time.perf_counter() - t0
        return out

    def delete(self, ids: Sequence[int]) -> dict:
        """Forget ``ids`` exactly: record, remove, discard, retrain, commit, certify."""
        t0 = time.perf_counter()
        req_ids = np.asarray(list(ids), dtype=np.int64)
        if len(req_ids) == 0:
            raise ClulError("the deletion request is empty")
        rep = repeated_ids(req_ids)
        if rep:
            raise ClulError(f"ids repeated in the request: {rep}")
        _ = self.state  # refuses a root with no trained model
        with self._command(lambda: cmd.deletion_rows(self.store, req_ids)), \
                self.writing("delete"):
            self.resume()
            with phase("plan"):
                req, already = self.record_deletion(req_ids)
            if req is None:
                return {**summarize(self.store.root, self.config, self.state),
                        "request_id": None, "deleted": 0, "affected": {},
                        "already_deleted": already, "retrained": {}}
            out = self._finish(req, t0, "delete")
        out["already_deleted"] = already
        out["retrained"] = {str(s["shard"]): s["retrained_from"] for s in out["per_shard"]
                            if s["retrained_from"] is not None}
        return out

    def group_ids(self, groups: Sequence[str]) -> list[int]:
        """The ids of ``groups`` (values of the root's group column): ``delete --group``."""
        return group_ids(self.store, self.config, groups)

    def record_deletion(self, ids: np.ndarray, checked: bool = False
                        ) -> tuple[Request | None, list[int]]:
        """Check ``ids`` against the root and record the request (the lock held; nothing
        driven): (the request or None when every id is already deleted, those ids).
        ``checked``: the caller holds the lock since it checked Ray and the data."""
        uniq = np.unique(ids)
        gone = self.ledger.deleted(uniq)
        already, fresh = uniq[gone].tolist(), uniq[~gone]
        plan = plan_deletion(*self.store.read_index(), self.store.test_ids(), fresh)
        if plan.unknown:
            shown = ", ".join(str(i) for i in plan.unknown[:5])
            raise ClulError(f"{len(plan.unknown)} unknown ids (e.g. {shown}); nothing deleted")
        if len(fresh) == 0:
            return None, already
        if not checked:  # (Ray joined here, or where a warm worker's door fails)
            self._start(self.config, deferred=True)
            self.check_data(self.config)  # refuse lost rows before anything changes
        return self.ledger.record(plan), already

    def unlearn(self, method: str, forget: str, params: dict | None = None,
                seed: int = 0) -> dict:
        """Forget a scenario's rows approximately: edit the affected shards' models with
        ``method`` instead of retraining (see :mod:`.approximate`). A new version."""
        t0 = time.perf_counter()
        with phase("imports"):  # (no torch: the methods import it where they run)
            from ...unlearn.api import check_for_root
            from ..compute.approximate import resolve_forget
        with phase("checks"):
            check_for_root(method, params or {}, seed)  # a bad method or params: refused
        cfg, _ = self.config, self.state  # (refuses a root with no trained model)
        # (the shard edits run where slice steps would: this process for a small root)
        with self._command(lambda: len(self.store.read_index()[0]), cfg=cfg), \
                self.writing(f"unlearn {method}"):
            self.resume()
            with phase("plan"):
                ids = resolve_forget(self.store, cfg, forget, seed)
                plan = plan_deletion(*self.store.read_index(), self.store.test_ids(), ids)
            self._start(cfg, deferred=True)  # (as a deletion's)
            self.check_data(cfg)  # refuse lost rows before anything changes
            req = self.ledger.record(plan, Kind.UNLEARN, {
                "method": method, "params": dict(params or {}), "seed": seed,
                "forget": forget})
            out = self._finish(req, t0, "unlearn")
        out.update({"method": method, "forget": forget})
        return out

    def _finish(self, req: Request, t0: float, what: str) -> dict:
        self._drive(req)
        out = summarize(self.store.root, self.config, self.state)
        out.update(request_summary(req.plan.affected, req.request_id, req.n_train
                                   if req.kind == Kind.UNLEARN else req.n_ids,
                                   len(req.result.get("discarded", []))))
        out["wall_seconds"][what], out["in_process"] = time.perf_counter() - t0, \
            self.site.in_process
        return out

    def _drive(self, req: Request) -> None:
        """Run the controller's steps until the request is committed."""
        while self.step(req) is not None:
            pass

    def step(self, req: Request) -> Stage | None:
        """Run the request's next step (the lock held) and record its stage; None once the
        request is committed."""
        ctx = Context(self.store, self.config, self.train_shards, self.commit_version,
                      self.executor)
        cur = read_current(self.store)
        nxt = next_step(req.kind, req.state, req.request_id,
                        Current(cur.version, cur.request_id) if cur else Current())
        if nxt is None:
            return None
        step, then = nxt
        result = run_step(step, req, ctx)
        with phase("ledger"):
            self.ledger.advance(req, then, **result)
        if then == Stage.COMMITTED:
            self._notify("request_committed", req)
        self.faults.crash(then)
        return then

    def resume(self) -> list[str]:
        """Finish every request that a crash left unfinished, in order (refused first if
        the root's base model file changed)."""
        check_base(self.config)
        if not self.ledger.pending():  # nothing to do: no need for the lock
            return []
        done = []
        with self._command(lambda: cmd.root_rows(self.store)), self.writing("resume"):
            for req in self.ledger.pending():  # read again under the lock
                self._start(self.config)
                self._drive(req)
                done.append(req.request_id)
        return done

    def repair(self) -> dict:
        """Rebuild what can be rebuilt under the root (see :mod:`.repair`)."""
        from .repair import repair

        with self._command(lambda: cmd.root_rows(self.store)):
            return repair(self)

    def status(self) -> dict:
        """The current version, the ledger and the lock, and the problems (see
        :mod:`.status`)."""
        from .status import status

        return status(self)
