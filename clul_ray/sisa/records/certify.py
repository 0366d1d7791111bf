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

Every check reports :class:`Finding` values: what was found (its :class:`FindingKind`),
where, and the ids when it is about ids. Callers decide on the kind and the ids, never on
the message, which is for people.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from ...errors import ClulError, first_line
from ...storage import layout
from ...storage.columns import to_numpy
from ...storage.store import Store
from ..decisions.plan import chained_keys
from .version import ModelVersion, SliceResult

MAX_SHOWN = 10
# Every FULL_CHECK_EVERY-th version, a commit (and its certificate) checks every shard and
# parses every checkpoint, whatever the request changed; `clul-ray verify` always does.
FULL_CHECK_EVERY = 16
Scope = frozenset[int] | None  # the shards a check reads; None: all of them
Known = dict[tuple[int, int, str], tuple[int, str]]  # (shard, slice, key) -> (n, file digest)


class FindingKind(StrEnum):
    """What a check found."""

    DELETED_IDS = "deleted_ids"            # ids of a removal request left in a file
    UNREADABLE = "unreadable"              # a file (or a slice's files) that cannot be read
    LOST_ROWS = "lost_rows"                # ids the index places in a slice, not in its files
    EXTRA_ROWS = "extra_rows"              # ids in a slice's files the index does not place there
    MISPLACED_ROWS = "misplaced_rows"      # index rows placed in no (shard, slice) checked
    MISSING_MODEL = "missing_model"        # an edited model the version serves is gone
    KEY_MISMATCH = "key_mismatch"          # a checkpoint key not chained from the partitions
    BAD_CHECKPOINT = "bad_checkpoint"      # missing, unreadable, another digest/key/shard/slice
    SAMPLE_COUNT = "sample_count"          # a checkpoint's sample count differs from the data
    STALE_CHECKPOINT = "stale_checkpoint"  # a checkpoint file of no current shard
    STALE_CACHE = "stale_cache"            # cached predictions of no current shard model


class Area(StrEnum):
    """Where a finding is: the ``kind`` field of the JSON findings (``verify``, the
    certificates), kept as it always was."""

    DATA = "data"
    INDEX = "index"
    CACHE = "cache"
    MODEL = "model"
    CHAIN = "chain"
    CHECKPOINT = "checkpoint"
    STALE_CHECKPOINT = "stale_checkpoint"
    STALE_CACHE = "stale_cache"


@dataclass(frozen=True, eq=False)
class Finding:
    """One finding. ``ids`` (sorted, read-only) are the ids it is about, where it is about
    ids: the deleted ids left in the file, the lost, extra or misplaced rows. ``shard`` and
    ``slice`` where it concerns one."""

    kind: FindingKind
    area: Area
    path: str
    message: str
    ids: np.ndarray | None = None
    shard: int | None = None
    slice: int | None = None

    def __post_init__(self) -> None:
        if self.ids is not None:
            ids = np.array(self.ids, dtype=np.int64)
            ids.flags.writeable = False
            object.__setattr__(self, "ids", ids)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Finding):
            return NotImplemented
        return (self.kind, self.area, self.path, self.message, self.shard, self.slice) == \
            (other.kind, other.area, other.path, other.message, other.shard, other.slice) \
            and (self.ids is None) == (other.ids is None) \
            and (self.ids is None or np.array_equal(self.ids, other.ids))

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict:
        """The JSON form (``verify --json``, certificates): kind (the area), path, message,
        and with ids their count and the first :data:`MAX_SHOWN`."""
        f: dict = {"kind": self.area.value, "path": self.path, "message": self.message}
        if self.ids is not None:
            f.update(count=int(len(self.ids)), ids=[int(i) for i in self.ids[:MAX_SHOWN]])
        return f


Found = Callable[[Finding], None]


def _cell(path: str) -> tuple[int | None, int | None]:
    """(shard, slice) of a path under a slice's folder, else (None, None)."""
    return layout.slice_of(path) or (None, None)


def commit_scope(prev: ModelVersion | None, v: ModelVersion, touched: Iterable[int]
                 ) -> Scope:
    """The shards the checks of ``v``'s commit read: those whose served model differs from
    ``prev``'s and those the request ``touched`` (its rows were there); None (all, every
    checkpoint parsed) for a first version, a changed shard count and every
    :data:`FULL_CHECK_EVERY`-th version. What no command changed was checked when it
    was committed; the periodic full check and ``verify`` catch a change from outside."""
    if prev is None or len(prev.shards) != len(v.shards) or v.version % FULL_CHECK_EVERY == 0:
        return None
    before = {s.shard: (s.keys, s.model_sha256, s.artifact) for s in prev.shards}
    changed = {s.shard for s in v.shards
               if before.get(s.shard) != (s.keys, s.model_sha256, s.artifact)}
    return frozenset(changed | set(touched))


