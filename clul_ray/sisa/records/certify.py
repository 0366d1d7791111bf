"""The no-residue invariant, checked from storage alone: the verification scan and the
certificate each committed request gets.

The scan reads only the storage root. It looks for deleted ids in every data partition
(``data/train``, ``data/test``), index file and cached test prediction (``cache/``), and
proves the current checkpoints clean through their content-hash chain: the keys recomputed
from the current partition ids must equal the keys of the current version, and every
checkpoint file must record the key, shard, slice and sample count it is stored under. A
checkpoint file that no current shard uses is reported too: it may carry a superseded
model's influence (``clul-ray purge`` removes those of tainted versions); so is a cached
prediction of no current shard model.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ...errors import ClulError, first_line
from ...storage import layout
from ...storage.store import Store
from ..decisions.controller import Stage
from ..decisions.plan import chained_keys
from .checkpoint import read_checkpoint
from .ledger import Ledger, Request
from .predcache import cache_files, served
from .rootconfig import read_config
from .version import ModelVersion, read_current, read_version

MAX_SHOWN = 10


Found = Callable[..., None]


def check_deleted(store: Store, is_deleted: Callable[[np.ndarray], np.ndarray], found: Found,
                  checked: dict, unreadable_cache: bool = True) -> None:
    """Deleted ids (``is_deleted(ids)`` is their mask) left in any data, index or cached
    prediction file. An unreadable file is a finding (a cache file only with
    ``unreadable_cache``: before a commit, whose evaluation rewrites or deletes it)."""
    for rel, kind, counter in ((layout.TRAIN, "data", "data_files"),
                               (layout.TEST, "data", "data_files"),
                               (layout.INDEX, "index", "index_files"),
                               (layout.PREDICTIONS, "cache", "cache_files")):
        files, ids, ends, unreadable = store.memo((rel,), "ids_by_file",
                                                  lambda rel=rel: ids_by_file(store, rel))
        checked[counter] = checked.get(counter, 0) + len(files) + len(unreadable)
        for f, message, line in unreadable:
            if kind != "cache" or unreadable_cache:
                found(kind, f, message if kind != "cache" else
                      f"unreadable cached predictions ({line[:120]}); the next commit or "
                      "evaluation by a writer replaces or deletes it")
        hit = np.flatnonzero(is_deleted(ids))
        for i in np.unique(np.searchsorted(ends, hit, side="right")):
            mine = np.unique(ids[hit[(hit >= (ends[i - 1] if i else 0)) & (hit < ends[i])]])
            found(kind, files[i], f"{len(mine)} deleted ids", mine)


def ids_by_file(store: Store, rel: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray,
                                                 tuple[tuple[str, str, str], ...]]:
    """The ids of every readable Parquet file under ``rel``, concatenated, with each
    file's end offset; and (file, problem, its first line) of the unreadable ones."""
    files, parts, unreadable = [], [], []
    for f in store.list_files(rel, ".parquet"):
        try:
            parts.append(store.read_parquet(f, ["id"]).column("id").to_numpy())
            files.append(f)
        except (ClulError, KeyError) as e:  # an unreadable file is a finding
            unreadable.append((f, str(e), first_line(e)))
    ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return (tuple(files), ids, np.cumsum([len(p) for p in parts], dtype=np.int64),
            tuple(unreadable))


def check_index(store: Store, shards: int, slices: int, found: Found) -> None:
    """Every (shard, slice) partition holds exactly the ids the index places there: a
    missing or truncated partition file is lost rows, never a smaller training set."""
    for args in store.memo((layout.INDEX, layout.TRAIN), f"check_index:{shards}:{slices}",
                           lambda: index_findings(store, shards, slices)):
        found(*args)


def index_findings(store: Store, shards: int, slices: int) -> list[tuple]:
    """The findings of :func:`check_index`, as ``found`` arguments."""
    out: list[tuple] = []
    try:
        ids, shard, slc = store.read_index()
    except ClulError as e:
        return [("index", layout.INDEX, str(e))]
    cell = shard * slices + slc
    order = np.lexsort((ids, cell))
    ids, cell = ids[order], cell[order]
    bounds = np.searchsorted(cell, np.arange(shards * slices + 1))
    for k in range(shards):
        for r in range(slices):
            c = k * slices + r
            want = ids[bounds[c]:bounds[c + 1]]
            try:
                have = store.slice_ids(k, r)
            except ClulError as e:
                out.append(("data", layout.slice_dir(k, r), str(e)))
                continue
            if len(have) == len(want) and (have == want).all():
                continue
            lost, extra = np.setdiff1d(want, have), np.setdiff1d(have, want)
            what = []
            if len(lost):
                what.append(f"{len(lost)} rows of the index are missing from its files "
                            f"(lost data, e.g. ids {', '.join(map(str, lost[:5]))})")
            if len(extra):
                what.append(f"{len(extra)} rows are not in the index (e.g. ids "
                            f"{', '.join(map(str, extra[:5]))})")
            out.append(("data", layout.slice_dir(k, r), "; ".join(what),
                        lost if len(lost) else extra))
    return out


