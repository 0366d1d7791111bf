"""``clul-ray serve``: the deletion service over a storage root, on Ray Serve."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from .common import Address, Root, Verbose, checked_root, out, run, verbose_ray


def serve(
    root: Root = "runs/default",
    host: Annotated[str, typer.Option(help="address the HTTP proxy listens on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    address: Address = None,
    replicas: Annotated[int, typer.Option(
        help="prediction replicas; with 2 or more, one more replica owns the root")] = 1,
    verbose: Verbose = False,
) -> None:
    """Serve predictions and take deletion requests over HTTP (Ray Serve) until Ctrl-C.

    POST /predict {"rows": [[...], ...]} (the dataset's raw rows, as the registered MLflow
    model takes them); POST /delete {"ids": [...]} (202 once recorded and
    the affected shards are excluded from predictions); GET /requests/ID, /version,
    /healthz. The service holds the root's lock; `clul-ray delete --service URL` sends
    deletions to it."""

    def body() -> None:
        from ..runtime import ensure_ray
        from ..sisa.records.rootconfig import require_config
        from ..sisa.records.version import require_current
        from ..storage.lock import describe, is_stale, read_lock
        from ..storage.store import Store

        if replicas < 1:
            from ..errors import ClulError

            raise ClulError(f"--replicas must be at least 1, got {replicas}")
        path = checked_root(root)
        store = Store(path)
        require_config(store)
        require_current(store)
        held = read_lock(store)
        if held is not None and not is_stale(held):
            from ..errors import ClulError

            raise ClulError(f"{path} is in use by {describe(held)}; serve it when that "
                            "has finished")
        verbose_ray(verbose)
        ensure_ray(address)
        from ..serve.app import start, stop

        start(path, host, port, replicas=replicas)
        out.print(f"serving {path} at http://{host}:{port} (Ctrl-C stops)", highlight=False)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            stop()

    run(body)
