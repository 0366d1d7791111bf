"""``clul-ray repair``: rebuild what can be rebuilt under a root, refuse (naming the files)
what cannot.

Rebuilt: an unreadable index (from the partition files); rows of already-deleted ids found
in a partition (removed again); checkpoints that are missing, unreadable or not what the
current version records (discarded, then retrained from the partitions — bit for bit what
they were); stray checkpoint files; unfinished requests (finished). Refused, with nothing
changed: an unreadable config or ledger record, and lost rows — a partition file that is
gone or unreadable holds rows only that file had, so the repair names the slice and the ids
the index lists there instead of training without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ...errors import ClulError
from ...storage import layout
from ...storage.store import CorruptFile
from ..records.certify import check_index
from ..records.checkpoint import read_checkpoint
from ..records.version import read_current

if TYPE_CHECKING:
    from .pipeline import Pipeline


def _slice_of(path: str) -> tuple[int, int]:
    """(shard, slice) of a partition file ``data/train/shard=K/slice=R/...``."""
    parts = path.split("/")
    return int(parts[2].split("=")[1]), int(parts[3].split("=")[1])


def rebuild_index(p: Pipeline) -> int:
    """The index from the partition files (their directories name shard and slice)."""
    parts = []
    for f in p.store.list_files(layout.TRAIN, ".parquet"):
        try:
            ids = p.store.read_parquet(f, ["id"]).column("id").to_numpy()
        except CorruptFile as e:
            raise ClulError(f"cannot rebuild the index: {e}; its rows are lost unless the "
                            "file is restored (nothing was changed)") from None
        k, r = _slice_of(f)
        parts.append(pa.table({"id": ids, "shard": np.full(len(ids), k, np.int64),
                               "slice": np.full(len(ids), r, np.int64)}))
    t = pa.concat_tables(parts) if parts else pa.table({"id": [], "shard": [], "slice": []})
    p.store.rewrite_index(t.column("id").to_numpy(), t.column("shard").to_numpy(),
                          t.column("slice").to_numpy())
    return t.num_rows


def repair(p: Pipeline) -> dict:
    store = p.store
    cfg = p.config  # an unreadable config refuses here: nothing can be rebuilt without it
    p.ledger.requests()  # an unreadable ledger record refuses here
    actions: list[str] = []
    with p.writing("repair"):
        try:
            store.read_index()
        except CorruptFile as e:
            n = rebuild_index(p)
            actions.append(f"rebuilt the index from the partition files ({n} rows; it was "
                           f"unreadable: {e})")
        findings: list[tuple[str, str, np.ndarray | None]] = []
        check_index(store, cfg.partition.shards, cfg.partition.total_slices,
                    lambda kind, path, message, hit=None: findings.append((path, message,
                                                                            hit)))
        for path, message, hit in findings:
            if hit is not None and "not in the index" in message \
                    and p.ledger.deleted(hit).all():
                store.remove_rows(path, hit)
                actions.append(f"removed {len(hit)} rows of deleted ids from {path}")
            else:
                raise ClulError(f"{store.path(path)}: {message}; repair cannot rebuild "
                                "lost rows: restore the file (nothing was changed)")
        v = read_current(store)
        discarded = []
        for sh in (v.shards if v is not None else []):
            if sh.artifact:
                continue
            for r, key in enumerate(sh.keys):
                sha = sh.checkpoint_sha256[r] if r < len(sh.checkpoint_sha256) else ""
                try:
                    read_checkpoint(store, sh.shard, r, key, sha256=sha or None)
                except CorruptFile as e:
                    store.delete(layout.checkpoint_path(sh.shard, r, key))
                    discarded.append(str(e))
        actions += [f"discarded {d}" for d in discarded]
        keep = v.checkpoint_paths() if v is not None else set()
        for f in store.checkpoint_files():
            if f not in keep:
                store.delete(f)
                actions.append(f"removed the stray checkpoint {f}")
        results, starts = [], {}
        if discarded:  # the same keys on the same rows: the same bits again
            results, starts = p.train_shards(cfg, list(range(cfg.partition.shards)))
            actions.append(f"retrained {len(results)} slice steps of shards {sorted(starts)}")
        pending = [r.request_id for r in p.ledger.pending()]
        p.resume()
        actions += [f"finished request {rid}" for rid in pending]
        version = v.version if v is not None else None
        if discarded and not pending:
            version = p.commit_version(cfg, "repair", None, starts, results,
                                {"retrain_compute_seconds": sum(x.seconds for x in results)}
                                ).version
            actions.append(f"committed version {version}")
        elif pending:
            version = read_current(store).version
    return {"root": store.root, "version": version, "actions": actions or ["nothing to do"]}
