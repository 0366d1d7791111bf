"""The deletion service over an ``s3://`` root (the local S3 server): it predicts, takes a
deletion over HTTP and commits it to the bucket."""

from __future__ import annotations

import time

import pytest
from conftest import tiny_config
from s3server import BUCKET
from test_serve import RAW, free_port, poll

from clul_ray import Pipeline
from clul_ray.serve.client import call
from clul_ray.sisa.records.version import read_current
from clul_ray.storage.store import Store

pytestmark = pytest.mark.serve


@pytest.fixture(scope="module")
def served_s3(s3_server, ray_session):
    from ray import serve

    from clul_ray.serve.app import start

    if isinstance(s3_server, str):
        pytest.skip(s3_server)
    root = f"s3://{BUCKET}/serve-{time.time_ns()}"
    Pipeline(root).train(tiny_config(epochs=1))
    port = free_port()
    start(root, port=port)
    yield root, f"http://127.0.0.1:{port}"
    serve.shutdown()


def test_serve_on_s3_predicts_deletes_and_commits(served_s3):
    root, url = served_s3
    code, first = call(f"{url}/predict", "POST", {"rows": RAW.tolist()})
    assert code == 200 and first["version"] == 1 and len(first["pred"]) == len(RAW)
    ids, shard, _ = Store(root).read_index()
    gone = [int(ids[shard == 0][0]), int(ids[shard == 1][0])]
    code, ack = call(f"{url}/delete", "POST", {"ids": gone})
    assert code == 202 and ack["excluded"] == [0, 1]
    st = poll(url, ack["request_id"])
    assert st["state"] == "committed"
    assert read_current(Store(root)).version == 2  # committed to the bucket
    assert not set(gone) & set(Store(root).read_index()[0].tolist())
    code, after = call(f"{url}/predict", "POST", {"rows": RAW.tolist()})
    assert code == 200 and after["version"] == 2
