"""``clul-ray repair`` on roots a crash or a hand left in a mixed state: it finishes the
pending requests before it checks what remains, acts on each finding by its kind (never by
its text), and what it leaves equals a fresh training without the deleted ids (backend
local: no Ray)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pytest
from conftest import digits_parquet, tiny_config
from typer.testing import CliRunner

from clul_ray.cli import app
from clul_ray.faults import Faults
from clul_ray.sisa.driver.pipeline import Pipeline
from clul_ray.sisa.records.version import read_current
from clul_ray.storage import layout
from clul_ray.storage.store import Store

pytestmark = pytest.mark.pure
runner = CliRunner()


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """The model digests of a fresh training on digits without the given ids (memoized)."""
    done: dict[tuple[int, ...], dict[int, str]] = {}

    def train_without(ids) -> dict[int, str]:
        key = tuple(sorted(int(i) for i in ids))
        if key not in done:
            base = tmp_path_factory.mktemp("fresh")
            data = digits_parquet(base / "digits.parquet", key)
            out = Pipeline(str(base / "root")).train(tiny_config(
                backend="local", epochs=2, dataset=data, input_shape=[1, 8, 8],
                num_classes=10))
            done[key] = {s["shard"]: s["model_sha256"] for s in out["per_shard"]}
        return done[key]

    return train_without


def ids_of(root, shard, slc):
    ids, sh, sl = Pipeline(str(root)).store.read_index()
    return sorted(int(i) for i in ids[(sh == shard) & (sl == slc)])


def models(root) -> dict[int, str]:
    return {s.shard: s.model_sha256 for s in read_current(Pipeline(str(root)).store).shards}


def snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def repair_json(root) -> dict:
    res = runner.invoke(app, ["repair", "--root", str(root), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def crash_inside_remove_rows(root, monkeypatch, ids):
    """A deletion killed inside RemoveRows: the partition files are rewritten without the
    ids, the index still lists them, the ledger still says `planned`."""
    real = Store.rewrite_index

    def killed(self, *a, **kw):
        monkeypatch.setattr(Store, "rewrite_index", real)
        raise RuntimeError("killed while rewriting the index")

    monkeypatch.setattr(Store, "rewrite_index", killed)
    with pytest.raises(RuntimeError, match="killed while rewriting the index"):
        Pipeline(str(root)).delete(ids)
    (req,) = Pipeline(str(root)).ledger.pending()
    assert req.state == "planned"
    assert set(ids) <= set(Pipeline(str(root)).store.read_index()[0].tolist())


def test_repair_finishes_a_deletion_killed_inside_remove_rows(root, monkeypatch, fresh):
    d = [ids_of(root, 0, 1)[0], ids_of(root, 2, 2)[1]]
    crash_inside_remove_rows(root, monkeypatch, d)
    out = repair_json(root)
    assert out["version"] == 2 and any("finished request" in a for a in out["actions"]), out
    assert models(root) == fresh(d), "the models of a fresh training without the ids"
    st = Pipeline(str(root)).status()
    assert st["requests"] == {"committed": 1, "pending": []} and st["problems"] == []
    assert runner.invoke(app, ["verify", "--root", str(root)]).exit_code == 0


def test_repair_rebuilds_a_garbage_index_then_finishes_the_killed_deletion(root, monkeypatch,
                                                                           fresh):
    """The index is rebuilt first (finishing the request reads it), then the request."""
    d = [ids_of(root, 0, 1)[0], ids_of(root, 2, 2)[1]]
    crash_inside_remove_rows(root, monkeypatch, d)
    for f in (root / "index").glob("*.parquet"):
        f.write_bytes(b"garbage")
    out = repair_json(root)
    assert "rebuilt the index" in out["actions"][0], out
    assert out["version"] == 2 and models(root) == fresh(d)
    assert sorted(set(ids_of(root, 0, 1)) & set(d)) == []
    assert runner.invoke(app, ["verify", "--root", str(root)]).exit_code == 0


def test_repair_trains_once_for_a_pending_deletion_and_damaged_checkpoints(root, fresh,
                                                                          monkeypatch):
    """A damaged checkpoint of an unaffected shard beside a pending deletion: discarded,
    then retrained by the request's own retraining, one version, never trained twice."""
    d = [ids_of(root, 0, 1)[0]]
    pipe = Pipeline(str(root), faults=Faults(crash_after="data_removed"))
    with pytest.raises(RuntimeError, match="injected crash"):
        pipe.delete(d)
    bad = next(root.glob("checkpoints/shard=1/slice=1/*.pt"))
    bad.write_bytes(bad.read_bytes()[:100])
    calls = []
    real = Pipeline.train_shards

    def counted(self, cfg, shards, timings=None):
        results, starts = real(self, cfg, shards, timings)
        calls.append(starts)
        return results, starts

    monkeypatch.setattr(Pipeline, "train_shards", counted)
    out = repair_json(root)
    assert calls == [{0: 1, 1: 1}], f"one training, of shard 0 from slice 1 and 1: {calls}"
    assert any(bad.name in a for a in out["actions"]), out
    v = read_current(Pipeline(str(root)).store)
    assert v.version == 2 and v.operation == "delete", "one version for the request"
    assert models(root) == fresh(d)
    assert runner.invoke(app, ["verify", "--root", str(root)]).exit_code == 0


def plant(root, shard, slc, rows: pa.Table, name="restored.parquet"):
    Store(str(root)).write_table(f"{layout.slice_dir(shard, slc)}/{name}", rows)


def drop(root, shard, slc, ids):
    store = Store(str(root))
    assert store.remove_rows(layout.slice_dir(shard, slc), np.asarray(ids, np.int64))


