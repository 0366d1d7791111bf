"""A warm worker's door (``sisa/compute/door.py``): the protocol, who may use it, and what a
shut door means — the job goes the Ray way. (The deletion and ``unlearn`` through real
workers' doors are in ``tests/test_warm_workers.py``.)"""

from __future__ import annotations

import os

import pytest

from clul_ray.errors import ClulError
from clul_ray.sisa.compute import door

pytestmark = pytest.mark.pure


@pytest.fixture
def folder(tmp_path, monkeypatch):
    path = tmp_path / "doors"
    monkeypatch.setenv(door.DIR_ENV, str(path))
    return path


def handler(method, args):
    if method == "train_job":
        return {"sum": sum(args)}
    if args == ("bad",):
        raise ClulError("shard 3's rows differ from the index")
    raise ValueError("the model diverged")


def test_a_door_runs_its_jobs_and_reports_failures_as_ray_tasks_are(folder):
    d = door.door_dir()
    assert d == folder and (folder.stat().st_mode & 0o777) == 0o700
    path = door.socket_path(d, door.pool_key("/r", "127.0.0.1:6379", "abc"), 0)
    served = door.Door(path, ("train_job", "edit_job"), handler)
    try:
        assert (path.stat().st_mode & 0o777) == 0o600
        assert door.call(path, "train_job", (1, 2, 3), "training shard 0") == {"sum": 6}
        with pytest.raises(ClulError) as e:
            door.call(path, "edit_job", ("bad",), "unlearning shard 3")
        assert str(e.value) == "shard 3's rows differ from the index", "bad input as is"
        with pytest.raises(ClulError) as e:
            door.call(path, "edit_job", (), "unlearning shard 3")
        assert str(e.value) == "unlearning shard 3 failed: ValueError: the model diverged"
        with pytest.raises(ClulError, match="not 'close'"):
            door.call(path, "close", (), "x")
        assert door.call(path, "train_job", (4,), "again") == {"sum": 4}, "still serving"
    finally:
        served.close()
    assert not path.exists()
    with pytest.raises(door.DoorShut):
        door.call(path, "train_job", (1,), "training shard 0")


def test_a_stale_socket_is_a_shut_door_and_a_new_worker_replaces_it(folder):
    import socket

    d = door.door_dir()
    path = door.socket_path(d, "k", 1)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))  # a worker that died: its socket file, nobody listening
    s.close()
    with pytest.raises(door.DoorShut):
        door.call(path, "train_job", (1,), "x")
    served = door.Door(path, ("train_job",), handler)
    try:
        assert door.call(path, "train_job", (5,), "x") == {"sum": 5}
    finally:
        served.close()


def test_only_this_users_private_folder_holds_doors(folder):
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    assert door.door_dir() is None, "a folder others may open holds no door"
    door.write_pool("k", 2, 0.0)
    assert door.pool_doors("k", 0.0) is None
    os.chmod(folder, 0o700)
    assert door.door_dir() == folder


def test_the_pool_file_names_the_size_for_the_gpus_it_was_made_with(folder):
    assert door.pool_doors("k", 0.0) is None, "no pool recorded: the Ray way"
    door.write_pool("k", 3, 0.0)
    assert door.pool_doors("k", 0.0) == (folder, 3)
    assert door.pool_doors("k", 0.5) is None, "workers made for other GPUs"
    (folder / "k.pool").write_text("{not json")
    assert door.pool_doors("k", 0.0) is None
    keys = {door.pool_key("/r", "a:1", "c"), door.pool_key("/r", "a:2", "c"),
            door.pool_key("/s", "a:1", "c"), door.pool_key("/r", "a:1", "d")}
    assert len(keys) == 4, "root, address and code each name their own doors"
