"""The library's front door: a pipeline on a storage root, with lineage recorded."""

from __future__ import annotations

from .faults import NONE as NO_FAULTS
from .faults import Faults
from .lineage.recorder import LineageRecorder
from .sisa.compute.site import Site
from .sisa.driver.pipeline import Pipeline, Progress
from .storage.store import Store


def open_pipeline(root: str, address: str | None = None, progress: Progress | None = None,
                  executor=None, lineage: bool = True, site: Site | None = None,
                  faults: Faults = NO_FAULTS, store: Store | None = None,
                  lineage_background: bool = False) -> Pipeline:
    """The SISA pipeline on ``root`` (a folder or a ``pyarrow.fs`` URI); every committed
    version and request is recorded in MLflow unless ``lineage`` is False (or
    ``CLUL_RAY_LINEAGE=0``). ``site`` fixes where its commands run (else each decides);
    ``faults`` are a test's; ``store``: the root opened another way (a caching store).
    ``lineage_background``: each commit starts a detached MLflow sync instead of mirroring
    before it returns (``clul_ray.lineage.background``)."""
    return Pipeline(root, address=address, executor=executor, progress=progress,
                    observers=[LineageRecorder(lineage_background)] if lineage else [],
                    site=site, faults=faults, store=store)
