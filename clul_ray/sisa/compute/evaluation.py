"""Accuracy (and macro precision / recall / F1) of a model version on the held-out split:
each shard's cached predictions (:mod:`.predcache`) where its model has them, batch
prediction for the others through Ray Data (in-process for backend ``local`` and for small
work), then pure scoring."""

from __future__ import annotations

import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import pyarrow as pa

from ...config import PipelineConfig
from ...data.sources import features
from ...errors import first_line
from ...phases import phase
from ...storage import layout
from ...storage.columns import to_numpy
from ...storage.lock import read_lock
from ...storage.store import Store
from ..records import certify
from ..records.predcache import (
    ShardPredictions,
    classification_metrics,
    merge,
    plan_predictions,
    read_cached,
    score_probs,
    write_cached,
)
from ..records.version import Metrics, ModelVersion, SliceResult, read_current, rewrite_version
from .site import Site

Progress = Callable[[str, int, int], None]
# The one predictor actor reserves no CPU: with a whole CPU it starves Ray Data's read
# tasks on a cluster with a single CPU left (seen as a hang after a node loss).
EVAL_CPUS = 0.0
T = TypeVar("T")


def score(predictions: pa.Table, trained_shards: list[int]) -> Metrics:
    """Ensemble accuracy, its macro precision / recall / F1, and per-shard accuracy from
    ``Ensemble.predict_table`` rows."""
    y = predictions.column("label").to_numpy()
    pred = predictions.column("pred").to_numpy()
    sp = predictions.column("shard_pred").combine_chunks()
    sp = sp.flatten().to_numpy().reshape(len(predictions), sp.type.list_size)
    return classification_metrics(pred, y, {str(k): float((sp[:, i] == y).mean())
                                            for i, k in enumerate(trained_shards)})


def predict_dataset(ds, cfg: PipelineConfig, store: Store, version: ModelVersion,
                    shards: list[int] | None = None, proba: bool = False):
    """Batch prediction through Ray Data: canonical rows -> id, pred, shard_pred (or, with
    ``proba``, id and the probabilities of ``shards``, see ``Ensemble.proba_table``)."""
    from ...runtime import import_ray_data

    rdata = import_ray_data()

    with warnings.catch_warnings():
        # ``max_restarts=0`` is the way Ray Data's actor pool documents to turn restarts off
        # (a failed evaluation is retried whole); Ray 2.60 flags every such extra remote
        # argument as deprecated. With restarts on, Ray prints that a restart could not
        # rebuild constructor arguments held in the object store.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        from .ensemble import BatchPredictor

        return ds.map_batches(
            BatchPredictor, fn_constructor_kwargs={
                "cfg": cfg.model_dump(), "root": store.root,
                "version": version.model_dump(mode="json"), "shards": shards,
                "proba": proba},
            batch_size=4096, batch_format="pyarrow", num_cpus=EVAL_CPUS,
            compute=rdata.ActorPoolStrategy(size=1), max_restarts=0)


def holds_lock(store: Store) -> bool:
    """Whether this process holds the root's writer lock (only a writer fills the cache: a
    reader racing a deletion could store predictions of a row it removes)."""
    lock = read_lock(store)
    return bool(lock) and lock.get("pid") == os.getpid() \
        and lock.get("host") == socket.gethostname()


def predict_shards(cfg: PipelineConfig, store: Store, version: ModelVersion,
                   shards: list[int], ray_data: bool) -> dict[int, ShardPredictions]:
    """Fresh test-split predictions of ``shards``, through Ray Data or in this process."""
    if not ray_data:
        test = store.read_tables(layout.TEST)
        ids = test.column("id").to_numpy()
        from .ensemble import Ensemble

        probs = Ensemble(cfg, store, version, shards=shards).shard_proba(features(test))
        return {k: ShardPredictions(ids, probs[i]) for i, k in enumerate(shards)}
    from ...runtime import import_ray_data

    rdata = import_ray_data()

    ds = rdata.read_parquet(store.path(layout.TEST), filesystem=store.fs)
    out = pa.concat_tables(list(predict_dataset(ds, cfg, store, version, shards, True)
                                .iter_batches(batch_format="pyarrow", batch_size=None)))
    ids = out.column("id").to_numpy()
    col = out.column("proba").combine_chunks()
    probs = col.flatten().to_numpy().reshape(len(ids), len(shards), -1)
    return {k: ShardPredictions(ids, np.ascontiguousarray(probs[:, i]))
            for i, k in enumerate(shards)}


def cache_test_predictions(cfg: PipelineConfig, store: Store, last: SliceResult) -> float:
    """Store the test-split predictions of the shard model a training just wrote (its last
    slice's step ``last``), so the evaluation of the version that serves it reads them
    instead of predicting; the seconds it took. The warm shard workers do this right after
    a retrain: the model and the test split are in their memory, and a writer's command
    (which holds the root's lock) called them."""
    t0 = time.perf_counter()
    if not store.list_files(layout.TEST, ".parquet"):
        return 0.0
    from ..records.checkpoint import checkpoint_model, read_checkpoint

    ck = read_checkpoint(store, last.shard, last.slice, last.key, sha256=last.file_sha256)
    return cache_model_predictions(cfg, store, last.shard, checkpoint_model(cfg, ck),
                                   last.model_sha256, t0)


