"""A private one-node Ray head on this machine, for benchmarks and tests (a developer
utility, as ``ray.cluster_utils`` is Ray's; no command uses it).

:class:`LocalHead` runs ``ray start --head`` with a temp dir and ports of its own, so that
other Ray instances of the user run on untouched; its :attr:`~LocalHead.address` is what a
command's ``--address`` or ``ray.init(address=...)`` takes, and :meth:`~LocalHead.kill`
stops every process of it at once, found by its temp dir (never ``ray stop``, which would
stop the user's other instances too). ``cluster/lib.sh`` does the same for the shell
scripts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the ports `ray start --head` would otherwise take at fixed defaults (the GCS's is --port)
PORT_FLAGS = ("--node-manager-port", "--object-manager-port", "--metrics-export-port",
              "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
              "--runtime-env-agent-port", "--ray-client-server-port")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free when asked."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def head_argv(ray: str, port: int, cpus: int, temp_dir: str,
              ports: dict[str, int]) -> list[str]:
    """The ``ray start --head`` command line: the GCS at ``port``, ``cpus`` CPUs, its own
    ``temp_dir``, no dashboard, no usage stats, and each of :data:`PORT_FLAGS` at its port
    in ``ports``."""
    return [ray, "start", "--head", "--port", str(port), "--num-cpus", str(cpus),
            "--temp-dir", temp_dir, "--include-dashboard", "false",
            "--disable-usage-stats"] + [a for f in PORT_FLAGS for a in (f, str(ports[f]))]


def kill_by_dir(temp_dir: str) -> None:
    """SIGKILL every process whose command line holds ``temp_dir`` (a Ray node's GCS,
    raylet, agents...) and their descendants (the workers, whose titles Ray rewrites), all
    stopped first so that none runs on while the others die; then ``pkill`` for any that
    started meanwhile. This process itself is spared."""
    import psutil

    procs = []
    for p in psutil.process_iter(["cmdline"]):
        if p.pid != os.getpid() and temp_dir in " ".join(p.info["cmdline"] or []):
            procs.append(p)
            with contextlib.suppress(psutil.Error):
                procs.extend(p.children(recursive=True))
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(sig)
    subprocess.run(["pkill", "-9", "-f", "--", temp_dir], check=False)
    time.sleep(1)


class LocalHead:
    """A one-node ``ray start --head``, started by the constructor, with a fresh temp dir
    (named ``prefix...``) and free ports. ``ok`` says whether ``ray start`` succeeded and
    ``output`` holds what it printed; a head that failed to start is killed at once.
    ``start_seconds`` is how long ``ray start`` took. ``ray`` is the ``ray`` executable
    (default: the one beside this Python); ``env`` the environment it runs in (default:
    this process's, e.g. with ``RAY_AUTH_MODE=token``)."""

    def __init__(self, cpus: int = 2, env: dict[str, str] | None = None, *,
                 prefix: str = "clul_ray_head.", ray: str | None = None,
                 timeout: float = 300.0):
        self.temp_dir = tempfile.mkdtemp(prefix=prefix)
        self.port = free_port()
        argv = head_argv(ray or str(Path(sys.executable).parent / "ray"), self.port, cpus,
                         self.temp_dir, {f: free_port() for f in PORT_FLAGS})
        t0 = time.perf_counter()
        try:
            r = subprocess.run(argv, capture_output=True, text=True, env=env,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.start_seconds = time.perf_counter() - t0
        self.ok = r.returncode == 0
        self.output = r.stdout + r.stderr
        if not self.ok:
            self.kill()

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the head's GCS."""
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        """Every process of this head, its workers included (:func:`kill_by_dir`)."""
        kill_by_dir(self.temp_dir)
