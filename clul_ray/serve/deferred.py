"""Lineage off the commit path: an observer run on a thread of its own."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..errors import first_line

log = logging.getLogger("clul_ray.serve")


class Deferred:
    """An observer run on its own thread, in commit order: what it does (MLflow lineage)
    never delays a commit. The lineage recorder's sync logs whatever MLflow lacks, so a
    call that fails or is lost when the process dies is made good by the next one."""

    def __init__(self, inner, idle: threading.Event | None = None, yield_s: float = 5.0):
        import queue

        self.inner = inner
        # each call waits (at most ``yield_s``) for ``idle``: the service's driver idle, so
        # MLflow's logging does not share the process (its interpreter lock) with a retrain
        self.idle, self.yield_s = idle, yield_s
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="clul-ray-lineage",
                                       daemon=True)
        self.thread.start()

    def version_committed(self, *args) -> None:
        self.queue.put((self.inner.version_committed, args, None))

    def request_committed(self, *args) -> None:
        self.queue.put((self.inner.request_committed, args, None))

    def run_soon(self, fn: Callable[..., Any], *args) -> threading.Event:
        """``fn(*args)`` on this thread after what is queued; the event is set once it
        has run (or failed)."""
        done = threading.Event()
        self.queue.put((fn, args, done))
        return done

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            fn, args, done = item
            if self.idle is not None:
                self.idle.wait(self.yield_s)
            try:
                fn(*args)
            except Exception as e:  # lineage never fails a commit
                log.warning("lineage: %s failed: %s", fn.__name__, first_line(e))
            finally:
                if done is not None:
                    done.set()

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=120)
