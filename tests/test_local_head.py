"""The benchmarks' and tests' private Ray head (``clul_ray.local_head``): its command line,
its kill (every process of its temp dir and their children, nothing else), a head that
fails to start, and (marked ``cluster``) a real head started and killed."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile

import psutil
import pytest

from clul_ray.local_head import PORT_FLAGS, LocalHead, free_port, head_argv, kill_by_dir

# a parent holding the dir in its command line, and a child that does not
PARENT = """
import subprocess, sys, time
child = subprocess.Popen(["sleep", "60"])
print(child.pid, flush=True)
time.sleep(60)
"""


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def processes_of(temp_dir: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if temp_dir in " ".join(p.info["cmdline"] or [])]


@pytest.mark.pure
def test_head_argv_gives_every_port_its_own_and_the_temp_dir():
    ports = {f: 20000 + i for i, f in enumerate(PORT_FLAGS)}
    argv = head_argv("/venv/bin/ray", 6390, 3, "/tmp/h.x", ports)
    assert argv[:13] == ["/venv/bin/ray", "start", "--head", "--port", "6390", "--num-cpus",
                         "3", "--temp-dir", "/tmp/h.x", "--include-dashboard", "false",
                         "--disable-usage-stats", PORT_FLAGS[0]]
    given = dict(zip(argv[12::2], argv[13::2], strict=True))
    assert given == {f: str(p) for f, p in ports.items()}
    assert 0 < free_port() < 65536


@pytest.mark.pure
def test_kill_by_dir_kills_the_dirs_processes_and_their_children_only():
    mine = tempfile.mkdtemp(prefix="clul_head_test.")
    other = tempfile.mkdtemp(prefix="clul_head_test.")
    procs = [subprocess.Popen([sys.executable, "-c", PARENT, d], stdout=subprocess.PIPE,
                              text=True) for d in (mine, other)]
    try:
        child, its_child = (int(p.stdout.readline()) for p in procs)
        kill_by_dir(mine)
        assert procs[0].wait(timeout=10) == -9
        assert gone(child), "the child (its command line lacks the dir) was killed too"
        assert procs[1].poll() is None and not gone(its_child), "another dir's survive"
        assert processes_of(mine) == []
    finally:
        for p in procs:
            p.kill()
            p.wait()
        with contextlib.suppress(psutil.Error):
            psutil.Process(its_child).kill()


@pytest.mark.pure
def test_a_head_that_cannot_start_says_so():
    head = LocalHead(1, prefix="clul_head_test.", ray=sys.executable, timeout=60)
    assert not head.ok and head.output.strip()  # python: can't open file 'start'
    assert head.address == f"127.0.0.1:{head.port}"
    assert processes_of(head.temp_dir) == []


@pytest.mark.cluster
def test_a_head_starts_and_its_kill_leaves_no_process_of_it():
    head = LocalHead(1, prefix="clul_head_test.")
    try:
        assert head.ok, head.output[-500:]
        assert head.address.split(":")[1] in head.output
        assert processes_of(head.temp_dir), "the head's processes hold its temp dir"
    finally:
        head.kill()
    assert processes_of(head.temp_dir) == []
