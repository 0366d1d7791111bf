"""What the deletion service decides, in pure functions: which shards may vote, what a
request's state is, and what to answer.

Exactness at every instant: a shard that holds the rows of any request the service has
acknowledged (recorded in the ledger and not yet committed) is **excluded** from the
ensemble, so every prediction after the acknowledgement comes only from models that never
saw those rows. The excluded set is a function of the ledger alone (the pending requests'
affected shards), so a restarted service excludes exactly what the one before it did.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

import numpy as np

from ..sisa.decisions.aggregate import aggregate
from ..sisa.decisions.controller import Stage


class Phase(StrEnum):
    """A request's state as the service reports it, in the order a request passes them."""

    RECORDED = "recorded"
    EXCLUDED = "excluded"      # in the ledger, its shards excluded
    RETRAINING = "retraining"  # (an unlearn's models edited, an addition's slice trained)
    CERTIFYING = "certifying"  # a version committed; its certificate, its shards loaded
    COMMITTED = "committed"    # certified, and its shards vote again


# the service's view of every ledger stage (of every request kind)
PHASE: dict[Stage, Phase] = {
    Stage.PLANNED: Phase.EXCLUDED,
    Stage.UNLEARNED: Phase.RETRAINING,
    Stage.DATA_ADDED: Phase.RETRAINING,
    Stage.DATA_REMOVED: Phase.RETRAINING,
    Stage.CHECKPOINTS_DISCARDED: Phase.RETRAINING,
    Stage.VERSION_COMMITTED: Phase.CERTIFYING,
    Stage.COMMITTED: Phase.COMMITTED,
}


class NoServableShard(Exception):
    """Every shard is excluded by pending requests: nothing may answer a prediction."""


def excluded(shards: int, pending_affected: Iterable[Iterable[int]]) -> set[int]:
    """Shards that hold rows of a pending request."""
    out: set[int] = set()
    for affected in pending_affected:
        out.update(int(k) for k in affected)
    return {k for k in out if 0 <= k < shards}


def combine(probs: np.ndarray, voters: list[int], shards: list[int],
            method: str) -> tuple[np.ndarray, np.ndarray]:
    """(shards, n, classes) probabilities of every loaded shard -> the prediction and the
    mean probabilities over the voting shards only."""
    if not voters:
        raise NoServableShard("every shard holds rows of a pending deletion request; "
                              "predictions resume when the first retrain commits")
    idx = [shards.index(k) for k in voters]
    p = probs[idx]
    return aggregate(p, method), p.mean(axis=0)


def timeline(history: list[dict[str, Any]], excluded_at: float | None) -> list[dict]:
    """A ledger request's history as the service's phases (their string values), with
    timestamps: recorded, excluded, retraining, certifying, committed (each once, in
    order)."""
    out: list[dict] = []
    seen: set[Phase] = set()
    for h in history:
        stage = Stage(h["state"])
        phases = [Phase.RECORDED, Phase.EXCLUDED] if stage == Stage.PLANNED else [PHASE[stage]]
        for ph in phases:
            if ph in seen:
                continue
            seen.add(ph)
            t = excluded_at if ph == Phase.EXCLUDED and excluded_at is not None else h["time"]
            out.append({"phase": ph.value, "time": t})
    return out


def phase(stage: Stage | str) -> Phase:
    return PHASE[Stage(stage)]


def parse_json_ids(values: Any) -> list[int]:
    """The ``ids`` of a ``/delete`` body: a list of integers (or decimal strings), checked
    as every id the project reads (ASCII decimal int64, none repeated, not empty)."""
    from ..data.ids import parse_id_tokens, repeated_ids
    from ..errors import ClulError

    if not isinstance(values, list):
        raise ClulError("ids must be a list of integer ids")
    tokens = []
    for i, v in enumerate(values, 1):
        if isinstance(v, bool) or not isinstance(v, int | str):
            raise ClulError(f"ids: item {i} is not an id (an integer): {v!r}"[:200])
        tokens.append((i, str(v)))
    ids = parse_id_tokens(tokens, "ids", "item")
    rep = repeated_ids(np.asarray(ids, dtype=np.int64))
    if rep:
        raise ClulError(f"ids repeated in the request: {rep}")
    return ids
