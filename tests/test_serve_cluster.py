"""The whole Ray killed under the deletion service (`serve --replicas 2 --address`), head
included, right after some 202s; the cluster and the service started again: every
acknowledged request finishes from the ledger, the final models equal the CLI's bit for bit,
the restarted service really took the root's lock, and no prediction answered meanwhile
named a model that saw a deleted row (503 and no answer are fine).

Marked ``cluster``: it starts a `ray start --head` cluster of its own (own temp dir, free
ports, token auth as ``cluster/local_two_node.sh`` runs it); run it alone, under
``flock /tmp/clul-cluster.lock``. Under ``CI=true`` a cluster that cannot start fails the
test instead of skipping it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serve_exactness import Predictions, poll_committed, saw_deleted_rows, violations
from test_cluster import skip_unless_ci

from clul_ray.errors import ClulError
from clul_ray.local_head import LocalHead, free_port
from clul_ray.serve.client import call
from clul_ray.sisa.records.ledger import Ledger
from clul_ray.storage.lock import read_lock
from clul_ray.storage.store import Store

pytestmark = pytest.mark.cluster
BIN = Path(sys.executable).parent
TRAIN = """
import sys
sys.path.insert(0, {tests!r})
from conftest import tiny_config
from clul_ray import Pipeline
Pipeline(sys.argv[1]).train(tiny_config())
"""


ENV = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0",
       "CLUL_RAY_LINEAGE": "0", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
ENV.pop("RAY_ADDRESS", None)


def start_cluster(log: Path) -> LocalHead:
    """A one-node `ray start --head` cluster with a temp dir and ports of its own; what
    `ray start` printed goes to ``log``."""
    head = LocalHead(2, ENV, prefix="clul_serve_ray.", timeout=180)
    log.write_text(head.output)
    if not head.ok:
        skip_unless_ci(f"ray start --head failed: {head.output[-500:]}")
    return head


def serve_cli(root: Path, cluster: LocalHead, port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "python"), "-m", "clul_ray.cli", "serve", "--root", str(root),
         "--port", str(port), "--address", cluster.address, "--replicas", "2"],
        env=ENV, stdout=log.open("a"), stderr=subprocess.STDOUT)


def wait_serving(url: str, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        assert proc.poll() is None, "the service exited"
        try:
            if call(f"{url}/predict", "POST", {"rows": [[0] * 64]}, timeout=5)[0] == 200:
                return
        except ClulError:
            pass
        time.sleep(1)
    raise AssertionError("the service did not start")


def test_whole_ray_killed_after_202s_recovers_from_the_ledger(tmp_path):
    root, cli = tmp_path / "root", tmp_path / "cli"
    tests = str(Path(__file__).resolve().parent)
    subprocess.run([str(BIN / "python"), "-c", TRAIN.format(tests=tests), str(root)],
                   env=ENV, check=True, timeout=600, capture_output=True)
    shutil.copytree(root, cli)
    ids_all, shard, slc = Store(str(root)).read_index()
    ids = [int(ids_all[(shard == k) & (slc == 2)][i]) for i in range(3) for k in (0, 1)]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = start_cluster(tmp_path / "ray1.log")
    proc = serve_cli(root, first, port, tmp_path / "serve.log")
    try:
        wait_serving(url, proc)
        preds = Predictions(url, threads=2)
        time.sleep(1)
        acked = []
        for d in ids[:4]:
            code, ack = call(f"{url}/delete", "POST", {"ids": [d]}, timeout=60)
            assert code == 202, ack
            acked.append({**ack, "acked_at": time.time()})
        held = read_lock(Store(str(root)))
        proc.kill()  # the driver, and every process of the cluster, head included
        first.kill()
    except BaseException:
        proc.kill()
        first.kill()
        raise
    assert held and held["command"] == f"serve {url}"
    pending = Ledger(Store(str(root))).pending()
    assert pending, "acknowledged requests were pending when Ray died"

    restarted = time.time()
    second = start_cluster(tmp_path / "ray2.log")
    proc = serve_cli(root, second, port, tmp_path / "serve.log")
    try:
        wait_serving(url, proc)
        now = read_lock(Store(str(root)))
        assert now["command"] == f"serve {url}" and now["pid"] != held["pid"], \
            "the restarted service took the lock the killed one left"
        for a in acked:
            a["version"] = poll_committed(url, a["request_id"])["version"]
        answers = preds.stop()
        shas = call(f"{url}/version")[1]["model_sha256"]
    finally:
        proc.kill()
        second.kill()
    (tmp_path / "answers.json").write_text(json.dumps([a[:3] for a in answers]))
    codes = {c for _, _, c, _ in answers}
    # 0: no answer (Ray down); 404: Serve's proxy up before the application's routes
    assert codes <= {200, 503, 404, 0}, codes
    assert any(c == 200 and s > restarted for s, _, c, _ in answers), \
        "predictions were answered after the restart"
    assert violations(answers, acked, saw_deleted_rows(str(root), acked)) == []
    # the same ids through the CLI, on a copy taken before the service started
    out = subprocess.run([str(BIN / "python"), "-m", "clul_ray.cli", "delete", "--root",
                          str(cli), "--ids", ",".join(str(a) for a in ids[:4]), "--json"],
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    ref = json.loads(out.stdout.strip().splitlines()[-1])
    assert shas == {str(s["shard"]): s["model_sha256"] for s in ref["per_shard"]}