def cache_model_predictions(cfg: PipelineConfig, store: Store, shard: int, model,
                            model_sha256: str, t0: float | None = None) -> float:
    """Store ``model``'s test-split predictions as shard ``shard``'s model ``model_sha256``
    (a retrained or an approximately edited one, in the memory of whoever made it); the
    seconds since ``t0`` (else since the call)."""
    t0 = time.perf_counter() if t0 is None else t0
    if not store.list_files(layout.TEST, ".parquet"):
        return 0.0
    from .ensemble import models_proba

    test = store.read_tables(layout.TEST)
    probs = models_proba(cfg, [model], features(test))[0]
    write_cached(store, shard, model_sha256, ShardPredictions(to_numpy(test.column("id")),
                                                              probs))
    return time.perf_counter() - t0


def evaluate(cfg: PipelineConfig, store: Store, version: ModelVersion, site: Site,
             progress: Progress, attempts: int = 3, cache: bool = True,
             write_cache: bool | None = None) -> Metrics:
    """Accuracy of ``version`` on the test split. Each trained shard's cached predictions
    are reused when they cover every test id (``cache``); only the other shards predict
    (their predictions are stored when ``write_cache``, by default when this process holds
    the root's lock). Evaluation is a pure read: a Ray failure in it (a node lost while Ray
    Data placed an actor there, before the cluster marked the node dead) is retried."""
    with phase("evaluate"):
        return _evaluate(cfg, store, version, site, progress, attempts, cache, write_cache)


def _evaluate(cfg: PipelineConfig, store: Store, version: ModelVersion, site: Site,
              progress: Progress, attempts: int, cache: bool,
              write_cache: bool | None) -> Metrics:
    if not store.list_files(layout.TEST, ".parquet"):
        return Metrics()
    shards = [s.shard for s in version.trained_shards()]
    digest = {s.shard: s.model_sha256 for s in version.trained_shards()}
    test = store.read_tables(layout.TEST, ["id", "label"])
    test_ids, labels = to_numpy(test.column("id")), to_numpy(test.column("label"))
    classes = cfg.prediction_width
    with ThreadPoolExecutor(max(1, min(len(shards), os.cpu_count() or 1))) as pool:
        # (Parquet decodes without the GIL: the shards' files read side by side)
        read = pool.map(lambda k: read_cached(store, k, digest[k], classes) if cache
                        else None, shards)
        cached = {k: p for k, p in zip(shards, read, strict=True) if p is not None}
    todo = plan_predictions(shards, cached, test_ids)
    fresh: dict[int, ShardPredictions] = {}
    if todo:
        ray_data = site.ray_data(len(test_ids), len(todo))
        fresh = _retried(lambda: predict_shards(cfg, store, version, todo, ray_data),
                         ray_data, progress, attempts)
        if cache and (holds_lock(store) if write_cache is None else write_cache):
            for k in todo:
                write_cached(store, k, digest[k], fresh[k])
    return score_probs(labels, merge(shards, cached, fresh, test_ids), shards,
                       cfg.serve.aggregation, cfg.task)


@contextmanager
def reading_ahead(cfg: PipelineConfig, store: Store, retrained: set[int]) -> Iterator[None]:
    """While the block runs (a retrain: this process waits on its workers), read what the
    commit's evaluation will read: the test split, and the cached predictions of the served
    models of the shards not ``retrained``; then what the commit's checks will read outside
    the checkpoints and the cache (:func:`.certify.read_ahead`). Only into a store that
    keeps what it reads (``store.keeps_reads``: the CLI's writers, the service); a read
    that fails here is left to the evaluation and the checks, which read again and report
    it."""
    current = read_current(store) if store.keeps_reads else None
    if current is None:
        yield
        return
    keep = [s for s in current.trained_shards() if s.shard not in retrained]

    def read() -> None:
        try:
            if store.list_files(layout.TEST, ".parquet"):
                store.read_tables(layout.TEST, ["id", "label"])
            for s in keep:
                read_cached(store, s.shard, s.model_sha256, cfg.prediction_width)
            certify.read_ahead(store, retrained, cfg.partition.shards,
                               cfg.partition.total_slices)
        except Exception:  # noqa: BLE001 (only a cache warm-up; see above)
            return

    t = threading.Thread(target=read, daemon=True, name="clul-ray-read-ahead")
    t.start()
    try:
        yield
    finally:
        t.join()


def unevaluated(version: ModelVersion) -> bool:
    """Whether ``version`` was committed without metrics (``Pipeline.evaluate_at_commit``
    off: the deletion service)."""
    m = version.metrics
    return m.ensemble_accuracy is None and m.test_samples == 0 \
        and "evaluate_seconds" not in version.timings


def evaluate_committed(cfg: PipelineConfig, store: Store, version: ModelVersion,
                       site: Site, progress: Progress) -> ModelVersion:
    """Evaluate a version committed without metrics and record them in its version record
    (and ``state.json`` while it is current). Only the writer that committed it calls
    this, before it changes the root again (it fills the prediction cache)."""
    t0 = time.perf_counter()
    version.metrics = evaluate(cfg, store, version, site, progress)
    version.timings["evaluate_seconds"] = time.perf_counter() - t0
    rewrite_version(store, version)
    return version


def _retried(fn: Callable[[], T], ray_data: bool, progress: Progress, attempts: int) -> T:
    if not ray_data:
        return fn()
    import ray.exceptions

    for attempt in range(1, attempts):
        try:
            return fn()
        except ray.exceptions.RayError as e:
            progress(f"evaluation failed ({first_line(e)[:80]}); retrying", attempt, attempts)
            time.sleep(10 * attempt)
    return fn()  # the last attempt raises what it meets