def check_deleted(store: Store, is_deleted: Callable[[np.ndarray], np.ndarray], found: Found,
                  checked: dict, unreadable_cache: bool = True, only: Scope = None) -> None:
    """Deleted ids (``is_deleted(ids)`` is their mask) left in any data (of the shards
    ``only`` names, else all), index or cached prediction file. An unreadable file is a
    finding (a cache file only with ``unreadable_cache``: before a commit, whose
    evaluation rewrites or deletes it)."""
    for rel, area, counter in deleted_check_folders(only):
        files, ids, ends, unreadable = file_ids(store, rel)
        checked[counter] = checked.get(counter, 0) + len(files) + len(unreadable)
        for f, message, line in unreadable:
            if area != Area.CACHE or unreadable_cache:
                found(Finding(FindingKind.UNREADABLE, area, f, message if area != Area.CACHE
                              else f"unreadable cached predictions ({line[:120]}); the next "
                              "commit or evaluation by a writer replaces or deletes it",
                              None, *_cell(f)))
        hit = np.flatnonzero(is_deleted(ids))
        for i in np.unique(np.searchsorted(ends, hit, side="right")):
            mine = np.unique(ids[hit[(hit >= (ends[i - 1] if i else 0)) & (hit < ends[i])]])
            found(Finding(FindingKind.DELETED_IDS, area, files[i], f"{len(mine)} deleted ids",
                          mine, *_cell(files[i])))


def deleted_check_folders(only: Scope = None) -> list[tuple[str, Area, str]]:
    """The folders :func:`check_deleted` reads (of the shards ``only`` names, else all):
    (folder, area, the counter of its files)."""
    train = [(layout.TRAIN, Area.DATA, "data_files")] if only is None else [
        (layout.shard_dir(k), Area.DATA, "data_files") for k in sorted(only)]
    return [*train, (layout.TEST, Area.DATA, "data_files"),
            (layout.INDEX, Area.INDEX, "index_files"),
            (layout.PREDICTIONS, Area.CACHE, "cache_files")]


def file_ids(store: Store, rel: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray,
                                             tuple[tuple[str, str, str], ...]]:
    """:func:`ids_by_file` of ``rel``, kept by a caching store while its files are
    unchanged."""
    return store.memo((rel,), "ids_by_file", lambda: ids_by_file(store, rel))


def ids_by_file(store: Store, rel: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray,
                                                 tuple[tuple[str, str, str], ...]]:
    """The ids of every readable Parquet file under ``rel``, concatenated, with each
    file's end offset; and (file, problem, its first line) of the unreadable ones."""
    files, parts, unreadable = [], [], []
    for f in store.list_files(rel, ".parquet"):
        try:
            parts.append(to_numpy(store.read_parquet(f, ["id"]).column("id")))
            files.append(f)
        except (ClulError, KeyError) as e:  # an unreadable file is a finding
            unreadable.append((f, str(e), first_line(e)))
    ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return (tuple(files), ids, np.cumsum([len(p) for p in parts], dtype=np.int64),
            tuple(unreadable))


def check_index(store: Store, shards: int, slices: int, found: Found,
                only: Scope = None) -> None:
    """Every (shard, slice) partition (of the shards ``only`` names, else all) holds exactly
    the ids the index places there: a missing or truncated partition file is lost rows,
    never a smaller training set."""
    tag = f"check_index:{shards}:{slices}:{'all' if only is None else sorted(only)}"
    for f in store.memo((layout.INDEX, layout.TRAIN), tag,
                        lambda: index_findings(store, shards, slices, only)):
        found(f)


