"""The board: a small named Ray actor, one per application, that holds the serving state
the writer publishes (:mod:`.voting` says what readers do with it).

- ``claim()``: a writer starting (or restarted) takes a new generation; states it publishes
  carry ``(generation, n)`` and the board keeps only the highest, so two publishes that race
  never put an older state back.
- ``publish(seq, state)``: the epoch moves only when the state changes; returns the token.
- ``get(token)``: ``None`` when the caller's token is current (one cheap call per batch),
  else ``(token, state)``.

The board is detached (it outlives a writer replica that dies, keeping the exclusions of
every acknowledged request) and restarted empty by Ray if its process dies; a reader then
finds no state and answers 503 until the writer publishes again (it does every second).
"""

from __future__ import annotations

import uuid
from typing import Any

NAMESPACE = "clul-ray"


def board_name(app: str) -> str:
    return f"clul-ray-board:{app}"


class Board:
    def __init__(self):
        self.incarnation = uuid.uuid4().hex
        self.epoch = 0
        self.generation = 0
        self.seq: tuple[int, int] = (0, 0)
        self.state: dict[str, Any] | None = None

    def claim(self) -> int:
        self.generation += 1
        return self.generation

    def token(self) -> tuple[str, int]:
        return (self.incarnation, self.epoch)

    def publish(self, seq: tuple[int, int], state: dict[str, Any]) -> tuple[str, int]:
        seq = tuple(seq)
        if seq > self.seq:
            self.seq = seq
            self.generation = max(self.generation, seq[0])
            if state != self.state:
                self.state, self.epoch = state, self.epoch + 1
        return self.token()

    def get(self, token: tuple[str, int] | None = None):
        if token is not None and tuple(token) == self.token():
            return None
        return self.token(), self.state


def open_board(app: str):
    """The application's board, created if it does not exist."""
    import ray

    return ray.remote(Board).options(
        name=board_name(app), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        max_restarts=-1, num_cpus=0).remote()


def find_board(app: str):
    """The application's board, or ``None`` when it does not exist (yet)."""
    import ray

    try:
        return ray.get_actor(board_name(app), namespace=NAMESPACE)
    except ValueError:
        return None


def drop_board(app: str) -> None:
    import ray

    board = find_board(app)
    if board is not None:
        ray.kill(board, no_restart=True)
