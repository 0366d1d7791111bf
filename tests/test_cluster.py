"""A real two-node Ray cluster on this machine, driven through `ray job submit`.

Runs ``cluster/local_two_node.sh`` (the script users run): a head and a second raylet with
their own temp dirs, an ``mlflow server`` on localhost, ``clul-ray train`` and then
``clul-ray delete`` submitted as Ray Jobs, and the same two commands on an embedded one-node
Ray for reference. Marked ``cluster``: it starts and stops its own Ray, so it runs in a
pytest session of its own (``pytest -m cluster``; ``make test`` does that after the rest).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clul_ray.sisa.records.ledger import Ledger
from clul_ray.storage.store import Store

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "cluster" / "local_two_node.sh"


def script_argv(script: Path, out: Path) -> list[str]:
    """Other Ray instances may run meanwhile: the script's cluster has its own temp dirs and
    ports, and it stops only its own processes. (On a machine where other such clusters may
    start, run the cluster session under ``flock /tmp/clul-cluster.lock``; the tests do not
    take the lock themselves, which would deadlock under such a ``flock``.)"""
    return ["bash", str(script), str(out)]


def skip_if_cannot_run(proc: subprocess.CompletedProcess) -> None:
    """A script's exit 2: this machine cannot run the cluster (e.g. no ray[default])."""
    if proc.returncode == 2:
        skip_unless_ci(f"the cluster script cannot run here: {proc.stderr.strip()[-300:]}")


def skip_unless_ci(reason: str) -> None:
    """Skip (a machine that cannot run the cluster now), but fail under CI (``CI=true``, as
    `.ci/run` and most CI services set it): there it means the run checked nothing."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def two_node_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_node")
    env = {**os.environ, "CLUL_BIN": str(Path(sys.executable).parent), "CLUL_EPOCHS": "4"}
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(script_argv(SCRIPT, out), capture_output=True, text=True,
                          env=env, timeout=1200)
    (out / "script.log").write_text(proc.stdout + proc.stderr)
    skip_if_cannot_run(proc)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return out, json.loads((out / "summary.json").read_text())


def test_jobs_train_on_both_nodes(two_node_run):
    out, s = two_node_run
    assert s["distinct_train_nodes"] == 2
    train = json.loads((out / "train.json").read_text())
    assert train["operation"] == "train" and train["version"] == 1
    # every slice step of every shard is accounted for, on one of the cluster's two nodes
    steps = [n for sh in train["per_shard"] for n in sh["step_nodes"].values()]
    assert len(steps) == train["shards"] * train["slices"]
    assert len(set(steps)) == 2
    delete = json.loads((out / "delete.json").read_text())
    retrained = {sh["shard"]: sorted(sh["step_nodes"]) for sh in delete["per_shard"]
                 if sh["retrained_from"] is not None}
    assert retrained == {0: ["1", "2", "3"], 2: ["1", "2", "3"]}
    assert {n for sh in delete["per_shard"] for n in sh["step_nodes"].values()} <= set(steps)


def test_deletion_job_equals_one_node_run(two_node_run):
    out, s = two_node_run
    assert s["train_equal_to_one_node"] and s["delete_equal_to_one_node"]
    delete = json.loads((out / "delete.json").read_text())
    assert delete["operation"] == "delete" and delete["version"] == 2
    # only the shards that held the deleted ids were retrained, from the slice that held them
    assert delete["retrained"] == {"0": 1, "2": 1}
    kept = {s_["shard"]: s_["model_sha256"] for s_ in delete["per_shard"]}
    first = {s_["shard"]: s_["model_sha256"] for s_ in
             json.loads((out / "train.json").read_text())["per_shard"]}
    assert kept[1] == first[1] and kept[3] == first[3]
    assert kept[0] != first[0] and kept[2] != first[2]
    # the deleted rows are gone from the cluster run's storage, and the request committed
    deleted = [int(i) for i in (out / "ids.txt").read_text().split(",")]
    store = Store(str(out / "root"))
    ids, _, _ = store.read_index()
    assert len(deleted) == delete["deleted"] == 2
    assert not np.isin(deleted, ids).any() and not np.isin(deleted, store.test_ids()).any()
    assert len(ids) == train_samples(out) - 2
    (req,) = Ledger(store).requests()
    assert req.state == "committed" and req.n_ids == 2


def train_samples(out: Path) -> int:
    return json.loads((out / "train.json").read_text())["samples"]


def test_lineage_recorded_in_mlflow_server(two_node_run):
    _, s = two_node_run
    m = s["mlflow"]
    assert m["tracking_uri"].startswith("http://127.0.0.1:")
    v1, v2 = m["versions"]
    assert (v1["version"], v1["operation"], v1["recorded"], v1["mlflow_tainted"]) == \
        (1, "train", True, True)
    assert (v2["version"], v2["operation"], v2["recorded"], v2["mlflow_tainted"]) == \
        (2, "delete", True, False)
    assert v2["registry_current"] and not v1["registry_current"]


def test_local_root_without_shared_storage_is_refused_by_the_cluster(two_node_run):
    out, _ = two_node_run
    log = (out / "refused.log").read_text()
    assert "is a local path but the Ray cluster has 2 nodes" in log
    assert "error:" in log and "Traceback" not in log  # one line, not a stack
    assert not (out / "refused_root").exists()  # nothing written


def test_job_survives_losing_a_node_mid_training(two_node_run):
    """Step 6 of the script: the second node's processes are SIGKILLed after a few slice
    steps; Ray retries the lost steps on the head and the job's models equal the one-node
    run (evaluation then runs on the single CPU left)."""
    out, s = two_node_run
    nl = s["node_loss"]
    assert nl["alive_nodes_after"] == 1
    assert nl["equal_to_one_node"]
    got = json.loads((out / "node_loss.json").read_text())
    assert got["operation"] == "train" and got["ensemble_accuracy"] is not None
