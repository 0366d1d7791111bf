"""Which shards a prediction replica may vote with, in pure functions (no Ray).

The writer publishes the *serving state* to the board (:mod:`.board`): the version, each
shard's current model (its digest) and the excluded shards, under an epoch the board bumps
whenever that state changes. A reader votes only with a shard that is not excluded *and*
whose loaded model is the board's current one for that shard; it asks the board again after
computing and keeps only the voters the newer state still allows. A missing state (a board
restarted empty, or one that serves another root) allows no voter: the reader fails closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Token = tuple[str, int]  # (the board's incarnation, its epoch)


def same_epoch(held: Token | None, board: Token | None) -> bool:
    """The state a reader holds is the board's current one (same incarnation and epoch; a
    restarted board starts a new incarnation, so an equal epoch number is not enough)."""
    return held is not None and board is not None and tuple(held) == tuple(board)


def usable(state: Mapping[str, Any] | None, root: str) -> bool:
    """A published state of this reader's root (the board of another root, or an empty
    board, allows nothing)."""
    return bool(state) and state.get("root") == root and "models" in state


def allowed_voters(state: Mapping[str, Any] | None, root: str,
                   loaded: Mapping[int, str]) -> list[int]:
    """Shards that may vote: not excluded, and the model loaded for it (``loaded``: shard ->
    digest) is the board's current model of that shard."""
    if not usable(state, root):
        return []
    current = {int(k): v for k, v in state["models"].items()}
    out = {int(k) for k in state.get("excluded", [])}
    return sorted(k for k, sha in loaded.items()
                  if k not in out and current.get(int(k)) == sha)


def to_load(state: Mapping[str, Any] | None, root: str,
            loaded: Mapping[int, str]) -> list[int]:
    """Shards whose current model the reader has not loaded yet. An excluded shard is not
    loaded (its checkpoints may be gone; it is loaded when its request commits)."""
    if not usable(state, root):
        return []
    out = {int(k) for k in state.get("excluded", [])}
    return sorted(int(k) for k, sha in state["models"].items()
                  if int(k) not in out and loaded.get(int(k)) != sha)