def index_findings(store: Store, shards: int, slices: int,
                   only: Scope = None) -> tuple[Finding, ...]:
    """The findings of :func:`check_index`. A slice holding both lost and extra rows has
    one finding of each, each with its ids."""
    out: list[Finding] = []
    try:
        ids, shard, slc = store.read_index()
    except ClulError as e:
        return (Finding(FindingKind.UNREADABLE, Area.INDEX, layout.INDEX, str(e)),)
    inside = (shard >= 0) & (shard < shards) & (slc >= 0) & (slc < slices)
    if not inside.all():  # (else they would count as rows of another (shard, slice))
        away = np.unique(ids[~inside])
        out.append(Finding(FindingKind.MISPLACED_ROWS, Area.INDEX, layout.INDEX,
                           f"{len(away)} rows of the index are placed in no slice of the "
                           f"{shards} shards x {slices} slices (e.g. ids "
                           f"{', '.join(map(str, away[:5]))})", away))
        ids, shard, slc = ids[inside], shard[inside], slc[inside]
    cell = shard * slices + slc
    order = np.lexsort((ids, cell))
    ids, cell = ids[order], cell[order]
    bounds = np.searchsorted(cell, np.arange(shards * slices + 1))
    cells = [(k, r) for k in (range(shards) if only is None else
                              sorted(k for k in only if k < shards)) for r in range(slices)]
    for (k, r), have in zip(cells, slice_ids(store, cells), strict=True):
        c = k * slices + r
        want = ids[bounds[c]:bounds[c + 1]]
        path = layout.slice_dir(k, r)
        if isinstance(have, ClulError):
            out.append(Finding(FindingKind.UNREADABLE, Area.DATA, path, str(have), None, k, r))
            continue
        if len(have) == len(want) and (have == want).all():
            continue
        lost, extra = np.setdiff1d(want, have), np.setdiff1d(have, want)
        if len(lost):
            out.append(Finding(FindingKind.LOST_ROWS, Area.DATA, path,
                               f"{len(lost)} rows of the index are missing from its files "
                               f"(lost data, e.g. ids {', '.join(map(str, lost[:5]))})",
                               lost, k, r))
        if len(extra):
            out.append(Finding(FindingKind.EXTRA_ROWS, Area.DATA, path,
                               f"{len(extra)} rows are not in the index (e.g. ids "
                               f"{', '.join(map(str, extra[:5]))})", extra, k, r))
    return tuple(out)


def slice_ids(store: Store, cells: list[tuple[int, int]]) -> list[np.ndarray | ClulError]:
    """The sorted ids of each (shard, slice), or the ClulError reading it met; the files
    read side by side (Parquet decodes without the GIL)."""
    def read(cell: tuple[int, int]) -> np.ndarray | ClulError:
        try:
            return store.slice_ids(*cell)
        except ClulError as e:
            return e

    with ThreadPoolExecutor(max(1, min(len(cells), os.cpu_count() or 1))) as pool:
        return list(pool.map(read, cells))


def checkpoint_header(store: Store, shard: int, slc: int, key: str,
                      sha256: str | None) -> tuple[int | None, str]:
    """(recorded sample count, file digest) of a checkpoint, checked by
    :func:`read_checkpoint` (a one-line ClulError when it is not what it claims)."""
    def read() -> tuple[int | None, str]:
        from .checkpoint import read_checkpoint  # (torch: only where a header is parsed)

        ck, digest = read_checkpoint(store, shard, slc, key, sha256=sha256, with_digest=True)
        return ck.get("n_samples"), digest

    return store.memo((layout.checkpoint_path(shard, slc, key),), f"header:{sha256}", read)


def file_digest(store: Store, rel: str) -> str:
    return store.memo((rel,), "sha256", lambda: hashlib.sha256(store.read_bytes(rel)).hexdigest())


