"""Approximate unlearning on a SISA root: the fast path, its record, and healing it."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import tiny_config
from test_sisa_e2e import shas, snapshot

from clul_ray import Pipeline
from clul_ray.errors import ClulError
from clul_ray.sisa.compute.evaluation import evaluate
from clul_ray.sisa.compute.site import Site, Where
from clul_ray.sisa.records.predcache import read_cached


def test_unlearn_edits_only_affected_shards_and_heals_exactly(trained_root, deletion_case,
                                                               tmp_path):
    root, before = trained_root
    d, ref = deletion_case
    ids_file = tmp_path / "forget.txt"
    ids_file.write_text("\n".join(map(str, d)))
    p = Pipeline(str(root))
    out = p.unlearn("neggrad", f"ids:{ids_file}", {"epochs": 2}, seed=0)
    assert out["operation"] == "unlearn:neggrad" and out["version"] == 2
    assert out["affected"] == {"0": 1, "2": 2} and out["deleted"] == len(d)
    approx = {s["shard"]: s["approximate"] for s in out["per_shard"]}
    assert approx == {0: True, 1: False, 2: True}
    assert shas(out)[1] == shas(before)[1], "an unaffected shard is untouched"
    assert shas(out)[0] != shas(before)[0]
    assert 0.0 <= out["ensemble_accuracy"] <= 1.0
    v = p.state  # the edits stored their models' test predictions; a fresh prediction agrees
    for s in v.shards:
        if s.approximate:
            assert read_cached(p.store, s.shard, s.model_sha256, 10) is not None, s.shard
    fresh = evaluate(p.config, p.store, v, Site(Where.PROCESS), lambda *a: None, cache=False)
    assert fresh.ensemble_accuracy == out["ensemble_accuracy"]
    assert fresh.shard_accuracy == v.metrics.shard_accuracy
    for f in root.joinpath("data").rglob("*.parquet"):  # the rows left storage
        assert not np.isin(pq.read_table(f, columns=["id"]).column("id").to_numpy(), d).any()
    assert Pipeline(str(root)).delete(d)["already_deleted"] == sorted(d)
    healed = Pipeline(str(root)).train(tiny_config())
    assert shas(healed) == shas(ref), "retraining the discarded slices makes it exact again"
    assert not any(s["approximate"] for s in healed["per_shard"])
    assert not list(root.joinpath("unlearned").rglob("*.pt")), "edited models are dropped"


def test_unlearn_refuses_bad_input_and_changes_nothing(trained_root):
    root, _ = trained_root
    before = snapshot(root)
    for method, forget, params, message in [
        ("forgetful", "class:3", {}, "unknown"),
        ("neggrad", "class:42", {}, "outside"),
        ("neggrad", "random:2", {}, "fraction"),
        ("neggrad", "class:3", {"lr": -1}, "lr"),
    ]:
        with pytest.raises(ClulError, match=message):
            Pipeline(str(root)).unlearn(method, forget, params)
    assert snapshot(root) == before
