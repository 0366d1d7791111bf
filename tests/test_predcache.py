"""The cache of per-shard test predictions (``sisa/predcache.py``): reused for the kept
shards, the same metrics as an uncached evaluation, purged of deleted test ids, dropped
with superseded models, scanned for residue, and a miss when corrupt. Backend local (no
Ray) except the last test."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import tiny_config

from clul_ray.sisa.compute import evaluation, site
from clul_ray.sisa.driver.pipeline import Pipeline
from clul_ray.sisa.records.certificate import verify
from clul_ray.sisa.records.predcache import (
    ShardPredictions,
    align,
    merge,
    plan_predictions,
    read_cached,
    score_probs,
    to_table,
)
from clul_ray.sisa.records.rootconfig import read_config
from clul_ray.sisa.records.version import read_current
from clul_ray.storage import layout

IN_PROCESS, ON_RAY = site.Site(site.Where.PROCESS), site.Site(site.Where.RAY)

LOCAL = dict(backend="local", epochs=1)


@pytest.mark.pure
def test_plan_and_merge_are_pure_and_align_by_id():
    ids = np.array([5, 3, 9])
    p = ShardPredictions(np.array([9, 3, 5, 7]), np.arange(8, dtype=np.float32).reshape(4, 2))
    assert align(p, ids).tolist() == [[4, 5], [2, 3], [0, 1]]
    assert align(p, np.array([3, 4])) is None and align(p, np.array([10])) is None
    short = ShardPredictions(np.array([3]), np.ones((1, 2), np.float32))
    assert plan_predictions([0, 1, 2], {0: p, 1: short}, ids) == [1, 2]
    fresh = {1: ShardPredictions(ids[::-1], np.zeros((3, 2), np.float32))}
    probs = merge([0, 1], {0: p, 1: short}, fresh, ids)
    assert probs.shape == (2, 3, 2) and (probs[1] == 0).all()
    m = score_probs(np.array([1, 1, 0]), probs, [0, 1], "mean")
    assert m.test_samples == 3 and m.shard_accuracy == {"0": 2 / 3, "1": 1 / 3}
    # the ensemble predicts class 1 for all three rows: class 0 gets P = R = 0, class 1
    # P 2/3, R 1, F1 4/5; macro P 1/3, R 1/2, F1 2/5
    assert m.ensemble_accuracy == pytest.approx(2 / 3)
    assert (m.ensemble_precision, m.ensemble_recall, m.ensemble_f1) == pytest.approx(
        (1 / 3, 1 / 2, 2 / 5))


@pytest.fixture(scope="module")
def local_base(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache") / "root"
    Pipeline(str(root)).train(tiny_config(**LOCAL))
    return root


@pytest.fixture
def p(local_base, tmp_path):
    shutil.copytree(local_base, tmp_path / "root")
    return Pipeline(str(tmp_path / "root"))


@pytest.fixture
def predicted(monkeypatch):
    """The shards each evaluation predicts (instead of reading their cached predictions)."""
    calls: list[list[int]] = []
    real = evaluation.predict_shards

    def counting(cfg, store, version, shards, ray_data):
        calls.append(list(shards))
        return real(cfg, store, version, shards, ray_data)

    monkeypatch.setattr(evaluation, "predict_shards", counting)
    return calls


def cache_paths(p):
    return set(p.store.list_files(layout.PREDICTIONS))


def uncached(p, method):
    cfg = read_config(p.store)
    cfg = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"aggregation": method})})
    v = read_current(p.store)
    return (evaluation.evaluate(cfg, p.store, v, IN_PROCESS, print, cache=False),
            evaluation.evaluate(cfg, p.store, v, IN_PROCESS, print))


@pytest.mark.pure
def test_a_deletion_predicts_only_the_retrained_shard_with_identical_metrics(p, predicted):
    v1 = read_current(p.store)
    assert cache_paths(p) == {layout.prediction_path(s.shard, s.model_sha256)
                              for s in v1.shards}, "the training's commit filled the cache"
    ids, shard, _ = p.store.read_index()
    out = p.delete([int(ids[shard == 1][0])])
    assert predicted == [[1]], "the kept shards' predictions come from the cache"
    v2 = read_current(p.store)
    assert v2.metrics.ensemble_accuracy == out["ensemble_accuracy"]
    assert layout.prediction_path(1, v1.shard(1).model_sha256) not in cache_paths(p), \
        "the superseded model's predictions are deleted at commit"
    assert cache_paths(p) == {layout.prediction_path(s.shard, s.model_sha256)
                              for s in v2.shards}
    predicted.clear()
    for method in ("vote", "mean"):
        fresh, cached = uncached(p, method)
        assert fresh == cached and fresh.test_samples > 0, method
        if method == read_config(p.store).serve.aggregation:
            assert fresh == v2.metrics
    assert predicted == [[0, 1, 2], [0, 1, 2]], "cache=False predicts all; cached, none"


@pytest.mark.pure
def test_a_test_id_deletion_purges_the_cache_and_retrains_nothing(p, predicted):
    test_id = int(p.store.test_ids()[0])
    before = read_current(p.store).metrics.test_samples
    p.delete([test_id])
    assert predicted == [], "no shard retrained: every prediction is cached"
    assert read_current(p.store).metrics.test_samples == before - 1
    for f in cache_paths(p):
        assert test_id not in p.store.read_parquet(f, ["id"]).column("id").to_numpy()
    assert verify(p.store)["ok"]


@pytest.mark.pure
def test_a_corrupt_or_altered_cache_file_is_a_miss_never_an_error(p, predicted):
    v = read_current(p.store)
    cfg = read_config(p.store)
    f0 = p.store.path(layout.prediction_path(0, v.shard(0).model_sha256))
    with open(f0, "wb") as fh:
        fh.write(b"PAR1 garbage")
    rel2 = layout.prediction_path(2, v.shard(2).model_sha256)
    t = p.store.read_parquet(rel2)
    pr = read_cached(p.store, 2, v.shard(2).model_sha256, cfg.data.num_classes)
    pr.proba = pr.proba.copy()  # (read-only: the cache's arrays are shared)
    pr.proba[:, 0] += 5.0  # a skewed file that still parses: its content digest differs
    skewed = to_table(pr, v.shard(2).model_sha256).replace_schema_metadata(t.schema.metadata)
    p.store.write_table(rel2, skewed)
    m = evaluation.evaluate(cfg, p.store, v, IN_PROCESS, print, write_cache=True)
    assert predicted == [[0, 2]] and m == v.metrics
    assert read_cached(p.store, 0, v.shard(0).model_sha256, cfg.data.num_classes) is not None
    predicted.clear()
    assert evaluation.evaluate(cfg, p.store, v, IN_PROCESS, print) == v.metrics
    assert predicted == [], "rewritten by the writer's evaluation"


@pytest.mark.pure
def test_the_scan_names_a_deleted_id_planted_in_the_cache(p):
    test_id = int(p.store.test_ids()[0])
    v = read_current(p.store)
    rel = layout.prediction_path(1, v.shard(1).model_sha256)
    kept = p.store.read_parquet(rel)
    p.delete([test_id])
    assert verify(p.store)["ok"]
    p.store.write_table(rel, kept)  # the file as it was before the deletion
    out = verify(p.store)
    assert not out["ok"] and out["checked"]["cache_files"] == 3
    (f,) = [f for f in out["findings"] if f["kind"] == "cache"]
    assert f["path"] == rel and f["ids"] == [test_id]
    p.store.write_table(layout.prediction_path(1, "0" * 64), kept.slice(0, 0))
    assert any(f["kind"] == "stale_cache" for f in verify(p.store)["findings"])


def test_ray_data_predicts_only_the_missing_shards(p, predicted, monkeypatch):
    """On a Ray backend above the in-process threshold, the missing shards go through Ray
    Data (restricted to them) and the metrics equal the in-process uncached ones."""
    monkeypatch.setattr(site, "IN_PROCESS_MAX_PREDICTIONS", 0)
    v = read_current(p.store)
    cfg = read_config(p.store)
    p.store.delete(layout.prediction_path(1, v.shard(1).model_sha256))
    m = evaluation.evaluate(cfg, p.store, v, ON_RAY, print, write_cache=True)
    assert predicted == [[1]] and m == v.metrics
    assert read_cached(p.store, 1, v.shard(1).model_sha256, cfg.data.num_classes) is not None


@pytest.mark.pure
def test_an_addition_predicts_only_the_shards_that_got_rows(p, predicted, tmp_path):
    """Rows added to one shard: the other shards' new (empty) slice keeps their models, so
    their predictions come from the cache."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clul_ray.data.partition import assign, is_test
    from clul_ray.data.sources import open_source

    part = read_config(p.store).partition
    cand = np.arange(10_000, 12_000, dtype=np.int64)
    shard, _ = assign(part.seed, cand, part.shards, part.slices)
    new = cand[(shard == 0) & ~is_test(part.seed, cand, part.test_fraction)][:5]
    t = next(open_source("digits").iter_tables()).slice(0, 5)
    pq.write_table(t.set_column(0, "id", pa.array(new)), tmp_path / "new.parquet")
    v1 = read_current(p.store)
    p.add(f"parquet:{tmp_path / 'new.parquet'}")
    v2 = read_current(p.store)
    assert [s.shard for s in v2.shards
            if s.model_sha256 != v1.shard(s.shard).model_sha256] == [0]
    assert predicted == [[0]], "only the shard that got rows predicts"
