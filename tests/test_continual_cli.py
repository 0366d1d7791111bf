"""``clul-ray continual``: refusals (one line, exit 2, nothing written), the side-by-side
run as Ray tasks, and the MLflow lineage (a parent run, one child run per step per
strategy and seed, each naming the previous step's run as its parent)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from clul_ray.cli import app

runner = CliRunner()
SMALL = ["--param", "all.epochs=2", "--param", "all.unlearn_epochs=2"]


def invoke(*args):
    return runner.invoke(app, ["continual", *map(str, args)])


@pytest.mark.pure
@pytest.mark.parametrize("args, message", [
    (["--stream", "learn 1; learn 1"], "task 1 is learned twice"),
    (["--stream", "learn 1; unlearn 3"], "task 3 was never learned"),
    (["--stream", "learn 9"], "unknown task 9"),
    (["--stream", "learn 1", "--strategies", "clul,magic"], "unknown strategy 'magic'"),
    (["--stream", "learn 1", "--param", "clul.gamma=abc"], "parameter clul.gamma must be"),
    (["--stream", "learn 1; unlearn ids /no/such/file"], "ids file not found"),
    (["--config", "/no/such.yaml"], "config file not found"),
    (["--stream", "learn 1", "--benchmark", "split_mnist", "--data-dir", "/nonexistent"],
     "split_mnist needs torchvision's mnist files under /nonexistent"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    res = invoke("--out", out, "--backend", "local", *args)
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_ray_side_by_side_with_lineage(tmp_path):
    from mlflow import MlflowClient

    out = tmp_path / "out"
    res = invoke("--out", out, "--strategies", "clul,finetune", "--seeds", "2", *SMALL,
                 "--stream", "learn 1; learn 2; unlearn 1 + learn 3", "--json")
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert {r["strategy"] for r in result["summary"]} == {"clul", "finetune"}
    assert {"csv", "md", "png"} == set(result["files"])
    for name in ("stream.csv", "stream.md", "stream.png", "mlflow.db"):
        assert (out / name).exists()
    last = [r for r in result["summary"] if r["step"] == 3]
    assert all(r["seeds"] == 2 and r["gap_oracle"] == r["gap_oracle"] for r in last)
    assert all(0 < r["avg_f1"] <= 1 for r in last)

    m = result["mlflow"]
    client = MlflowClient(tracking_uri=m["tracking_uri"])
    exp = client.get_experiment_by_name(m["experiment"])
    runs = client.search_runs([exp.experiment_id],
                              filter_string="tags.`clul_ray.kind` = 'continual_step'")
    assert len(runs) == m["child_runs"] == 2 * 2 * 3
    by_id = {r.info.run_id: r for r in runs}
    for r in runs:
        p = r.data.params
        assert r.data.tags["mlflow.parentRunId"] == m["parent_run"]
        assert p["operation"] and p["strategy"] in ("clul", "finetune")
        if p["step"] == "1":
            assert p["parent"] == "none"
        else:
            parent = by_id[p["parent"]].data.params
            assert (parent["strategy"], parent["seed"]) == (p["strategy"], p["seed"])
            assert int(parent["step"]) == int(p["step"]) - 1
        if p["step"] == "3":
            assert p["operation"] == "unlearn 1 + learn 3" and p["task"] == "3"
            assert "forget_acc" in r.data.metrics and "gap_oracle" in r.data.metrics
            assert 0 < r.data.metrics["avg_f1"] <= 1 and "f1_task3" in r.data.metrics


def test_ray_and_local_backends_agree(tmp_path):
    rows = {}
    for backend in ("ray", "local"):
        res = invoke("--out", tmp_path / backend, "--backend", backend, "--strategies",
                     "replay", *SMALL, "--stream", "learn 1; learn 2; unlearn 2", "--json",
                     "--tracking-uri", f"sqlite:///{tmp_path}/{backend}.db")
        assert res.exit_code == 0, res.output
        rows[backend] = [(r["avg_acc"], r["forget_acc"]) for r in
                         json.loads(res.stdout.strip().splitlines()[-1])["summary"]]
    assert repr(rows["ray"]) == repr(rows["local"])


@pytest.mark.pure
def test_the_shipped_pipeline_parses_and_help_documents_the_stream(tmp_path):
    from clul_ray.continual.spec import check_spec, make_spec, read_config

    spec = make_spec(read_config("pipelines/split_digits_clul.yaml"))
    bench, steps = check_spec(spec)
    assert [s.text() for s in steps][-1] == "unlearn 2,4 + learn 5"
    assert spec.strategies == ["clul", "der", "replay", "finetune", "oracle"]
    res = runner.invoke(app, ["continual", "--help"])
    assert res.exit_code == 0 and "unlearn 2,4 + learn 5" in res.output
