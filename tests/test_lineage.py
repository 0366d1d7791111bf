"""Lineage: MLflow runs per version, registry + alias, certificates, verify, purge, sample ids;
against the default SQLite store under the root and against a real `mlflow server`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_cluster import skip_unless_ci
from typer.testing import CliRunner

from clul_ray import Pipeline
from clul_ray.cli import app
from clul_ray.data.sources import features, open_source
from clul_ray.faults import Faults
from clul_ray.lineage import LineageWarning, sync
from clul_ray.lineage.tracking import TAG, Tracking
from clul_ray.local_head import free_port
from clul_ray.sisa.compute.ensemble import Ensemble
from clul_ray.sisa.records.ledger import Ledger
from clul_ray.sisa.records.rootconfig import read_config
from clul_ray.sisa.records.version import read_current
from clul_ray.storage.layout import checkpoint_path
from clul_ray.storage.store import Store

runner = CliRunner()


def cli(*args, code=0):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == code, res.output
    return res


def cli_json(*args, code=0):
    return json.loads(cli(*args, "--json", code=code).stdout.strip().splitlines()[-1])


def train_ids(root, shard_slices):
    ids, shard, slc = Store(str(root)).read_index()
    return [int(ids[(shard == k) & (slc == r)][0]) for k, r in shard_slices]


def digits(n=40):
    t = next(open_source("digits").iter_tables())
    return features(t)[:n].copy(), t.column("label").to_numpy()[:n]


def expected_predictions(root, x):
    store = Store(str(root))
    return Ensemble(read_config(store), store, read_current(store)).predict(x)


def load_current(root, monkeypatch, uri=None):
    import mlflow.pyfunc

    t = Tracking(Store(str(root)))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri or t.uri)
    return mlflow.pyfunc.load_model(f"models:/{t.model_name}@current")


def check_history(root, d1, d2):
    """train -> delete d1 -> delete d2: versions, runs, tags, registry, certificates."""
    store = Store(str(root))
    out = cli_json("lineage", "--root", root)
    assert out["mlflow_error"] is None and out["current_version"] == 3
    rows = out["versions"]
    assert [r["version"] for r in rows] == [1, 2, 3]
    assert [r["parent"] for r in rows] == [None, 1, 2]
    assert [r["operation"] for r in rows] == ["train", "delete", "delete"]
    assert all(0 < r["ensemble_f1"] <= 1 for r in rows)
    r1, r2 = rows[1]["request_id"], rows[2]["request_id"]
    assert r1 and r2 and rows[0]["request_id"] is None
    assert [r["tainted_by"] for r in rows] == [r1, r2, None]
    assert all(0 <= r["ensemble_accuracy"] <= 1 and r["run_id"] for r in rows)
    assert [r.get("registry_current") for r in rows] == [False, False, True]
    assert rows[2]["certificate"] == f"certificates/{r2}.json"

    t = Tracking(store)
    runs = t.version_runs()
    assert sorted(runs) == [1, 2, 3] and len(t.runs("version")) == 3, "one run per version"
    ledger = {r.request_id: r.model_dump() for r in Ledger(store).requests()}
    for n, req in ((1, None), (2, r1), (3, r2)):
        run = runs[n]
        tags, state = run.data.tags, store.read_json(f"versions/v{n:06d}.json")
        assert tags[f"{TAG}version"] == str(n)
        assert tags.get(f"{TAG}parent_version") == (str(n - 1) if n > 1 else None)
        assert tags[f"{TAG}operation"] == state["operation"]
        assert tags.get(f"{TAG}request_id") == req
        assert tags.get(f"{TAG}removed_ids_sha256") == (ledger[req]["ids_sha256"] if req
                                                        else None)
        assert tags.get(f"{TAG}tainted") == ("true" if n < 3 else None)
        for s in state["shards"]:
            k = s["shard"]
            assert tags[f"{TAG}shard.{k}.model_sha256"] == s["model_sha256"]
            assert len(tags[f"{TAG}shard.{k}.data_sha256"]) == 64
        params, metrics = run.data.params, run.data.metrics
        assert params["partition.shards"] == "3" and params["train.model_args.hidden"] == "32"
        for key in ("ensemble_accuracy", "ensemble_precision", "ensemble_recall",
                    "ensemble_f1"):
            assert metrics[key] == state["metrics"][key], key
        assert {f"shard_accuracy/{k}" for k in range(3)} <= set(metrics)
        assert any(m.startswith("seconds/") for m in metrics)
        arts = {a.path for a in t.client.list_artifacts(run.info.run_id)}
        assert "checkpoints.json" in arts
        assert ("certificate" in arts) == (req is not None)
        # retrained shards are nested runs, with the data they saw as a dataset input
        children = [c for c in t.runs("shard")
                    if c.data.tags.get("mlflow.parentRunId") == run.info.run_id]
        retrained = {s["shard"] for s in state["shards"] if s["retrained_from"] is not None}
        assert {int(c.data.tags[f"{TAG}shard"]) for c in children} == retrained
        for c in children:
            k = c.data.tags[f"{TAG}shard"]
            inputs = t.client.get_run(c.info.run_id).inputs.dataset_inputs
            assert len(inputs) == 1
            assert inputs[0].dataset.digest == tags[f"{TAG}shard.{k}.data_sha256"][:32]

    # the checkpoint listing points into the root (no copies); the current one exists
    listing = json.loads(Path(t.client.download_artifacts(
        runs[3].info.run_id, "checkpoints.json")).read_text())
    for s in listing["shards"]:
        for c in s["checkpoints"]:
            assert Path(c["uri"]).is_file()

    # the registry: one version per model version, `current` on version 3, taint tags
    mvs = t.model_versions()
    assert sorted(mvs) == [1, 2, 3]
    assert t.client.get_model_version_by_alias(t.model_name, "current").version == \
        mvs[3].version
    assert [mvs[n].tags.get(f"{TAG}tainted") for n in (1, 2, 3)] == ["true", "true", None]

    cert = store.read_json(f"certificates/{r1}.json")
    assert cert["request_id"] == r1 and cert["version"] == 2 and cert["parent_version"] == 1
    assert cert["ids_sha256"] == ledger[r1]["ids_sha256"]
    assert cert["affected"] == [{"shard": 0, "from_slice": 1, "slices": [1, 2]}]
    assert cert["checkpoints_discarded"] == ledger[r1]["result"]["discarded"]
    assert cert["verification"]["ok"] and cert["verification"]["findings"] == []
    return r1, r2


@pytest.fixture(scope="module")
def history(trained_base, tmp_path_factory):
    """A root after train -> delete d1 (shard 0 slice 1) -> delete d2 (shard 2 slice 2)."""
    src, _ = trained_base
    root = tmp_path_factory.mktemp("history") / "root"
    shutil.copytree(src, root)
    d1, d2 = train_ids(root, [(0, 1)]), train_ids(root, [(2, 2)])
    Pipeline(str(root)).delete(d1)
    Pipeline(str(root)).delete(d2)
    return root, d1, d2


def test_every_version_is_a_run_with_parent_tags_registry_and_certificate(history):
    root, d1, d2 = history
    check_history(root, d1, d2)


def test_sample_id_history(history):
    root, d1, d2 = history
    a = cli_json("lineage", "--root", root, "--sample-id", d1[0])
    assert a["split"] == "train" and not a["present"] and a["trained_versions"] == [1]
    assert a["current_clean"] and a["removed_by"]["version"] == 2
    assert a["removed_by"]["state"] == "committed" and a["removed_by"]["committed_at"]
    b = cli_json("lineage", "--root", root, "--sample-id", d2[0])
    assert b["trained_versions"] == [1, 2] and b["removed_by"]["version"] == 3
    kept = train_ids(root, [(1, 0)])[0]
    c = cli_json("lineage", "--root", root, "--sample-id", kept)
    assert c["present"] and c["trained_versions"] == [1, 2, 3] and not c["current_clean"]
    assert c["location"] == {"shard": 1, "slice": 0} and c["removed_by"] is None
    test_id = int(Store(str(root)).test_ids()[0])
    e = cli_json("lineage", "--root", root, "--sample-id", test_id)
    assert e["split"] == "test" and e["trained_versions"] == [] and e["current_clean"]
    res = cli("lineage", "--root", root, "--sample-id", 10**9, code=2)
    assert "unknown id" in res.output and "Traceback" not in res.output
    text = cli("lineage", "--root", root, "--sample-id", d1[0]).stdout
    assert "versions trained with it: 1" in text and "clean of it" in text


def test_verify_passes_then_names_planted_residue(trained_root):
    root, _ = trained_root
    d = train_ids(root, [(0, 0)])
    before = cli_json("lineage", "--root", root, "--sample-id", d[0])
    assert before["trained_versions"] == [1] and not before["current_clean"]
    Pipeline(str(root)).delete(d)
    after = cli_json("lineage", "--root", root, "--sample-id", d[0])
    assert after["trained_versions"] == [1] and after["current_clean"]
    ok = cli_json("verify", "--root", root)
    assert ok["ok"] and ok["ids"] == 1 and ok["checked"]["checkpoints"] == 9
    rid = after["removed_by"]["request_id"]
    assert cli_json("verify", "--root", root, "--request", rid)["ok"]
    assert "no deletion request" in cli("verify", "--root", root, "--request", "nope",
                                        code=2).output
    # plant a row with the deleted id in a training partition
    part = root / "data/train/shard=0/slice=0"
    t = pq.read_table(next(part.glob("*.parquet")))
    row = t.slice(0, 1)
    row = row.set_column(row.column_names.index("id"), "id", pa.array(d, pa.int64()))
    pq.write_table(row, part / "residue.parquet")
    res = cli("verify", "--root", root, code=1)
    assert "data/train/shard=0/slice=0/residue.parquet" in res.output
    bad = json.loads(cli("verify", "--root", root, "--json", code=1).stdout)
    kinds = {f["kind"] for f in bad["findings"]}
    assert not bad["ok"] and {"data", "chain"} <= kinds
    assert any(f["ids"] == d for f in bad["findings"] if f["kind"] == "data")


def test_mlflow_down_never_blocks_a_deletion_and_crash_resume_logs_once(trained_root,
                                                                          monkeypatch):
    root, _ = trained_root
    d1, d2 = train_ids(root, [(1, 1)]), train_ids(root, [(2, 0)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{dead}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with pytest.warns(LineageWarning, match="not recorded in MLflow"):
        out = Pipeline(str(root)).delete(d1)
    assert out["version"] == 2 and Pipeline(str(root)).status()["requests"]["pending"] == []
    rid = out["request_id"]
    assert Store(str(root)).read_json(f"certificates/{rid}.json")["verification"]["ok"]
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    synced = cli_json("lineage", "--root", root, "--sync")
    assert [r["run_id"] is not None for r in synced["versions"]] == [True, True]

    p = Pipeline(str(root), faults=Faults(crash_after="retrained"))
    with pytest.raises(RuntimeError, match="injected crash"):
        p.delete(d2)
    Pipeline(str(root)).evaluate()  # resumes the request
    t = Tracking(Store(str(root)))
    runs = t.version_runs()
    assert sorted(runs) == [1, 2, 3] and len(t.runs("version")) == 3
    assert [runs[n].data.tags.get(f"{TAG}certificate") for n in (2, 3)] == [
        rid, runs[3].data.tags[f"{TAG}request_id"]]
    assert sorted(t.model_versions()) == [1, 2, 3]

    # a run that an interrupted attempt left unfinished is replaced, not duplicated
    t.client.delete_tag(runs[3].info.run_id, f"{TAG}recorded")
    assert sync(Store(str(root)))["logged"] == [3]
    t2 = Tracking(Store(str(root)))
    assert len(t2.runs("version")) == 3 and sorted(t2.model_versions()) == [1, 2, 3]
    assert t2.version_runs()[3].info.run_id != runs[3].info.run_id
    assert sync(Store(str(root)))["logged"] == []


def purge_and_check(root, monkeypatch, uri=None, artifacts_dir=None):
    """Plant a tainted version's checkpoint, purge, and check what is left."""
    store = Store(str(root))
    v1 = store.read_json("versions/v000001.json")
    current = read_current(store).checkpoint_paths()
    stray = next(checkpoint_path(s["shard"], r, k) for s in v1["shards"]
                 for r, k in enumerate(s["keys"])
                 if checkpoint_path(s["shard"], r, k) not in current)
    store.write_bytes(stray, store.read_bytes(next(iter(current))))
    res = cli("verify", "--root", root, code=1)
    assert stray in res.output

    t = Tracking(store)
    runs = t.version_runs()
    tainted_models = [runs[n].data.tags[f"{TAG}model_id"] for n in (1, 2)]
    out = cli_json("purge", "--root", root)
    assert out["tainted_versions"] == [1, 2] and out["purged_versions"] == [1, 2]
    assert out["checkpoints_removed"] == [stray] and not store.exists(stray)
    assert len(out["artifacts_removed"]) == 4  # checkpoint listing + model, per version
    assert cli_json("verify", "--root", root)["ok"]

    runs = Tracking(store).version_runs()
    for n, model_id in zip((1, 2), tainted_models, strict=True):
        run = runs[n]
        left = {a.path for a in t.client.list_artifacts(run.info.run_id)}
        assert left <= {"certificate"}, left
        assert run.data.tags[f"{TAG}purged"] and run.data.params["partition.shards"] == "3"
        assert "ensemble_accuracy" in run.data.metrics
        lm = t.client.get_logged_model(model_id)
        assert t.artifact_repo(lm.artifact_location).list_artifacts() == []
        assert t.model_versions()[n].tags[f"{TAG}purged"]
    assert {a.path for a in t.client.list_artifacts(runs[3].info.run_id)} == {
        "checkpoints.json", "certificate"}
    if artifacts_dir is not None:  # nothing of the tainted models left on the server's disk
        for model_id in tainted_models:
            assert not [p for p in Path(artifacts_dir).rglob("*") if model_id in str(p)
                        and p.is_file()]
    again = cli_json("purge", "--root", root)
    assert again["purged_versions"] == [] and again["artifacts_removed"] == []

    model = load_current(root, monkeypatch, uri)
    x, y = digits()
    want = expected_predictions(root, x)
    raw = x * 16  # the registered model takes raw digits rows (0..16), as load_digits gives
    assert (model.predict(pd.DataFrame({"x": list(raw)})) == want).all()
    assert (model.predict(pd.DataFrame(raw)) == want).all()
    assert (want == y).mean() > 0.3


