"""``clul-ray repair``: rebuild what can be rebuilt under a root, refuse (naming the files)
what cannot.

Rebuilt: an unreadable index (from the partition files); rows of already-deleted ids found
in a partition (removed again); checkpoints that are missing, unreadable or not what the
current version records (discarded, then retrained from the partitions — bit for bit what
they were); stray checkpoint files; unfinished requests (finished). Refused, with nothing
changed: an unreadable config or ledger record, and lost rows — a partition file that is
gone or unreadable holds rows only that file had, so the repair names the slice and the ids
the index lists there instead of training without them.

Pending requests are finished before the partitions are held to the index: a request
killed inside RemoveRows has rewritten partition files whose index still lists its ids,
which finishing it completes (those rows are not lost). Damaged checkpoints are discarded
first, and retrained by the request's own retraining where it has one (never twice).
Findings are acted on by their kind and ids (:class:`~..records.certify.Finding`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ...errors import ClulError
from ...storage import layout
from ...storage.store import CorruptFile
from ..decisions.controller import Current, Retrain, TrainAdded, next_step
from ..records.certify import Finding, FindingKind, check_index
from ..records.checkpoint import read_checkpoint
from ..records.ledger import Request
from ..records.version import ModelVersion, read_current

if TYPE_CHECKING:
    from .pipeline import Pipeline


def rebuild_index(p: Pipeline) -> int:
    """The index from the partition files (their directories name shard and slice)."""
    parts = []
    for f in p.store.list_files(layout.TRAIN, ".parquet"):
        try:
            ids = p.store.read_parquet(f, ["id"]).column("id").to_numpy()
        except CorruptFile as e:
            raise ClulError(f"cannot rebuild the index: {e}; its rows are lost unless the "
                            "file is restored (nothing was changed)") from None
        k, r = layout.slice_of(f)
        parts.append(pa.table({"id": ids, "shard": np.full(len(ids), k, np.int64),
                               "slice": np.full(len(ids), r, np.int64)}))
    t = pa.concat_tables(parts) if parts else pa.table({"id": [], "shard": [], "slice": []})
    p.store.rewrite_index(t.column("id").to_numpy(), t.column("shard").to_numpy(),
                          t.column("slice").to_numpy())
    return t.num_rows


def _retrains(req: Request, cur: Current) -> bool:
    """Whether finishing ``req`` trains every shard whose checkpoint chain is broken (a
    deletion's Retrain, an addition's TrainAdded): the controller's path from its stage."""
    stage = req.state
    while (nxt := next_step(req.kind, stage, req.request_id, cur)) is not None:
        if isinstance(nxt[0], Retrain | TrainAdded):
            return True
        stage = nxt[1]
    return False


_CANNOT = {FindingKind.LOST_ROWS: "repair cannot rebuild lost rows",
           FindingKind.EXTRA_ROWS: "repair removes only rows of deleted ids",
           FindingKind.MISPLACED_ROWS: "repair cannot tell where those rows belong",
           FindingKind.UNREADABLE: "repair cannot read it"}


def _check_partitions(p: Pipeline, cfg, pending: list[Request], changed: bool) -> list[Finding]:
    """The partitions against the index, by kind: extra rows of deleted ids are returned
    (to remove); rows a pending request's cut-short step leaves out of place (lost or
    misplaced rows of its ids: finishing it completes them) are let be; anything else is
    refused, naming the file and the ids, before anything (more) changes."""
    store = p.store
    findings: list[Finding] = []
    check_index(store, cfg.partition.shards, cfg.partition.total_slices, findings.append)
    named = np.unique(np.concatenate([r.ids for r in pending] or [np.zeros(0, np.int64)]))
    removable, refused = [], []
    for f in findings:
        if f.kind == FindingKind.EXTRA_ROWS and p.ledger.deleted(f.ids).all():
            removable.append(f)
        elif f.ids is not None and f.kind != FindingKind.DELETED_IDS \
                and np.isin(f.ids, named).all():
            continue  # finishing the request completes what its step began
        else:
            refused.append(f)
    if refused:
        path = refused[0].path  # the first file, with everything found there
        here = [f for f in refused if f.path == path]
        why = "; ".join(dict.fromkeys(_CANNOT.get(f.kind, "repair cannot rebuild it")
                                      for f in here))
        raise ClulError(f"{store.path(path)}: {'; '.join(f.message for f in here)}; {why}: "
                        "restore the file" + (" (nothing was changed)" if not changed else ""))
    return removable


