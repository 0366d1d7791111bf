"""The request ledger: one record per request under ``ledger/``, written before any change.

Requests remove rows (``delete``, ``unlearn``) or add them (``add``, :mod:`.grow`).

A record holds the request's plan, its kind (:class:`~.controller.Kind`), its stage
(:class:`~.controller.Stage`, advanced by :meth:`Ledger.advance` after each step finishes),
the stage history and the steps' results. :mod:`.controller` decides what comes next.

The plain ids are kept only while the request is pending (its steps need them). When it
commits they are replaced by keyed 64-bit digests (a per-root random key in
``ledger/key.json``): enough to answer "was this id deleted, from which split", and no
deleted id stays under the root in plain form.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from ...errors import ClulError
from ...hashing import hash_ids, sha256_ids
from ...storage import layout
from ...storage.store import CorruptFile, Store
from ..decisions.controller import Kind, Stage
from ..decisions.plan import RequestPlan

KEY_FILE = f"{layout.LEDGER}/key.json"
SALT_LEDGER = 0x1ED6


class Request(BaseModel):
    request_id: str
    ids_sha256: str
    n_ids: int
    plan: RequestPlan
    state: Stage = Stage.PLANNED
    created: float = Field(default_factory=time.time)
    history: list[dict[str, Any]] = Field(default_factory=list)
    result: dict[str, Any] = Field(default_factory=dict)
    kind: Kind = Kind.DELETE
    meta: dict[str, Any] = Field(default_factory=dict)
    n_train_ids: int = -1  # -1: a record of the first format (the counts are in the plan)
    train_digests: list[int] = Field(default_factory=list)  # after commit
    test_digests: list[int] = Field(default_factory=list)

    @property
    def ids(self) -> np.ndarray:
        """The plain ids (pending requests only; empty once committed)."""
        return self.plan.ids

    @property
    def n_train(self) -> int:
        return self.n_train_ids if self.n_train_ids >= 0 else len(self.plan.train_ids)

    def removed(self, ids: np.ndarray, key: int, split: str | None = None) -> np.ndarray:
        """Mask of ``ids`` this request removed (from ``split``: "train", "test", or both);
        an ``add`` request removes none."""
        if self.kind == Kind.ADD:
            return np.zeros(len(ids), dtype=bool)
        return self.names(ids, key, split)

    def names(self, ids: np.ndarray, key: int, split: str | None = None) -> np.ndarray:
        """Mask of ``ids`` this request names (removes, or for ``add`` adds), in ``split``."""
        ids = np.asarray(ids, dtype=np.int64)
        want = ("train", "test") if split is None else (split,)
        plain = [getattr(self.plan, f"{s}_ids") for s in want]
        hashed = [getattr(self, f"{s}_digests") for s in want]
        mask = np.isin(ids, np.asarray([i for p in plain for i in p], dtype=np.int64))
        digests = np.asarray([d for h in hashed for d in h], dtype=np.uint64)
        if len(digests):
            mask |= np.isin(id_digests(key, ids), digests)
        return mask

    def committed_at(self) -> float | None:
        return next((h["time"] for h in self.history if h["state"] == Stage.COMMITTED), None)


def id_digests(key: int, ids: np.ndarray) -> np.ndarray:
    """Keyed 64-bit digests of ids (uint64)."""
    return hash_ids(key, np.asarray(ids, dtype=np.int64), SALT_LEDGER)


class Ledger:
    def __init__(self, store: Store):
        self.store = store
        self._key: int | None = None

    @property
    def key(self) -> int:
        """The root's ledger key (created with the first record)."""
        if self._key is None:
            raw = self.store.read_json(KEY_FILE)
            if not isinstance(raw, dict) or not isinstance(raw.get("key"), int):
                if raw is not None:
                    raise CorruptFile(self.store.path(KEY_FILE), "not a ledger key")
                raw = {"key": secrets.randbits(62)}
                self.store.write_json(KEY_FILE, raw)
            self._key = raw["key"]
        return self._key

    def deleted(self, ids: np.ndarray) -> np.ndarray:
        """Mask of ``ids`` removed by any recorded request (committed or in flight)."""
        ids = np.asarray(ids, dtype=np.int64)
        mask = np.zeros(len(ids), dtype=bool)
        for r in self.requests():
            mask |= r.removed(ids, self.key)
        return mask

    def record_files(self) -> list[str]:
        return [f for f in self.store.list_files(layout.LEDGER, ".json") if f != KEY_FILE]

    def all_requests(self) -> list[Request]:
        """Every request, in order: removals and additions."""
        return [self.store.read_record(f, Request) for f in self.record_files()]

    def requests(self) -> list[Request]:
        """The removal requests (delete, unlearn), in order: what deletion checks, scans,
        certificates and taint read."""
        return [r for r in self.all_requests() if r.kind != Kind.ADD]

    def additions(self) -> list[Request]:
        return [r for r in self.all_requests() if r.kind == Kind.ADD]

    def request(self, request_id: str) -> Request:
        req = self.store.read_record(layout.ledger_path(request_id), Request)
        if req is None:
            raise ClulError(f"no ledger record {request_id} under {self.store.root}")
        return req

    def pending(self) -> list[Request]:
        return [r for r in self.all_requests() if r.state != Stage.COMMITTED]

    def record(self, plan: RequestPlan, kind: Kind = Kind.DELETE,
               meta: dict | None = None) -> Request:
        ids = plan.ids
        seq = len(self.record_files()) + 1
        digest = sha256_ids(ids)
        req = Request(request_id=f"{seq:06d}-{digest[:8]}", ids_sha256=digest, n_ids=len(ids),
                      plan=plan, kind=kind, meta=meta or {},
                      n_train_ids=len(plan.train_ids))
        req.history.append({"state": Stage.PLANNED.value, "time": req.created})
        self._write(req)
        return req

    def advance(self, req: Request, stage: Stage, **result: Any) -> None:
        if stage == Stage.COMMITTED:  # from now on only keyed digests of the ids
            key = self.key
            req.train_digests = [int(d) for d in id_digests(key, req.plan.train_ids)]
            req.test_digests = [int(d) for d in id_digests(key, req.plan.test_ids)]
            req.plan = req.plan.model_copy(update={"train_ids": [], "test_ids": []})
        req.state = stage
        req.history.append({"state": stage.value, "time": time.time()})
        req.result.update(result)
        self._write(req)

    def _write(self, req: Request) -> None:
        self.store.write_json(layout.ledger_path(req.request_id), req.model_dump(mode="json"))