def test_purge_removes_tainted_artifacts_and_current_model_predicts(history, tmp_path,
                                                                    monkeypatch):
    src, _, _ = history
    root = tmp_path / "root"
    shutil.copytree(src, root)  # a moved root: its lineage is logged again under the new path
    assert sync(Store(str(root)))["logged"] == [1, 2, 3]
    purge_and_check(root, monkeypatch)


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on localhost: SQLite backend and proxied artifacts in tmp."""
    port = free_port()
    art = tmp_path / "server-artifacts"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(art)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                skip_unless_ci("`mlflow server` did not start: "
                                + (tmp_path / "server.log").read_text()[-500:])
            time.sleep(0.5)
        yield url, art
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.mark.mlflow_server
def test_lineage_against_an_mlflow_server(mlflow_server, trained_base, tmp_path,
                                          monkeypatch):
    url, art = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    src, _ = trained_base
    root = tmp_path / "root"
    shutil.copytree(src, root)
    d1, d2 = train_ids(root, [(0, 1)]), train_ids(root, [(2, 2)])
    Pipeline(str(root)).delete(d1)  # also logs version 1, which the copy has not on the server
    res = cli("delete", "--root", root, "--ids", d2[0], "--json")
    assert len(res.stdout.strip().splitlines()) == 1, "MLflow prints nothing on stdout"
    assert Tracking(Store(str(root))).uri == url
    check_history(root, d1, d2)
    assert any(art.rglob("checkpoints.json")), "artifacts went through the server"
    assert cli_json("verify", "--root", root)["ok"]
    purge_and_check(root, monkeypatch, url, artifacts_dir=art)


@pytest.mark.parametrize("command", [["lineage"], ["lineage", "--sample-id", "3"], ["verify"],
                                     ["purge"]])
def test_commands_refuse_a_root_without_a_pipeline(tmp_path, command):
    res = cli(command[0], "--root", tmp_path / "nothing", *command[1:], code=2)
    assert "error:" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "nothing").exists(), "a refusal writes nothing"
