"""One writer per storage root: a lock file held while a command changes the root.

``train``, ``delete``, ``unlearn`` and ``resume`` take it; reads (``status``, ``evaluate``,
``lineage``) do not. Two jobs deleting from one root at once would otherwise interleave
their ledger records, partition rewrites and commits.

Acquisition is atomic: on a local or mounted root the lock is created with
``O_CREAT | O_EXCL``; on an ``s3://`` root with a conditional ``PutObject``
(``If-None-Match: *``), which S3 lets exactly one of two racing writers win. Release
deletes the lock only if it still names this holder, and on S3 only while it is the very
object that was read (``If-Match`` on its ETag), so a holder never removes a lock another
writer took after it.

Other object stores (``gs://``, …) reached through ``pyarrow.fs`` have no conditional
create: the lock is refused there unless ``CLUL_RAY_BEST_EFFORT_LOCK=1`` accepts the old
check (write the lock, read it back after a short pause, hold it if it still names this
holder), which narrows the race to the pause but does not close it.

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
BEST_EFFORT_ENV = "CLUL_RAY_BEST_EFFORT_LOCK"


def _holder(command: str) -> dict:
    return {"token": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
            "command": command, "since": time.time()}


# A lock file that cannot be parsed was left by a holder that died while writing it (or a
# full disk): stale once it is this old (a live holder writes it right after creating it).
GARBAGE_STALE_SECONDS = 10.0


def read_lock(store: Store) -> dict | None:
    """The lock's holder (None when unlocked); on S3 with the ETag it was read at under
    ``"_version"``."""
    try:
        got = store.read_versioned(LOCK)
    except OSError:  # removed or unreadable while read: decided below
        got = (b"", None)
    if got is None:
        return None
    try:
        lock = json.loads(got[0])
        if isinstance(lock, dict) and "token" in lock:
            return {**lock, "_version": got[1]}
    except ValueError:
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


def _create_best_effort(store: Store, holder: dict, settle: float) -> bool:
    if store.exists(LOCK):
        return False
    store.write_json(LOCK, holder)
    time.sleep(settle)
    return (read_lock(store) or {}).get("token") == holder["token"]


def _create(store: Store, holder: dict, settle: float) -> bool:
    made = store.create_exclusive(LOCK, json.dumps(holder).encode())
    if made is not None:
        return made
    if os.environ.get(BEST_EFFORT_ENV) == "1":
        return _create_best_effort(store, holder, settle)
    raise ClulError(f"cannot lock {store.root}: this object store has no atomic "
                    "create-if-absent, so two writers could both take the lock; use an s3:// "
                    f"or local root, or set {BEST_EFFORT_ENV}=1 to accept a best-effort lock")


def acquire(store: Store, command: str, settle: float = 0.5) -> dict:
    """Take the root's lock for ``command`` or raise a one-line ClulError naming the holder."""
    holder = _holder(command)
    for _ in range(2):  # a second try after breaking a stale lock
        if _create(store, holder, settle):
            return holder
        lock = read_lock(store)
        for _ in range(20):  # a holder writes its lock right after creating it: read again
            if lock is None or not lock.get("garbage") or is_stale(lock):
                break
            time.sleep(0.05)
            lock = read_lock(store)
        if lock is None:  # released between our try and the read
            continue
        if is_stale(lock):  # only the stale lock read, not one a third writer took since
            store.delete_version(LOCK, lock.get("_version"))
            continue
        raise ClulError(f"{store.root} is in use by {describe(lock)}; wait for it to finish "
                        f"(if that process is gone: clul-ray unlock --root {store.root})")
    raise ClulError(f"could not lock {store.root}: another command keeps taking it")


def release(store: Store, holder: dict) -> None:
    """Delete the lock if it is still ours (on S3: only the very object read)."""
    lock = read_lock(store)
    if lock is not None and lock.get("token") == holder["token"]:
        store.delete_version(LOCK, lock.get("_version"))


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
        lock.pop("_version", None)
    return lock


def refuse_if_served(store: Store) -> None:
    """A one-line refusal when a deletion service holds the root (other writers use the
    lock)."""
    lock = read_lock(store)
    if lock and str(lock.get("command", "")).startswith("serve") and not is_stale(lock):
        raise ClulError(f"{store.root} is served by {describe(lock)}: send deletions to it "
                        "(clul-ray delete --service URL)")
