"""Feature unlearning on Ray Data and from the command line: the Ray Data path equals the
in-memory one, `feature-unlearn` writes Parquet that `train` reads, saves a versioned
transform recorded in MLflow, and refuses bad input in one line, writing nothing."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from clul_ray.cli import app
from clul_ray.feature.synthetic import fair_block
from clul_ray.feature.transform import fit_tables, table_features

runner = CliRunner()


@pytest.mark.parametrize("method", ["quantile", "gaussian"])
def test_ray_data_and_in_memory_paths_give_the_same_output(method):
    import ray.data

    from clul_ray.feature.apply import fit_dataset, transform_dataset

    t = fair_block(0, 12_000, 5, 3, 6)
    cuts = [0, 2500, 2501, 7000, 12_000]
    blocks = [t.slice(a, b - a) for a, b in zip(cuts, cuts[1:], strict=False)]
    ds = ray.data.from_arrow(blocks)
    got, report = fit_dataset(ds, "z", method, sample_size=3000, report_rows=4000)
    want = fit_tables([t], "z", method, sample_size=3000)
    assert got.counts == want.counts and got.data_digest == want.data_digest
    if method == "quantile":  # the same sampled rows, whatever the blocks
        assert got.quantiles == want.quantiles and got.barycenter == want.barycenter
    else:
        assert np.allclose(got.maps, want.maps, atol=1e-10)
    out = transform_dataset(ds, got, 0.75).to_arrow_refs()
    out = pa.concat_tables(ray.get(out)).sort_by("id")
    mem = want.apply(table_features(t), want.codes(t.column("z")), 0.75)
    assert np.array_equal(out.column("id").to_numpy(), np.arange(12_000))
    assert np.allclose(table_features(out), mem, atol=1e-5)
    assert 3000 < len(report["id"]) < 5000 and len(np.unique(report["id"])) == len(report["id"])


def user_parquet(path, n=3000, groups=("north", "south", "west")):
    """A user's file: id, label, four numeric feature columns and a string column."""
    t = fair_block(0, n, 7, len(groups), 4)
    x = table_features(t)
    cols = {"id": t.column("id"), "label": t.column("label")}
    cols |= {f"f{j}": pa.array(x[:, j]) for j in range(4)}
    cols["region"] = pa.array(np.asarray(groups)[t.column("z").to_numpy()])
    pq.write_table(pa.table(cols), path)
    return f"parquet:{path}"


def test_feature_unlearn_writes_parquet_that_train_reads(tmp_path, monkeypatch):
    spec = user_parquet(tmp_path / "users.parquet")
    out, root = tmp_path / "out", tmp_path / "root"
    res = runner.invoke(app, ["feature-unlearn", "--dataset", spec, "--sensitive", "region",
                              "--method", "gaussian", "--t", "1", "--out", str(out),
                              "--root", str(root), "--report-rows", "2000", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert r["rows"] == 3000 and r["groups"] == ["north", "south", "west"]
    assert r["z_balanced_accuracy_after"] < r["z_chance"] + 0.1
    assert r["z_balanced_accuracy_before"] > r["z_chance"] + 0.2
    assert 0 < r["label_f1_after"] <= 1 and 0 < r["label_f1_before"] <= 1
    assert all(0 < c[k] <= 1 for c in r["curve"] for k in ("label_precision", "label_recall"))
    assert "| t | label_accuracy | label_precision | label_recall | label_f1 |" in (
        tmp_path / "out.report" / "curve.md").read_text()
    assert (root / r["transform"]).is_file() and (root / "feature/versions/v000001.json").is_file()
    for f in ("png", "csv", "md", "json"):
        assert (tmp_path / "out.report" / f"curve.{f}" if f != "json" else
                tmp_path / "out.report" / "report.json").is_file()
    assert r["mlflow"] and r["mlflow"]["registry_version"] == 1
    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri=r["mlflow"]["tracking_uri"]).get_run(r["mlflow"]["run_id"])
    assert run.data.tags["clul_ray.operation"] == "feature-unlearn"
    assert run.data.tags["clul_ray.sensitive"] == "region"
    assert run.data.tags["clul_ray.transform_sha256"] == r["transform_sha256"]

    monkeypatch.setenv("CLUL_RAY_LINEAGE", "0")  # the training's own lineage is not under test
    res = runner.invoke(app, ["train", "--dataset", f"parquet:{out}", "--root",
                              str(tmp_path / "sisa"), "--shards", "2", "--slices", "1",
                              "--epochs", "1", "--backend", "local", "--json"])
    assert res.exit_code == 0, res.output
    trained = json.loads(res.stdout.strip().splitlines()[-1])
    assert trained["ensemble_accuracy"] > 0.6
    assert all(0.5 < trained[k] <= 1 for k in ("ensemble_precision", "ensemble_recall",
                                                 "ensemble_f1")), trained


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    ok = user_parquet(d / "ok.parquet")
    t = pq.read_table(d / "ok.parquet")
    pq.write_table(t.append_column("note", pa.array(["x"] * t.num_rows)), d / "text.parquet")
    region = np.asarray(t.column("region").to_pylist(), dtype=object)
    region[np.flatnonzero(region == "west")[3:]] = "north"  # west keeps 3 rows
    pq.write_table(t.set_column(t.column_names.index("region"), "region", pa.array(region)),
                   d / "few.parquet")
    nulls = t.set_column(t.column_names.index("region"), "region",
                         pa.array([None if i == 7 else r for i, r in enumerate(region)]))
    pq.write_table(nulls, d / "nulls.parquet")
    return d, ok


@pytest.mark.parametrize("args,message", [
    (["--dataset", "OK", "--sensitive", "nope"], "no sensitive column 'nope'"),
    (["--dataset", "OK", "--sensitive", "region", "--t", "1.5"], "--t must be in [0, 1]"),
    (["--dataset", "parquet:TEXT", "--sensitive", "region"], "is string, not numeric"),
    (["--dataset", "parquet:FEW", "--sensitive", "region", "--method", "gaussian"],
     "group region='west' has 3 rows; method gaussian needs at least 5"),
    (["--dataset", "parquet:NULLS", "--sensitive", "region"],
     "sensitive column 'region' has missing values (1 rows)"),
    (["--dataset", "synthetic-fair:20000", "--sensitive", "z", "--method", "ot"],
     "method ot is for small data"),
    (["--dataset", "OK", "--sensitive", "region", "--method", "sinkhorn"], "unknown method"),
    (["--dataset", "digits", "--sensitive", "z"], "digits has no sensitive column 'z'"),
])
def test_bad_input_is_refused_in_one_line_and_writes_nothing(bad_inputs, tmp_path, args,
                                                             message):
    d, ok = bad_inputs
    args = [a.replace("OK", ok).replace("TEXT", str(d / "text.parquet"))
            .replace("FEW", str(d / "few.parquet")).replace("NULLS", str(d / "nulls.parquet"))
            for a in args]
    out = tmp_path / "out"
    res = runner.invoke(app, ["feature-unlearn", *args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not out.exists() and not (tmp_path / "out.report").exists()
