"""Growing a SISA ensemble (``add``): only the new slice trains, deletions stay exact on a
grown ensemble, bad additions change nothing, and a crashed addition resumes.

Backend ``local`` (no Ray): the exactness checks compare model bytes, which do not depend on
the executor (``test_sisa_e2e`` checks in-process against Ray workers).
"""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import tiny_config

from clul_ray.data.sources import features, open_source
from clul_ray.errors import ClulError
from clul_ray.faults import Faults
from clul_ray.sisa.driver.pipeline import Pipeline
from clul_ray.sisa.records.checkpoint import load_shard_model
from clul_ray.sisa.records.version import read_version

pytestmark = pytest.mark.pure

DIGITS = next(open_source("digits").iter_tables())
IDS = DIGITS.column("id").to_numpy()
LABELS = DIGITS.column("label").to_numpy()
ADDED = IDS[IDS % 60 == 7]  # 30 new rows


def rows(path, keep) -> str:
    pq.write_table(DIGITS.filter(pa.array(np.isin(IDS, keep))), path)
    return f"parquet:{path}"


def cfg(data: str, **kw):
    return tiny_config(dataset=data, input_shape=[1, 8, 8], num_classes=10, backend="local",
                       epochs=2, **kw)


def shas(p: Pipeline) -> list[str]:
    return [s.model_sha256 for s in p.state.shards]


def tree(root) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """A root trained on digits without ADDED, then grown by ADDED (a copy per test)."""
    d = tmp_path_factory.mktemp("grow")
    base = np.setdiff1d(IDS, ADDED)
    p = Pipeline(str(d / "root"))
    first = p.train(cfg(rows(d / "base.parquet", base)))
    out = p.add(rows(d / "added.parquet", ADDED))
    return d, first, out


@pytest.fixture
def root(grown, tmp_path):
    d, _, _ = grown
    shutil.copytree(d / "root", tmp_path / "root")
    return tmp_path / "root"


def test_an_addition_trains_only_the_new_slice_of_each_shard(grown):
    d, first, out = grown
    p = Pipeline(str(d / "root"))
    assert out["operation"] == "add" and out["version"] == 2 and out["slices"] == 4
    assert out["new_slice"] == 3 and p.config.partition.added_slices == 1
    assert {s["retrained_from"] for s in out["per_shard"]} == {3}
    assert out["added"] + out["added_test"] == len(ADDED)
    assert sum(out["rows_per_shard"].values()) == out["added"]
    assert out["samples"] == first["samples"] + out["added"]
    assert out["test_samples"] == first["test_samples"] + out["added_test"]
    v1, v2 = (read_version(p.store, n) for n in (1, 2))
    for a, b in zip(v1.shards, v2.shards, strict=True):
        assert b.keys[:3] == a.keys, "the first slices keep their checkpoints"
    ids, shard, slc = p.store.read_index()
    assert set(slc[np.isin(ids, ADDED)].tolist()) == {3}
    assert np.isin(ADDED, np.concatenate([ids, p.store.test_ids()])).all()
    assert p.store.list_files("staging") == [], "the staged rows are released"
    assert p.status()["added_ids"] == len(ADDED)


def test_added_rows_land_in_the_shard_their_id_always_maps_to(grown, tmp_path):
    """Placement is a pure function of the id: the same shards as training on X ∪ A."""
    d, _, _ = grown
    grown_idx = dict(zip(*Pipeline(str(d / "root")).store.read_index()[:2], strict=True))
    whole = Pipeline(str(tmp_path / "whole"))
    whole.train(cfg(rows(tmp_path / "all.parquet", IDS)))
    ids, shard, _ = whole.store.read_index()
    assert all(grown_idx[i] == k for i, k in zip(ids.tolist(), shard.tolist(), strict=True))


def test_deletion_on_a_grown_ensemble_is_exact(root, tmp_path):
    """train X -> add A -> delete D  ==  train X \\ D -> add A \\ D, bit for bit, in the
    same layout; D empties one shard's appended slice (that shard then has no new rows)."""
    p = Pipeline(str(root))
    ids, shard, slc = p.store.read_index()
    new_in_0 = ids[(slc == 3) & (shard == 0)]
    new_in_1 = ids[(slc == 3) & (shard == 1)]
    old = [int(ids[(slc == 0) & (shard == 2)][0]), int(ids[(slc == 2) & (shard == 1)][4])]
    dele = sorted(new_in_0.tolist() + new_in_1[:1].tolist() + old)
    out = p.delete(dele)
    assert out["retrained"] == {"0": 3, "1": 2, "2": 0}

    ref = Pipeline(str(tmp_path / "ref"))
    base = np.setdiff1d(np.setdiff1d(IDS, ADDED), dele)
    ref.train(cfg(rows(tmp_path / "x.parquet", base)))
    ref.add(rows(tmp_path / "a.parquet", np.setdiff1d(ADDED, dele)))
    assert shas(p) == shas(ref)
    assert [s.keys for s in p.state.shards] == [s.keys for s in ref.state.shards]


def test_deleting_an_added_id_retrains_only_from_its_new_slice(root):
    p = Pipeline(str(root))
    ids, shard, slc = p.store.read_index()
    target = int(ids[(slc == 3) & (shard == 2)][0])
    before = shas(p)
    out = p.delete([target])
    assert out["retrained"] == {"2": 3}
    assert shas(p)[:2] == before[:2] and shas(p)[2] != before[2]
    again = p.status()
    assert again["deleted_ids"] == 1 and again["added_ids"] == len(ADDED)


