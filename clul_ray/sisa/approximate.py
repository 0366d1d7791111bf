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

import io
import time
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ..config import PipelineConfig
from ..data.sources import features
from ..errors import ClulError
from ..store import Store
from .trainer import load_checkpoint_model, model_sha256


def artifact_path(request_id: str, shard: int) -> str:
    return f"unlearned/{request_id}/shard={shard}.pt"


def load_shard_model(cfg: PipelineConfig, store: Store, shard_state: dict,
                     device: str = "cpu") -> torch.nn.Module:
    """The model a version serves for a shard: an edited artifact, or the last checkpoint."""
    if shard_state.get("artifact"):
        model = torch.load(io.BytesIO(store.read_bytes(shard_state["artifact"])),
                           map_location=device, weights_only=False)
        return model.eval()
    last = cfg.slices - 1
    return load_checkpoint_model(cfg, store, shard_state["shard"], last,
                                 shard_state["keys"][last], device)


def shard_rows(store: Store, cfg: PipelineConfig, shard: int) -> pa.Table | None:
    tables = [t for r in range(cfg.slices)
              if (t := store.read_slice(shard, r, ["id", "label", "x"])) is not None]
    return pa.concat_tables(tables).sort_by("id") if tables else None


def unlearn_shard(cfg: PipelineConfig, store: Store, shard_state: dict, forget_ids: list[int],
                  method: str, params: dict[str, Any], seed: int, request_id: str,
                  node_id: str = "local") -> dict:
    """Edit one shard's model with ``method`` and store it; a pure function of its inputs."""
    from ..unlearn import Split, unlearn_model

    t0 = time.perf_counter()
    torch.set_num_threads(cfg.threads_per_shard)
    k = shard_state["shard"]
    rows = shard_rows(store, cfg, k)
    if rows is None:
        raise ClulError(f"shard {k} holds no rows")
    ids = rows.column("id").to_numpy()
    x, y = features(rows), rows.column("label").to_numpy()
    f = np.isin(ids, forget_ids)
    if f.all():
        raise ClulError(f"the scenario forgets every row of shard {k}; use an exact delete")
    forget = Split.from_numpy(x[f], y[f], ids[f])
    retain = Split.from_numpy(x[~f], y[~f], ids[~f])
    model = load_shard_model(cfg, store, shard_state)
    edited, report = unlearn_model(model, forget, retain, method, params, seed)
    buf = io.BytesIO()
    torch.save(edited.cpu(), buf)
    path = artifact_path(request_id, k)
    store.write_bytes(path, buf.getvalue())
    return {"shard": k, "artifact": path, "n_samples": int((~f).sum()),
            "model_sha256": model_sha256(edited), "node_id": node_id,
            "seconds": time.perf_counter() - t0, "report": report.to_dict()}


def _remote_unlearn(*args, **kwargs) -> dict:
    import ray

    return unlearn_shard(*args, **kwargs, node_id=ray.get_runtime_context().get_node_id())


def run_unlearning(cfg: PipelineConfig, store: Store, state: dict, affected: list[int],
                   forget_ids: list[int], method: str, params: dict, seed: int,
                   request_id: str, backend: str) -> dict[int, dict]:
    """Unlearn every affected shard, in parallel Ray tasks (or in-process for ``local``)."""
    shards = {s["shard"]: s for s in state["shards"]}
    if backend == "local":
        return {k: unlearn_shard(cfg, store, shards[k], forget_ids, method, params, seed,
                                 request_id) for k in affected}
    import ray

    task = ray.remote(_remote_unlearn).options(num_cpus=cfg.cpus_per_shard,
                                               num_gpus=cfg.gpus_per_shard, max_retries=3)
    refs = {k: task.remote(cfg, store, shards[k], forget_ids, method, params, seed,
                           request_id) for k in affected}
    out = {}
    for k, ref in refs.items():
        try:
            out[k] = ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, ClulError):
                raise cause from None
            raise ClulError(f"unlearning shard {k} failed: "
                            f"{str(cause or e).strip().splitlines()[-1]}") from e
    return out


def resolve_forget(store: Store, cfg: PipelineConfig, scenario: str, seed: int) -> np.ndarray:
    """The training ids a forget scenario names on this root."""
    from ..unlearn.scenarios import parse_scenario, split_forget

    sc = parse_scenario(scenario)
    tables = [t for k in range(cfg.shards)
              if (t := shard_rows_labels(store, cfg, k)) is not None]
    t = pa.concat_tables(tables).sort_by("id")
    ids, labels = t.column("id").to_numpy(), t.column("label").to_numpy()
    test = store.read_tables("data/test", ["id", "label"])
    t_ids = test.column("id").to_numpy() if test is not None else np.zeros(0, np.int64)
    t_lab = test.column("label").to_numpy() if test is not None else np.zeros(0, np.int64)
    split = split_forget(sc, ids, labels, t_ids, t_lab, cfg.num_classes, seed)
    return ids[split.forget]


def shard_rows_labels(store: Store, cfg: PipelineConfig, shard: int) -> pa.Table | None:
    tables = [t for r in range(cfg.slices)
              if (t := store.read_slice(shard, r, ["id", "label"])) is not None]
    return pa.concat_tables(tables) if tables else None
