"""Where a sweep's results land on a cluster (:mod:`clul_ray.tune.nodes`), without Ray: a
local ``--out`` on a multi-node cluster is refused unless declared shared, and a URI
``--out`` stages the sweep's files and copies them under it."""

from __future__ import annotations

import pytest

from clul_ray.errors import ClulError
from clul_ray.tune.nodes import SweepOut, node_counts, prepare_out


def test_local_out_on_two_nodes_is_refused_unless_shared(tmp_path):
    out = tmp_path / "sweep"
    with pytest.raises(ClulError, match="is a local path but the Ray cluster has 2 nodes"):
        prepare_out(out, alive_nodes=2, shared_storage=False)
    assert not out.exists()  # refused before anything is written
    got = prepare_out(out, alive_nodes=2, shared_storage=True)
    assert got.local == out and out.is_dir() and not got.remote
    assert got.storage_path == str((out / "ray_results").resolve())
    one = prepare_out(tmp_path / "one", alive_nodes=1, shared_storage=False)
    assert one.local.is_dir()


def test_uri_out_stages_files_and_copies_them_under_the_uri(tmp_path):
    target = f"file://{tmp_path}/remote/sweep"
    got = prepare_out(target, alive_nodes=2, shared_storage=False)  # a URI needs no flag
    assert got.remote and got.storage_path == f"{target}/ray_results"
    assert not str(got.local).startswith(str(tmp_path))  # a staging folder
    (got.local / "trials.csv").write_text("method\n")
    (got.local / "sub").mkdir()
    (got.local / "sub" / "x.txt").write_text("x")
    result = got.finish({"out": str(got.local),
                         "files": {"trials_csv": str(got.local / "trials.csv")}})
    assert result["out"] == target
    assert result["files"] == {"trials_csv": f"{target}/trials.csv"}
    assert (tmp_path / "remote" / "sweep" / "trials.csv").read_text() == "method\n"
    assert (tmp_path / "remote" / "sweep" / "sub" / "x.txt").read_text() == "x"
    assert not got.local.exists()  # the staging folder is gone


def test_local_out_finish_changes_nothing(tmp_path):
    got = SweepOut(str(tmp_path), tmp_path, str(tmp_path / "ray_results"))
    r = {"out": str(tmp_path), "files": {}}
    assert got.finish(r) is r


def test_trials_per_node():
    rows = [{"node_id": "a"}, {"node_id": "b"}, {"node_id": "a"}, {"node_id": None}]
    assert node_counts(rows) == {"a": 2, "b": 1}


@pytest.fixture(scope="module")
def s3_endpoint():
    """A local S3-compatible server (moto's standalone server) with one bucket."""
    import os
    import shutil
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    boto3 = pytest.importorskip("boto3")
    if server is None:
        pytest.skip("moto[server] is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for _ in range(100):
            try:
                boto3.client("s3").create_bucket(Bucket="sweeps")
                break
            except Exception:  # noqa: BLE001 - the server is still starting
                time.sleep(0.1)
        yield boto3.client("s3")
    finally:
        proc.kill()
        proc.wait()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_s3_out_copies_the_sweep_files_under_the_bucket(s3_endpoint):
    got = prepare_out("s3://sweeps/clul/t1", alive_nodes=3, shared_storage=False)
    assert got.storage_path == "s3://sweeps/clul/t1/ray_results"  # Tune writes there
    (got.local / "sweep.json").write_text("{}")
    result = got.finish({"files": {"json": str(got.local / "sweep.json")}})
    assert result["files"]["json"] == "s3://sweeps/clul/t1/sweep.json"
    body = s3_endpoint.get_object(Bucket="sweeps", Key="clul/t1/sweep.json")["Body"].read()
    assert body == b"{}"


def test_s3_out_to_a_missing_bucket_is_refused_before_the_sweep(s3_endpoint):
    with pytest.raises(ClulError, match="--out s3://no-such-bucket/t: bucket no-such-bucket "
                                        "does not exist"):
        prepare_out("s3://no-such-bucket/t", alive_nodes=1, shared_storage=False)
