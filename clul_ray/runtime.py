"""The Ray edge: connect to a cluster (``--address`` / ``RAY_ADDRESS``) or start a local one."""

from __future__ import annotations

import logging
import os

from .errors import ClulError


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Initialise Ray once per process. A local instance unless an address is given."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return
    addr = address or os.environ.get("RAY_ADDRESS")
    kwargs = {"logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if addr:
            ray.init(address=addr, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = addr or "a local instance"
        raise ClulError(f"cannot connect to Ray at {where}: {str(e).splitlines()[0]}") from None
    quiet_ray_data()


def quiet_ray_data() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
