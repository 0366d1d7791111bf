"""Approximate unlearning on a SISA root: the fast path for a deletion.

``clul-ray unlearn --root R --method M --forget SCENARIO`` forgets rows without
retraining: each affected shard's current model is edited by an approximate method (a Ray
task per shard, in parallel), on that shard's own rows (forget = the shard's rows in the
scenario, retain = its other rows). The request goes through the same ledger as an exact
deletion: the rows leave the partitions and the index, and the checkpoints from each
shard's earliest affected slice on are discarded (they were trained on the rows). The new
version serves the edited models, marked ``approximate``.

Such a version is *not* exact. Running ``clul-ray train`` again with the same config heals
it: the missing checkpoints are retrained from the last clean slice, and the shard models
become, bit for bit, the ones training without the rows would give.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ...config import PipelineConfig
from ...data.sources import features
from ...errors import ClulError
from ...runtime import gather, node_id
from ...storage import layout
from ...storage.store import Store
from ..records.checkpoint import load_shard_model, model_sha256, write_artifact
from ..records.version import ModelVersion, ShardState


def unlearn_shard(cfg: PipelineConfig, store: Store, shard: ShardState, forget_ids: list[int],
                  method: str, params: dict[str, Any], seed: int, request_id: str,
                  node: str = "local") -> dict:
    """Edit one shard's model with ``method`` and store it; a pure function of its inputs."""
    from ...unlearn import Split, unlearn_model

    t0 = time.perf_counter()
    torch.set_num_threads(cfg.compute.threads_per_shard)
    k = shard.shard
    rows = store.read_shard(k, cfg.partition.total_slices - 1, ["id", "label", "x"])
    if rows is None:
        raise ClulError(f"shard {k} holds no rows")
    ids = rows.column("id").to_numpy()
    x, y = features(rows), rows.column("label").to_numpy()
    f = np.isin(ids, forget_ids)
    if f.all():
        raise ClulError(f"the scenario forgets every row of shard {k}; use an exact delete")
    forget = Split.from_numpy(x[f], y[f], ids[f])
    retain = Split.from_numpy(x[~f], y[~f], ids[~f])
    model = load_shard_model(cfg, store, shard)
    edited, report = unlearn_model(model, forget, retain, method, params, seed)
    path = write_artifact(store, request_id, k, edited)
    return {"shard": k, "artifact": path, "n_samples": int((~f).sum()),
            "model_sha256": model_sha256(edited), "node_id": node,
            "seconds": time.perf_counter() - t0, "report": report.to_dict()}


def _remote_unlearn(*args, **kwargs) -> dict:
    return unlearn_shard(*args, **kwargs, node=node_id())


def run_unlearning(cfg: PipelineConfig, store: Store, version: ModelVersion,
                   affected: list[int], forget_ids: list[int], method: str, params: dict,
                   seed: int, request_id: str) -> dict[int, dict]:
    """Unlearn every affected shard, in parallel Ray tasks (in-process for ``local``)."""
    if cfg.compute.backend == "local":
        return {k: unlearn_shard(cfg, store, version.shard(k), forget_ids, method, params,
                                 seed, request_id) for k in affected}
    import ray

    task = ray.remote(_remote_unlearn).options(num_cpus=cfg.compute.cpus_per_shard,
                                               num_gpus=cfg.compute.gpus_per_shard,
                                               max_retries=3)
    refs = {task.remote(cfg, store, version.shard(k), forget_ids, method, params, seed,
                        request_id): k for k in affected}
    done = gather({ref: f"unlearning shard {k}" for ref, k in refs.items()})
    return {refs[ref]: out for ref, out in done.items()}


def resolve_forget(store: Store, cfg: PipelineConfig, scenario: str, seed: int) -> np.ndarray:
    """The training ids a forget scenario names on this root."""
    from ...unlearn.scenarios import parse_scenario, split_forget

    sc = parse_scenario(scenario)
    last = cfg.partition.total_slices - 1
    tables = [t for k in range(cfg.partition.shards)
              if (t := store.read_shard(k, last, ["id", "label"])) is not None]
    t = pa.concat_tables(tables).sort_by("id")
    ids, labels = t.column("id").to_numpy(), t.column("label").to_numpy()
    test = store.read_tables(layout.TEST, ["id", "label"])
    t_ids = test.column("id").to_numpy() if test is not None else np.zeros(0, np.int64)
    t_lab = test.column("label").to_numpy() if test is not None else np.zeros(0, np.int64)
    split = split_forget(sc, ids, labels, t_ids, t_lab, cfg.data.num_classes, seed)
    return ids[split.forget]
