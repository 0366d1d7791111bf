"""The deletion service's start, done in parallel before it reports healthy, so that
neither its first prediction nor its first deletion pays a cold cost:

- the shard workers (:mod:`..sisa.compute.warm`) start together, and each reads its shard's slices
  into its cache and runs a throwaway training step (``warm_up``), while the service
  checks the data, loads the models and reads for the first commit;
- the served version's shard models load on a thread pool (:func:`load_models`);
- the service's caching store reads what the first commit's checks read
  (:func:`read_for_commit`);
- the lineage thread syncs MLflow with the root (idempotent: it logs what MLflow lacks),
  so its first sync (MLflow's import, its tracking store) is not made beside the first
  requests.

How long each phase took is kept (:class:`clul_ray.phases.Phases`) and reported by
``GET /version`` (``start_seconds``).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..config import PipelineConfig
from ..errors import first_line
from ..sisa.records.certify import commit_findings
from ..sisa.records.checkpoint import load_shard_model
from ..sisa.records.version import ModelVersion
from ..storage.store import Store

log = logging.getLogger("clul_ray.serve")
LOAD_THREADS = 8
LINEAGE_WAIT_S = 60.0  # the start waits at most this long for the lineage thread's sync


def load_models(cfg: PipelineConfig, store: Store, shards: list
                ) -> dict[int, tuple[str, torch.nn.Module]]:
    """The shard models of ``shards`` (a version's shard records), read and built in
    parallel: {shard: (model digest, model in eval mode)}."""
    if not shards:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(shards), LOAD_THREADS),
                            thread_name_prefix="clul-ray-load") as pool:
        models = list(pool.map(lambda s: load_shard_model(cfg, store, s).eval(), shards))
    return {s.shard: (s.model_sha256, m) for s, m in zip(shards, models, strict=True)}


def read_for_commit(store: Store, v: ModelVersion, slices: int) -> int:
    """Run the commit checks on the served version ``v`` with no id removed (ids are
    never negative), so a caching store holds what the first commit reads: every data,
    index and prediction file's ids, every slice's digest and every checkpoint's header.
    Returns the number of findings (the commit itself reports them), -1 when the reads
    failed: a warm-up never stops the service (the commit reads again)."""
    try:
        findings, _ = commit_findings(store, v, np.asarray([-1], dtype=np.int64), slices)
    except Exception as e:  # noqa: BLE001 - logged; the commit's own checks decide
        log.warning("reading for the first commit: %s", first_line(e))
        return -1
    return len(findings)


def warmed(warming: dict) -> dict[int, dict]:
    """Wait for the workers' ``warm_up`` ({ref: shard}, :meth:`.WarmExecutor.warm_up`):
    {shard: its worker's cache stats}; a one-line ClulError naming a shard that failed."""
    from ..runtime import gather

    got = gather({r: f"warming shard {k}'s worker" for r, k in warming.items()})
    return {warming[r]: stats for r, stats in got.items()}


def take_over(store: Store, command: str, url: str) -> None:
    """A lock of this same service (``serve URL``) was left by a replica Serve replaced
    (on another node its pid cannot be checked): Serve runs one replica, so it is ours."""
    from ..storage.lock import read_lock, unlock

    held = read_lock(store)
    if held is not None and held.get("command") == command and url:
        log.warning("taking over the lock of a previous replica: %s", held)
        unlock(store)
