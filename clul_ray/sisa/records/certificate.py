"""The certificate of a committed request and the verification scan (``clul-ray verify``):
the checks of :mod:`.certify` over a root, for a request's ids or every committed one's."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ...errors import ClulError
from ...storage import layout
from ...storage.store import Store
from ..decisions.controller import Stage
from .certify import (
    Area,
    Finding,
    FindingKind,
    check_deleted,
    check_index,
    check_version,
    commit_scope,
)
from .ledger import Ledger, Request
from .predcache import cache_files, served
from .rootconfig import read_config
from .version import read_current, read_version


def scan(store: Store, is_deleted: Callable[[np.ndarray], np.ndarray], n_ids: int,
         only: frozenset[int] | None = None) -> dict:
    """Findings of deleted ids (``is_deleted(ids)`` is their mask; ``n_ids`` of them), of
    partitions that differ from the index, of served models that are not what they claim
    (in the shards ``only`` names, else everywhere: :func:`.certify.commit_scope`), and of
    stray checkpoints and cached predictions; ``ok`` if none."""
    findings: list[Finding] = []
    checked = {"data_files": 0, "index_files": 0, "cache_files": 0, "shards": 0,
               "checkpoints": 0}
    found = findings.append
    check_deleted(store, is_deleted, found, checked, only=only)
    state = read_current(store)
    current: set[str] = set()
    if state is not None:
        check_index(store, len(state.shards), len(state.shards[0].keys), found, only)
        check_version(store, state, found, checked, only)
        current = state.checkpoint_paths()
    for f in store.checkpoint_files():
        if f not in current:
            found(Finding(FindingKind.STALE_CHECKPOINT, Area.STALE_CHECKPOINT, f,
                          "checkpoint file of no current shard"))
    for f, shard, digest in cache_files(store):
        if (shard, digest) not in served(state):
            found(Finding(FindingKind.STALE_CACHE, Area.STALE_CACHE, f,
                          "cached predictions of no current shard model", None, shard))
    return {"ok": not findings, "ids": int(n_ids), "checked": checked,
            "scope": "full" if only is None else {"shards": sorted(only)},
            "findings": [f.to_dict() for f in findings], "scanned_at": time.time()}


def committed_requests(store: Store, request_id: str | None = None) -> list[Request]:
    reqs = Ledger(store).requests()
    if request_id is None:
        return [r for r in reqs if r.state == Stage.COMMITTED]
    req = next((r for r in reqs if r.request_id == request_id), None)
    if req is None:
        known = ", ".join(r.request_id for r in reqs[-5:]) or "none"
        raise ClulError(f"no deletion request {request_id} under {store.root} (known: {known})")
    if req.state != Stage.COMMITTED:
        raise ClulError(f"request {request_id} is not committed (state {req.state}); any "
                        "clul-ray command on the root resumes it")
    return [req]


def verify(store: Store, request_id: str | None = None) -> dict:
    """Re-run the scan for one committed request's ids, or for all committed requests."""
    if read_config(store) is None:
        raise ClulError(f"no pipeline under {store.root}: run `clul-ray train` first")
    reqs = committed_requests(store, request_id)
    key = Ledger(store).key if reqs else 0

    def is_deleted(ids: np.ndarray) -> np.ndarray:
        mask = np.zeros(len(ids), dtype=bool)
        for r in reqs:
            mask |= r.removed(ids, key)
        return mask

    out = scan(store, is_deleted, sum(r.n_ids for r in reqs))
    state = read_current(store)
    out.update({"root": store.root, "version": state.version if state else None,
                "requests": [r.request_id for r in reqs]})
    return out


def certificate(store: Store, req: Request, slices: int) -> dict:
    """The certificate of a request whose new version is committed (before the ledger
    says so)."""
    version = int(req.result["version"])
    v = read_version(store, version)
    prev = read_version(store, v.parent) if v is not None and v.parent is not None else None
    only = commit_scope(prev, v, req.plan.affected) if v is not None else None
    return {
        "request_id": req.request_id, "ids_sha256": req.ids_sha256, "n_ids": req.n_ids,
        "n_train_ids": req.n_train, "n_test_ids": req.n_ids - req.n_train,
        "affected": [{"shard": k, "from_slice": r0, "slices": list(range(r0, slices))}
                     for k, r0 in sorted(req.plan.affected.items())],
        "checkpoints_discarded": list(req.result.get("discarded", [])),
        "parent_version": v.parent if v else None, "version": version, "root": store.root,
        "requested_at": req.created, "committed_at": req.committed_at() or time.time(),
        "model_sha256": {str(s.shard): s.model_sha256 for s in (v.shards if v else [])},
        "verification": scan(store, lambda ids: np.isin(ids, req.ids), req.n_ids, only),
    }


def write_certificate(store: Store, req: Request, slices: int) -> dict:
    cert = certificate(store, req, slices)
    store.write_json(layout.certificate_path(req.request_id), cert)
    return cert
