"""The one-pass partition writer: placement as ``assign`` puts it, at most one file per
(shard, slice) per writer, the Ray writers equal to the in-process one, refusals of data
spread over several blocks (nothing left written), and the small-data fast path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import tiny_config
from typer.testing import CliRunner

from clul_ray import Pipeline
from clul_ray.cli import app
from clul_ray.data import blocks
from clul_ray.data.blocks import check_block, ranges_overlap, source_blocks, source_rows
from clul_ray.data.partition import assign, is_test
from clul_ray.data.sources import open_source
from clul_ray.errors import ClulError
from clul_ray.sisa.compute import site
from clul_ray.sisa.compute.partitioning import partition
from clul_ray.storage import layout
from clul_ray.storage.store import Store

N = 220_000  # five synthetic blocks, more than IN_PROCESS_MAX_ROWS


def _placed(root: Path) -> dict[int, tuple[int, int]]:
    """id -> (shard, slice) as the files under ``data/train`` say."""
    out = {}
    for f in root.joinpath("data/train").rglob("*.parquet"):
        k, r = (int(p.split("=")[1]) for p in f.parent.parts[-2:])
        for i in pq.read_table(f, columns=["id"]).column("id").to_numpy():
            assert int(i) not in out, "an id written twice"
            out[int(i)] = (k, r)
    return out


def _partition(root: Path, dataset: str, use_ray: bool, **kw) -> dict:
    src = open_source(dataset, num_classes=kw.pop("num_classes", None),
                      input_shape=kw.pop("input_shape", None))
    cfg = tiny_config(dataset=dataset, **kw).updated(num_classes=src.num_classes,
                                                       input_shape=list(src.input_shape))
    return partition(Store(str(root)), cfg, src, lambda *a: None,
                     site.Site(site.Where.RAY if use_ray else site.Where.PROCESS))


@pytest.fixture(scope="module")
def synthetic_roots(tmp_path_factory, ray_session):
    base = tmp_path_factory.mktemp("writer")
    ray_info = _partition(base / "ray", f"synthetic:{N}", True, shards=4, slices=3)
    local_info = _partition(base / "local", f"synthetic:{N}", False, shards=4, slices=3)
    return base / "ray", ray_info, base / "local", local_info


def test_rows_are_where_assign_and_is_test_put_them(synthetic_roots):
    root, info, _, _ = synthetic_roots
    assert info["rows"] == N and not info["in_process"] and info["writers"] == 2
    placed = _placed(root)
    ids = np.arange(N, dtype=np.int64)
    test = is_test(0, ids, tiny_config().partition.test_fraction)
    shard, slc = assign(0, ids, 4, 3)
    assert sorted(placed) == ids[~test].tolist()
    got = np.array([placed[int(i)] for i in ids[~test]])
    assert (got[:, 0] == shard[~test]).all() and (got[:, 1] == slc[~test]).all()
    assert sorted(Store(str(root)).test_ids().tolist()) == ids[test].tolist()
    index_ids, index_shard, index_slice = Store(str(root)).read_index()
    assert (index_shard == shard[index_ids]).all() and (index_slice == slc[index_ids]).all()


def test_at_most_one_file_per_slice_per_writer(synthetic_roots):
    root, info, local, local_info = synthetic_roots
    for r, writers in ((root, info["writers"]), (local, 1)):
        per_dir = Counter(f.parent for f in r.joinpath("data").rglob("*.parquet"))
        assert max(per_dir.values()) <= writers
        assert len(list(r.joinpath(layout.INDEX).glob("*.parquet"))) <= writers
    assert info["files"] == len(list(root.rglob("*.parquet"))) <= 2 * (4 * 3 + 2)
    assert local_info["files"] <= 4 * 3 + 2


def test_ray_writers_equal_the_in_process_writer(synthetic_roots):
    root, _, local, local_info = synthetic_roots
    assert local_info["in_process"] and local_info["writers"] == 1
    a, b = Store(str(root)), Store(str(local))
    for k in range(4):
        for r in range(3):
            ta, tb = a.read_slice(k, r), b.read_slice(k, r)
            assert ta.equals(tb)
    assert a.read_tables(layout.TEST).sort_by("id").equals(
        b.read_tables(layout.TEST).sort_by("id"))


def _blocks_parquet(path: Path, t: pa.Table, rows_per_block: int) -> str:
    pq.write_table(t, path, row_group_size=rows_per_block)
    return f"parquet:{path}"


def _digits() -> pa.Table:
    return next(open_source("digits").iter_tables())


def _with_x(t: pa.Table, x: np.ndarray) -> pa.Table:
    from clul_ray.data.sources import fixed_list

    return t.set_column(t.column_names.index("x"), "x", fixed_list(x))


def _bad_tables():
    t = _digits()
    ids = t.column("id").to_numpy().copy()
    ids[1500] = 3  # repeats an id of the first block, in the last
    x = t.column("x").combine_chunks().flatten().to_numpy().reshape(len(t), -1).copy()
    x[1200, 5] = np.nan
    labels = t.column("label").to_numpy().copy()
    labels[1700] = 10
    neg = labels.copy()
    neg[1000] = -1
    return [
        ("duplicate", t.set_column(0, "id", pa.array(ids)), "1 duplicate ids (e.g. 3)"),
        ("nan", _with_x(t, x), "NaN or infinite features in 1 rows (first id 1200)"),
        ("label", t.set_column(1, "label", pa.array(labels)), "label 10 is outside [0, 10)"),
        ("negative", t.set_column(1, "label", pa.array(neg)), "negative label -1"),
    ]


@pytest.mark.parametrize("writers", ["ray", "in_process"])
@pytest.mark.parametrize("case", range(4), ids=["duplicate", "nan", "label", "negative"])
def test_refusals_across_blocks_leave_nothing_written(tmp_path, monkeypatch, case, writers):
    if writers == "ray":  # small data is written in process unless told otherwise
        monkeypatch.setattr(blocks, "IN_PROCESS_MAX_ROWS", 0)
    name, table, message = _bad_tables()[case]
    spec = _blocks_parquet(tmp_path / f"{name}.parquet", table, 400)
    assert len(source_blocks(open_source(spec, num_classes=10, input_shape=[1, 8, 8]))) == 5
    with pytest.raises(ClulError, match=re.escape(message)):
        _partition(tmp_path / "root", spec, True, num_classes=10, input_shape=[1, 8, 8])
    assert not (tmp_path / "root" / "data").exists()
    assert not (tmp_path / "root" / "index").exists()
    with pytest.raises(ClulError, match=re.escape(message)):
        open_source(spec, num_classes=10, input_shape=[1, 8, 8]).validate()


def test_cli_refuses_ids_repeated_across_blocks_with_exit_2(tmp_path, monkeypatch):
    monkeypatch.setattr(blocks, "IN_PROCESS_MAX_ROWS", 0)  # Ray writers for 1 797 rows
    _, table, message = _bad_tables()[0]
    spec = _blocks_parquet(tmp_path / "dup.parquet", table, 400)
    res = CliRunner().invoke(app, ["train", "--root", str(tmp_path / "root"), "--dataset",
                                   spec, "--shards", "2", "--slices", "2", "--epochs", "1"])
    assert res.exit_code == 2 and message in res.output
    assert not (tmp_path / "root" / "data").exists()
    assert not (tmp_path / "root" / "config.json").exists()


@pytest.mark.pure
def test_block_checks_and_overlap():
    t = _digits()
    c = check_block(t, 64)
    assert (c["n"], c["min_id"], c["max_id"], c["max_label"], c["problem"]) == \
        (1797, 0, 1796, 9, None)
    assert check_block(t, 32)["problem"] == "rows have 64 features, expected 32"
    a, b = check_block(t.slice(0, 900), 64), check_block(t.slice(900), 64)
    assert not ranges_overlap([a, b]) and ranges_overlap([a, check_block(t.slice(800), 64)])


@pytest.mark.pure
def test_fast_path_only_where_nothing_asks_for_ray(monkeypatch):
    monkeypatch.setattr(site, "ray_started", lambda: False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(site.ENV, raising=False)

    def where(cfg, source, address=None):
        return site.decide(cfg, address, lambda: source_rows(source)).where

    digits = open_source("digits")
    cfg = tiny_config()
    assert where(cfg, digits) == site.Where.PROCESS
    assert where(cfg, digits, "ray://head:10001") == site.Where.CLUSTER
    assert where(tiny_config(backend="ray_train"), digits) == site.Where.RAY
    assert where(tiny_config(backend="local", epochs=1000), digits) == site.Where.PROCESS
    assert where(tiny_config(epochs=1), open_source("synthetic:60000")) == site.Where.PROCESS
    assert where(tiny_config(epochs=1), open_source("synthetic:250000")) == site.Where.RAY, \
        "more rows than IN_PROCESS_MAX_ROWS"
    assert where(tiny_config(epochs=1000), digits) == site.Where.RAY, "much work"
    monkeypatch.setenv(site.ENV, "0")
    assert where(cfg, digits) == site.Where.RAY
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    monkeypatch.delenv(site.ENV)
    assert site.decide(cfg, None, None) == site.Site(site.Where.CLUSTER, "ray://head:10001")
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setattr(site, "ray_started", lambda: True)
    assert where(cfg, digits) == site.Where.RAY, "a started Ray is used"
    never = site.decide(cfg, None, lambda: pytest.fail("rows read where they cannot matter"))
    assert never.uses_ray and never.backend(cfg) == "ray"
    monkeypatch.setattr(site, "ray_started", lambda: False)
    assert site.decide(cfg, None, lambda: 10 ** 6).where == site.Where.RAY
    assert site.Site(site.Where.PROCESS).backend(cfg) == "local"


def test_a_pipeline_decides_where_each_command_runs_not_once_for_its_life(tmp_path):
    """The decision is per command: a training in process leaves no decision behind for
    the Pipeline's next command."""
    p = Pipeline(str(tmp_path / "root"))
    assert p.train(tiny_config(backend="local"))["in_process"]
    assert p.site.uses_ray, "outside a command no decision is kept"
    fixed = Pipeline(str(tmp_path / "root"), site=site.Site(site.Where.PROCESS))
    assert fixed.evaluate()["ensemble_accuracy"] is not None and fixed.site.in_process


