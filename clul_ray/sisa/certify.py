"""The no-residue invariant, checked from storage alone: the verification scan and the
certificate each committed request gets.

The scan reads only the storage root. It looks for deleted ids in every data partition
(``data/train``, ``data/test``) and index file, and proves the current checkpoints clean
through their content-hash chain: the keys recomputed from the current partition ids must
equal the keys of the current version, and every checkpoint file must record the key, shard,
slice and sample count it is stored under. A checkpoint file that no current shard uses is
reported too: it may carry a superseded model's influence (``clul-ray purge`` removes those of
tainted versions).
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow.parquet as pq

from .. import layout
from ..errors import ClulError, first_line
from ..store import Store
from .checkpoint import read_checkpoint
from .ledger import Ledger, Request
from .plan import checkpoint_keys
from .version import read_config, read_current, read_version

MAX_SHOWN = 10


def _ids_in(store: Store, rel: str, ids: np.ndarray) -> np.ndarray:
    got = pq.read_table(store.path(rel), columns=["id"], filesystem=store.fs)
    return np.intersect1d(got.column("id").to_numpy(), ids)


def scan(store: Store, ids: np.ndarray) -> dict:
    """Findings of deleted ``ids`` (or of a broken chain) under the root; ``ok`` if none."""
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    findings: list[dict] = []
    checked = {"data_files": 0, "index_files": 0, "shards": 0, "checkpoints": 0}

    def found(kind: str, path: str, message: str, hit: np.ndarray | None = None) -> None:
        f = {"kind": kind, "path": path, "message": message}
        if hit is not None:
            f.update(count=int(len(hit)), ids=[int(i) for i in hit[:MAX_SHOWN]])
        findings.append(f)

    for rel, kind, counter in ((layout.TRAIN, "data", "data_files"),
                               (layout.TEST, "data", "data_files"),
                               (layout.INDEX, "index", "index_files")):
        for f in store.list_files(rel, ".parquet"):
            checked[counter] += 1
            try:
                hit = _ids_in(store, f, ids)
            except Exception as e:  # an unreadable file is a finding
                found(kind, f, f"unreadable: {first_line(e)}")
                continue
            if len(hit):
                found(kind, f, f"{len(hit)} deleted ids", hit)

    state = read_current(store)
    current: set[str] = set()
    if state is not None:
        for s in state.shards:
            k, keys = s.shard, s.keys
            checked["shards"] += 1
            current.update(s.checkpoint_paths())
            try:
                slice_ids = [store.slice_ids(k, r) for r in range(len(keys))]
            except Exception as e:
                found("chain", layout.shard_dir(k), f"shard {k}: partition unreadable: "
                      f"{first_line(e)}")
                continue
            chain = checkpoint_keys(state.training_digest, k, slice_ids)
            for r, (want, have) in enumerate(zip(chain, keys, strict=True)):
                if want != have:
                    found("chain", layout.slice_dir(k, r),
                          f"shard {k} slice {r}: the checkpoint key of version "
                          f"{state.version} does not match its current partition ids")
                    break
            seen = 0
            for r, key in enumerate(keys):
                seen += len(slice_ids[r])
                path = layout.checkpoint_path(k, r, key)
                checked["checkpoints"] += 1
                if not store.exists(path):
                    found("checkpoint", path, "missing checkpoint of the current version")
                    continue
                try:
                    ck = read_checkpoint(store, k, r, key)
                except Exception as e:
                    found("checkpoint", path, f"unreadable: {first_line(e)}")
                    continue
                recorded = (ck.get("key"), ck.get("shard"), ck.get("slice"), ck.get("n_samples"))
                if recorded != (key, k, r, seen):
                    found("checkpoint", path,
                          f"records key/shard/slice/samples {recorded[0]!s:.12}/{recorded[1]}/"
                          f"{recorded[2]}/{recorded[3]}, expected {key:.12}/{k}/{r}/{seen}")
    for f in store.checkpoint_files():
        if f not in current:
            found("stale_checkpoint", f, "checkpoint file of no current shard")
    return {"ok": not findings, "ids": int(len(ids)), "checked": checked,
            "findings": findings, "scanned_at": time.time()}


def committed_requests(store: Store, request_id: str | None = None) -> list[Request]:
    reqs = Ledger(store).requests()
    if request_id is None:
        return [r for r in reqs if r.state == "committed"]
    req = next((r for r in reqs if r.request_id == request_id), None)
    if req is None:
        known = ", ".join(r.request_id for r in reqs[-5:]) or "none"
        raise ClulError(f"no deletion request {request_id} under {store.root} (known: {known})")
    if req.state != "committed":
        raise ClulError(f"request {request_id} is not committed (state {req.state}); any "
                        "clul-ray command on the root resumes it")
    return [req]


def verify(store: Store, request_id: str | None = None) -> dict:
    """Re-run the scan for one committed request's ids, or for all committed requests."""
    if read_config(store) is None:
        raise ClulError(f"no pipeline under {store.root}: run `clul-ray train` first")
    reqs = committed_requests(store, request_id)
    ids = (np.unique(np.concatenate([r.ids for r in reqs])) if reqs
           else np.zeros(0, np.int64))
    out = scan(store, ids)
    state = read_current(store)
    out.update({"root": store.root, "version": state.version if state else None,
                "requests": [r.request_id for r in reqs]})
    return out


def certificate(store: Store, req: Request, slices: int) -> dict:
    """The certificate of a request whose new version is committed (before the ledger
    says so)."""
    version = int(req.result["version"])
    v = read_version(store, version)
    return {
        "request_id": req.request_id, "ids_sha256": req.ids_sha256, "n_ids": req.n_ids,
        "n_train_ids": len(req.plan.train_ids), "n_test_ids": len(req.plan.test_ids),
        "affected": [{"shard": k, "from_slice": r0, "slices": list(range(r0, slices))}
                     for k, r0 in sorted(req.plan.affected.items())],
        "checkpoints_discarded": list(req.result.get("discarded", [])),
        "parent_version": v.parent if v else None, "version": version, "root": store.root,
        "requested_at": req.created, "committed_at": req.committed_at() or time.time(),
        "model_sha256": {str(s.shard): s.model_sha256 for s in (v.shards if v else [])},
        "verification": scan(store, req.ids),
    }


def write_certificate(store: Store, req: Request, slices: int) -> dict:
    cert = certificate(store, req, slices)
    store.write_json(layout.certificate_path(req.request_id), cert)
    return cert
