"""A Ray Tune sweep submitted as a Ray job to a two-node cluster on this machine.

Runs ``cluster/two_node_sweep.sh`` (the script users run): a head and a second raylet (1 CPU
each, their own temp dirs), a ``clul-ray tune`` job to a local ``--out`` without
``--shared-storage`` (refused), then a small sweep (6 trials, synthetic data, one epoch) to a
shared ``--out``. Marked ``cluster``: it runs in ``make test``'s second pytest session.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cluster import script_argv, skip_if_cannot_run

pytestmark = pytest.mark.cluster

SCRIPT = Path(__file__).resolve().parents[1] / "cluster" / "two_node_sweep.sh"
SAMPLES = 6


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_node_sweep")
    env = {**os.environ, "CLUL_BIN": str(Path(sys.executable).parent),
           "CLUL_SWEEP_SAMPLES": str(SAMPLES), "CLUL_EPOCHS": "1",
           "CLUL_SWEEP_DATASET": "synthetic:300"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(script_argv(SCRIPT, out), capture_output=True, text=True, env=env,
                          timeout=900)
    (out / "script.log").write_text(proc.stdout + proc.stderr)
    skip_if_cannot_run(proc)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return out, json.loads((out / "summary.json").read_text())


def test_sweep_trials_run_on_both_nodes(sweep_run):
    out, s = sweep_run
    assert s["trials"] == s["completed"] == SAMPLES
    assert s["distinct_nodes"] == 2 and len(s["trials_per_node"]) == 2
    assert sum(s["trials_per_node"].values()) == SAMPLES
    sweep = json.loads((out / "sweep" / "sweep.json").read_text())
    assert sweep["summary"]["finetune"]["nodes"] == 2
    # every trial's row names its node, one of the cluster's two
    with open(out / "sweep" / "trials.csv") as f:
        nodes = [row["node_id"] for row in csv.DictReader(f)]
    assert len(nodes) == SAMPLES and set(nodes) == set(s["trials_per_node"])


def test_sweep_results_complete_under_the_shared_root(sweep_run):
    out, s = sweep_run
    results = out / "sweep" / "ray_results" / "finetune"
    trial_dirs = [p for p in results.iterdir() if p.is_dir()]
    assert len(trial_dirs) == SAMPLES == s["trial_results_nonempty"]
    for d in trial_dirs:  # each trial's last result, written on its node, is its final one
        *_, last = (d / "result.json").read_text().splitlines()
        assert json.loads(last)["final"] == 1
    for name in ("trials.csv", "best.md", "best.yaml", "pareto.png", "sweep.json"):
        assert (out / "sweep" / name).is_file()


def test_shared_objects_put_once_and_trials_get_refs(sweep_run):
    _, s = sweep_run
    store = s["object_store"]
    put = store["put"]
    assert set(put) == {"data", "template", "references"}
    assert all(v["bytes"] > 0 for v in put.values())
    # each object lives once per node at most: on the driver's node, and copied (once) to
    # the other node its trials ran on
    for v in put.values():
        assert store["driver_node"] in v["nodes"] and len(v["nodes"]) <= 2
    assert any(v["copies_elsewhere"] == 1 for v in put.values())
    # what Tune ships per trial holds refs, not the objects: far smaller than the data
    assert store["trainable_bytes"] < put["data"]["bytes"] / 4
    assert store["trainable_bytes"] < 10_000


def test_local_out_without_shared_storage_is_refused_on_two_nodes(sweep_run):
    out, _ = sweep_run
    log = (out / "refused.log").read_text()
    assert "is a local path but the Ray cluster has 2 nodes" in log
    assert "error:" in log and "Traceback" not in log
    assert not (out / "refused").exists()
