"""Accuracy of a model version on the held-out split: batch prediction through Ray Data
(in-process for backend ``local``), then pure scoring."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import pyarrow as pa

from .. import layout
from ..config import PipelineConfig
from ..errors import first_line
from ..store import Store
from .ensemble import BatchPredictor, Ensemble
from .version import Metrics, ModelVersion

Progress = Callable[[str, int, int], None]
# The one predictor actor reserves no CPU: with a whole CPU it starves Ray Data's read
# tasks on a cluster with a single CPU left (seen as a hang after a node loss).
EVAL_CPUS = 0.0


def score(predictions: pa.Table, trained_shards: list[int]) -> Metrics:
    """Ensemble and per-shard accuracy from ``Ensemble.predict_table`` rows."""
    y = predictions.column("label").to_numpy()
    pred = predictions.column("pred").to_numpy()
    sp = predictions.column("shard_pred").combine_chunks()
    sp = sp.flatten().to_numpy().reshape(len(predictions), sp.type.list_size)
    return Metrics(ensemble_accuracy=float((pred == y).mean()), test_samples=len(y),
                   shard_accuracy={str(k): float((sp[:, i] == y).mean())
                                   for i, k in enumerate(trained_shards)})


def predict_dataset(ds, cfg: PipelineConfig, store: Store, version: ModelVersion):
    """Batch prediction through Ray Data: canonical rows -> id, pred, shard_pred."""
    import ray.data

    with warnings.catch_warnings():
        # ``max_restarts=0`` is the way Ray Data's actor pool documents to turn restarts off
        # (a failed evaluation is retried whole); Ray 2.60 flags every such extra remote
        # argument as deprecated. With restarts on, Ray prints that a restart could not
        # rebuild constructor arguments held in the object store.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return ds.map_batches(
            BatchPredictor, fn_constructor_kwargs={
                "cfg": cfg.model_dump(), "root": store.root,
                "version": version.model_dump(mode="json")},
            batch_size=4096, batch_format="pyarrow", num_cpus=EVAL_CPUS,
            compute=ray.data.ActorPoolStrategy(size=1), max_restarts=0)


def evaluate(cfg: PipelineConfig, store: Store, version: ModelVersion, use_ray: bool,
             progress: Progress, attempts: int = 3) -> Metrics:
    """Evaluation is a pure read: a Ray failure in it (a node lost while Ray Data placed an
    actor there, before the cluster marked the node dead) is retried."""
    if not store.list_files(layout.TEST, ".parquet"):
        return Metrics()
    trained = [s.shard for s in version.trained_shards()]
    if not use_ray:
        test = store.read_tables(layout.TEST)
        return score(Ensemble(cfg, store, version).predict_table(test), trained)
    import ray.data
    import ray.exceptions

    def once() -> Metrics:
        ds = ray.data.read_parquet(store.path(layout.TEST), filesystem=store.fs)
        out = pa.concat_tables(list(predict_dataset(ds, cfg, store, version).iter_batches(
            batch_format="pyarrow", batch_size=None)))
        return score(out, trained)

    for attempt in range(1, attempts):
        try:
            return once()
        except ray.exceptions.RayError as e:
            progress(f"evaluation failed ({first_line(e)[:80]}); retrying", attempt, attempts)
            time.sleep(10 * attempt)
    return once()  # the last attempt raises what it meets
