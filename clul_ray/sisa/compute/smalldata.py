"""The small-data fast path of ``train``: when the whole first training is less work than
starting Ray (about 4 s on 2 cores) and its workers (importing torch: 1-2 s each), the
backend ``ray`` runs it in this process — the same partition writer, the same
``train_slice`` per slice step, the same evaluation — which gives bit-for-bit the models
Ray workers give (``tests/test_sisa_e2e.py::test_in_process_and_ray_workers_train_identically``).

Only where nothing asks for Ray: no ``--address`` / ``RAY_ADDRESS``, Ray not already
started in this process (a library user's or a test session's Ray is used), backend
``ray`` without GPUs, small data (``data.blocks.small_data``), and at most
``IN_PROCESS_MAX_SAMPLE_EPOCHS`` rows x epochs e0 (``CLUL_RAY_IN_PROCESS_MAX``
overrides it; 0 turns the fast path off).
"""

from __future__ import annotations

import os
import sys

from ...config import PipelineConfig
from ...data.blocks import IN_PROCESS_MAX_ROWS, small_data, source_rows
from ...data.sources import DataSource

IN_PROCESS_MAX_SAMPLE_EPOCHS = 300_000
ENV = "CLUL_RAY_IN_PROCESS_MAX"


def ray_started() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def _limit(cfg: PipelineConfig, address: str | None) -> int:
    """The sample-epoch bound of the fast path; 0 where something asks for Ray."""
    c = cfg.compute
    limit = int(os.environ.get(ENV, IN_PROCESS_MAX_SAMPLE_EPOCHS))
    if (c.backend != "ray" or c.gpus_per_shard or address or os.environ.get("RAY_ADDRESS")
            or limit <= 0 or ray_started()):
        return 0
    return limit


def in_process(cfg: PipelineConfig, source: DataSource, address: str | None) -> bool:
    """Whether ``train`` on ``source`` runs in this process without starting Ray."""
    if cfg.compute.backend == "local":
        return True
    limit = _limit(cfg, address)
    return bool(limit) and small_data(source) and source_rows(source) * cfg.train.epochs <= limit


def small_root(cfg: PipelineConfig, store, address: str | None) -> bool:
    """Whether ``delete``, ``add``, ``evaluate`` or a resumed deletion on a trained root
    runs in this process: the same bounds as :func:`in_process`, with the root's rows
    (training and test). ``unlearn`` always uses Ray (its shard edits are Ray tasks)."""
    limit = _limit(cfg, address)
    if not limit:
        return False
    rows = len(store.read_index()[0]) + len(store.test_ids())
    return rows <= IN_PROCESS_MAX_ROWS and rows * cfg.train.epochs <= limit