def _remove_deleted_rows(p: Pipeline, cfg, pending: list[Request], changed: bool
                         ) -> list[str]:
    """Remove the extra rows of deleted ids :func:`_check_partitions` finds; what was done."""
    done = []
    for f in _check_partitions(p, cfg, pending, changed):
        p.store.remove_rows(f.path, f.ids)
        done.append(f"removed {len(f.ids)} rows of deleted ids from {f.path}")
    return done


def _damaged(p: Pipeline, v: ModelVersion | None) -> list[str]:
    """Delete the checkpoints of ``v`` that are missing, unreadable or not what ``v``
    records; what was wrong with each."""
    out = []
    for sh in (v.shards if v is not None else []):
        if sh.artifact:
            continue
        for r, key in enumerate(sh.keys):
            sha = sh.checkpoint_sha256[r] if r < len(sh.checkpoint_sha256) else ""
            try:
                read_checkpoint(p.store, sh.shard, r, key, sha256=sha or None)
            except CorruptFile as e:
                p.store.delete(layout.checkpoint_path(sh.shard, r, key))
                out.append(str(e))
    return out


def repair(p: Pipeline) -> dict:
    """In this order: the index (finishing a request reads it); the partitions against
    the index, where a pending request's cut-short step is let be; damaged checkpoints;
    the pending requests, finished; the partitions checked again; stray checkpoints."""
    store = p.store
    cfg = p.config  # an unreadable config refuses here: nothing can be rebuilt without it
    p.ledger.all_requests()  # an unreadable ledger record refuses here
    actions: list[str] = []
    with p.writing("repair"):
        pending = p.ledger.pending()
        try:
            store.read_index()
        except CorruptFile as e:
            n = rebuild_index(p)
            actions.append(f"rebuilt the index from the partition files ({n} rows; it was "
                           f"unreadable: {e})")
        actions += _remove_deleted_rows(p, cfg, pending, changed=False)
        v = read_current(store)
        discarded = _damaged(p, v)
        actions += [f"discarded {d}" for d in discarded]
        cur = Current(v.version, v.request_id) if v is not None else Current()
        results, starts = [], {}
        if discarded and not any(_retrains(r, cur) for r in pending):
            # the same keys on the same rows: the same bits again (a pending request whose
            # own retraining trains every broken chain does it instead, once)
            results, starts = p.train_shards(cfg, list(range(cfg.partition.shards)))
            actions.append(f"retrained {len(results)} slice steps of shards {sorted(starts)}")
        p.resume()
        actions += [f"finished request {r.request_id}" for r in pending]
        cfg = p.config  # (an addition adds a slice)
        actions += _remove_deleted_rows(p, cfg, [], changed=bool(actions))
        v = read_current(store)
        keep = v.checkpoint_paths() if v is not None else set()
        for f in store.checkpoint_files():
            if f not in keep:
                store.delete(f)
                actions.append(f"removed the stray checkpoint {f}")
        version = v.version if v is not None else None
        if results and not pending:
            version = p.commit_version(cfg, "repair", None, starts, results, {
                "retrain_compute_seconds": sum(x.seconds for x in results)}).version
            actions.append(f"committed version {version}")
    return {"root": store.root, "version": version, "actions": actions or ["nothing to do"]}
