"""Mirroring a root into MLflow off a command's critical path, and the locks of every sync.

A ``clul-ray`` command that commits a version does not mirror it itself: importing MLflow
and its SQL store costs more than the commit (benchmarks/RESULTS.md, "Lineage cost per
version"). It starts a detached Python process running :func:`main` on the root, and returns;
``clul-ray lineage --sync`` completes the lineage at any time (it waits for a running
sync). ``CLUL_RAY_LINEAGE=inline`` keeps the mirror in the command.

Two ``flock`` locks per root, in ``<root>/lineage/`` (a remote root's in the temporary
folder, keyed by its URI): ``sync.lock`` is held by whoever runs :func:`.recorder.sync`, so
concurrent syncs run one after the other and never log a version twice; ``queued.lock`` is
held by the one background sync that waits to run. The command takes ``queued.lock``
itself and hands it to the process it starts (an inherited descriptor), so there is never
a moment without it; should it be held already, a queued sync that has not read the store
yet exists and will mirror this commit too, and no process is started. The queued process
releases it once it holds ``sync.lock``, before it reads the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import time

from ..storage.store import Store
from .tracking import root_uri

try:
    import fcntl
except ImportError:  # no flock: syncs are not serialized, and commands mirror inline
    fcntl = None


ENTRY = "import sys; from clul_ray.lineage.background import main; sys.exit(main(sys.argv[1:]))"


def lock_path(store: Store, name: str) -> str:
    if store.is_local:
        folder = store.path("lineage")
    else:
        digest = hashlib.sha256(root_uri(store).encode()).hexdigest()[:16]
        folder = os.path.join(tempfile.gettempdir(), f"clul-ray-lineage-{digest}")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, name)


@contextlib.contextmanager
def sync_lock(store: Store):
    """Held while a sync of ``store`` runs (blocks while another one does)."""
    if fcntl is None:
        yield
        return
    fd = os.open(lock_path(store, "sync.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def wait(store: Store, timeout: float = 60.0) -> None:
    """Until no sync of a local ``store`` runs (at most ``timeout`` s): what ``clul-ray
    lineage`` shows right after a command. It never touches ``queued.lock``, which a
    command must find free to start its sync."""
    path = store.path("lineage/sync.lock") if store.is_local else None
    if fcntl is None or path is None or not os.path.exists(path):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        end = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > end:
                    return
                time.sleep(0.1)
    finally:
        os.close(fd)


def start(store: Store) -> bool:
    """Start a detached sync of ``store`` unless one is queued already. False where this
    platform cannot (no ``flock``): then the caller mirrors inline."""
    if fcntl is None:
        return False
    fd = os.open(lock_path(store, "queued.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True  # a queued sync will read the store after this commit
        log = open(lock_path(store, "sync.log"), "ab")  # noqa: SIM115 - the child's
        with log:
            subprocess.Popen([sys.executable, "-c", ENTRY, root_uri(store), str(fd)],
                             stdin=subprocess.DEVNULL,
                             stdout=log, stderr=log, pass_fds=(fd,), start_new_session=True)
        return True
    finally:
        os.close(fd)  # the child's copy keeps the lock


def main(argv: list[str]) -> int:
    """The detached sync: take ``sync.lock``, release ``queued.lock`` (descriptor
    ``argv[1]``), sync."""
    from .recorder import run_sync

    store, queued = Store(argv[0]), int(argv[1])
    try:
        with sync_lock(store):
            fcntl.flock(queued, fcntl.LOCK_UN)
            os.close(queued)
            run_sync(store)
    except Exception as e:  # noqa: BLE001 - the next commit or `lineage --sync` heals it
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(f"{stamp} lineage of {store.root} not recorded in MLflow "
              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
              "`clul-ray lineage --sync` records it", file=sys.stderr)
        return 1
    return 0

