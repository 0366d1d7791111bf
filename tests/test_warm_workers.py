"""Warm shard workers on a cluster (``sisa/compute/warm.py``, ``clul-ray workers``): a
command given an address trains and retrains on the root's detached shard workers, the next
command finds them, they stop when idle or when told, and what they train is bit for bit
what any other executor trains.

The session's Ray stands for the cluster: a pipeline whose site is fixed to
``Where.CLUSTER`` joins it as a command with ``--address`` would."""

from __future__ import annotations

import os
import time

import pytest
import ray
from conftest import tiny_config
from typer.testing import CliRunner

from clul_ray.cli import app
from clul_ray.sisa.compute import warm
from clul_ray.sisa.compute.evaluation import evaluate
from clul_ray.sisa.compute.executor import RayExecutor
from clul_ray.sisa.compute.site import Site, Where
from clul_ray.sisa.driver.pipeline import Pipeline
from clul_ray.sisa.records.predcache import read_cached

CLUSTER = Site(Where.CLUSTER, "auto")


def shas(result):
    return {s["shard"]: s["model_sha256"] for s in result["per_shard"]}


@pytest.fixture
def stop_after():
    roots: list[str] = []
    yield roots.append
    for root in roots:
        warm.stop_workers(root)


def test_worker_names_are_a_pure_function_of_what_they_serve(tmp_path, monkeypatch):
    root = str(tmp_path / "root")
    name = warm.worker_name(root, 2, 0.0)
    assert name == warm.worker_name(root, 2, 0.0)
    assert name.startswith(warm.root_prefix(root)) and name.endswith(warm.code_digest())
    others = {warm.worker_name(root, 3, 0.0), warm.worker_name(root, 2, 0.5),
              warm.worker_name(str(tmp_path / "other"), 2, 0.0)}
    assert name not in others and len(others) == 3
    monkeypatch.chdir(tmp_path)
    assert warm.worker_name("root", 2, 0.0) == name, "a relative root names the same worker"


def test_a_deletion_on_warm_workers_equals_training_without_the_data(
        trained_root, deletion_case, stop_after):
    root, _ = trained_root
    d, ref = deletion_case
    stop_after(str(root))
    p = Pipeline(str(root), site=CLUSTER)
    assert p.site.backend(p.config) == "warm"
    after = p.delete(d)
    assert shas(after) == shas(ref), "every shard model is bit-for-bit the retrained one"
    for key in ("ensemble_accuracy", "ensemble_precision", "ensemble_recall", "ensemble_f1"):
        assert after[key] == ref[key], key
    names = warm.cluster_workers(str(root))
    assert 1 <= len(names) <= 2, "the affected shards' workers, no more than the CPUs"


def test_the_next_command_finds_the_warm_worker_and_its_predictions(
        trained_root, stop_after):
    root, _ = trained_root
    stop_after(str(root))
    ids, shard, slc = Pipeline(str(root)).store.read_index()
    picks = [int(i) for i in ids[(shard == 1) & (slc == 2)][:2]]
    for i in picks:  # two commands, each its own Pipeline as two processes would be
        Pipeline(str(root), site=CLUSTER).delete([i])
    (info,) = warm.worker_info(warm.cluster_workers(str(root)))
    assert info["worker"] == 1 and info["calls"] == 2, "the second command reused the worker"
    assert info["hits"] > 0, "slices the deletion did not rewrite came from its memory"
    p = Pipeline(str(root))
    v = p.state
    served = {s.shard: s.model_sha256 for s in v.shards}
    assert read_cached(p.store, 1, served[1], p.config.prediction_width) is not None, \
        "the worker stored the new model's test predictions"
    fresh = evaluate(p.config, p.store, v, Site(Where.PROCESS), lambda *a: None, cache=False)
    assert fresh.ensemble_accuracy == v.metrics.ensemble_accuracy
    assert fresh.shard_accuracy == v.metrics.shard_accuracy


def test_an_idle_worker_stops_itself_and_stop_ends_the_others(tmp_path, stop_after):
    root = tmp_path / "root"
    p = Pipeline(str(root))
    p.train(tiny_config(backend="local", epochs=1))
    stop_after(str(root))
    ray.get(list(warm.WarmExecutor(str(root), idle_seconds=600.0).warm_up(p.config, [1])))
    ray.get(list(warm.WarmExecutor(str(root), idle_seconds=3.0).warm_up(p.config, [0])))
    assert len(warm.cluster_workers(str(root))) == 2
    deadline = time.time() + 30
    while len(warm.cluster_workers(str(root))) == 2 and time.time() < deadline:
        time.sleep(0.5)
    (left,) = warm.cluster_workers(str(root))
    assert left == warm.worker_name(str(root), 1, 0.0), "the idle one stopped, not the other"
    assert warm.stop_workers(str(root)) == [left] and warm.cluster_workers(str(root)) == []


