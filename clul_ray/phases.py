"""Where a command's wall time goes: named phases that add up to the process's wall time.

A command line process holds one :class:`Phases` (``cli.main`` opens it with the seconds the
interpreter and the first imports took, as ``startup``); code anywhere below marks its part
with ``with phase("name"):``. Phases are exclusive: a phase entered inside another pauses
the outer one, so every second is counted once, and what no phase claims is ``other``.
``report()`` gives the phases in the order first entered, then ``other`` and ``total``
(the process's wall time so far). Work that is not a phase of the wall clock — the
compute a training step measured on its worker — is recorded with :func:`compute` and
reported apart.

Outside a command (a library call, the deletion service's threads) no Phases is current
and ``phase`` does nothing. Pure: no Ray, no torch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[Phases | None] = ContextVar("clul_ray_phases", default=None)


class Phases:
    """The phases of one process; ``elapsed`` seconds had passed when it was made (the
    interpreter and imports before it: the ``startup`` phase)."""

    def __init__(self, elapsed: float = 0.0, clock: Callable[[], float] = time.perf_counter):
        self._clock = clock
        self._t0 = clock() - elapsed
        self.seconds: dict[str, float] = {}
        self.compute: dict[str, float] = {}
        self.started_ray = False  # this command started (or joined) Ray: it stops it
        self._stack: list[list] = []  # [name, since] of the open phases, innermost last
        if elapsed > 0:
            self.seconds["startup"] = elapsed

    def _add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        now = self._clock()
        if self._stack:  # pause the enclosing phase
            outer = self._stack[-1]
            self._add(outer[0], now - outer[1])
        self._stack.append([name, now])
        self.seconds.setdefault(name, 0.0)  # (the order of first entry)
        try:
            yield
        finally:
            now = self._clock()
            inner = self._stack.pop()
            self._add(inner[0], now - inner[1])
            if self._stack:
                self._stack[-1][1] = now

    def output(self) -> dict[str, dict[str, float]]:
        """What a command's --json adds: ``phases`` and ``compute_seconds``."""
        return {"phases": self.report(),
                "compute_seconds": {k: round(v, 4) for k, v in self.compute.items()}}

    def report(self) -> dict[str, float]:
        """Seconds per phase, then ``other`` (no phase) and ``total`` (wall time so far).
        An open phase counts up to now."""
        now = self._clock()
        seconds = dict(self.seconds)
        for name, since in self._stack[-1:]:
            seconds[name] = seconds.get(name, 0.0) + now - since
        total = now - self._t0
        out = {k: round(v, 4) for k, v in seconds.items()}
        out["other"] = round(max(total - sum(seconds.values()), 0.0), 4)
        out["total"] = round(total, 4)
        return out


def current() -> Phases | None:
    return _current.get()


@contextmanager
def measuring(elapsed: float = 0.0) -> Iterator[Phases]:
    """Make a :class:`Phases` current for the block (the one already current, if any)."""
    p = _current.get()
    if p is not None:
        yield p
        return
    p = Phases(elapsed)
    token = _current.set(p)
    try:
        yield p
    finally:
        _current.reset(token)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Count the block's wall time as phase ``name`` of the current command (if any)."""
    p = _current.get()
    if p is None:
        yield
        return
    with p.phase(name):
        yield


def compute(name: str, seconds: float) -> None:
    """Record compute seconds (not a wall-clock phase) of the current command."""
    p = _current.get()
    if p is not None:
        p.compute[name] = p.compute.get(name, 0.0) + seconds


def note_ray_started() -> None:
    """This command started or joined Ray (so it, not the interpreter's exit, stops it)."""
    p = _current.get()
    if p is not None:
        p.started_ray = True


def process_seconds() -> float | None:
    """Seconds since this process started (Linux ``/proc``; None elsewhere): what a
    command's figures leave out — the interpreter, the imports, Ray's shutdown."""
    try:
        with open("/proc/self/stat") as f:
            start = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) - start
    except (OSError, ValueError, IndexError):
        return None
