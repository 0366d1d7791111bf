"""One writer per storage root: a lock file held while a command changes the root.

``train``, ``delete``, ``unlearn`` and ``resume`` take it; reads (``status``, ``evaluate``,
``lineage``) do not. Two jobs deleting from one root at once would otherwise interleave
their ledger records, partition rewrites and commits.

Acquisition is atomic where the filesystem allows it: on a local or mounted root the lock
is created with ``O_CREAT | O_EXCL``. Object stores reached through ``pyarrow.fs`` have no
create-if-absent, so there the lock is written, then read back after a short pause, and
held only if it still names this holder: a check that narrows the race to the pause but
does not close it. Serialise writers yourself (one job queue per root) on object storage.

A lock left by a killed process is broken automatically when its holder ran on this host
and its process is gone; otherwise ``clul-ray unlock`` removes it.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from contextlib import contextmanager

from ..errors import ClulError
from .store import Store

LOCK = "lock.json"


def _holder(command: str) -> dict:
    return {"token": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
            "command": command, "since": time.time()}


# A lock file that cannot be parsed was left by a holder that died while writing it (or a
# full disk): stale once it is this old (a live holder writes it right after creating it).
GARBAGE_STALE_SECONDS = 10.0


def read_lock(store: Store) -> dict | None:
    try:
        lock = store.read_json(LOCK)
        if isinstance(lock, dict) and "token" in lock:
            return lock
    except ClulError:
        pass
    if not store.exists(LOCK):
        return None
    # empty or garbage: half-written by a holder that died mid-write, or a full disk
    mtime = store.fs.get_file_info(store.path(LOCK)).mtime
    return {"host": "?", "pid": -1, "command": "? (an unreadable lock file)",
            "since": mtime.timestamp() if mtime else 0.0, "token": "?", "garbage": True}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(lock: dict) -> bool:
    """Held by a process of this host that no longer exists, or unreadable for longer than
    a holder takes to write it."""
    if lock.get("garbage"):
        return time.time() - float(lock.get("since", 0.0)) > GARBAGE_STALE_SECONDS
    return lock.get("host") == socket.gethostname() and not _alive(int(lock.get("pid", -1)))


def describe(lock: dict) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lock.get("since", 0)))
    return f"`{lock.get('command')}` (pid {lock.get('pid')} on {lock.get('host')}, since {when})"


def _create_local(store: Store, holder: dict) -> bool:
    path = store.path(LOCK)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump(holder, f)
    return True


def _create_remote(store: Store, holder: dict, settle: float) -> bool:
    if store.exists(LOCK):
        return False
    store.write_json(LOCK, holder)
    time.sleep(settle)
    return (read_lock(store) or {}).get("token") == holder["token"]


def acquire(store: Store, command: str, settle: float = 0.5) -> dict:
    """Take the root's lock for ``command`` or raise a one-line ClulError naming the holder."""
    holder = _holder(command)
    create = _create_local if store.is_local else (
        lambda s, h: _create_remote(s, h, settle))
    for _ in range(2):  # a second try after breaking a stale lock
        if create(store, holder):
            return holder
        lock = read_lock(store)
        for _ in range(20):  # a holder writes its lock right after creating it: read again
            if lock is None or not lock.get("garbage") or is_stale(lock):
                break
            time.sleep(0.05)
            lock = read_lock(store)
        if lock is None:  # released between our try and the read
            continue
        if is_stale(lock):
            store.delete(LOCK)
            continue
        raise ClulError(f"{store.root} is in use by {describe(lock)}; wait for it to finish "
                        f"(if that process is gone: clul-ray unlock --root {store.root})")
    raise ClulError(f"could not lock {store.root}: another command keeps taking it")


def release(store: Store, holder: dict) -> None:
    lock = read_lock(store)
    if lock is not None and lock.get("token") == holder["token"]:
        store.delete(LOCK)


@contextmanager
def locked(store: Store, command: str):
    holder = acquire(store, command)
    try:
        yield holder
    finally:
        release(store, holder)


def unlock(store: Store) -> dict | None:
    """Remove the lock whoever holds it; returns what it held (None if unlocked)."""
    lock = read_lock(store)
    if lock is not None:
        store.delete(LOCK)
    return lock
