"""Where a command's wall time goes (``clul_ray/phases.py``): exclusive phases that add up
to the process's wall time, in every command's ``--json``; and where a deletion runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

from clul_ray import phases
from clul_ray.sisa.compute import site
from clul_ray.sisa.driver.commands import deletion_rows
from clul_ray.sisa.driver.pipeline import Pipeline

pytestmark = pytest.mark.pure  # no Ray


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_phases_are_exclusive_and_add_up_to_the_total():
    clock = Clock()
    p = phases.Phases(elapsed=0.5, clock=clock)
    with p.phase("plan"):
        clock.t += 1
        with p.phase("checks"):  # pauses "plan"
            clock.t += 2
        clock.t += 1
    clock.t += 0.25  # no phase: "other"
    with p.phase("checks"):
        clock.t += 1
    r = p.report()
    assert list(r) == ["startup", "plan", "checks", "other", "total"]
    assert r == {"startup": 0.5, "plan": 2.0, "checks": 3.0, "other": 0.25, "total": 5.75}
    assert sum(v for k, v in r.items() if k != "total") == pytest.approx(r["total"])


def test_phase_outside_a_command_does_nothing_and_inside_counts():
    with phases.phase("plan"):  # no command measured: nothing to count into
        pass
    assert phases.current() is None
    with phases.measuring() as p:
        with phases.phase("plan"):
            phases.compute("train", 1.5)
        with phases.measuring() as inner:
            assert inner is p, "a command inside a command keeps the outer measure"
    assert "plan" in p.report() and p.output()["compute_seconds"] == {"train": 1.5}
    assert phases.current() is None


@pytest.fixture(scope="module")
def local_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("phases") / "root"
    Pipeline(str(root)).train(tiny_config(backend="local", epochs=1))
    return root


def test_a_deletion_s_json_accounts_for_the_process_wall_time(local_root, tmp_path):
    ids, shard, slc = Pipeline(str(local_root)).store.read_index()
    env = {**os.environ, "CLUL_RAY_LINEAGE": "0", "PYTHONPATH": str(Path(__file__).parents[1])}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "clul_ray.cli", "delete", "--root",
                        str(local_root), "--ids", str(int(ids[(shard == 1) & (slc == 2)][0])),
                        "--json"], capture_output=True, text=True, env=env, timeout=300)
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    ph = out["phases"]
    assert {"startup", "plan", "remove_rows", "train", "checks", "evaluate", "commit",
            "certify"} <= set(ph), sorted(ph)
    assert sum(v for k, v in ph.items() if k != "total") == pytest.approx(ph["total"],
                                                                          abs=1e-3)
    assert ph["other"] < 0.5 * ph["total"], "most of the time is named"
    # the report covers the process: what it cannot see is the interpreter's start before
    # /proc's clock tick and the exit after the output, which skips all teardown
    assert wall - ph["total"] < max(1.0, 0.25 * wall), (wall, ph)
    assert out["compute_seconds"]["train"] > 0 and out["in_process"] is True
    assert "teardown" not in ph, "no Ray to stop"


def test_a_deletion_runs_in_process_when_its_shards_work_is_small(local_root, monkeypatch):
    """The site of a deletion is decided by the rows of the shards it retrains, not the
    root's: one shard of a large root fits in this process."""
    monkeypatch.setattr(site, "ray_started", lambda: False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    p = Pipeline(str(local_root))
    cfg = p.config.updated(backend="ray")
    ids, shard, _ = p.store.read_index()
    one = ids[shard == 0][:1]
    rows = deletion_rows(p.store, one)
    assert rows == int((shard == 0).sum()) and deletion_rows(p.store, np.array([-5])) == 0
    both = deletion_rows(p.store, np.concatenate([one, ids[shard == 2][:1]]))
    assert both == int(((shard == 0) | (shard == 2)).sum())
    limit = rows * cfg.train.epochs  # the one shard's work fits, the root's does not
    monkeypatch.setenv(site.ENV, str(limit))
    assert site.decide(cfg, None, lambda: rows).where == site.Where.PROCESS
    assert site.decide(cfg, None, lambda: both).where == site.Where.RAY
    assert site.decide(cfg, None, lambda: len(ids)).where == site.Where.RAY
    assert site.decide(cfg, "ray://head:10001", lambda: rows).backend(cfg) == "warm", \
        "on a cluster: the warm workers"
    assert site.decide(cfg.updated(warm_idle_seconds=0), "ray://head:10001",
                       lambda: rows).backend(cfg.updated(warm_idle_seconds=0)) == "ray"


@pytest.mark.parametrize("command", [["status"], ["verify"], ["evaluate"]])
def test_every_command_s_json_has_its_phases(local_root, command):
    from typer.testing import CliRunner

    from clul_ray.cli import app

    r = CliRunner().invoke(app, [*command, "--root", str(local_root), "--json"])
    assert r.exit_code == 0, r.output
    ph = json.loads(r.stdout.strip().splitlines()[-1])["phases"]
    assert sum(v for k, v in ph.items() if k != "total") == pytest.approx(ph["total"],
                                                                          abs=1e-3)
