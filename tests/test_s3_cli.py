"""Every command on an ``s3://`` root (the local S3 server of ``tests/s3server.py``), in
process as a user runs it; a deletion there equals the same deletion on a local folder, bit
for bit; a missing bucket, refused credentials or an endpoint that is down are one line,
exit 2, before anything is written."""

from __future__ import annotations

import json
import time

import pytest
from s3server import BUCKET, env_set, free_port
from test_grow import ADDED, IDS, rows
from typer.testing import CliRunner

from clul_ray.cli import app
from clul_ray.storage import s3
from clul_ray.storage.store import Store

runner = CliRunner()
TRAIN = ["--shards", "2", "--slices", "2", "--epochs", "2",
         "--model-arg", "hidden=16", "--json"]


def cli(*args, code: int = 0) -> dict | str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == code, res.output
    if code or "--json" not in args:
        return res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def shas(out: dict) -> dict:
    return {s["shard"]: s["model_sha256"] for s in out["per_shard"]}


@pytest.fixture(scope="module")
def roots(s3_server, ray_session, tmp_path_factory):
    """The same training (digits without ADDED) on an s3:// root and on a local folder,
    lineage recorded in a SQLite MLflow store."""
    if isinstance(s3_server, str):
        pytest.skip(s3_server)
    d = tmp_path_factory.mktemp("s3cli")
    data = rows(d / "base.parquet", [i for i in IDS if i not in set(ADDED)])
    remote, local = f"s3://{BUCKET}/cli-{time.time_ns()}", str(d / "local")
    with env_set({"MLFLOW_TRACKING_URI": f"sqlite:///{d}/mlflow.db"}):
        outs = [cli("train", "--root", r, "--dataset", data, *TRAIN) for r in (remote, local)]
        yield remote, local, outs, d


def test_train_and_delete_on_s3_equal_a_local_root(roots):
    remote, local, (t_remote, t_local), _ = roots
    assert t_remote["version"] == 1 and shas(t_remote) == shas(t_local)
    ids, _, _ = Store(remote).read_index()
    gone = ",".join(str(int(i)) for i in ids[[0, 7, 40]])
    d_remote = cli("delete", "--root", remote, "--ids", gone, "--json")
    d_local = cli("delete", "--root", local, "--ids", gone, "--json")
    assert d_remote["version"] == 2 and d_remote["deleted"] == 3
    assert d_remote["affected"] == d_local["affected"]
    assert shas(d_remote) == shas(d_local), "every shard model bit for bit the local one"
    assert d_remote["ensemble_accuracy"] == d_local["ensemble_accuracy"]
    assert not Store(remote).exists("lock.json")


def test_read_commands_on_s3(roots):
    remote, _, _, _ = roots
    st = cli("status", "--root", remote, "--json")
    assert st["version"] >= 1
    ev = cli("evaluate", "--root", remote, "--json")
    assert 0 <= ev["ensemble_accuracy"] <= 1
    ver = cli("verify", "--root", remote, "--json")
    assert ver["ok"] and ver["findings"] == [] and ver["checked"]["checkpoints"] > 0
    lin = cli("lineage", "--root", remote, "--json")
    assert [v["version"] for v in lin["versions"]][:1] == [1]
    some = int(Store(remote).read_index()[0][0])
    seen = cli("lineage", "--root", remote, "--sample-id", some, "--json")
    assert 1 in seen["trained_versions"]


def test_add_unlearn_repair_on_s3(roots):
    remote, _, _, d = roots
    v0 = cli("status", "--root", remote, "--json")["version"]
    added = cli("add", "--root", remote, "--dataset", rows(d / "added.parquet", ADDED),
                "--json")
    assert added["version"] == v0 + 1 and added["samples"] > 0
    un = cli("unlearn", "--root", remote, "--method", "finetune", "--forget", "class:1",
             "--param", "epochs=1", "--json")
    assert un["version"] == v0 + 2
    rep = cli("repair", "--root", remote, "--json")
    assert rep is not None
    assert cli("verify", "--root", remote, "--json")["ok"]


def test_lineage_of_s3_root_without_tracking_uri_is_one_line(roots, monkeypatch):
    remote = roots[0]
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    out = cli("lineage", "--root", remote)
    assert f"MLflow: {remote} is not a local folder: set MLFLOW_TRACKING_URI" in \
        " ".join(out.split())


def _objects() -> list[str]:
    r = s3.client().list_objects_v2(Bucket=BUCKET)
    return sorted(o["Key"] for o in r.get("Contents", []))


COMMANDS = [["train", "--dataset", "synthetic:100"], ["delete", "--ids", "1"], ["status"],
            ["evaluate"], ["verify"], ["lineage"], ["repair"], ["unlock"],
            ["unlearn", "--method", "finetune", "--forget", "class:1"]]


@pytest.mark.pure
@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c[0])
def test_missing_bucket_is_one_line_exit_2(s3_url, cmd):
    root = "s3://no-such-bucket-clul/x"
    out = cli(cmd[0], "--root", root, *cmd[1:], code=2)
    assert out.strip() == f"error: {root}: bucket no-such-bucket-clul does not exist"
    names = [b["Name"] for b in s3.client().list_buckets()["Buckets"]]
    assert "no-such-bucket-clul" not in names  # nothing created


@pytest.mark.pure
@pytest.mark.parametrize("cmd", COMMANDS[:3], ids=lambda c: c[0])
def test_endpoint_down_fails_fast_in_one_line(s3_url, cmd):
    dead = f"http://127.0.0.1:{free_port()}"
    with env_set({"AWS_ENDPOINT_URL": dead}):
        t = time.monotonic()
        out = cli(cmd[0], "--root", s3_url, *cmd[1:], code=2)
        took = time.monotonic() - t
    assert out.strip() == f"error: {s3_url}: cannot reach the S3 endpoint {dead} " \
                          "(EndpointConnectionError)"
    assert took < 15


@pytest.mark.pure
@pytest.mark.parametrize("cmd", COMMANDS[:3], ids=lambda c: c[0])
def test_refused_credentials_are_one_line_and_nothing_is_written(s3_url, s3_server, cmd):
    before = _objects()
    s3_server.require_auth(True)
    try:
        out = cli(cmd[0], "--root", s3_url, *cmd[1:], code=2)
    finally:
        s3_server.require_auth(False)
    assert out.strip().startswith(f"error: {s3_url}: the S3 endpoint refused the credentials")
    assert "\n" not in out.strip()
    assert _objects() == before