def test_fast_path_trains_what_ray_workers_train_without_starting_ray(trained_base, tmp_path):
    """A fresh process, backend ray, small data: no Ray started, the same models."""
    _, ray_result = trained_base
    code = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from conftest import tiny_config
from clul_ray.sisa.driver.pipeline import Pipeline
out = Pipeline({str(tmp_path / 'root')!r}).train(tiny_config())
print(json.dumps({{"in_process": out["in_process"], "ray": "ray" in sys.modules,
                  "shas": [s["model_sha256"] for s in out["per_shard"]],
                  "accuracy": out["ensemble_accuracy"], "timings": out["wall_seconds"]}}))
"""
    res = subprocess.run([sys.executable, "-c", code], check=True, timeout=300,
                         capture_output=True, text=True,
                         env={**__import__("os").environ, "CLUL_RAY_LINEAGE": "0"})
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["in_process"] and not out["ray"], "Ray was imported or started"
    assert out["shas"] == [s["model_sha256"] for s in ray_result["per_shard"]]
    assert out["accuracy"] == ray_result["ensemble_accuracy"]
    assert "ray_start_seconds" not in out["timings"]
    assert {"partition_seconds", "train_seconds", "evaluate_seconds",
            "commit_seconds"} <= set(out["timings"])


def test_small_root_deletes_and_evaluates_exactly_without_starting_ray(deletion_case,
                                                                        tmp_path):
    """A fresh process, backend ray, a small root: train, delete D and evaluate start no
    Ray, and the deletion equals a fresh training without D (the Ray session's)."""
    d, ref = deletion_case
    code = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from conftest import tiny_config
from clul_ray.sisa.driver.pipeline import Pipeline
root = {str(tmp_path / 'root')!r}
Pipeline(root).train(tiny_config())
out = Pipeline(root).delete({d!r})
ev = Pipeline(root).evaluate()
print(json.dumps({{"ray": "ray" in sys.modules, "retrained": out["retrained"],
                  "shas": [s["model_sha256"] for s in out["per_shard"]],
                  "accuracy": out["ensemble_accuracy"], "evaluated": ev["ensemble_accuracy"]}}))
"""
    res = subprocess.run([sys.executable, "-c", code], check=True, timeout=300,
                         capture_output=True, text=True,
                         env={**__import__("os").environ, "CLUL_RAY_LINEAGE": "0"})
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert not out["ray"], "Ray was imported or started"
    assert out["retrained"] == {"0": 1, "2": 2}
    assert out["shas"] == [s["model_sha256"] for s in ref["per_shard"]]
    assert out["accuracy"] == out["evaluated"] == ref["ensemble_accuracy"]


def test_small_root_unlearns_in_process_as_ray_tasks_do(trained_root, deletion_case,
                                                        tmp_path):
    """A fresh process, backend ray, a small root: ``unlearn`` edits its shards in this
    process (no Ray imported), and the edited models are the ones Ray tasks make."""
    import shutil

    root, _ = trained_root
    d, _ = deletion_case
    ids_file = tmp_path / "forget.txt"
    ids_file.write_text("\n".join(map(str, d)))
    twin = tmp_path / "twin"
    shutil.copytree(root, twin)
    code = f"""
import json, sys
from clul_ray.sisa.driver.pipeline import Pipeline
out = Pipeline({str(twin)!r}).unlearn("neggrad", "ids:{ids_file}", {{"epochs": 2}}, seed=0)
print(json.dumps({{"in_process": out["in_process"], "ray": "ray" in sys.modules,
                  "shas": [s["model_sha256"] for s in out["per_shard"]]}}))
"""
    res = subprocess.run([sys.executable, "-c", code], check=True, timeout=300,
                         capture_output=True, text=True,
                         env={**__import__("os").environ, "CLUL_RAY_LINEAGE": "0"})
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["in_process"] and not out["ray"], "Ray was imported or started"
    on_ray = Pipeline(str(root)).unlearn("neggrad", f"ids:{ids_file}", {"epochs": 2}, seed=0)
    assert not on_ray["in_process"]
    assert out["shas"] == [s["model_sha256"] for s in on_ray["per_shard"]]
