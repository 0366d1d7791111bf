"""Backend ``local``: partitioning, training, deletion and evaluation in this process —
no Ray started; and observers of commits, whose failures never undo a commit."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import tiny_config

from clul_ray.sisa.driver.pipeline import ObserverWarning, Pipeline

pytestmark = pytest.mark.pure


class Recorder:
    def __init__(self, fail: bool = False):
        self.fail, self.versions, self.requests = fail, [], []

    def version_committed(self, store, cfg, version):
        self.versions.append((version.version, version.operation))
        if self.fail:
            raise OSError("tracking server unreachable")

    def request_committed(self, store, request):
        self.requests.append((request.request_id, request.state.value))


def test_observers_hear_each_commit_and_their_failures_only_warn(tmp_path):
    seen, broken = Recorder(), Recorder(fail=True)
    p = Pipeline(str(tmp_path / "root"), observers=[broken, seen])
    with pytest.warns(ObserverWarning, match="tracking server unreachable"):
        p.train(tiny_config(backend="local", epochs=1))
    ids, shard, _ = p.store.read_index()
    with pytest.warns(ObserverWarning):
        out = p.delete([int(ids[shard == 1][0])])
    assert out["version"] == 2 and p.status()["requests"]["pending"] == []
    assert seen.versions == [(1, "train"), (2, "delete")]
    assert seen.requests == [(out["request_id"], "committed")]
    assert broken.versions == seen.versions


def test_backend_local_starts_no_ray(tmp_path):
    code = f"""
import sys
sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r})
from conftest import tiny_config
from clul_ray.sisa.driver.pipeline import Pipeline
p = Pipeline({str(tmp_path / 'root')!r})
p.train(tiny_config(backend='local', epochs=1))
ids, shard, _ = p.store.read_index()
out = p.delete([int(ids[0])])
assert out['version'] == 2 and out['ensemble_accuracy'] > 0.3, out
p.evaluate()
import ray
assert not ray.is_initialized(), 'Ray was started'
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
