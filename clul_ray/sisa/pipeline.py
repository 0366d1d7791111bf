"""The SISA pipeline on one storage root: partition, train, predict, delete, resume.

Ray stays at the edges (Ray Data for partitioning and batch prediction, the executor for
shard training); planning, keys and aggregation are the pure functions of ``plan.py``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import lineage
from ..config import PipelineConfig, make_config
from ..data.partition import assign, is_test
from ..data.sources import open_source
from ..errors import ClulError
from ..lock import locked, read_lock
from ..models import build_model
from ..runtime import (
    check_shard_fits,
    check_storage_root,
    ensure_ray,
    node_resources,
)
from ..store import Store
from .executor import LocalExecutor, ShardJob, make_executor
from .ledger import Ledger, Request
from .plan import checkpoint_keys, plan_deletion
from .trainer import SliceResult, result_from_checkpoint

Progress = Callable[[str, int, int], None]  # (description, done, total)
# Evaluation's one predictor actor reserves no CPU: with a whole CPU it starves Ray Data's
# read tasks on a cluster with a single CPU left (seen as a hang after a node loss).
EVAL_CPUS = 0.0


def _noop(desc: str, done: int, total: int) -> None:
    return None


class Pipeline:
    """All operations on one storage root. ``executor`` defaults to the config's backend."""

    _crash_after: str | None = None  # fault injection for the resume tests

    def __init__(self, root: str, address: str | None = None, executor=None,
                 progress: Progress | None = None):
        self.store = Store(root)
        self.ledger = Ledger(self.store)
        self.address = address
        self._executor = executor
        self.progress = progress or _noop
        self._lock: dict | None = None

    @contextmanager
    def writing(self, command: str) -> Iterator[None]:
        """Hold the root's lock (see :mod:`clul_ray.lock`) while changing it; reentrant
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

    # ---- reading state ---------------------------------------------------------------
    @property
    def config(self) -> PipelineConfig:
        raw = self.store.read_json("config.json")
        if raw is None:
            raise ClulError(f"no pipeline under {self.store.root}: run `clul-ray train` first")
        return PipelineConfig(**raw)

    @property
    def state(self) -> dict:
        st = self.store.read_json("state.json")
        if st is None:
            raise ClulError(f"no trained model under {self.store.root}: run `clul-ray train`")
        return st

    def executor(self, cfg: PipelineConfig):
        return self._executor or make_executor(cfg.backend)

    def _check_root(self, cfg: PipelineConfig) -> None:
        """A local-path root on a multi-node cluster only as a declared shared mount; shard
        resources that some node can hold (unless ``CLUL_RAY_WAIT_FOR_RESOURCES=1``: an
        autoscaling cluster adds such nodes on demand)."""
        nodes = node_resources()  # the alive nodes
        check_storage_root(self.store.root, self.store.is_local, len(nodes),
                           cfg.shared_storage)
        if os.environ.get("CLUL_RAY_WAIT_FOR_RESOURCES", "0") not in ("1", "true", "yes"):
            check_shard_fits(nodes, cfg.cpus_per_shard, cfg.gpus_per_shard,
                             cfg.ddp_world_size)

    def _crash(self, stage: str) -> None:
        if self._crash_after == stage:
            raise RuntimeError(f"injected crash after {stage}")

    # ---- train -----------------------------------------------------------------------
    def train(self, cfg: PipelineConfig) -> dict:
        """Partition (once per root) and train every shard; reuse matching checkpoints."""
        t0 = time.perf_counter()
        source = open_source(cfg.dataset, cfg.data_dir, cfg.download, cfg.num_classes,
                             cfg.input_shape, cfg.group_column)
        cfg = make_config(**{**cfg.model_dump(), "num_classes": cfg.num_classes
                             or source.num_classes, "input_shape": list(source.input_shape)})
        build_model(cfg.model, cfg.input_shape, cfg.num_classes, cfg.model_args)  # fails early
        ensure_ray(self.address)
        self._check_root(cfg)  # before the lock or Ray Data write anything under the root
        with self.writing("train"):
            return self._train(cfg, source, t0)

    def _train(self, cfg: PipelineConfig, source, t0: float) -> dict:
        existing = self.store.read_json("config.json")  # read under the lock
        if existing is not None:
            old = PipelineConfig(**existing)
            if old.partition_dict() != cfg.partition_dict():
                diff = [k for k, v in cfg.partition_dict().items()
                        if old.partition_dict()[k] != v]
                raise ClulError(f"{self.store.root} was partitioned with other "
                                f"{', '.join(diff)}; use a new --root")
            self.resume()
        if existing is None:
            self._partition(cfg, source)
        self.store.write_json("config.json", cfg.model_dump())
        t_part = time.perf_counter() - t0
        results, starts = self._train_shards(cfg, range(cfg.shards))
        state = self._commit(cfg, "train", None, starts, results,
                             {"partition_seconds": t_part,
                              "train_seconds": time.perf_counter() - t0 - t_part})
        return self.summary(state)

    def _partition(self, cfg: PipelineConfig, source) -> None:
        for d in ("data", "index", "checkpoints"):
            self.store.delete(d)
        self.progress("validating data", 0, 1)
        n = source.validate()
        self.progress("validating data", 1, 1)
        seed, shards, slices = cfg.seed, cfg.shards, cfg.slices
        frac, gcol = cfg.test_fraction, cfg.group_column

        def place(t: pa.Table) -> pa.Table:
            ids = t.column("id").to_numpy()
            groups = t.column(gcol).to_numpy(zero_copy_only=False) if gcol else None
            shard, slc = assign(seed, ids, shards, slices, groups)
            return (t.append_column("shard", pa.array(shard))
                    .append_column("slice", pa.array(slc))
                    .append_column("test", pa.array(is_test(seed, ids, frac))))

        self.progress("partitioning", 0, n)
        placed = source.ray_dataset().map_batches(place, batch_format="pyarrow").materialize()
        train = placed.map_batches(lambda t: t.filter(pc.invert(t["test"])).drop_columns(
            ["test"]), batch_format="pyarrow").materialize()
        test = placed.map_batches(lambda t: t.filter(t["test"]).drop_columns(
            ["test", "shard", "slice"]), batch_format="pyarrow")
        if train.count() == 0:
            raise ClulError("no training rows left after holding out the test split")
        fs = self.store.fs
        train.write_parquet(self.store.path("data/train"), filesystem=fs,
                            partition_cols=["shard", "slice"])
        train.select_columns(["id", "shard", "slice"]).write_parquet(
            self.store.path("index"), filesystem=fs)
        test.write_parquet(self.store.path("data/test"), filesystem=fs)
        self.progress("partitioning", n, n)

    def shard_keys(self, cfg: PipelineConfig, shard: int) -> list[str]:
        ids = [self.store.slice_ids(shard, r) for r in range(cfg.slices)]
        return checkpoint_keys(cfg.training_digest(), shard, ids)

    def _train_shards(self, cfg: PipelineConfig, shards) -> tuple[list[SliceResult], dict]:
        """Train each shard from its first slice without a matching checkpoint."""
        jobs, starts = [], {}
        for k in shards:
            keys = self.shard_keys(cfg, k)
            start = next((r for r in range(cfg.slices)
                          if not self.store.has_checkpoint(k, r, keys[r])), cfg.slices)
            if start < cfg.slices:
                jobs.append(ShardJob(k, start, tuple(keys)))
                starts[k] = start
        total = sum(cfg.slices - j.start for j in jobs)
        done = 0
        self.progress("training slices", 0, total)

        def on_step(_: SliceResult) -> None:
            nonlocal done
            done += 1
            self.progress("training slices", done, total)

        executor = self.executor(cfg)
        if jobs and not isinstance(executor, LocalExecutor):
            self._check_root(cfg)
        results = executor.run(cfg, self.store, jobs, on_step) if jobs else []
        return results, starts

    def _commit(self, cfg: PipelineConfig, operation: str, request_id: str | None,
                starts: dict, results: list[SliceResult], timings: dict,
                edited: dict[int, dict] | None = None) -> dict:
        """Write a new model version (after evaluating it) and drop stale checkpoints."""
        prev = self.store.read_json("state.json")
        prev_shards = {s["shard"]: s for s in prev["shards"]} if prev else {}
        last = {r.shard: r for r in results if r.slice == cfg.slices - 1}
        seconds: dict[int, float] = {}
        for r in results:
            seconds[r.shard] = seconds.get(r.shard, 0.0) + r.seconds
        shards = []
        keep = set()
        for k in range(cfg.shards):
            keys = self.shard_keys(cfg, k)
            keep.update(self.store.checkpoint_path(k, r, key) for r, key in enumerate(keys))
            if edited and k in edited:  # approximately unlearned: serves an edited artifact
                e = edited[k]
                info = {x: e[x] for x in ("n_samples", "model_sha256", "node_id", "seconds")}
                info["artifact"] = e["artifact"]
            elif k in last:
                res = last[k]
                info = {"n_samples": res.n_samples, "model_sha256": res.model_sha256,
                        "node_id": res.node_id, "seconds": seconds[k],
                        "step_nodes": {str(r.slice): r.node_id for r in results
                                       if r.shard == k}}
            elif k in prev_shards and prev_shards[k]["keys"] == keys:
                info = {x: prev_shards[k][x] for x in
                        ("n_samples", "model_sha256", "node_id", "seconds", "artifact",
                         "step_nodes") if x in prev_shards[k]}
            else:
                res = result_from_checkpoint(cfg, self.store, k, cfg.slices - 1, keys[-1])
                info = {"n_samples": res.n_samples, "model_sha256": res.model_sha256,
                        "node_id": res.node_id, "seconds": res.seconds}
            shards.append({"shard": k, "keys": keys, "retrained_from": starts.get(k), **info})
        version = (prev["version"] + 1) if prev else 1
        state = {"version": version, "parent": prev["version"] if prev else None,
                 "operation": operation, "request_id": request_id, "created": time.time(),
                 "training_digest": cfg.training_digest(), "shards": shards,
                 "timings": timings}
        t0 = time.perf_counter()
        state["metrics"] = self._evaluate(cfg, state)
        timings["evaluate_seconds"] = time.perf_counter() - t0
        self.store.write_json(f"versions/v{version:06d}.json", state)
        self.store.write_json("state.json", state)
        for f in self.store.checkpoint_files():
            if f not in keep:
                self.store.delete(f)
        served = {s.get("artifact") for s in shards}
        for f in self.store.list_files("unlearned", ".pt"):  # superseded edited models
            if f not in served:
                self.store.delete(f)
        lineage.on_commit(self.store, cfg.model_dump(), state)  # MLflow errors only warn
        return state

    # ---- predict / evaluate ----------------------------------------------------------
    def predict_dataset(self, ds, state: dict | None = None):
        """Batch prediction through Ray Data: canonical rows -> id, pred, shard_pred."""
        import ray.data

        from .ensemble import BatchPredictor

        ensure_ray(self.address)
        cfg = self.config
        return ds.map_batches(
            BatchPredictor, fn_constructor_kwargs={"cfg": cfg.model_dump(),
                                                   "root": self.store.root,
                                                   "state": state or self.state},
            batch_size=4096, batch_format="pyarrow", num_cpus=EVAL_CPUS,
            compute=ray.data.ActorPoolStrategy(size=1))

    def _evaluate(self, cfg: PipelineConfig, state: dict, attempts: int = 3) -> dict:
        """Evaluation is a pure read: a Ray failure in it (a node lost while Ray Data placed
        an actor there, before the cluster marked the node dead) is retried."""
        import ray.exceptions

        for attempt in range(1, attempts):
            try:
                return self._evaluate_once(cfg, state)
            except ray.exceptions.RayError as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                self.progress(f"evaluation failed ({first[:80]}); retrying", attempt,
                              attempts)
                time.sleep(10 * attempt)
        return self._evaluate_once(cfg, state)  # the last attempt raises what it meets

    def _evaluate_once(self, cfg: PipelineConfig, state: dict) -> dict:
        import ray.data

        if not self.store.list_files("data/test", ".parquet"):
            return {"ensemble_accuracy": None, "shard_accuracy": {}, "test_samples": 0}
        ds = ray.data.read_parquet(self.store.path("data/test"), filesystem=self.store.fs)
        out = pa.concat_tables(list(self.predict_dataset(ds, state).iter_batches(
            batch_format="pyarrow", batch_size=None)))
        y = out.column("label").to_numpy()
        pred = out.column("pred").to_numpy()
        sp = out.column("shard_pred").combine_chunks()
        sp = sp.flatten().to_numpy().reshape(len(out), sp.type.list_size)
        trained = [s["shard"] for s in state["shards"] if s["n_samples"] > 0]
        return {"ensemble_accuracy": float((pred == y).mean()), "test_samples": len(y),
                "shard_accuracy": {str(k): float((sp[:, i] == y).mean())
                                   for i, k in enumerate(trained)}}

    def evaluate(self) -> dict:
        self.resume()
        ensure_ray(self.address)
        t0 = time.perf_counter()
        state = self.state
        state["metrics"] = self._evaluate(self.config, state)
        out = self.summary(state)
        out["wall_seconds"] = {"evaluate": time.perf_counter() - t0}
        return out

    # ---- delete ----------------------------------------------------------------------
    def delete(self, ids: Sequence[int]) -> dict:
        """Forget ``ids`` exactly: record, plan, remove, discard, retrain, commit."""
        t0 = time.perf_counter()
        req_ids = np.asarray(list(ids), dtype=np.int64)
        if len(req_ids) == 0:
            raise ClulError("the deletion request is empty")
        uniq, counts = np.unique(req_ids, return_counts=True)
        if (counts > 1).any():
            rep = ", ".join(str(int(i)) for i in uniq[counts > 1][:5])
            raise ClulError(f"ids repeated in the request: {rep}")
        _ = self.state  # refuses a root with no trained model
        with self.writing("delete"):
            return self._delete(uniq, t0)

    def _delete(self, uniq: np.ndarray, t0: float) -> dict:
        self.resume()
        gone = np.isin(uniq, self.ledger.deleted_ids())
        already, fresh = uniq[gone].tolist(), uniq[~gone]
        index = self.store.read_index()
        plan = plan_deletion(*index, self.store.test_ids(), fresh)
        if plan.unknown:
            shown = ", ".join(str(i) for i in plan.unknown[:5])
            raise ClulError(f"{len(plan.unknown)} unknown ids (e.g. {shown}); nothing deleted")
        if len(fresh) == 0:
            out = self.summary(self.state)
            out.update({"request_id": None, "already_deleted": already, "affected": {},
                        "retrained": {}, "deleted": 0})
            return out
        ensure_ray(self.address)
        req = self.ledger.record(plan)
        state = self._execute(req)
        out = self.summary(state)
        out.update({"request_id": req.request_id, "already_deleted": already,
                    "deleted": len(fresh), "affected": {str(k): v for k, v in
                                                        sorted(plan.affected.items())},
                    "retrained": {str(s["shard"]): s["retrained_from"] for s in state["shards"]
                                  if s["retrained_from"] is not None},
                    "checkpoints_discarded": len(req.result.get("discarded", []))})
        out["wall_seconds"]["delete"] = time.perf_counter() - t0
        return out

    def unlearn(self, method: str, forget: str, params: dict | None = None,
                seed: int = 0) -> dict:
        """Forget a scenario's rows approximately: edit the affected shards' models with
        ``method`` instead of retraining (see :mod:`.approximate`). A new version."""
        from ..unlearn import get_method

        t0 = time.perf_counter()
        get_method(method).make_params(params or {}, seed=seed)  # refuse bad params early
        cfg = self.config
        _ = self.state
        with self.writing(f"unlearn {method}"):
            return self._unlearn(cfg, method, forget, params, seed, t0)

    def _unlearn(self, cfg: PipelineConfig, method: str, forget: str, params: dict | None,
                 seed: int, t0: float) -> dict:
        from .approximate import resolve_forget

        self.resume()
        ids = resolve_forget(self.store, cfg, forget, seed)
        plan = plan_deletion(*self.store.read_index(), self.store.test_ids(), ids)
        if plan.unknown:  # pragma: no cover - resolve_forget only names training rows
            raise ClulError(f"{len(plan.unknown)} unknown ids in the scenario")
        ensure_ray(self.address)
        req = self.ledger.record(plan, kind="unlearn", meta={
            "method": method, "params": dict(params or {}), "seed": seed, "forget": forget})
        state = self._execute(req)
        out = self.summary(state)
        out.update({"request_id": req.request_id, "method": method, "forget": forget,
                    "deleted": len(plan.train_ids),
                    "affected": {str(k): v for k, v in sorted(plan.affected.items())},
                    "checkpoints_discarded": len(req.result.get("discarded", []))})
        out["wall_seconds"]["unlearn"] = time.perf_counter() - t0
        return out

    def _execute(self, req: Request) -> dict:
        cfg = self.config
        plan = req.plan
        if req.kind == "unlearn" and req.state == "planned":
            from .approximate import run_unlearning

            m = req.meta
            edited = run_unlearning(cfg, self.store, self.state, sorted(plan.affected),
                                    plan.train_ids, m["method"], m["params"], m["seed"],
                                    req.request_id, cfg.backend)
            self.ledger.advance(req, "unlearned", edited={str(k): v for k, v in
                                                          edited.items()})
            self._crash("unlearned")
        if (req.state == "planned" and req.kind == "delete") or req.state == "unlearned":
            train_ids = np.asarray(plan.train_ids, dtype=np.int64)
            for k, r0 in plan.affected.items():
                for r in range(r0, cfg.slices):
                    self.store.remove_rows(self.store.slice_dir(k, r), train_ids)
            if plan.test_ids:
                self.store.remove_rows("data/test", np.asarray(plan.test_ids, np.int64))
            ids, shard, slc = self.store.read_index()
            keep = ~np.isin(ids, req.ids)
            if not keep.all():
                self.store.rewrite_index(ids[keep], shard[keep], slc[keep])
            self.ledger.advance(req, "data_removed")
            self._crash("data_removed")
        if req.state == "data_removed":
            discarded = [f for k, r0 in sorted(plan.affected.items())
                         for f in self.store.discard_checkpoints(k, r0)]
            self.ledger.advance(req, "checkpoints_discarded", discarded=discarded)
            self._crash("checkpoints_discarded")
        if req.state == "checkpoints_discarded":
            current = self.store.read_json("state.json")
            if current.get("request_id") == req.request_id:  # committed before a crash
                pass
            elif req.kind == "unlearn":
                edited = {int(k): v for k, v in req.result["edited"].items()}
                current = self._commit(cfg, f"unlearn:{req.meta['method']}", req.request_id,
                                       {}, [], {"unlearn_seconds": max(
                                           e["seconds"] for e in edited.values())}, edited)
            else:
                ensure_ray(self.address)
                t0 = time.perf_counter()
                results, starts = self._train_shards(cfg, sorted(plan.affected))
                current = self._commit(cfg, "delete", req.request_id, starts, results,
                                       {"retrain_seconds": time.perf_counter() - t0,
                                        "retrain_compute_seconds":
                                            sum(r.seconds for r in results)})
            self.ledger.advance(req, "retrained", version=current["version"])
            self._crash("retrained")
        if req.state == "retrained":
            lineage.write_certificate(self.store, req)  # idempotent: rewritten on a resume
            self.ledger.advance(req, "committed")
            lineage.mirror(self.store)  # the certificate, into the version's MLflow run
        return self.state

    def resume(self) -> list[str]:
        """Finish every deletion request that a crash left unfinished, in order."""
        done = []
        if not self.ledger.pending():  # nothing to do: no need for the lock
            return done
        with self.writing("resume"):
            for req in self.ledger.pending():  # read again under the lock
                self._execute(req)
                done.append(req.request_id)
        return done

    # ---- reports ---------------------------------------------------------------------
    def summary(self, state: dict) -> dict:
        cfg = self.config
        m = state.get("metrics", {})
        acc = m.get("shard_accuracy", {})
        return {
            "root": self.store.root, "version": state["version"], "parent": state["parent"],
            "operation": state["operation"], "shards": cfg.shards, "slices": cfg.slices,
            "dataset": cfg.dataset, "model": cfg.model,
            "samples": sum(s["n_samples"] for s in state["shards"]),
            "test_samples": m.get("test_samples"),
            "ensemble_accuracy": m.get("ensemble_accuracy"),
            "per_shard": [{"shard": s["shard"], "samples": s["n_samples"],
                           "accuracy": acc.get(str(s["shard"])),
                           "model_sha256": s["model_sha256"], "node_id": s["node_id"],
                           "step_nodes": s.get("step_nodes", {}),
                           "train_seconds": s["seconds"], "retrained_from": s["retrained_from"],
                           "approximate": bool(s.get("artifact"))}
                          for s in state["shards"]],
            "wall_seconds": dict(state.get("timings", {})),
        }

    def status(self) -> dict:
        cfg = self.config
        st = self.store.read_json("state.json")
        out = self.summary(st) if st else {"root": self.store.root, "version": None,
                                            "shards": cfg.shards, "slices": cfg.slices}
        reqs = self.ledger.requests()
        out["requests"] = {"committed": sum(r.state == "committed" for r in reqs),
                           "pending": [r.request_id for r in reqs if r.state != "committed"]}
        out["deleted_ids"] = int(sum(r.n_ids for r in reqs))
        out["checkpoints"] = len(self.store.checkpoint_files())
        out["locked_by"] = read_lock(self.store)
        return out
