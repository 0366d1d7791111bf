"""The executor of the controller's steps: each step's I/O, given a request and a context.

Every step is idempotent (a resumed request may run it twice) and returns what the ledger
records with the request's next stage.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...config import PipelineConfig
from ...phases import compute, phase
from ...storage import layout
from ...storage.store import Store
from ..compute.evaluation import reading_ahead
from ..decisions.controller import (
    AddRows,
    AdoptCommitted,
    Certify,
    CommitEdited,
    DiscardCheckpoints,
    EditModels,
    ReleaseStaging,
    RemoveRows,
    Retrain,
    Step,
    TrainAdded,
)
from ..records.certificate import write_certificate
from ..records.ledger import Request
from ..records.predcache import purge_ids
from ..records.version import ModelVersion, SliceResult, require_current
from .grow import add_rows

TrainShards = Callable[[PipelineConfig, list[int]], tuple[list[SliceResult], dict[int, int]]]
Commit = Callable[..., ModelVersion]


@dataclass
class Context:
    """What the steps work with; the pipeline provides training, committing and the
    executor of its command's shard work (where an unlearning's edits run)."""

    store: Store
    cfg: PipelineConfig
    train_shards: TrainShards  # (cfg, shards) -> (results, start slice per shard)
    commit: Commit  # (cfg, operation, request_id, starts, results, timings, edited)
    executor: Callable[[PipelineConfig], Any]  # (cfg) -> the command's executor (edits)


def train_and_commit(ctx: Context, req: Request, operation: str, timing: str
                     ) -> dict[str, Any]:
    """Train every shard whose checkpoint chain is incomplete and commit the version;
    its timings are ``{timing}_seconds`` (wall) and ``{timing}_compute_seconds``."""
    t0 = time.perf_counter()
    results, starts = ctx.train_shards(ctx.cfg, list(range(ctx.cfg.partition.shards)))
    v = ctx.commit(ctx.cfg, operation, req.request_id, starts, results,
                   {f"{timing}_seconds": time.perf_counter() - t0,
                    f"{timing}_compute_seconds": sum(r.seconds for r in results)})
    return {"version": v.version}


def step_phase(step: Step) -> str:
    """The phase (:mod:`clul_ray.phases`) a step's own time counts as: its name in
    snake case (``RemoveRows`` -> ``remove_rows``)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(step).__name__).lower()


def run_step(step: Step, req: Request, ctx: Context) -> dict[str, Any]:
    with phase(step_phase(step)):
        return _run_step(step, req, ctx)


def _run_step(step: Step, req: Request, ctx: Context) -> dict[str, Any]:
    store, cfg, plan = ctx.store, ctx.cfg, req.plan
    match step:
        case EditModels():
            from ..compute.approximate import Edit, run_unlearning  # (no torch: the edits)

            m = req.meta
            edit = Edit(plan.train_ids, m["method"], m["params"], m["seed"], req.request_id)
            with reading_ahead(cfg, store, set(plan.affected)):  # (as a retrain does)
                edited = run_unlearning(ctx.executor(cfg), cfg, store, require_current(store),
                                        sorted(plan.affected), edit)
            for what, key in (("edit", "seconds"), ("predict", "predict_seconds")):
                compute(what, max((e.get(key, 0.0) for e in edited.values()), default=0.0))
            return {"edited": {str(k): v for k, v in edited.items()}}
        case RemoveRows():
            # only the slices the index places the ids in (the index is rewritten last,
            # so a resumed step finds the same slices, or none once they are clean)
            train_ids = np.asarray(plan.train_ids, dtype=np.int64)
            ids, shard, slc = store.read_index()
            hit = np.isin(ids, train_ids)
            for k, r in sorted(set(zip(shard[hit].tolist(), slc[hit].tolist(), strict=True))):
                store.remove_rows(layout.slice_dir(k, r), train_ids)
            if plan.test_ids:  # (cached predictions hold test rows only)
                test_ids = np.asarray(plan.test_ids, np.int64)
                store.remove_rows(layout.TEST, test_ids)
                purge_ids(store, test_ids)
            keep = ~np.isin(ids, req.ids)
            if not keep.all():
                store.rewrite_index(ids[keep], shard[keep], slc[keep])
            return {}
        case DiscardCheckpoints():
            return {"discarded": [f for k, r0 in sorted(plan.affected.items())
                                  for f in store.discard_checkpoints(k, r0)]}
        case Retrain():
            # every shard whose checkpoint chain is broken: the affected ones, and those of
            # later requests whose data steps ran first (the service's coalescing)
            return train_and_commit(ctx, req, "delete", "retrain")
        case CommitEdited():
            # no shard edited (every id a test row): the same models, unlearned in 0 s
            edited = {int(k): e for k, e in req.result["edited"].items()}
            seconds = max((e["seconds"] for e in edited.values()), default=0.0)
            v = ctx.commit(cfg, f"unlearn:{req.meta['method']}", req.request_id, {}, [],
                           {"unlearn_seconds": seconds}, edited)
            return {"version": v.version}
        case AddRows():
            add_rows(store, cfg, req.request_id, req.meta["staging"], req.meta["slice"])
            return {}
        case TrainAdded():
            return train_and_commit(ctx, req, "add", "train")
        case ReleaseStaging():
            store.delete(req.meta["staging"])
            return {}
        case AdoptCommitted(version=version):
            return {"version": version}
        case Certify():
            write_certificate(store, req, cfg.partition.total_slices)
            return {}
    raise TypeError(f"unknown step {step!r}")