@pytest.mark.parametrize("which, message", [
    ("present", "already in the root"),
    ("deleted", "were deleted from the root"),
    ("label", "outside the root's 8 classes"),
])
def test_bad_additions_are_refused_with_nothing_changed(tmp_path, which, message):
    base, extra = IDS[(IDS % 3 != 0) & (LABELS < 8)], IDS[(IDS % 3 == 0) & (LABELS < 8)]
    p = Pipeline(str(tmp_path / "root"))
    data = rows(tmp_path / "base.parquet", base)
    p.train(tiny_config(dataset=data, input_shape=[1, 8, 8], backend="local", epochs=1))
    assert p.config.data.num_classes == 8, "the class count is the data's unless declared"
    if which == "present":
        new = np.concatenate([extra[:5], base[:2]])
    elif which == "deleted":
        gone = int(p.store.read_index()[0][0])
        p.delete([gone])
        new = np.concatenate([extra[:5], [gone]])
    else:
        new = np.concatenate([extra[:5], IDS[LABELS == 9][:1]])
    before = tree(tmp_path / "root")
    with pytest.raises(ClulError, match=message):
        p.add(rows(tmp_path / "new.parquet", new))
    assert tree(tmp_path / "root") == before


def test_classes_that_arrive_later_need_room_declared_at_training(tmp_path):
    """The output layer never grows: a root declared with 10 classes, trained on 0..7,
    learns 8 and 9 from an addition."""
    early, late = IDS[LABELS < 8], IDS[LABELS >= 8]
    p = Pipeline(str(tmp_path / "root"))
    p.train(cfg(rows(tmp_path / "early.parquet", early), epochs_per_slice=12))
    out = p.add(rows(tmp_path / "late.parquet", late))
    assert out["added"] > 200
    t = DIGITS.filter(pa.array(np.isin(IDS, late)))
    model = load_shard_model(p.config, p.store, p.state.shard(0)).eval()
    with torch.no_grad():
        pred = model(torch.tensor(features(t))).argmax(1).numpy()
    assert (pred == t.column("label").to_numpy()).mean() > 0.5


@pytest.mark.parametrize("stage", ["data_added", "retrained"])
def test_a_crashed_addition_is_resumed_and_equals_an_uninterrupted_one(grown, tmp_path,
                                                                       stage):
    d, _, _ = grown
    p = Pipeline(str(tmp_path / "root"))
    p.train(cfg(rows(tmp_path / "base.parquet", np.setdiff1d(IDS, ADDED))))
    crashing = Pipeline(str(tmp_path / "root"), faults=Faults(crash_after=stage))
    with pytest.raises(RuntimeError, match="injected crash"):
        crashing.add(rows(tmp_path / "added.parquet", ADDED))
    assert Pipeline(str(tmp_path / "root")).status()["requests"]["pending"]
    Pipeline(str(tmp_path / "root")).resume()
    done = Pipeline(str(tmp_path / "root"))
    assert done.state.version == 2 and shas(done) == shas(Pipeline(str(d / "root")))
    assert done.store.list_files("staging") == []


def test_cli_add_records_lineage_and_refuses_bad_input_in_one_line(tmp_path):
    """`clul-ray add` on the lineage-recording pipeline: version runs train -> add ->
    delete with parents and the added ids' digest; an added id's history starts at the
    addition; a bad addition is one line, exit 2."""
    import json

    from typer.testing import CliRunner

    from clul_ray import Pipeline as Recorded
    from clul_ray.cli import app
    from clul_ray.lineage.tracking import TAG, Tracking

    root = tmp_path / "root"
    Recorded(str(root)).train(cfg(rows(tmp_path / "base.parquet", np.setdiff1d(IDS, ADDED))))
    runner = CliRunner()
    res = runner.invoke(app, ["add", "--root", str(root), "--dataset",
                              rows(tmp_path / "added.parquet", ADDED), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["operation"] == "add" and out["new_slice"] == 3
    ids, _, slc = Pipeline(str(root)).store.read_index()
    added = int(ids[slc == 3][0])
    Recorded(str(root)).delete([int(ids[slc == 0][0])])

    t = Tracking(Pipeline(str(root)).store)
    runs = t.version_runs()
    tags = [runs[n].data.tags for n in (1, 2, 3)]
    assert [g[f"{TAG}operation"] for g in tags] == ["train", "add", "delete"]
    assert [g.get(f"{TAG}parent_version") for g in tags] == [None, "1", "2"]
    assert tags[1][f"{TAG}added_ids"] == str(len(ADDED))
    assert f"{TAG}removed_ids" not in tags[1] and tags[2][f"{TAG}removed_ids"] == "1"
    assert tags[0].get(f"{TAG}tainted") == "true" and tags[1].get(f"{TAG}tainted") == "true"

    res = runner.invoke(app, ["lineage", "--root", str(root), "--sample-id", str(added),
                              "--json"])
    h = json.loads(res.stdout.strip().splitlines()[-1])
    assert h["trained_versions"] == [2, 3] and h["added_by"]["version"] == 2
    res = runner.invoke(app, ["verify", "--root", str(root), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout.strip().splitlines()[-1])["ok"]

    before = tree(root)
    res = runner.invoke(app, ["add", "--root", str(root), "--dataset",
                              rows(tmp_path / "again.parquet", ADDED[:3])])
    assert res.exit_code == 2 and "already in the root" in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert tree(root) == before
