"""Who hears of a commit (lineage): told after the fact, never able to undo one."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Protocol

from ...config import PipelineConfig
from ...errors import first_line
from ...storage.store import Store
from ..records.ledger import Request
from ..records.version import ModelVersion


class Observer(Protocol):
    """Told of every commit; never able to undo one (its errors only warn)."""

    def version_committed(self, store: Store, cfg: PipelineConfig,
                          version: ModelVersion) -> None: ...

    def request_committed(self, store: Store, request: Request) -> None: ...


class ObserverWarning(UserWarning):
    """An observer failed on a commit; the commit stands."""


def notify(observers: Sequence[Observer], store: Store, event: str, *args) -> None:
    """Call ``event`` on every observer; an exception becomes an :class:`ObserverWarning`."""
    for obs in observers:
        try:
            getattr(obs, event)(store, *args)
        except Exception as e:
            warnings.warn(f"{type(obs).__name__}.{event} failed ({first_line(e)}); the "
                          "commit stands", ObserverWarning, stacklevel=4)