def checkpoint_header(store: Store, shard: int, slc: int, key: str,
                      sha256: str | None) -> tuple[int | None, str]:
    """(recorded sample count, file digest) of a checkpoint, checked by
    :func:`read_checkpoint` (a one-line ClulError when it is not what it claims)."""
    def read() -> tuple[int | None, str]:
        ck, digest = read_checkpoint(store, shard, slc, key, sha256=sha256, with_digest=True)
        return ck.get("n_samples"), digest

    return store.memo((layout.checkpoint_path(shard, slc, key),), f"header:{sha256}", read)


def check_version(store: Store, v: ModelVersion, found: Found, checked: dict) -> None:
    """Every model ``v`` serves is what it claims: the checkpoint keys recomputed from the
    current partitions, and each checkpoint file's recorded key, shard, slice and sample
    count (and its file digest, where recorded); an edited model's file exists. Fills in
    the file digests ``v`` does not record yet."""
    for s in v.shards:
        k, keys = s.shard, s.keys
        checked["shards"] += 1
        if s.artifact:  # approximate: the edited model is served; later slices discarded
            if not store.exists(s.artifact):
                found("model", s.artifact, "missing edited model of the version")
            continue
        try:
            sizes = [len(store.slice_ids(k, r)) for r in range(len(keys))]
            chain = chained_keys(v.training_digest, k,
                                 [store.slice_digest(k, r) for r in range(len(keys))])
        except ClulError as e:
            found("chain", layout.shard_dir(k), str(e))
            continue
        for r, (want, have) in enumerate(zip(chain, keys, strict=True)):
            if want != have:
                found("chain", layout.slice_dir(k, r),
                      f"shard {k} slice {r}: the checkpoint key of version {v.version} "
                      "does not match its current partition ids")
                break
        digests = list(s.checkpoint_sha256) + [""] * (len(keys) - len(s.checkpoint_sha256))
        seen = 0
        for r, key in enumerate(keys):
            seen += sizes[r]
            path = layout.checkpoint_path(k, r, key)
            checked["checkpoints"] += 1
            try:
                n, digests[r] = checkpoint_header(store, k, r, key, digests[r] or None)
            except ClulError as e:
                found("checkpoint", path, str(e).removeprefix(store.path(path) + ": "))
                continue
            if n != seen:
                found("checkpoint", path, f"records {n} samples, the "
                      f"partitions of slices 0..{r} hold {seen}")
        s.checkpoint_sha256 = digests


def commit_findings(store: Store, v: ModelVersion, removed: np.ndarray,
                    slices: int) -> list[dict]:
    """What must hold before ``v`` is committed: no removed id left under the root, the
    partitions equal to the index, and every served model what it claims."""
    findings: list[dict] = []
    checked = {"data_files": 0, "index_files": 0, "shards": 0, "checkpoints": 0}
    found = _collector(findings)
    if len(removed):
        check_deleted(store, lambda ids: np.isin(ids, removed), found, checked,
                      unreadable_cache=False)
    check_index(store, len(v.shards), slices, found)
    check_version(store, v, found, checked)
    return findings


def _collector(findings: list[dict]) -> Found:
    def found(kind: str, path: str, message: str, hit: np.ndarray | None = None) -> None:
        f = {"kind": kind, "path": path, "message": message}
        if hit is not None:
            f.update(count=int(len(hit)), ids=[int(i) for i in hit[:MAX_SHOWN]])
        findings.append(f)

    return found


def scan(store: Store, is_deleted: Callable[[np.ndarray], np.ndarray], n_ids: int) -> dict:
    """Findings of deleted ids (``is_deleted(ids)`` is their mask; ``n_ids`` of them), of
    partitions that differ from the index, of served models that are not what they claim,
    and of stray checkpoints; ``ok`` if none."""
    findings: list[dict] = []
    checked = {"data_files": 0, "index_files": 0, "cache_files": 0, "shards": 0,
               "checkpoints": 0}
    found = _collector(findings)
    check_deleted(store, is_deleted, found, checked)
    state = read_current(store)
    current: set[str] = set()
    if state is not None:
        check_index(store, len(state.shards), len(state.shards[0].keys), found)
        check_version(store, state, found, checked)
        current = state.checkpoint_paths()
    for f in store.checkpoint_files():
        if f not in current:
            found("stale_checkpoint", f, "checkpoint file of no current shard")
    for f, shard, digest in cache_files(store):
        if (shard, digest) not in served(state):
            found("stale_cache", f, "cached predictions of no current shard model")
    return {"ok": not findings, "ids": int(n_ids), "checked": checked,
            "findings": findings, "scanned_at": time.time()}


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
    return {
        "request_id": req.request_id, "ids_sha256": req.ids_sha256, "n_ids": req.n_ids,
        "n_train_ids": req.n_train, "n_test_ids": req.n_ids - req.n_train,
        "affected": [{"shard": k, "from_slice": r0, "slices": list(range(r0, slices))}
                     for k, r0 in sorted(req.plan.affected.items())],
        "checkpoints_discarded": list(req.result.get("discarded", [])),
        "parent_version": v.parent if v else None, "version": version, "root": store.root,
        "requested_at": req.created, "committed_at": req.committed_at() or time.time(),
        "model_sha256": {str(s.shard): s.model_sha256 for s in (v.shards if v else [])},
        "verification": scan(store, lambda ids: np.isin(ids, req.ids), req.n_ids),
    }


def write_certificate(store: Store, req: Request, slices: int) -> dict:
    cert = certificate(store, req, slices)
    store.write_json(layout.certificate_path(req.request_id), cert)
    return cert