def check_version(store: Store, v: ModelVersion, found: Found, checked: dict,
                  only: Scope = None, known: Known | None = None) -> dict[int, list[str]]:
    """Every model ``v`` serves is what it claims: the checkpoint keys recomputed from the
    current partitions, and each checkpoint file's recorded key, shard, slice and sample
    count (and its file digest, where recorded); an edited model's file exists.

    With ``only`` (the shards a commit changed, :func:`commit_scope`), a checkpoint whose
    file digest is recorded or ``known`` (the step this command ran reported it, with its
    sample count) is checked by that digest instead of parsed — the same bytes hold the
    header checked when it was written — and the shards ``only`` leaves out keep their
    chains unread (their partitions did not change): only their files' digests are
    checked. ``v`` is left as it is: the file digests of each shard's checkpoints (those
    ``v`` records, and those it does not record yet, read; "" where neither) are returned
    per shard, for a caller that commits ``v`` to record."""
    out: dict[int, list[str]] = {}
    known = known or {}
    for s in v.shards:
        k, keys = s.shard, s.keys
        digests = list(s.checkpoint_sha256) + [""] * (len(keys) - len(s.checkpoint_sha256))
        whole = only is None or k in only or not all(digests)
        checked["shards"] += whole
        if s.artifact:  # approximate: the edited model is served; later slices discarded
            if whole and not store.exists(s.artifact):
                found(Finding(FindingKind.MISSING_MODEL, Area.MODEL, s.artifact,
                              "missing edited model of the version", None, k))
            continue
        sizes: list[int] = []
        if whole:
            try:
                sizes = [len(store.slice_ids(k, r)) for r in range(len(keys))]
                chain = chained_keys(v.training_digest, k,
                                     [store.slice_digest(k, r) for r in range(len(keys))])
            except ClulError as e:
                found(Finding(FindingKind.UNREADABLE, Area.CHAIN, layout.shard_dir(k),
                              str(e), None, k))
                continue
            for r, (want, have) in enumerate(zip(chain, keys, strict=True)):
                if want != have:
                    found(Finding(FindingKind.KEY_MISMATCH, Area.CHAIN,
                                  layout.slice_dir(k, r), f"shard {k} slice {r}: the "
                                  f"checkpoint key of version {v.version} does not match "
                                  "its current partition ids", None, k, r))
                    break
        seen = 0
        for r, key in enumerate(keys):
            seen += sizes[r] if whole else 0
            path = layout.checkpoint_path(k, r, key)
            checked["checkpoints"] += 1
            n_known, digest = known.get((k, r, key), (None, digests[r]))
            try:
                if only is not None and digest:
                    n = seen if n_known is None else n_known  # (counted if whole)
                    if not store.exists(path) or file_digest(store, path) != digest:
                        raise ClulError(f"{store.path(path)}: missing, or not the file "
                                        f"whose file digest {digest[:12]} was recorded")
                    digests[r] = digest
                else:
                    n, digests[r] = checkpoint_header(store, k, r, key, digests[r] or None)
            except ClulError as e:
                found(Finding(FindingKind.BAD_CHECKPOINT, Area.CHECKPOINT, path,
                              str(e).removeprefix(store.path(path) + ": "), None, k, r))
                continue
            if whole and n != seen:
                found(Finding(FindingKind.SAMPLE_COUNT, Area.CHECKPOINT, path,
                              f"records {n} samples, the partitions of slices 0..{r} hold "
                              f"{seen}", None, k, r))
        out[k] = digests
    return out


def commit_findings(store: Store, v: ModelVersion, removed: np.ndarray, slices: int,
                    only: Scope = None, trained: Iterable[SliceResult] = ()
                    ) -> tuple[list[Finding], dict[int, list[str]]]:
    """What must hold before ``v`` is committed: no removed id left under the root, the
    partitions equal to the index, and every served model what it claims — over the
    shards ``only`` names (:func:`commit_scope`), else all, the checkpoints the command's
    ``trained`` steps wrote known by what they reported; and the file digests of its
    checkpoints read on the way (:func:`check_version`), for the commit to record."""
    known = {(r.shard, r.slice, r.key): (r.n_samples, r.file_sha256) for r in trained
             if r.file_sha256}
    findings: list[Finding] = []
    checked = {"data_files": 0, "index_files": 0, "shards": 0, "checkpoints": 0}
    found = findings.append
    if len(removed):
        check_deleted(store, lambda ids: np.isin(ids, removed), found, checked,
                      unreadable_cache=False, only=only)
    check_index(store, len(v.shards), slices, found, only)
    return findings, check_version(store, v, found, checked, only, known)


def read_ahead(store: Store, only: Iterable[int], shards: int, slices: int) -> None:
    """Compute into ``store``'s memo (a caching store's; :meth:`Store.memo`) what
    :func:`commit_findings` over the shards ``only`` names will read in folders a retrain
    does not write — their data, the test split, the index: called while their retrain
    runs. (The memo is checked against the folders' files when used.)"""
    scope = frozenset(only)
    for rel, area, _ in deleted_check_folders(scope):
        if area != Area.CACHE:  # (the workers write the cache)
            file_ids(store, rel)
    check_index(store, shards, slices, lambda _: None, scope)


def refuse_commit(store: Store, version: int, findings: list[Finding]) -> None:
    """Refuse to commit ``version`` where :func:`commit_findings` found anything (the
    previous version keeps serving): the first finding, and how many more."""
    if findings:
        f = findings[0]
        more = f" (and {len(findings) - 1} more findings)" if len(findings) > 1 else ""
        raise ClulError(f"version {version} not committed: {store.path(f.path)}"
                        f": {f.message}{more}")
