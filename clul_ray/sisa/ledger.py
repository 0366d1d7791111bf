"""The deletion ledger: an append-only record per request, written before any change.

An exact deletion advances ``planned -> data_removed -> checkpoints_discarded -> retrained ->
committed``; an approximate one (``kind="unlearn"``) edits the shard models first
(``planned -> unlearned -> data_removed -> checkpoints_discarded -> committed``). Each
step is idempotent, so a request found in any state but ``committed``
is resumed from where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..hashing import sha256_ids
from ..store import Store
from .plan import DeletionPlan

STATES = ("planned", "unlearned", "data_removed", "checkpoints_discarded", "retrained",
          "committed")


@dataclass
class Request:
    request_id: str
    ids_sha256: str
    n_ids: int
    plan: DeletionPlan
    state: str = "planned"
    created: float = field(default_factory=time.time)
    history: list[dict] = field(default_factory=list)
    result: dict = field(default_factory=dict)
    kind: str = "delete"  # "delete" (exact) or "unlearn" (approximate, see approximate.py)
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"request_id": self.request_id, "ids_sha256": self.ids_sha256,
                "n_ids": self.n_ids, "plan": self.plan.to_dict(), "state": self.state,
                "created": self.created, "history": self.history, "result": self.result,
                "kind": self.kind, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> Request:
        return cls(d["request_id"], d["ids_sha256"], d["n_ids"],
                   DeletionPlan.from_dict(d["plan"]), d["state"], d["created"],
                   d.get("history", []), d.get("result", {}), d.get("kind", "delete"),
                   d.get("meta", {}))

    @property
    def ids(self) -> np.ndarray:
        return np.array(sorted(self.plan.train_ids + self.plan.test_ids), dtype=np.int64)


class Ledger:
    def __init__(self, store: Store):
        self.store = store

    def _path(self, rid: str) -> str:
        return f"ledger/{rid}.json"

    def requests(self) -> list[Request]:
        return [Request.from_dict(self.store.read_json(f))
                for f in self.store.list_files("ledger", ".json")]

    def pending(self) -> list[Request]:
        return [r for r in self.requests() if r.state != "committed"]

    def deleted_ids(self) -> np.ndarray:
        """Every id of every recorded request (committed or still in flight)."""
        parts = [r.ids for r in self.requests()]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def record(self, plan: DeletionPlan, kind: str = "delete",
               meta: dict | None = None) -> Request:
        ids = np.array(sorted(plan.train_ids + plan.test_ids), dtype=np.int64)
        seq = len(self.store.list_files("ledger", ".json")) + 1
        digest = sha256_ids(ids)
        req = Request(f"{seq:06d}-{digest[:8]}", digest, len(ids), plan, kind=kind,
                      meta=meta or {})
        req.history.append({"state": "planned", "time": req.created})
        self.store.write_json(self._path(req.request_id), req.to_dict())
        return req

    def advance(self, req: Request, state: str, **result) -> None:
        assert state in STATES, state
        req.state = state
        req.history.append({"state": state, "time": time.time()})
        req.result.update(result)
        self.store.write_json(self._path(req.request_id), req.to_dict())