def test_workers_command_starts_shows_and_stops_a_roots_workers(trained_root, stop_after):
    import json

    root, _ = trained_root
    stop_after(str(root))
    runner = CliRunner()
    args = ["--root", str(root), "--address", "auto", "--json"]
    r = runner.invoke(app, ["workers", "start", *args])
    assert r.exit_code == 0, r.output
    workers = json.loads(r.stdout)["workers"]
    assert sorted(w["worker"] for w in workers) == [0, 1], "one per CPU of the cluster"
    assert sorted(k for w in workers for k in w["warmed"]) == [0, 1, 2], "every shard warm"
    assert all(w["misses"] > 0 and w["calls"] == 0 for w in workers), "slices preloaded"
    r = runner.invoke(app, ["workers", "status", *args])
    assert len(json.loads(r.stdout)["workers"]) == 2
    r = runner.invoke(app, ["workers", "stop", *args])
    assert r.exit_code == 0 and len(json.loads(r.stdout)["stopped"]) == 2
    assert warm.cluster_workers(str(root)) == []


def test_workers_command_refuses_without_a_cluster(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    r = CliRunner().invoke(app, ["workers", "status", "--root", str(tmp_path)])
    assert r.exit_code == 2 and "give --address" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_a_job_sent_to_a_worker_that_died_runs_on_a_new_one(trained_root, tmp_path,
                                                            stop_after):
    import shutil

    root, _ = trained_root
    stop_after(str(root))
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    ex = warm.WarmExecutor(str(root), idle_seconds=600.0)
    p = Pipeline(str(root), executor=ex, site=CLUSTER)
    ray.get(list(ex.warm_up(p.config, [1])))
    ray.kill(ex.workers[1], no_restart=True)  # a handle this executor still holds
    ids, shard, _ = p.store.read_index()
    one = [int(ids[shard == 1][3])]
    after = p.delete(one)
    ref = Pipeline(str(copy), site=Site(Where.PROCESS)).delete(one)
    assert shas(after) == shas(ref)
    (info,) = warm.worker_info(warm.cluster_workers(str(root)))
    assert info["calls"] == 1, "the new worker ran the job once"


@pytest.fixture(scope="module")
def unlearn_case(trained_base, tmp_path_factory):
    """A forget scenario naming rows of shards 0 and 2, the reference (the same unlearn on
    a copy of the trained root through plain Ray tasks: backend ``ray``, no address) and
    the rows' ids."""
    import shutil

    base, _ = trained_base
    tmp = tmp_path_factory.mktemp("unlearn-ref")
    ids, shard, slc = Pipeline(str(base)).store.read_index()
    forget = [int(ids[(shard == 0) & (slc == 1)][0]), int(ids[(shard == 2) & (slc == 2)][1])]
    spec = tmp / "forget.txt"
    spec.write_text("\n".join(map(str, forget)))
    shutil.copytree(base, tmp / "root")
    p = Pipeline(str(tmp / "root"))
    assert isinstance(p.executor(p.config), RayExecutor), "no address: plain Ray tasks"
    ref = p.unlearn("neggrad", f"ids:{spec}", {"epochs": 2}, seed=0)
    assert ref["affected"] == {"0": 1, "2": 2}
    return f"ids:{spec}", ref, forget


def unlearn_request(root):
    from clul_ray.sisa.records.ledger import Ledger
    from clul_ray.storage.store import Store

    (req,) = [r for r in Ledger(Store(str(root))).requests() if r.kind == "unlearn"]
    return req


def edited(root):
    """The edits the unlearn request recorded: {shard: model digest}."""
    return {int(k): e["model_sha256"]
            for k, e in unlearn_request(root).result["edited"].items()}


def test_in_process_edits_equal_the_ray_tasks_ones(trained_root, unlearn_case):
    from clul_ray.sisa.compute.approximate import Edit
    from clul_ray.sisa.compute.executor import LocalExecutor

    root, _ = trained_root
    _, ref, ids = unlearn_case
    req = unlearn_request(ref["root"])
    edit = Edit(ids, req.meta["method"], req.meta["params"], req.meta["seed"], req.request_id)
    p = Pipeline(str(root))
    out = LocalExecutor().edit(p.config, p.store, [p.state.shard(0), p.state.shard(2)], edit)
    assert {k: e["model_sha256"] for k, e in out.items()} == edited(ref["root"])
    assert {e["node_id"] for e in out.values()} == {"local"}


def test_an_unlearn_given_an_address_edits_on_the_warm_workers_as_ray_tasks_do(
        trained_root, unlearn_case, stop_after):
    root, _ = trained_root
    forget, ref, _ = unlearn_case
    stop_after(str(root))
    cfg = Pipeline(str(root)).config
    names = warm.start_workers(str(root), cfg)  # (each worker has read its shards' slices)
    before = {i["worker"]: i for i in warm.worker_info(names)}
    p = Pipeline(str(root), address="auto")  # a command with --address
    out = p.unlearn("neggrad", forget, {"epochs": 2}, seed=0)
    assert shas(out) == shas(ref), "the edited models are bit for bit the Ray tasks' ones"
    assert edited(root) == edited(ref["root"]) and sorted(edited(root)) == [0, 2]
    assert out["operation"] == ref["operation"] == "unlearn:neggrad"
    after = {i["worker"]: i for i in warm.worker_info(warm.cluster_workers(str(root)))}
    assert sorted(after) == sorted(before), "no new worker: the edits ran on the warm ones"
    assert sum(a["calls"] - before[w]["calls"] for w, a in after.items()) == 2, \
        "one call per affected shard"
    assert sum(a["hits"] - before[w]["hits"] for w, a in after.items()) > 0, \
        "the shards' rows came from the workers' memory"


def test_the_services_workers_edit_and_a_dead_one_is_made_anew(trained_root, unlearn_case):
    root, _ = trained_root
    forget, ref, _ = unlearn_case
    ex = warm.WarmExecutor(str(root))  # the service's: owned by this process, not detached
    p = Pipeline(str(root), executor=ex, site=CLUSTER)
    try:
        ray.get(list(ex.warm_up(p.config, [0, 2])))
        ray.kill(ex.workers[0], no_restart=True)  # a handle this executor still holds
        out = p.unlearn("neggrad", forget, {"epochs": 2}, seed=0)
        assert shas(out) == shas(ref) and edited(root) == edited(ref["root"])
        infos = ray.get([w.info.remote() for w in ex.workers.values()])
        assert sum(i["calls"] for i in infos) == 2, "each edit ran once, on the pool"
        assert warm.cluster_workers(str(root)) == [], "no detached worker was made"
    finally:
        ex.close()


COMMAND = """
import json, sys
from clul_ray.sisa.driver.pipeline import Pipeline
p = Pipeline(sys.argv[1], address=sys.argv[2])
op, arg = sys.argv[3:5]
out = (p.delete([int(arg)]) if op == "delete" else p.add(arg) if op == "add"
       else p.unlearn("finetune", "ids:" + arg, {"epochs": 1}))
print(json.dumps({"shas": {s["shard"]: s["model_sha256"] for s in out["per_shard"]},
                  "ray": "ray" in sys.modules}))
"""


def test_commands_on_the_workers_machine_go_through_their_doors_without_ray(
        trained_root, tmp_path, stop_after):
    """A command process on the workers' machine (as ``clul-ray delete --address`` is)
    hands its shard jobs to the workers' doors and never imports Ray; a job whose worker
    has no door yet, or whose worker died, goes the Ray way (an addition: some jobs through
    a door, one through Ray). Every model is bit for bit the one the same requests give in
    process."""
    import json
    import shutil
    import subprocess
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    from clul_ray.data.sources import open_source
    from clul_ray.sisa.compute import door
    from clul_ray.storage.store import Store

    root, _ = trained_root
    stop_after(str(root))
    ref = Pipeline(str(shutil.copytree(root, tmp_path / "ref")), site=Site(Where.PROCESS))
    ids, shard, slc = Store(str(root)).read_index()
    one = {k: [int(i) for i in ids[(shard == k) & (slc == 2)][:2]] for k in (0, 2)}
    spec = tmp_path / "forget.txt"
    spec.write_text(str(one[2][1]))
    address = ray.get_runtime_context().gcs_address

    def command(op: str, arg: str) -> dict:
        r = subprocess.run([sys.executable, "-c", COMMAND, str(root), address, op, arg],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "CLUL_RAY_LINEAGE": "inline"})
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    def expect(out: dict, want: dict) -> None:
        assert out["shas"] == {str(k): v for k, v in shas(want).items()}

    first = command("delete", str(one[0][0]))  # no door yet: through Ray; worker 0's opens
    expect(first, ref.delete([one[0][0]]))
    assert first["ray"], "the first command made the worker through Ray"
    key = warm.door_key(str(root), address)
    folder, size = door.pool_doors(key, 0.0)
    assert size == 2 and door.socket_path(folder, key, 0).exists()
    through = command("delete", str(one[2][0]))  # shard 2: worker 2 % 2 = 0's door
    expect(through, ref.delete([one[2][0]]))
    edit = command("unlearn", str(spec))
    expect(edit, ref.unlearn("finetune", f"ids:{spec}", {"epochs": 1}))
    assert not through["ray"] and not edit["ray"], "through the door, Ray never imported"
    digits = next(open_source("digits").iter_tables()).slice(0, 12)
    new = digits.set_column(0, "id", pa.array(digits.column("id").to_numpy() + 10**6))
    pq.write_table(new, tmp_path / "new.parquet")
    grown = command("add", f"parquet:{tmp_path / 'new.parquet'}")
    expect(grown, ref.add(f"parquet:{tmp_path / 'new.parquet'}"))
    assert grown["ray"], "shard 1's worker had no door: its job went through Ray"
    for name in warm.cluster_workers(str(root)):  # a crash: the socket stays, no one listens
        ray.kill(ray.get_actor(name, namespace=warm.NAMESPACE), no_restart=True)
    assert door.socket_path(folder, key, 0).exists()
    after = command("delete", str(one[0][1]))
    expect(after, ref.delete([one[0][1]]))
    assert after["ray"], "a shut door: the job went through Ray, on a worker made anew"
    assert door.socket_path(folder, key, 0).exists(), "the new worker opened its door"
    warm.stop_workers(str(root))
    assert not door.socket_path(folder, key, 0).exists(), "stopped: its door closed first"
