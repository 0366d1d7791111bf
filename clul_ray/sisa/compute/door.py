"""A warm shard worker's door: a Unix socket on the worker's machine through which a
command on the same machine hands the worker a shard job without joining Ray.

Joining a running cluster costs a command about 0.3 s before any work (importing ``ray``
is most of it; ``benchmarks/RESULTS.md``, "Commands at the compute limit") — a third of
what a one-slice deletion pays over its compute. A command whose only Ray work is the
root's warm workers' (a deletion, an ``unlearn``) therefore knocks first: each detached
worker listens on a socket whose path is a pure function of what it serves (the root, the
cluster address the commands name, this package's code, the worker's number); the pool's
size is in a small file beside the sockets (:func:`write_pool`), written by the command
that made or found the workers through Ray. A door that is missing, refuses or closes
mid-job sends that job the Ray way (steps and edits are idempotent), so the door is only
ever a shortcut.

Only this user reaches a door: the sockets live in a folder of this user's that no one
else may open (``$CLUL_RAY_DOOR_DIR``, else ``/tmp/clul-ray-<uid>``, made with mode
0700); a folder someone else owns or can open means no door (the Ray way). A door runs
only the job methods it was given (:class:`Door`); what passes is pickled, as over Ray.

The protocol: the client sends ``(method, args)``; the worker answers ``("ok", value)``,
or ``("error", refused, text)`` — ``refused``: the job refused its input
(:class:`~clul_ray.errors.ClulError`), reported as it is; else a failure, reported as
``"<label> failed: <text>"`` as :func:`clul_ray.runtime.gather` reports a Ray task's.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from collections.abc import Callable, Iterable
from multiprocessing.connection import Client, Listener
from pathlib import Path

from ...errors import ClulError, last_line

DIR_ENV = "CLUL_RAY_DOOR_DIR"


class DoorShut(Exception):
    """No answer through the door: no socket, nobody listening, or the connection ended
    before the reply (the worker died). The job goes the Ray way."""


def door_dir(create: bool = True) -> Path | None:
    """This user's folder of doors (made, mode 0700, when ``create``); None when it is
    missing, or someone else owns it or may open it."""
    path = Path(os.environ.get(DIR_ENV) or f"/tmp/clul-ray-{os.getuid()}")
    if create:
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            return None
    try:
        st = path.lstat()
    except OSError:
        return None
    private = stat.S_ISDIR(st.st_mode) and st.st_mode & 0o077 == 0
    return path if private and st.st_uid == os.getuid() else None


def pool_key(root: str, address: str, code: str) -> str:
    """The key of the doors of ``root``'s warm workers on the cluster at ``address``
    running ``code`` (the package's digest)."""
    return hashlib.sha256(f"{root}\0{address}\0{code}".encode()).hexdigest()[:24]


def socket_path(folder: Path, key: str, worker: int) -> Path:
    return folder / f"{key}-{worker}.sock"


def write_pool(key: str, size: int, gpus: float) -> None:
    """Record the pool's size (shard ``k``'s worker is number ``k % size``)."""
    folder = door_dir()
    if folder is None:
        return
    tmp = folder / f"{key}.pool.{os.getpid()}"
    tmp.write_text(json.dumps({"size": size, "gpus": gpus}))
    os.replace(tmp, folder / f"{key}.pool")


def pool_doors(key: str, gpus: float) -> tuple[Path, int] | None:
    """(the doors' folder, the pool's size) where a pool of workers with ``gpus`` each has
    doors on this machine; else None."""
    folder = door_dir(create=False)
    if folder is None:
        return None
    try:
        pool = json.loads((folder / f"{key}.pool").read_text())
    except (OSError, ValueError):
        return None
    if pool.get("gpus") != gpus or not isinstance(pool.get("size"), int) or pool["size"] < 1:
        return None
    return folder, pool["size"]


def call(path: Path, method: str, args: tuple, label: str):
    """Run ``method(*args)`` on the worker behind ``path``; its value. :class:`DoorShut`
    when the door does not answer; the job's own failure as a one-line ClulError."""
    try:
        conn = Client(str(path), family="AF_UNIX")
    except OSError as e:
        raise DoorShut(str(e)) from None
    try:
        with conn:
            conn.send((method, args))
            reply = conn.recv()
    except (EOFError, OSError) as e:
        raise DoorShut(f"{path.name}: {e or 'closed'}") from None
    if reply[0] == "ok":
        return reply[1]
    _, refused, text = reply
    raise ClulError(text if refused else f"{label} failed: {text}")


class Door:
    """The worker's side: listens at ``path`` (a stale socket there is replaced) and runs
    each request on a thread of its own, one request at a time; only the methods named in
    ``methods`` are run (``handler(method, args)``)."""

    def __init__(self, path: Path, methods: Iterable[str],
                 handler: Callable[[str, tuple], object]):
        self.path, self.methods, self.handler = path, frozenset(methods), handler
        path.unlink(missing_ok=True)
        self._listener = Listener(str(path), family="AF_UNIX")
        os.chmod(path, 0o600)
        threading.Thread(target=self._serve, daemon=True, name="clul-ray-door").start()

    def _serve(self) -> None:
        while True:
            try:
                conn = self._listener.accept()
            except OSError:  # closed
                return
            with conn:
                try:
                    method, args = conn.recv()
                except (EOFError, OSError, ValueError, TypeError):
                    continue
                answer = self._answer(method, args)
                try:
                    conn.send(answer)
                except OSError:  # (the caller left: its job goes the Ray way)
                    continue
                except Exception as e:  # noqa: BLE001  (a value that does not pickle)
                    conn.send(("error", False, f"the reply does not pickle: {last_line(e)}"))

    def _answer(self, method: str, args: tuple) -> tuple:
        if method not in self.methods:
            return ("error", False, f"this door runs {sorted(self.methods)}, not {method!r}")
        try:
            return ("ok", self.handler(method, args))
        except ClulError as e:
            return ("error", True, str(e))
        except Exception as e:  # noqa: BLE001  (reported to the caller in one line)
            return ("error", False, f"{type(e).__name__}: {last_line(e)}")

    def close(self) -> None:
        try:
            self._listener.close()  # (removes the socket)
        except OSError:
            pass
        self.path.unlink(missing_ok=True)
