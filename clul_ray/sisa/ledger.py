"""The deletion ledger: one record per request under ``ledger/``, written before any change.

A record holds the request's plan, its kind (:class:`~.controller.Kind`), its stage
(:class:`~.controller.Stage`, advanced by :meth:`Ledger.advance` after each step finishes),
the stage history and the steps' results. :mod:`.controller` decides what comes next.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from .. import layout
from ..errors import ClulError
from ..hashing import sha256_ids
from ..store import Store
from .controller import Kind, Stage
from .plan import DeletionPlan


class Request(BaseModel):
    request_id: str
    ids_sha256: str
    n_ids: int
    plan: DeletionPlan
    state: Stage = Stage.PLANNED
    created: float = Field(default_factory=time.time)
    history: list[dict[str, Any]] = Field(default_factory=list)
    result: dict[str, Any] = Field(default_factory=dict)
    kind: Kind = Kind.DELETE
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def ids(self) -> np.ndarray:
        return self.plan.ids

    def committed_at(self) -> float | None:
        return next((h["time"] for h in self.history if h["state"] == Stage.COMMITTED), None)


class Ledger:
    def __init__(self, store: Store):
        self.store = store

    def requests(self) -> list[Request]:
        return [self.store.read_record(f, Request)
                for f in self.store.list_files(layout.LEDGER, ".json")]

    def request(self, request_id: str) -> Request:
        req = self.store.read_record(layout.ledger_path(request_id), Request)
        if req is None:
            raise ClulError(f"no ledger record {request_id} under {self.store.root}")
        return req

    def pending(self) -> list[Request]:
        return [r for r in self.requests() if r.state != Stage.COMMITTED]

    def deleted_ids(self) -> np.ndarray:
        """Every id of every recorded request (committed or still in flight)."""
        parts = [r.ids for r in self.requests()]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def record(self, plan: DeletionPlan, kind: Kind = Kind.DELETE,
               meta: dict | None = None) -> Request:
        ids = plan.ids
        seq = len(self.store.list_files(layout.LEDGER, ".json")) + 1
        digest = sha256_ids(ids)
        req = Request(request_id=f"{seq:06d}-{digest[:8]}", ids_sha256=digest, n_ids=len(ids),
                      plan=plan, kind=kind, meta=meta or {})
        req.history.append({"state": Stage.PLANNED.value, "time": req.created})
        self._write(req)
        return req

    def advance(self, req: Request, stage: Stage, **result: Any) -> None:
        req.state = stage
        req.history.append({"state": stage.value, "time": time.time()})
        req.result.update(result)
        self._write(req)

    def _write(self, req: Request) -> None:
        self.store.write_json(layout.ledger_path(req.request_id), req.model_dump(mode="json"))
