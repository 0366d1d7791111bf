"""Ray Tune sweeps on a text dataset: the text objective (pure); a tiny sweep of ``ga``
through the CLI on the session's Ray (its files, every trial's objective recomputed from
what it reported, the best trial the minimum, its best.yaml usable by ``compare --tuned``);
refusals."""

from __future__ import annotations

import csv
import json
import math

import pytest
from typer.testing import CliRunner

from clul_ray.cli import app
from clul_ray.tune.outputs import load_best
from clul_ray.tune.text_objective import TextWeights, text_score

runner = CliRunner()
TINY = ["--model-arg", "d_model=32", "--model-arg", "n_layer=1", "--model-arg", "n_head=2"]
BASE = ["tune", "--dataset", "tofu-synth:10", "--model", "gpt-tiny", "--epochs", "3", *TINY]


# ---- pure ---------------------------------------------------------------------------------
@pytest.mark.pure
def test_text_objective_by_hand():
    got = text_score(0.25, 0.3, 0.4, 2.0, 8.0)
    assert got["forget_gap"] == pytest.approx(0.75)
    assert got["utility_drop"] == pytest.approx(0.25)  # (0.4 - 0.3) / 0.4
    assert got["cost"] == pytest.approx(0.25)
    assert got["objective"] == pytest.approx(1.0) and got["gap"] == pytest.approx(1.0)
    w = TextWeights(forget=2, utility=0.5, cost=4)
    got = text_score(0.25, 0.3, 0.4, 2.0, 8.0, w)
    assert got["gap"] == pytest.approx(2 * 0.75 + 0.5 * 0.25)
    assert got["objective"] == pytest.approx(1.625 + 4 * 0.25)


@pytest.mark.pure
def test_text_objective_edges():
    assert text_score(1.0, 0.5, 0.4, 1.0, 2.0)["utility_drop"] == 0  # above retrain: no drop
    assert text_score(1.0, 0.0, 0.0, 1.0, 2.0)["utility_drop"] == 0  # MU_r = 0
    assert text_score(0.5, 0.1, 0.2, 3.0, 0.0)["cost"] == 0
    assert math.isnan(text_score(math.nan, 0.1, 0.2, 1.0, 1.0)["objective"])
    assert math.isnan(text_score(0.5, math.nan, 0.2, 1.0, 1.0)["objective"])


# ---- a tiny sweep through the CLI ---------------------------------------------------------
@pytest.fixture(scope="module")
def text_sweep(tmp_path_factory):
    """3 trials of ga with 1 to 3 steps, on tofu-synth:10, the cost and utility weighted."""
    out = tmp_path_factory.mktemp("text_sweep")
    space = out / "space.yaml"
    space.write_text("steps: {randint: [1, 4]}\n")
    res = runner.invoke(app, [*BASE, "--forget", "people:10%", "--method", "ga",
                              "--num-samples", "3", "--space", str(space), "--weight",
                              "utility=2", "--weight", "cost=0.5", "--out", str(out / "o")])
    assert res.exit_code == 0, res.output
    return out / "o"


def test_text_sweep_writes_its_files(text_sweep):
    for f in ("trials.csv", "best.md", "best.yaml", "pareto.png", "sweep.json"):
        assert (text_sweep / f).is_file(), f
    rows = list(csv.DictReader(open(text_sweep / "trials.csv")))
    assert len(rows) == 3 and {r["status"] for r in rows} == {"completed"}
    assert {"forget_quality", "model_utility", "priv_leak", "param.steps"} <= set(rows[0])
    assert "| FQ | MU | PrivLeak | VerbMem |" in (text_sweep / "best.md").read_text()


def test_every_trial_scores_the_pure_objective_and_the_best_is_the_minimum(text_sweep):
    d = json.loads((text_sweep / "sweep.json").read_text())
    meta, trials = d["meta"], d["trials"]
    assert meta["weights"] == {"forget": 1.0, "utility": 2.0, "cost": 0.5}
    assert meta["scheduler"] == "fifo" and meta["references_computed"] == 1
    mu_r = meta["retrain"]["0"]["model_utility"]
    secs_r = meta["retrain_seconds"]["0"]
    w = TextWeights(**meta["weights"])
    for t in trials:
        assert 0 <= t["forget_quality"] <= 1 and 1 <= t["params"]["steps"] <= 3
        want = text_score(t["forget_quality"], t["model_utility"], mu_r, t["seconds"], secs_r, w)
        for k, v in want.items():
            assert t[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
        assert t["iterations"] == 1  # one final report per trial
    best = min(trials, key=lambda t: t["objective"])
    assert d["summary"]["ga"]["tuned_objective"] == pytest.approx(best["objective"])
    assert load_best(text_sweep)["ga"]["steps"] == best["params"]["steps"]


def test_best_yaml_feeds_compare_tuned_on_text(text_sweep):
    from clul_ray.unlearn.compare import CompareSpec
    from clul_ray.unlearn.text_compare import check_text_spec, runs

    spec = CompareSpec(dataset="tofu-synth:10", model="gpt-tiny", forget="people:10%",
                       methods=["ga"], model_args={"d_model": 32, "n_layer": 1, "n_head": 2},
                       tuned=load_best(text_sweep))
    methods, _, _ = check_text_spec(spec)
    assert [label for label, _, _ in runs(spec, methods)] == ["ga", "ga (tuned)"]


# ---- refusals -----------------------------------------------------------------------------
@pytest.mark.pure
@pytest.mark.parametrize("args, message", [
    (["--dataset", "tofu-synth:10", "--model", "gpt-tiny", "--method", "bad_teacher",
      "--forget", "people:10%"], "bad_teacher unlearns classifiers"),
    (["--method", "npo", "--forget", "class:3"], "npo unlearns language models"),
    (["--dataset", "tofu-synth:10", "--model", "gpt-tiny", "--method", "ga",
      "--forget", "people:0%"], "names no person to forget"),
    (["--dataset", "tofu-synth:10", "--model", "gpt-tiny", "--method", "ga",
      "--forget", "class:3"], "is not for text datasets"),
    (["--dataset", "tofu-synth:10:bias=0.5", "--model", "gpt-tiny", "--method", "ga",
      "--forget", "bias"], "needs --forget people:P"),
    (["--dataset", "tofu-synth:10", "--model", "mlp", "--method", "ga",
      "--forget", "people:10%"], "needs a language model"),
    (["--dataset", "tofu-synth:10", "--model", "gpt-tiny", "--method", "ga",
      "--forget", "people:10%", "--weight", "FA=2"], "FA"),
])
def test_bad_text_tune_input_is_refused_in_one_line(tmp_path, args, message):
    res = runner.invoke(app, ["tune", *args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "o").exists()
