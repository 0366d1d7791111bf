"""Faults a test injects into a run; production code receives :data:`NONE` (no fault).

One object, passed in (``Pipeline(faults=...)``, the service's and executors'
constructors), instead of hooks living on production classes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Faults:
    crash_after: str | None = None  # a ledger stage: raise once a request reaches it
    fail_after_slice: int | None = None  # Ray Train: rank 0 dies after this slice, once
    retrain_delay_s: float = 0.0  # the service: hold a request before and in its retrain

    def crash(self, stage: str) -> None:
        """Raise the injected crash when ``stage`` is the one named."""
        if self.crash_after is not None and self.crash_after == stage:
            raise RuntimeError(f"injected crash after {stage}")


NONE = Faults()
