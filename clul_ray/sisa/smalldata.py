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

from ..config import PipelineConfig
from ..data.blocks import small_data, source_rows
from ..data.sources import DataSource

IN_PROCESS_MAX_SAMPLE_EPOCHS = 300_000
ENV = "CLUL_RAY_IN_PROCESS_MAX"


def ray_started() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def in_process(cfg: PipelineConfig, source: DataSource, address: str | None) -> bool:
    """Whether ``train`` on ``source`` runs in this process without starting Ray."""
    c = cfg.compute
    if c.backend == "local":
        return True
    limit = int(os.environ.get(ENV, IN_PROCESS_MAX_SAMPLE_EPOCHS))
    if (c.backend != "ray" or c.gpus_per_shard or address or os.environ.get("RAY_ADDRESS")
            or limit <= 0 or ray_started() or not small_data(source)):
        return False
    return source_rows(source) * cfg.train.epochs <= limit