def test_a_slice_with_lost_and_extra_rows_reports_both_sets(root):
    """Both sets are findings of their own, each with its ids; repair refuses the lost ones
    by name and changes nothing."""
    x = ids_of(root, 0, 1)[2]  # lost: the index lists it, the files do not
    y = ids_of(root, 0, 2)[0]  # extra: in the files of slice 1, the index says slice 2
    row = Store(str(root)).read_slice(0, 2).filter(pa.array(
        Store(str(root)).slice_ids(0, 2) == y))
    drop(root, 0, 1, [x])
    plant(root, 0, 1, row)
    res = runner.invoke(app, ["verify", "--root", str(root), "--json"])
    assert res.exit_code == 1
    found = [f for f in json.loads(res.stdout.strip().splitlines()[-1])["findings"]
             if f["kind"] == "data" and f["path"] == layout.slice_dir(0, 1)]
    assert sorted((f["count"], tuple(f["ids"])) for f in found) == sorted([(1, (x,)), (1, (y,))])
    assert any("missing from its files" in f["message"] and f["ids"] == [x] for f in found)
    assert any("not in the index" in f["message"] and f["ids"] == [y] for f in found)
    before = snapshot(root)
    res = runner.invoke(app, ["repair", "--root", str(root)])
    assert res.exit_code == 2 and "shard=0/slice=1" in res.output and str(x) in res.output
    assert "lost" in res.output and snapshot(root) == before, res.output


def test_repair_removes_extra_deleted_rows_beside_rows_a_killed_deletion_removed(
        root, monkeypatch, fresh):
    """One slice: rows of an already deleted id restored from a backup (extra) and rows a
    deletion killed inside RemoveRows already removed (lost, pending). The extra rows are
    removed, the request finished: a fresh training without either."""
    e = ids_of(root, 0, 1)[0]
    row = Store(str(root)).read_slice(0, 1).filter(pa.array(
        Store(str(root)).slice_ids(0, 1) == e))
    Pipeline(str(root)).delete([e])
    d = [ids_of(root, 0, 1)[3]]
    crash_inside_remove_rows(root, monkeypatch, d)
    plant(root, 0, 1, row)  # a backup restored after the deletion
    out = repair_json(root)
    assert any(f"removed 1 rows of deleted ids from {layout.slice_dir(0, 1)}" in a
               for a in out["actions"]), out
    assert out["version"] == 3 and models(root) == fresh([e, *d])
    assert not (root / layout.slice_dir(0, 1) / "restored.parquet").exists()
    assert runner.invoke(app, ["verify", "--root", str(root)]).exit_code == 0


def test_repair_finishes_an_addition_killed_between_its_index_and_its_config(tmp_path,
                                                                           monkeypatch):
    """AddRows writes the new slice's rows and index entries, then the config with one
    slice more: killed in between, the index places rows in a slice the config does not
    have yet. Repair finishes the addition (they are not lost rows of the next shard)."""
    from clul_ray.data.sources import open_source
    from clul_ray.sisa.driver import grow

    t = next(open_source("digits").iter_tables())
    ids = t.column("id").to_numpy()
    added = ids[ids % 60 == 7]

    def rows(name, keep) -> str:
        import pyarrow.parquet as pq

        pq.write_table(t.filter(pa.array(np.isin(ids, keep))), tmp_path / name)
        return f"parquet:{tmp_path / name}"

    base, more = rows("base.parquet", np.setdiff1d(ids, added)), rows("added.parquet", added)
    Pipeline(str(tmp_path / "root")).train(tiny_config(
        dataset=base, input_shape=[1, 8, 8], num_classes=10, backend="local", epochs=2))
    shutil.copytree(tmp_path / "root", tmp_path / "reference")
    want = {s["shard"]: s["model_sha256"]
            for s in Pipeline(str(tmp_path / "reference")).add(more)["per_shard"]}
    real = grow.write_config

    def killed(*a, **kw):
        monkeypatch.setattr(grow, "write_config", real)
        raise RuntimeError("killed before the config was written")

    monkeypatch.setattr(grow, "write_config", killed)
    with pytest.raises(RuntimeError, match="killed before the config"):
        Pipeline(str(tmp_path / "root")).add(more)
    out = repair_json(tmp_path / "root")
    assert any("finished request" in a for a in out["actions"]), out
    assert out["version"] == 2 and models(tmp_path / "root") == want
    assert runner.invoke(app, ["verify", "--root", str(tmp_path / "root")]).exit_code == 0


def test_index_findings_are_typed_with_both_sets_and_misplaced_rows(tmp_path):
    from clul_ray.sisa.records.certify import Area, FindingKind, index_findings

    store = Store(str(tmp_path))
    for k, r, have in [(0, 0, [1, 2, 9]), (0, 1, [3]), (1, 0, [4]), (1, 1, [5])]:
        store.write_table(f"{layout.slice_dir(k, r)}/p.parquet",
                          pa.table({"id": np.asarray(have, np.int64)}))
    store.rewrite_index(np.array([1, 2, 3, 4, 5, 6, 7]), np.array([0, 0, 0, 1, 1, 0, 1]),
                        np.array([0, 0, 1, 0, 1, 0, 2]))  # 6 lost, 9 extra, 7 in no slice
    got = {(f.kind, f.area, f.path, tuple(f.ids.tolist()), f.shard, f.slice)
           for f in index_findings(store, 2, 2)}
    assert got == {
        (FindingKind.MISPLACED_ROWS, Area.INDEX, layout.INDEX, (7,), None, None),
        (FindingKind.LOST_ROWS, Area.DATA, layout.slice_dir(0, 0), (6,), 0, 0),
        (FindingKind.EXTRA_ROWS, Area.DATA, layout.slice_dir(0, 0), (9,), 0, 0)}
