"""``clul-ray workers``: a root's warm shard workers on a running Ray cluster."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from .common import Address, AsJson, Root, emit, out, probed_root, run


class Action(StrEnum):
    STATUS = "status"
    START = "start"
    STOP = "stop"


def workers(
    action: Annotated[Action, typer.Argument(help="status | start | stop")] = Action.STATUS,
    root: Root = "runs/default",
    every_root: Annotated[bool, typer.Option(
        "--all", help="status / stop: the workers of every root on the cluster")] = False,
    address: Address = None,
    as_json: AsJson = False,
) -> None:
    """A root's warm shard workers on a running cluster: `start` them (each reads its
    shards' slices), show their `status`, or `stop` them.

    Commands given --address (or RAY_ADDRESS, as in `ray job submit`) with backend ray train
    and retrain on these workers and leave them running for the next command; each stops
    itself after compute.warm_idle_seconds without work."""

    def body() -> None:
        from ..errors import ClulError

        if not address:
            raise ClulError("warm workers live on a running Ray cluster: give --address "
                            "(e.g. `ray start --head`, then --address auto) or set RAY_ADDRESS")
        from ..runtime import ensure_ray
        from ..sisa.compute import warm
        from ..storage.store import Store

        path = None if every_root and action != Action.START else Store(probed_root(root)).root
        if action == Action.START:
            from ..sisa.records.rootconfig import require_config
            from ..sisa.records.version import require_current

            cfg = require_config(Store(path))
            require_current(Store(path))
            ensure_ray(address)
            names = warm.start_workers(path, cfg, address)
        else:
            ensure_ray(address)
            names = warm.cluster_workers(path)
        if action == Action.STOP:
            warm.stop_workers(path)
            result = {"root": path, "stopped": names}
        else:
            result = {"root": path, "workers": warm.worker_info(names)}
        emit(result, as_json, show)

    run(body)


def show(r: dict) -> None:
    if "stopped" in r:
        out.print(f"stopped {len(r['stopped'])} workers", highlight=False)
        return
    from rich.table import Table

    t = Table("worker", "shards warmed", "calls", "cache hits", "misses", "idle s", "node",
              "root")
    for w in r["workers"]:
        t.add_row(str(w["worker"]), ",".join(map(str, w["warmed"])), str(w["calls"]),
                  str(w["hits"]), str(w["misses"]), f"{w['idle_seconds']:.0f}",
                  w["node_id"][:12], w["root"])
    out.print(t)
    if not r["workers"]:
        out.print("no warm workers", highlight=False)
