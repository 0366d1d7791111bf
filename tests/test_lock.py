"""One writer per root: a second mutating command is refused while the first holds the root,
a lock left by a dead process is broken, and `clul-ray unlock` clears any lock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from clul_ray import Pipeline
from clul_ray.errors import ClulError
from clul_ray.storage import lock
from clul_ray.storage.store import Store


def _write_lock(root, **kw) -> dict:
    held = {"token": "t-other", "host": socket.gethostname(), "pid": os.getpid(),
            "command": "delete", "since": time.time(), **kw}
    (root / lock.LOCK).write_text(json.dumps(held))
    return held


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*")
                  if p.is_file() and p.name != lock.LOCK)


def test_held_root_refuses_a_second_writer_and_changes_nothing(trained_root):
    root, _ = trained_root
    ids, _, _ = Store(str(root)).read_index()
    _write_lock(root, host="other-host", pid=4242)  # a live holder elsewhere
    before = _snapshot(root)
    with pytest.raises(ClulError, match=r"in use by `delete` \(pid 4242 on other-host"):
        Pipeline(str(root)).delete([int(ids[0])])
    assert _snapshot(root) == before
    assert json.loads((root / lock.LOCK).read_text())["token"] == "t-other"  # not taken


def test_lock_of_a_dead_process_on_this_host_is_broken(trained_root):
    root, before = trained_root
    ids, _, _ = Store(str(root)).read_index()
    _write_lock(root, pid=_dead_pid())
    out = Pipeline(str(root)).delete([int(ids[0])])
    assert out["version"] == before["version"] + 1
    assert not (root / lock.LOCK).exists()  # released after the command


def test_lock_is_released_when_the_command_fails(trained_root):
    root, _ = trained_root
    with pytest.raises(ClulError, match="unknown ids"):
        Pipeline(str(root)).delete([10**9])
    assert not (root / lock.LOCK).exists()


def test_one_holder_at_a_time_even_in_one_process(tmp_path):
    store = Store(str(tmp_path / "r"))
    with lock.locked(store, "train") as h:
        assert lock.read_lock(store)["token"] == h["token"]
        with pytest.raises(ClulError, match="in use by `train`"):
            lock.acquire(store, "delete")  # another holder, even in this process
    assert lock.read_lock(store) is None


def test_cli_unlock_and_status(trained_root):
    root, _ = trained_root
    _write_lock(root, host="other-host", pid=4242)
    from typer.testing import CliRunner

    from clul_ray.cli import app

    r = CliRunner().invoke(app, ["status", "--root", str(root), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["locked_by"]["host"] == "other-host"
    r = CliRunner().invoke(app, ["delete", "--root", str(root), "--ids", "1"])
    assert r.exit_code != 0 and "in use by" in r.output
    r = CliRunner().invoke(app, ["unlock", "--root", str(root)])
    assert r.exit_code == 0 and "removed the lock" in r.output
    assert not (root / lock.LOCK).exists()
    r = CliRunner().invoke(app, ["unlock", "--root", str(root)])
    assert r.exit_code == 0 and "not locked" in r.output


def test_two_concurrent_deletions_the_second_is_refused(trained_root):
    """Two writers at once on one root: the second is refused while the first runs, and the
    first's deletion commits as if it had been alone."""
    import threading

    root, before = trained_root
    ids, _, _ = Store(str(root)).read_index()
    first: dict = {}

    def run_first():
        first["out"] = Pipeline(str(root)).delete([int(ids[0])])

    t = threading.Thread(target=run_first)
    t.start()
    deadline = time.time() + 60
    while not (root / lock.LOCK).exists() and t.is_alive() and time.time() < deadline:
        time.sleep(0.01)
    assert (root / lock.LOCK).exists(), "the first deletion never held the root"
    with pytest.raises(ClulError, match=r"in use by `delete`"):
        Pipeline(str(root)).delete([int(ids[1])])
    t.join()
    assert first["out"]["version"] == before["version"] + 1
    assert first["out"]["deleted"] == 1
    left, _, _ = Store(str(root)).read_index()
    assert int(ids[0]) not in left and int(ids[1]) in left
