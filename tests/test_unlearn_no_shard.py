"""An approximate (unlearn) request that affects no shard — its ids are all held-out test
rows — commits a version serving the same models, and a certificate."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_config

from clul_ray.sisa.decisions.controller import Kind, Stage
from clul_ray.sisa.decisions.plan import plan_deletion
from clul_ray.sisa.driver.pipeline import Pipeline

pytestmark = pytest.mark.pure  # backend local: no Ray


def test_an_unlearn_request_of_test_rows_only_commits_the_same_models(tmp_path):
    p = Pipeline(str(tmp_path / "root"))
    p.train(tiny_config(backend="local", epochs=1))
    before = p.state
    test_id = int(p.store.test_ids()[0])
    plan = plan_deletion(*p.store.read_index(), p.store.test_ids(), np.array([test_id]))
    assert plan.affected == {} and plan.train_ids == [] and plan.test_ids == [test_id]
    req = p.ledger.record(plan, Kind.UNLEARN, {"method": "neggrad", "params": {}, "seed": 0,
                                               "forget": "ids:test-rows"})
    assert p.resume() == [req.request_id]

    v = p.state
    assert (v.version, v.parent, v.operation, v.request_id) == (
        2, 1, "unlearn:neggrad", req.request_id)
    assert v.timings["unlearn_seconds"] == 0.0
    assert [(s.keys, s.model_sha256, s.artifact) for s in v.shards] == \
        [(s.keys, s.model_sha256, None) for s in before.shards]
    assert test_id not in p.store.test_ids()
    done = p.ledger.request(req.request_id)
    assert done.state == Stage.COMMITTED and done.result["edited"] == {}
    cert = p.store.read_json(f"certificates/{req.request_id}.json")
    assert cert["version"] == 2 and cert["affected"] == [] and cert["verification"]["ok"]
