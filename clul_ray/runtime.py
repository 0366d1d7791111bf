"""The Ray edge: connect to a cluster (``--address`` / ``RAY_ADDRESS``) or start a local one."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ClulError, first_line, last_line

VERBOSE_ENV = "CLUL_RAY_VERBOSE"
# Ray's own switch (ray._private.worker.Worker.raise_errors checks that it is set): when a
# failed task's object ref is dropped unread, Ray logs "Unhandled error" and the remote
# traceback. After a failure was reported in one line (gather() stops at the first failed
# shard; the other shards' refs are dropped unread), those traces reach the user at exit.
IGNORE_UNHANDLED_ENV = "RAY_IGNORE_UNHANDLED_ERRORS"


def verbose() -> bool:
    """``CLUL_RAY_VERBOSE=1`` (the CLI's ``--verbose``) lets Ray's own log lines through."""
    return os.environ.get(VERBOSE_ENV, "0").lower() in ("1", "true", "yes", "on")


_connected = False  # ensure_ray joined a cluster at an address (it did not start Ray here)


def connected_to_cluster() -> bool:
    """Whether this process's Ray is a connection to a running cluster (``--address``):
    it owns no Ray processes, so it may end without ``ray.shutdown``."""
    ray = sys.modules.get("ray")
    return _connected and ray is not None and ray.is_initialized()


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Initialise Ray once per process. A local instance unless an address is given.

    Unless :func:`verbose`, Ray's warnings (token authentication, Ray Data's progress-bar
    notice), its workers' log lines and its "Unhandled error" traces of failed tasks whose
    results were never read (``RAY_IGNORE_UNHANDLED_ERRORS``) stay out of the user's
    terminal (they are in Ray's session logs; a failure that matters is raised by
    :func:`gather` as one line)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    loud = verbose()
    if not loud:
        os.environ.setdefault(IGNORE_UNHANDLED_ENV, "1")
    from .phases import note_ray_started, phase

    with phase("ray_start"):
        import ray

    if ray.is_initialized():
        return
    addr = address or os.environ.get("RAY_ADDRESS")
    level = logging.INFO if loud else logging.ERROR
    kwargs = {"logging_level": level, "log_to_driver": loud}
    for name in ("ray", "ray._private.authentication.authentication_token_setup"):
        logging.getLogger(name).setLevel(level)
    with phase("ray_start"):
        try:
            if addr:
                ray.init(address=addr, **kwargs)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = addr or "a local instance"
            raise ClulError(f"cannot connect to Ray at {where}: {first_line(e)}") from None
        global _connected
        _connected = bool(addr)
        note_ray_started()
    if "ray.data" in sys.modules:  # (else quieted where first used: :func:`import_ray_data`)
        quiet_ray_data(level)


def stop_started_ray(phases) -> None:
    """Stop the local Ray the command of ``phases`` started (phase ``teardown``), so the
    process exits as soon as its output is written; a connection to a cluster just ends
    with the process (see ``cli.main``)."""
    if phases.started_ray and not connected_to_cluster():
        import ray

        from .phases import phase

        with phase("teardown"):
            ray.shutdown()
        phases.started_ray = False


def import_ray_data():
    """``ray.data``, imported where first used (its import costs about a second, which a
    command that never reads a Ray Dataset should not pay), quieted as :func:`ensure_ray`
    would have."""
    import ray.data

    quiet_ray_data(logging.INFO if verbose() else logging.ERROR)
    return ray.data


def quiet_ray_data(level: int = logging.ERROR) -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(level)


def node_id() -> str:
    """The Ray node this code runs on ("local" outside Ray)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"


def gather(labels: Mapping[Any, str],
           on_result: Callable[[Any, Any], None] | None = None) -> dict[Any, Any]:
    """Wait for Ray object refs as they finish; ``labels`` names each ref's work.

    ``on_result(ref, value)`` is called in completion order. A task that raised a
    :class:`ClulError` re-raises it as is (bad input found remotely); any other failure
    becomes ``ClulError("<label> failed: <the remote exception's line>")``.
    """
    import ray

    out: dict[Any, Any] = {}
    pending = list(labels)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            try:
                value = ray.get(ref)
            except ray.exceptions.RayError as e:
                cause = getattr(e, "cause", None)
                if isinstance(cause, ClulError):
                    raise cause from None
                raise ClulError(f"{labels[ref]} failed: {last_line(cause or e)}") from e
            out[ref] = value
            if on_result is not None:
                on_result(ref, value)
    return out


def check_storage_root(root: str, root_is_local: bool, alive_nodes: int,
                       shared_storage: bool) -> None:
    """Refuse a local-path root on a multi-node cluster unless it is a shared mount.

    Shard workers on other nodes would write checkpoints to their own disks, and the
    driver would never see them (or worse, see stale ones)."""
    if root_is_local and alive_nodes > 1 and not shared_storage:
        raise ClulError(
            f"storage root {root} is a local path but the Ray cluster has {alive_nodes} "
            "nodes: use s3:// or gs://, or set shared_storage: true (--shared-storage) "
            "if the path is a mount shared by every node")


def check_shard_fits(nodes: list[dict[str, float]], cpus: float, gpus: float,
                     workers: int = 1) -> None:
    """Refuse per-shard resources that no alive node can hold: Ray would queue such tasks
    forever (an "infeasible" warning in its logs, a hang for the user).

    ``nodes`` are the alive nodes' total resources; each of a shard's ``workers`` needs
    ``cpus`` CPUs and ``gpus`` GPUs on one node."""
    if any(n.get("CPU", 0.0) >= cpus and n.get("GPU", 0.0) >= gpus for n in nodes):
        return
    have = "; ".join(f"{n.get('CPU', 0.0):g} CPU, {n.get('GPU', 0.0):g} GPU" for n in nodes)
    per = f"each of a shard's {workers} Ray Train workers" if workers > 1 else "each shard"
    raise ClulError(
        f"{per} needs {cpus:g} CPU and {gpus:g} GPU on one node, but no node of the Ray "
        f"cluster has that (nodes: {have or 'none'}): lower cpus_per_shard / gpus_per_shard "
        "or add such a node (an autoscaling cluster: set CLUL_RAY_WAIT_FOR_RESOURCES=1)")


def node_resources() -> list[dict[str, float]]:
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]
