"""``clul-ray tune --stream``: CLUL's strengths swept with Ray Tune along a continual stream,
the objective being the gap to the oracle after the whole stream; the tuned params feed
``clul-ray continual --params-from``."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from conftest import driver_copies
from typer.testing import CliRunner

from clul_ray.cli import app
from clul_ray.continual import metrics as M
from clul_ray.continual.spec import make_spec
from clul_ray.tune.stream import StreamSweepSpec, check, run_trial, score

runner = CliRunner()
STREAM = {"benchmark": "split_digits", "seeds": 2, "strategies": ["clul", "oracle"],
          "params": {"all": {"epochs": 2, "unlearn_epochs": 2}},
          "stream": ["learn 1", "learn 2", "unlearn 1 + learn 3"]}


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    p = tmp_path_factory.mktemp("stream") / "stream.yaml"
    p.write_text(yaml.safe_dump(STREAM))
    return p


@pytest.mark.pure
def test_the_score_is_the_oracle_gap_after_the_last_step():
    rows = [{"step": 1, "gap_oracle": -0.1, "forget_gap": math.nan, "forget_acc": math.nan,
             "avg_acc": 0.9, "mia": math.nan, "seconds": 1.0},
            {"step": 2, "gap_oracle": -0.05, "forget_gap": 0.02, "forget_acc": 0.03,
             "avg_acc": 0.8, "mia": 0.7, "seconds": 2.0}]
    s = score(rows)
    assert s["objective"] == pytest.approx(0.07) == pytest.approx(M.objective(rows))
    assert s["gap"] == pytest.approx(0.05) and s["utility_drop"] == pytest.approx(0.05)
    assert s["FA"] == 0.03 and s["RA"] == 0.8 and s["TA"] == pytest.approx(0.85)
    assert s["seconds"] == 3.0


@pytest.mark.pure
@pytest.mark.parametrize("args, message", [
    (["--space", "SPACE:gamma: {uniform: [0.2, 1.5]}"], "clul.gamma must be a number in [0, 1]"),
    (["--space", "SPACE:bogus: 1"], "'bogus' is not a parameter of clul"),
    (["--method", "der"], "der has no strengths to sweep"),
    (["--forget", "class:1"], "with --stream, the stream's config gives"),
    (["--scheduler", "bogus"], "must be one of 'asha', 'fifo'"),
])
def test_bad_sweeps_are_refused_in_one_line(config, tmp_path, args, message):
    if args[0] == "--space":
        f = tmp_path / "space.yaml"
        f.write_text(args[1].removeprefix("SPACE:") + "\n")
        args = ["--space", str(f)]
    out = tmp_path / "out"
    res = runner.invoke(app, ["tune", "--stream", str(config), "--out", str(out), *args])
    assert res.exit_code == 2, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_stream_sweep_writes_ranked_params_that_continual_reads(config, tmp_path):
    from clul_ray.continual.tasks import Benchmark
    from clul_ray.tune.stream import StreamShared

    out = tmp_path / "sweep"
    with driver_copies(Benchmark, StreamShared) as copies:
        res = runner.invoke(app, ["tune", "--stream", str(config), "--out", str(out),
                                  "--num-samples", "3", "--json"])
    assert res.exit_code == 0, res.output
    # the oracle tasks, the default-params task and every trial read them through refs
    assert copies.of(Benchmark) == [1], f"the benchmark serialized {copies.of(Benchmark)} times"
    assert copies.of(StreamShared) == [1], f"the shared rows: {copies.of(StreamShared)}"
    result = json.loads(res.stdout.strip().splitlines()[-1])
    s = result["summary"]["clul"]
    assert s["trials"] == 3 and s["failed"] == 0
    assert math.isfinite(s["default_gap"]) and math.isfinite(s["tuned_objective"])
    for name in ("trials.csv", "best.md", "best.yaml", "pareto.png", "sweep.json",
                 "mlflow.db"):
        assert (out / name).exists(), name
    assert "gap to the oracle" in (out / "best.md").read_text()
    best = yaml.safe_load((out / "best.yaml").read_text())["clul"]
    assert set(result["best"]["clul"]) <= set(best)
    assert {"gamma", "kd_logit", "kd_rep", "temperature", "p_b", "buffer_size"} <= set(
        result["best"]["clul"])
    assert best["epochs"] == 2, "the stream's recipe is kept beside the tuned strengths"

    # the best trial's objective is what a re-run of its params gives (seeded, exact)
    trials = json.loads((out / "sweep.json").read_text())["trials"]
    top = min((t for t in trials if t["status"] == "completed"),
              key=lambda t: t["objective"])
    spec = StreamSweepSpec(continual=make_spec(dict(STREAM)))
    bench, steps = check(spec)
    from clul_ray.tune.stream import oracle_rows

    base = {**STREAM["params"]["all"]}
    shared = StreamShared(steps, "mlp", {}, base, {
        s: oracle_rows("clul", base, steps, bench, s, "mlp", {}) for s in (0, 1)})
    again = run_trial(top["params"], "clul", bench, shared, lambda _: None)
    assert again["objective"] == pytest.approx(top["objective"], abs=1e-12)

    # continual --params-from runs clul with the tuned strengths
    res = runner.invoke(app, ["continual", "--config", str(config), "--out",
                              str(tmp_path / "cont"), "--params-from", str(out),
                              "--backend", "local", "--seeds", "1", "--json"])
    assert res.exit_code == 0, res.output
    ran = json.loads(res.stdout.strip().splitlines()[-1])["meta"]["params"]["clul"]
    assert ran["gamma"] == pytest.approx(best["gamma"])
