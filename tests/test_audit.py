"""The ε-score audit end to end on digits with N = 8 (Ray tasks): retraining scores like
independent retraining, no unlearning scores far lower, and the exact SISA deletion scores
like retraining; its files, MLflow run, cache and refusals."""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from clul_ray.audit.run import run_audit
from clul_ray.audit.spec import AuditSpec
from clul_ray.cli import app
from clul_ray.unlearn.training import TrainRecipe

runner = CliRunner()
N = 8
RECIPE = TrainRecipe(epochs=10)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("audit-cache"))


@pytest.fixture(scope="module")
def retrain_audit(ray_session, cache, tmp_path_factory):
    """(The session's Ray first: a module fixture runs before the per-test one that starts
    it, and a Ray started here would lack the session's S3 endpoint in its workers.)"""
    out = tmp_path_factory.mktemp("audit") / "retrain"
    res = runner.invoke(app, ["audit", "--forget", "class:3", "--method", "retrain",
                              "--models", str(N), "--epochs", "10", "--cache", cache,
                              "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    return out, json.loads(res.output.strip().splitlines()[-1])


def test_retrain_scores_like_independent_retraining(retrain_audit):
    """The retrained side (its own seeds) against the reference: F at the level of the null
    (N more retrained models), far above 0, and utility ratios of 1."""
    _, result = retrain_audit
    s = result["summary"]
    assert s["F_null"] > 0.1
    assert 0.75 <= s["F_rel"] <= 1.33, s
    assert s["RA_ratio"] == pytest.approx(1, abs=0.02)
    assert s["TA_ratio"] == pytest.approx(1, abs=0.03)
    assert s["score"] == pytest.approx(s["F"] * s["RA_ratio"] * s["TA_ratio"])


def test_the_audit_writes_its_files_and_mlflow_run(retrain_audit):
    out, result = retrain_audit
    eps = pq.read_table(out / "eps.parquet")
    assert eps.num_rows == result["meta"]["rows"]["forget"]
    assert set(eps.column("label").to_pylist()) == {3}
    assert {"id", "eps", "eps_null", "points"} <= set(eps.column_names)
    md = (out / "audit.md").read_text()
    assert "| retrain |" in md and "F / F_null" in md and "F1(test)" in md
    assert (out / "eps.png").stat().st_size > 10_000
    assert json.loads((out / "audit.json").read_text())["summary"] == result["summary"]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=result["mlflow"]["tracking_uri"])
    run = client.get_run(result["mlflow"]["run"])
    assert run.data.metrics["F"] == pytest.approx(result["summary"]["F"])
    assert run.data.params["method"] == "retrain"
    assert "eps.parquet" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_no_unlearning_scores_far_lower_and_reuses_the_cached_references(retrain_audit,
                                                                          cache, tmp_path):
    _, retrain = retrain_audit
    result = run_audit(AuditSpec(method="original", models=N, recipe=RECIPE, cache=cache),
                       tmp_path / "original")
    assert result["meta"]["reference_cached"] == 2 * N  # reference and null: none retrained
    assert result["summary"]["F"] < 0.25 * retrain["summary"]["F"]
    assert result["rows"][0]["FA"] == 1.0  # the original still knows class 3


def test_exact_sisa_deletion_scores_like_retraining(cache, tmp_path):
    """N ensembles with the forget set deleted by the pipeline, against N ensembles trained
    without it: indistinguishable, as an exact deletion must be."""
    result = run_audit(AuditSpec(method="sisa", models=N, recipe=RECIPE, cache=cache,
                                 sisa={"shards": 2, "slices": 2}), tmp_path / "sisa")
    s = result["summary"]
    assert 0.75 <= s["F_rel"] <= 1.33, s
    assert s["RA_ratio"] == pytest.approx(1, abs=0.02)
    assert result["meta"]["sisa"] == {"shards": 2, "slices": 2}


@pytest.mark.parametrize("args, message", [
    (["--method", "retrain", "--models", "1"], "--models must be at least 2"),
    (["--method", "ga", "--models", "4"], "unlearns language models"),
    (["--method", "nope", "--models", "4"], "unknown unlearning method 'nope'"),
    (["--method", "neggrad", "--param", "lr=-1", "--models", "4"], "lr"),
    (["--method", "retrain", "--param", "lr=0.1", "--models", "4"], "takes no --param"),
])
def test_bad_audits_are_refused_in_one_line(tmp_path, args, message):
    out = tmp_path / "out"
    res = runner.invoke(app, ["audit", "--forget", "class:3", "--out", str(out),
                              "--backend", "local", *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()


def test_an_empty_forget_set_is_refused(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("")
    res = runner.invoke(app, ["audit", "--forget", f"ids:{ids}", "--method", "retrain",
                              "--models", "2", "--backend", "local",
                              "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert "no ids given" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_compare_audit_scores_every_method_beside_its_gap(tmp_path):
    res = runner.invoke(app, ["compare", "--forget", "class:3", "--methods", "neggrad",
                              "--audit", "3", "--epochs", "5", "--out", str(tmp_path / "c"),
                              "--json"])
    assert res.exit_code == 0, res.output
    audit = {r["method"]: r for r in json.loads(res.output.strip().splitlines()[-1])["audit"]}
    assert set(audit) == {"retrain", "neggrad"}
    assert all(0 <= r["F"] <= 1 and r["score"] <= r["F"] * 1.05 for r in audit.values())
    assert "ε-score audit" in (tmp_path / "c" / "compare.md").read_text()
    with open(tmp_path / "c" / "compare.csv") as f:  # the score beside each run's gap
        csv_rows = {r["method"]: r for r in csv.DictReader(f)}
    assert float(csv_rows["neggrad"]["eps_score"]) == pytest.approx(audit["neggrad"]["score"])
    assert csv_rows["original"]["F"] == ""  # the original is not audited
    res = runner.invoke(app, ["compare", "--forget", "class:3", "--methods", "neggrad",
                              "--audit", "1", "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and "--audit must be 0" in res.output


def test_tune_objective_eps_maximises_the_final_score(tmp_path):
    res = runner.invoke(app, ["tune", "--method", "neggrad", "--forget", "class:3",
                              "--num-samples", "2", "--objective", "eps", "--audit-models", "3",
                              "--epochs", "5", "--out", str(tmp_path / "t"), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output.strip().splitlines()[-1])
    s = result["summary"]["neggrad"]
    assert 0 <= s["tuned_eps_score"] <= 1 and 0 <= s["default_eps_score"] <= 1
    best = result["summary"]["neggrad"]["tuned_objective"]
    assert best == pytest.approx(1 - s["tuned_eps_score"])  # weights gap = cost = 0
    assert result["meta"]["objective"] == "eps" and result["meta"]["audit_models"] == 3
