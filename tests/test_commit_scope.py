"""A commit checks what its command changed (``certify.commit_scope``); every
``FULL_CHECK_EVERY``-th version and ``clul-ray verify`` check everything."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import tiny_config

from clul_ray.errors import ClulError
from clul_ray.sisa.driver.pipeline import Pipeline
from clul_ray.sisa.records import certify
from clul_ray.sisa.records.certificate import verify
from clul_ray.sisa.records.version import SliceResult

pytestmark = pytest.mark.pure  # backend local: no Ray


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("scope") / "root"
    Pipeline(str(root)).train(tiny_config(backend="local", epochs=1))
    return root


@pytest.fixture
def root(base, tmp_path):
    dst = tmp_path / "root"
    shutil.copytree(base, dst)
    return dst


def test_scope_is_what_changed_and_what_the_request_touched(base):
    v = Pipeline(str(base)).state
    assert certify.commit_scope(None, v, []) is None, "a first version: everything"
    w = v.model_copy(deep=True)
    w.version = v.version + 1
    assert certify.commit_scope(v, w, []) == frozenset()
    w.shards[2].model_sha256 = "0" * 64
    assert certify.commit_scope(v, w, [0]) == frozenset({0, 2})
    w.version = certify.FULL_CHECK_EVERY * 3
    assert certify.commit_scope(v, w, [0]) is None, "the periodic full check"


def test_a_deletion_is_certified_over_its_shards_and_every_served_file_by_digest(root):
    p = Pipeline(str(root))
    ids, shard, slc = p.store.read_index()
    out = p.delete([int(ids[(shard == 0) & (slc == 1)][0])])
    cert = p.store.read_json(f"certificates/{out['request_id']}.json")
    v = cert["verification"]
    assert v["ok"] and v["scope"] == {"shards": [0]}
    assert v["checked"]["shards"] == 1, "one shard's chain and partitions read"
    assert v["checked"]["checkpoints"] == 9, "every served checkpoint, by its file digest"
    assert v["checked"]["data_files"] < verify(p.store)["checked"]["data_files"]
    assert verify(p.store)["scope"] == "full"
    # a served checkpoint of a shard the next request does not touch, damaged: the commit
    # still refuses it (its digest), without parsing a checkpoint
    victim = next(s for s in p.state.shards if s.shard == 1)
    (root / victim.checkpoint_paths()[0]).write_bytes(b"not a checkpoint")
    with pytest.raises(ClulError, match="file digest"):
        p.delete([int(ids[(shard == 2) & (slc == 1)][0])])
    assert p.state.version == out["version"], "not committed"


def test_a_checkpoint_is_checked_by_the_digest_its_step_reported(root):
    p = Pipeline(str(root))
    v = p.state
    s = v.shards[0]
    last = len(s.keys) - 1
    good = SliceResult(0, last, s.keys[last], s.n_samples, 0.0, "n", s.model_sha256,
                       s.checkpoint_sha256[last])
    slices = p.config.partition.total_slices
    none = np.zeros(0, np.int64)
    found, _ = certify.commit_findings(p.store, v, none, slices, frozenset({0}), [good])
    assert found == []
    bad = SliceResult(**{**good.__dict__, "file_sha256": "f" * 64})
    found, _ = certify.commit_findings(p.store, v, none, slices, frozenset({0}), [bad])
    assert [f.kind for f in found] == [certify.FindingKind.BAD_CHECKPOINT]
    short = SliceResult(**{**good.__dict__, "n_samples": good.n_samples - 1})
    found, _ = certify.commit_findings(p.store, v, none, slices, frozenset({0}), [short])
    assert [f.kind for f in found] == [certify.FindingKind.SAMPLE_COUNT]
