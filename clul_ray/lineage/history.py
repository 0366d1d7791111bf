"""The version history of a root, from the store alone: versions, requests, taint, sample ids.

The store is the source of truth (``versions/*.json``, ``ledger/*.json``); MLflow mirrors it.
A root is partitioned once and ids only ever leave it, so a training id X was in the
training data of every version before the version that committed X's deletion, and of no
version from then on. That makes "which versions were trained with X" a lookup in the
ledger, and a version *tainted* iff a later deletion removed training ids from it.
"""

from __future__ import annotations

import numpy as np

from ..errors import ClulError
from ..sisa.records.ledger import Ledger, Request
from ..sisa.records.version import ModelVersion, list_versions, read_current
from ..storage.layout import certificate_path
from ..storage.store import Store


def deletion_versions(vs: list[ModelVersion], reqs: list[Request]) -> dict[str, int]:
    """Request id -> the version that committed it (from the versions, then the ledger)."""
    out = {v.request_id: v.version for v in vs if v.operation == "delete" and v.request_id}
    for r in reqs:
        if r.request_id not in out and "version" in r.result:
            out[r.request_id] = int(r.result["version"])
    return out


def taint(vs: list[ModelVersion], reqs: list[Request]) -> dict[int, str]:
    """Version -> the first later deletion request that removed training ids it was trained on."""
    by_id = {r.request_id: r for r in reqs}
    out: dict[int, str] = {}
    for rid, w in sorted(deletion_versions(vs, reqs).items(), key=lambda x: x[1]):
        req = by_id.get(rid)
        if req is None or req.n_train == 0:
            continue
        for v in vs:
            if v.version < w and v.version not in out:
                out[v.version] = rid
    return out


def shard_taint(vs: list[ModelVersion], reqs: list[Request]) -> set[tuple[int, int]]:
    """(version, shard) pairs whose shard model saw training ids a later deletion removed."""
    by_id = {r.request_id: r for r in reqs}
    out = set()
    for rid, w in deletion_versions(vs, reqs).items():
        req = by_id.get(rid)
        if req is None:
            continue
        for k in req.plan.affected:
            out.update((v.version, k) for v in vs if v.version < w)
    return out


def tree(store: Store) -> list[dict]:
    """One row per version: parent, operation, request, metrics, taint (store only)."""
    vs = list_versions(store)
    reqs = Ledger(store).requests()
    tainted = taint(vs, reqs)
    by_id = {r.request_id: r for r in reqs}
    rows = []
    for v in vs:
        m = v.metrics
        req = by_id.get(v.request_id or "")
        rows.append({
            "version": v.version, "parent": v.parent, "operation": v.operation,
            "request_id": v.request_id, "created": v.created,
            "removed_ids_sha256": req.ids_sha256 if req else None,
            "removed_ids": req.n_ids if req else None,
            "retrained": {str(s.shard): s.retrained_from for s in v.shards
                          if s.retrained_from is not None},
            "ensemble_accuracy": m.ensemble_accuracy,
            "ensemble_f1": m.ensemble_f1,
            "shard_accuracy": m.shard_accuracy,
            "ensemble_perplexity": m.ensemble_perplexity,
            "test_samples": m.test_samples,
            "tainted": v.version in tainted, "tainted_by": tainted.get(v.version),
            "certificate": (certificate_path(req.request_id) if req and
                            store.exists(certificate_path(req.request_id)) else None),
        })
    return rows


def sample(store: Store, sample_id: int) -> dict:
    """Which versions were trained with ``sample_id``, and who removed it and when."""
    x = int(sample_id)
    vs = list_versions(store)
    if not vs:
        raise ClulError(f"no trained model under {store.root}: run `clul-ray train`")
    reqs = Ledger(store).requests()
    current = (read_current(store) or vs[-1]).version
    ids, shard, slc = store.read_index()
    hit = np.flatnonzero(ids == x)
    in_test = bool(np.isin(x, store.test_ids()))
    key = Ledger(store).key if reqs else 0
    removed = next((r for r in reqs if r.removed(np.array([x]), key).any()), None)
    if len(hit):
        split = "train"
    elif removed is not None:
        split = "train" if removed.removed(np.array([x]), key, "train").any() else "test"
    elif in_test:
        split = "test"
    else:
        raise ClulError(f"unknown id {x}: it was never part of {store.root}'s data")
    removal = None
    until = None  # the first version without x in its training data
    if removed is not None:
        until = deletion_versions(vs, reqs).get(removed.request_id)
        removal = {"request_id": removed.request_id, "state": removed.state,
                   "ids_sha256": removed.ids_sha256, "requested_at": removed.created,
                   "committed_at": removed.committed_at(), "version": until,
                   "certificate": certificate_path(removed.request_id)
                   if store.exists(certificate_path(removed.request_id)) else None}
    ledger = Ledger(store)
    added = next((r for r in ledger.additions()
                  if r.names(np.array([x]), ledger.key).any()), None)
    since = deletion_versions(vs, [added]).get(added.request_id, until) if added else None
    trained = ([v.version for v in vs if (until is None or v.version < until)
                and (since is None or v.version >= since)] if split == "train" else [])
    return {
        "root": store.root, "sample_id": x, "split": split,
        "present": bool(len(hit)) or in_test,
        "location": ({"shard": int(shard[hit[0]]), "slice": int(slc[hit[0]])}
                     if len(hit) else None),
        "trained_versions": trained, "current_version": current,
        "current_clean": current not in trained,
        "removed_by": removal,
        "added_by": {"request_id": added.request_id, "version": since} if added else None,
    }
