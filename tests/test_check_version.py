"""``certify.check_version`` checks a version without changing it: the file digests a
version does not record yet come back to the caller, not written into the version."""

from __future__ import annotations

import shutil

import pytest
from conftest import tiny_config

from clul_ray.sisa.driver.pipeline import Pipeline
from clul_ray.sisa.records.certify import check_version

pytestmark = pytest.mark.pure  # backend local: no Ray


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    p = Pipeline(str(tmp_path_factory.mktemp("check") / "root"))
    p.train(tiny_config(backend="local", epochs=1))
    return p


def test_check_version_leaves_the_version_as_it_was(trained):
    v = trained.state
    full = [list(s.checkpoint_sha256) for s in v.shards]
    for s in v.shards:  # a version written before file digests were recorded
        s.checkpoint_sha256 = []
    before = v.model_copy(deep=True)
    findings: list = []
    checked = {"shards": 0, "checkpoints": 0}
    digests = check_version(trained.store, v, lambda *a: findings.append(a), checked)
    assert findings == [] and checked == {"shards": 3, "checkpoints": 9}
    assert v == before, "check_version changed the version it was given"
    assert digests == {s.shard: full[i] for i, s in enumerate(v.shards)}


def test_a_commit_records_the_digests_its_version_did_not(trained, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(trained.store.root, root)
    p = Pipeline(str(root))
    raw = p.store.read_json("state.json")
    for s in raw["shards"]:  # a version written before file digests were recorded
        s.pop("checkpoint_sha256", None)
    p.store.write_json("state.json", raw)
    ids, shard, _ = p.store.read_index()
    assert p.delete([int(ids[shard == 1][0])])["version"] == 2
    assert all(len(s.checkpoint_sha256) == len(s.keys) and all(s.checkpoint_sha256)
               for s in Pipeline(str(root)).state.shards)
