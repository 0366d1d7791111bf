"""The deletion service on Ray Serve, over HTTP on localhost: predictions, exclusion from
the acknowledgement to the commit, refusals with nothing changed, the root's lock, the CLI
client, and a replica killed mid-retrain that finishes the request on restart — with the
final models equal to the CLI's, bit for bit."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
from conftest import digits_parquet, tiny_config
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from clul_ray import Pipeline
from clul_ray.cli import app
from clul_ray.data.sources import raw_to_features
from clul_ray.faults import Faults
from clul_ray.local_head import free_port
from clul_ray.serve.client import call
from clul_ray.serve.client import predict as client_predict
from clul_ray.sisa.compute.ensemble import Ensemble
from clul_ray.sisa.records.rootconfig import read_config
from clul_ray.sisa.records.version import read_current
from clul_ray.storage.store import Store

pytestmark = pytest.mark.serve
RAW = load_digits().data[:6]  # what /predict takes: the dataset's raw rows
X = raw_to_features("digits", RAW, (1, 8, 8))  # what the shard models take


def poll(url: str, rid: str, until: str = "committed", timeout: float = 180.0) -> dict:
    from clul_ray.errors import ClulError

    end = time.time() + timeout
    while time.time() < end:
        try:
            code, st = call(f"{url}/requests/{rid}", timeout=10)
        except ClulError:  # a replica restarting
            code, st = 0, {}
        if code == 200 and st["state"] == until:
            return st
        time.sleep(0.1)
    raise AssertionError(f"request {rid} never reached {until}")


def predict(url: str) -> dict:
    code, out = call(f"{url}/predict", "POST", {"rows": RAW.tolist()})
    assert code == 200, out
    return out


@pytest.fixture(scope="module")
def served(trained_base, tmp_path_factory):
    from ray import serve

    from clul_ray.serve.app import start

    root = tmp_path_factory.mktemp("served") / "root"
    shutil.copytree(trained_base[0], root)
    port = free_port()
    start(str(root), port=port, faults=Faults(retrain_delay_s=1.0))
    yield root, f"http://127.0.0.1:{port}"
    serve.shutdown()


def test_predict_takes_the_registered_models_raw_rows(served, trained_base, monkeypatch):
    """/predict and the registered MLflow model take the same input, the dataset's raw rows
    (digits as load_digits gives them), apply the same preprocessing and refuse a wrong
    width with the same one line."""
    import mlflow.pyfunc

    from clul_ray.errors import ClulError
    from clul_ray.lineage.tracking import Tracking

    _, url = served
    t = Tracking(Store(str(trained_base[0])))  # the served root is a copy of it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", t.uri)
    model = mlflow.pyfunc.load_model(f"models:/{t.model_name}@current")
    raw = load_digits().data[:400]
    out = client_predict(url, raw)
    assert out["version"] == model.model_config["version"] and out["shards"] == [0, 1, 2]
    assert out["pred"] == model.predict(raw).tolist()

    for bad in (raw[:3, :63].tolist(), [["a"] * 64]):  # (the same rows to both)
        code, out = call(f"{url}/predict", "POST", {"rows": bad})
        with pytest.raises(ClulError) as e:
            model.predict(bad)
        assert code == 400 and out["detail"] == str(e.value), (out, str(e.value))
        assert "\n" not in out["detail"]
    with pytest.raises(ClulError, match=r"refused the prediction \(400\): expected raw rows"):
        client_predict(url, raw[:3, :63])


def test_predictions_deletions_and_refusals_over_http(served, deletion_case):
    root, url = served
    d, ref = deletion_case  # d: rows of shards 0 and 2; ref: trained without them
    assert call(f"{url}/healthz") == (200, {"ok": True, "version": 1, "pending": 0,
                                            "errors": []})
    first = predict(url)
    assert first["version"] == 1 and first["shards"] == [0, 1, 2]
    store = Store(str(root))
    expected = Ensemble(read_config(store), store, read_current(store)).predict(X)
    assert first["pred"] == expected.tolist(), "the service predicts as the ensemble does"
    assert np.allclose(np.sum(first["probabilities"], axis=1), 1.0, atol=1e-5)

    ledger = sorted(p.name for p in (root / "ledger").glob("*.json")) \
        if (root / "ledger").exists() else []
    for body, code, message in [
        ({"ids": ["x"]}, 400, "item 1 is not an id"), ({"ids": [10**12]}, 400, "unknown ids"),
        ({"ids": []}, 400, "no ids given"), ({"ids": [d[0], d[0]]}, 400, "repeated"),
        ({"ids": 5}, 400, "must be a list"), ({"rows": [[1.0, 2.0]]}, 400, "64 features"),
    ]:
        route = "predict" if "rows" in body else "delete"
        got, out = call(f"{url}/{route}", "POST", body)
        assert got == code and message in json.dumps(out), (body, out)
    assert call(f"{url}/requests/000099-nope")[0] == 404
    now = sorted(p.name for p in (root / "ledger").glob("*.json")) \
        if (root / "ledger").exists() else []
    assert now == ledger, "refused requests change nothing"

    code, ack = call(f"{url}/delete", "POST", {"ids": d})
    assert code == 202 and ack["excluded"] == [0, 2] and ack["state"] == "excluded"
    rid = ack["request_id"]
    seen = []
    while (st := call(f"{url}/requests/{rid}")[1])["state"] != "committed":
        out = predict(url)  # (the request may commit between the two calls)
        seen.append(out["shards"])
        if 0 in out["shards"] or 2 in out["shards"]:  # only the retrained models
            assert out["version"] >= 2 and out["excluded"] == [], out
    after = predict(url)
    assert seen and after["shards"] == [0, 1, 2] and after["version"] == 2
    assert [p["phase"] for p in st["timeline"]] == ["recorded", "excluded", "retraining",
                                                    "certifying", "committed"]
    shas = call(f"{url}/version")[1]["model_sha256"]
    assert shas == {str(s["shard"]): s["model_sha256"] for s in ref["per_shard"]}, \
        "the service's retrain equals a fresh training without the ids"
    assert (root / "certificates" / f"{rid}.json").exists()

    # one writer per root: the CLI is refused, or sends the request to the service
    runner = CliRunner()
    res = runner.invoke(app, ["delete", "--root", str(root), "--ids", str(d[0] + 1)])
    assert res.exit_code == 2 and "served by" in res.output
    ids, shard, _ = store.read_index()
    other = int(ids[shard == 1][0])
    res = runner.invoke(app, ["delete", "--service", url, "--ids", str(other), "--wait",
                              "--json"])
    assert res.exit_code == 0, res.output
    sent = json.loads(res.stdout.strip().splitlines()[-1])
    assert sent["state"] == "committed" and sent["version"] == 3


def test_a_replica_killed_mid_retrain_finishes_the_request(served, tmp_path):
    import ray

    root, url = served
    copy = tmp_path / "cli"
    for attempt in range(5):  # the service may be writing (lineage, a temporary file)
        try:
            shutil.copytree(root, copy, ignore=shutil.ignore_patterns("lock.json", "*.tmp-*"))
            break
        except shutil.Error:
            shutil.rmtree(copy, ignore_errors=True)
            time.sleep(1 + attempt)
    ids, shard, slc = Store(str(root)).read_index()
    target = [int(ids[(shard == 1) & (slc == 0)][3])]
    cli = Pipeline(str(copy)).delete(target)  # the same request through the CLI path

    code, ack = call(f"{url}/delete", "POST", {"ids": target})
    assert code == 202
    poll(url, ack["request_id"], "retraining", timeout=60)
    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True)
                if "DeletionApp" in a["name"]]
    assert len(replicas) == 1
    ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]),
             no_restart=False)
    st = poll(url, ack["request_id"], timeout=240)  # Serve restarts the replica
    assert st["version"] == cli["version"]
    shas = call(f"{url}/version")[1]["model_sha256"]
    assert shas == {str(s["shard"]): s["model_sha256"] for s in cli["per_shard"]}
    assert call(f"{url}/version")[1]["pending"] == []


def test_stream_of_deletions_loses_nothing_and_coalesces(served):
    """A request excluding every shard makes /predict answer 503 until it commits; then
    deletions sent back to back for one shard: each acknowledged and committed with its
    own version and certificate; fewer retrains than requests (they coalesce)."""
    root, url = served
    ids, shard, slc = Store(str(root)).read_index()
    every = [int(ids[(shard == k) & (slc == 2)][-1]) for k in range(3)]
    code, ack = call(f"{url}/delete", "POST", {"ids": every})
    assert code == 202 and ack["excluded"] == [0, 1, 2] and ack["exclusion_seconds"] < 5
    code, out = call(f"{url}/predict", "POST", {"rows": RAW.tolist()})
    assert code == 503 and "pending deletion" in out["detail"]
    poll(url, ack["request_id"])
    assert predict(url)["shards"] == [0, 1, 2]
    ids, shard, slc = Store(str(root)).read_index()
    pick = ids[(shard == 2) & (slc == 2)][:4].tolist()
    acks = [call(f"{url}/delete", "POST", {"ids": [int(i)]})[1] for i in pick]
    assert all(a["excluded"] == [2] for a in acks)
    done = [poll(url, a["request_id"]) for a in acks]
    versions = [s["version"] for s in done]
    assert versions == sorted(versions) and len(set(versions)) == len(acks)
    for a in acks:
        assert (root / "certificates" / f"{a['request_id']}.json").exists()
    store = Store(str(root))
    assert not np.isin(pick, store.read_index()[0]).any()
    from clul_ray.sisa.records.version import read_version

    retrained = [read_version(store, v).timings.get("retrain_compute_seconds", 0) > 0
                 for v in versions]
    assert sum(retrained) < len(acks), "later requests rode on an earlier retrain"

    # each version is evaluated after its request commits (off the request's path), and
    # its metrics are recorded in its version record and state.json
    end = time.time() + 60
    while call(f"{url}/version")[1]["busy"] and time.time() < end:
        time.sleep(0.2)
    for n in versions:
        m = read_version(store, n).metrics
        assert m.ensemble_accuracy is not None and m.test_samples > 0, (n, m)
    assert read_current(store).metrics == read_version(store, versions[-1]).metrics

    # the service's Ray metrics reach the node's Prometheus export
    want = {"ray_clul_ray_delete_requests_total": len(acks) + 1,
            "ray_clul_ray_commit_seconds_count": len(acks) + 1,
            "ray_clul_ray_exclusion_seconds_count": len(acks) + 1,
            "ray_clul_ray_predict_rows_total": len(X)}
    got = exported(want, timeout=60)
    assert all(got.get(k, 0) >= v for k, v in want.items()), got


def exported(want: dict[str, float], timeout: float) -> dict[str, float]:
    """Sums of the named series on this node's metrics export, once each reaches its value
    (Ray exports every few seconds) or the time is up."""
    import urllib.request

    import ray

    node = ray._private.worker.global_worker.node
    url = f"http://{node.node_ip_address}:{node.metrics_export_port}/metrics"
    end, got = time.time() + timeout, {}
    while time.time() < end:
        got = {}
        for line in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in want:
                got[name] = got.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        if all(got.get(k, 0) >= v for k, v in want.items()):
            break
        time.sleep(2)
    return got


@pytest.mark.parametrize("unused", [None])
def test_serve_refuses_a_root_in_use(tmp_path, unused):
    p = Pipeline(str(tmp_path / "root"))
    p.train(tiny_config(backend="local", epochs=1, dataset=digits_parquet(
        tmp_path / "d.parquet"), input_shape=[1, 8, 8], num_classes=10))
    with p.writing("delete"):
        res = CliRunner().invoke(app, ["serve", "--root", str(tmp_path / "root"),
                                       "--port", str(free_port())])
    assert res.exit_code == 2 and "in use by `delete`" in res.output
