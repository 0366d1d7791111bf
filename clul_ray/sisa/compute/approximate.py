"""Approximate unlearning on a SISA root: the fast path for a deletion.

``clul-ray unlearn --root R --method M --forget SCENARIO`` forgets rows without
retraining: each affected shard's current model is edited by an approximate method, on
that shard's own rows (forget = the shard's rows in the scenario, retain = its other
rows). The edits run where the command's slice steps would (its executor's ``edit``,
shards in parallel): in this process for backend ``local`` and a small root, as Ray
tasks for ``ray`` and ``ray_train``, and on the root's warm shard workers (:mod:`.warm`:
torch loaded, the slices in memory) for a command on a cluster and in the deletion
service; each runs
:func:`unlearn_shard`, so the edited models are the same bit for bit. The request goes
through the same ledger as an exact deletion: the rows leave the partitions and the
index, and the checkpoints from each shard's earliest affected slice on are discarded
(they were trained on the rows). The new version serves the edited models, marked
``approximate``.

Such a version is *not* exact. Running ``clul-ray train`` again with the same config heals
it: the missing checkpoints are retrained from the last clean slice, and the shard models
become, bit for bit, the ones training without the rows would give.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...config import PipelineConfig
from ...data.sources import features
from ...errors import ClulError
from ...storage import layout
from ...storage.columns import to_numpy
from ...storage.store import Store
from ..records.version import ModelVersion, ShardState
from .evaluation import cache_model_predictions


@dataclass(frozen=True)
class Edit:
    """What every affected shard's edit of one request is given: the request's training
    ids to forget, the method, its params and seed, and the request's id (it names the
    edited models' files)."""

    forget_ids: list[int]
    method: str
    params: dict[str, Any]
    seed: int
    request_id: str


def unlearn_shard(cfg: PipelineConfig, store: Store, shard: ShardState, edit: Edit,
                  node: str = "local") -> dict:
    """Edit one shard's model as ``edit`` says and store it; a pure function of its
    inputs (every executor runs it); it is where torch is imported (the driver, which
    only checks the request and plans, never does)."""
    import torch

    from ...unlearn import Split, unlearn_model
    from ..records.checkpoint import load_shard_model, model_sha256, write_artifact

    t0 = time.perf_counter()
    torch.set_num_threads(cfg.compute.threads_per_shard)
    k = shard.shard
    rows = store.read_shard(k, cfg.partition.total_slices - 1, ["id", "label", "x"])
    if rows is None:
        raise ClulError(f"shard {k} holds no rows")
    ids = rows.column("id").to_numpy()
    x, y = features(rows), rows.column("label").to_numpy()
    f = np.isin(ids, edit.forget_ids)
    if f.all():
        raise ClulError(f"the scenario forgets every row of shard {k}; use an exact delete")
    forget = Split.from_numpy(x[f], y[f], ids[f])
    retain = Split.from_numpy(x[~f], y[~f], ids[~f])
    model = load_shard_model(cfg, store, shard)
    edited, report = unlearn_model(model, forget, retain, edit.method, edit.params, edit.seed)
    path = write_artifact(store, edit.request_id, k, edited)
    digest, seconds = model_sha256(edited), time.perf_counter() - t0
    # the edited model's test predictions, so that the commit's evaluation reads them
    # (the writer's command called this: it holds the root's lock)
    predict = cache_model_predictions(cfg, store, k, edited, digest)
    return {"shard": k, "artifact": path, "n_samples": int((~f).sum()),
            "model_sha256": digest, "node_id": node, "seconds": seconds,
            "predict_seconds": predict, "report": report.to_dict()}


def run_unlearning(executor, cfg: PipelineConfig, store: Store, version: ModelVersion,
                   affected: list[int], edit: Edit) -> dict[int, dict]:
    """Edit every affected shard of ``version`` on ``executor`` (the command's, see
    :func:`.executor.make_executor`: in process, Ray tasks or warm workers), in parallel
    where it runs shards in parallel: {shard: its edit's result}."""
    return executor.edit(cfg, store, [version.shard(k) for k in affected], edit)


def resolve_forget(store: Store, cfg: PipelineConfig, scenario: str, seed: int) -> np.ndarray:
    """The training ids a forget scenario names on this root."""
    from ...unlearn.scenarios import parse_scenario, split_forget

    sc = parse_scenario(scenario)
    last = cfg.partition.total_slices - 1
    # every slice's rows, sorted by id with numpy's sort (no pyarrow.compute, no pandas)
    tables = [t for k in range(cfg.partition.shards) for r in range(last + 1)
              if (t := store.read_tables(layout.slice_dir(k, r), ["id", "label"])) is not None]
    ids, labels = (np.concatenate([to_numpy(t.column(c)) for t in tables])
                   for c in ("id", "label"))
    order = np.argsort(ids, kind="stable")
    ids, labels = ids[order], labels[order]
    test = store.read_tables(layout.TEST, ["id", "label"])
    t_ids = to_numpy(test.column("id")) if test is not None else np.zeros(0, np.int64)
    t_lab = to_numpy(test.column("label")) if test is not None else np.zeros(0, np.int64)
    split = split_forget(sc, ids, labels, t_ids, t_lab, cfg.data.num_classes, seed)
    return ids[split.forget]
