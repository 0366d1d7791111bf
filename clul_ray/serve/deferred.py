"""Lineage off the commit path: an observer run on a thread of its own."""

from __future__ import annotations

import logging
import threading

from ..errors import first_line

log = logging.getLogger("clul_ray.serve")


class Deferred:
    """An observer run on its own thread, in commit order: what it does (MLflow lineage)
    never delays a commit. The lineage recorder's sync logs whatever MLflow lacks, so a
    call that fails or is lost when the process dies is made good by the next one."""

    def __init__(self, inner):
        import queue

        self.inner = inner
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="clul-ray-lineage",
                                       daemon=True)
        self.thread.start()

    def version_committed(self, *args) -> None:
        self.queue.put(("version_committed", args))

    def request_committed(self, *args) -> None:
        self.queue.put(("request_committed", args))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            name, args = item
            try:
                getattr(self.inner, name)(*args)
            except Exception as e:  # lineage never fails a commit
                log.warning("lineage: %s failed: %s", name, first_line(e))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=120)
