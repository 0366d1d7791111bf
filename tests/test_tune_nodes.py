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


def test_s3_out_copies_the_sweep_files_under_the_bucket(s3_url):
    import boto3

    got = prepare_out(f"{s3_url}/t1", alive_nodes=3, shared_storage=False)
    assert got.storage_path == f"{s3_url}/t1/ray_results"  # Tune writes there
    (got.local / "sweep.json").write_text("{}")
    result = got.finish({"files": {"json": str(got.local / "sweep.json")}})
    assert result["files"]["json"] == f"{s3_url}/t1/sweep.json"
    bucket, prefix = s3_url[len("s3://"):].split("/", 1)
    body = boto3.client("s3").get_object(Bucket=bucket, Key=f"{prefix}/t1/sweep.json")
    assert body["Body"].read() == b"{}"


def test_s3_out_to_a_missing_bucket_is_refused_before_the_sweep(s3_url):
    with pytest.raises(ClulError, match="--out s3://no-such-bucket/t: bucket no-such-bucket "
                                        "does not exist"):
        prepare_out("s3://no-such-bucket/t", alive_nodes=1, shared_storage=False)
