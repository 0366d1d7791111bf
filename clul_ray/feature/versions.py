"""Fitted transforms under a storage root, versioned (``layout.feature_*``):

- ``feature/<digest16>/transform.json``: the transform (content-addressed; one file however
  often the same fit is made);
- ``feature/versions/vNNNNNN.json``: one record per ``feature-unlearn`` run, numbered from 1
  (the transform's path and digest, sensitive column, method, t, dataset, input and output
  digests, the report's before/after).

Feature transforms never touch a SISA root's model versions or ledger. A version is
numbered and written under the root's lock (``lock.json``, held for the moment of the
write), so two runs saving to one root get two numbers; a root another writer holds is
refused in one line."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from ..errors import ClulError
from ..storage import layout
from ..storage.store import Store
from .transform import FeatureTransform


def save(store: Store, tr: FeatureTransform, meta: dict[str, Any]) -> dict[str, Any]:
    """Write the transform (unless stored) and the next version record; returns the record."""
    from ..storage.lock import locked

    digest = tr.digest()
    rel = layout.feature_transform_path(digest)
    with locked(store, "feature-unlearn"):
        if not store.exists(rel):
            store.write_bytes(rel, tr.to_json().encode())
        version = len(store.list_files(layout.FEATURE_VERSIONS, ".json")) + 1
        record = {"version": version, "operation": "feature-unlearn", "transform": rel,
                  "transform_sha256": digest, "sensitive": tr.sensitive, "method": tr.method,
                  "input_digest": tr.data_digest, "created": time.time(), **meta}
        store.write_json(layout.feature_version_path(version), record)
    return record


def load(store: Store, version: int | None = None) -> tuple[FeatureTransform, dict]:
    """(transform, its version record): the given version, else the newest."""
    files = store.list_files(layout.FEATURE_VERSIONS, ".json")
    if not files:
        raise ClulError(f"{store.root}: no feature transform saved")
    rel = layout.feature_version_path(version) if version else files[-1]
    record = store.read_json(rel)
    if record is None:
        raise ClulError(f"{store.root}: no feature version {version}")
    raw = store.read_bytes(record["transform"])
    tr = FeatureTransform.model_validate_json(raw)
    if tr.digest() != record["transform_sha256"]:
        raise ClulError(f"{store.path(record['transform'])}: digest does not match its "
                        "version record")
    record["file_sha256"] = hashlib.sha256(raw).hexdigest()
    return tr, record
