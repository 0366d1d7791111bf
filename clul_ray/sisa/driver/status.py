"""``status``: what a root holds now, read without the lock and never refused for a bad
record (every unreadable record and every pending request is named in ``problems``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import ClulError
from ...storage import layout
from ...storage.lock import read_lock
from ...storage.store import CorruptFile
from ..decisions.controller import Kind, Stage
from ..records.ledger import Request
from ..records.rootconfig import require_config
from ..records.version import read_current
from .summary import summarize

if TYPE_CHECKING:
    from .pipeline import Pipeline


def status(p: Pipeline) -> dict:
    """The current version, the ledger and the lock, and ``problems``."""
    store = p.store
    if not store.exists(layout.CONFIG):
        raise ClulError(f"no pipeline under {store.root}: run `clul-ray train` first")
    problems: list[str] = []

    def read(fn):
        try:
            return fn()
        except CorruptFile as e:
            problems.append(str(e))
            return None

    cfg = read(lambda: require_config(store))
    v = read(lambda: read_current(store))
    out = summarize(store.root, cfg, v) if cfg and v else {
        "root": store.root, "version": v.version if v else None,
        "shards": cfg.partition.shards if cfg else None,
        "slices": cfg.partition.total_slices if cfg else None}
    reqs = [r for f in p.ledger.record_files()
            if (r := read(lambda f=f: store.read_record(f, Request))) is not None]
    pending = [r for r in reqs if r.state != Stage.COMMITTED]
    problems += [f"request {r.request_id} ({r.kind}) stopped at stage '{r.state}': the "
                 "next add, delete, unlearn, evaluate or train on this root finishes it"
                 for r in pending]
    out["requests"] = {"committed": len(reqs) - len(pending),
                       "pending": [r.request_id for r in pending]}
    out["deleted_ids"] = int(sum(r.n_ids for r in reqs if r.kind != Kind.ADD))
    out["added_ids"] = int(sum(r.n_ids for r in reqs if r.kind == Kind.ADD))
    out["checkpoints"] = len(store.checkpoint_files())
    out["locked_by"] = read_lock(store)
    out["problems"] = problems
    return out
