"""Ray Tune sweeps: spaces, the objective and its Pareto front (pure); a tiny sweep end to
end on the session's Ray (files, MLflow runs, the reference computed once per seed, ASHA
stopping trials); refusals; using the result (`unlearn --params-from`, `compare --tuned`)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import yaml
from conftest import driver_copies
from typer.testing import CliRunner

from clul_ray.cli import app
from clul_ray.errors import ClulError
from clul_ray.tune.objective import Weights, pareto_front, score
from clul_ray.tune.space import parse_space
from clul_ray.tune.sweep import resolve_methods

runner = CliRunner()


# ---- pure ---------------------------------------------------------------------------------
@pytest.mark.pure
def test_space_files_for_one_method_or_keyed_by_method():
    one = parse_space({"lr": {"loguniform": [1e-5, 1e-2]}, "epochs": {"randint": [1, 4]},
                       "temperature": 2.0}, ["bad_teacher"])
    assert one == {"bad_teacher": {"lr": {"loguniform": [1e-5, 1e-2]},
                                   "epochs": {"randint": [1, 4]}, "temperature": 2.0}}
    two = parse_space({"scrub": {"alpha": {"uniform": [0, 1]}},
                       "mi_reg": {"gamma": {"choice": [1, 3]}}}, ["scrub", "mi_reg"])
    assert set(two) == {"scrub", "mi_reg"}


@pytest.mark.pure
@pytest.mark.parametrize("raw, methods, message", [
    ({}, ["scrub"], "is empty"),
    (None, ["scrub"], "is empty"),
    ([1, 2], ["scrub"], "must map parameters"),
    ({"speed": {"uniform": [0, 1]}}, ["scrub"], "'speed' is not a parameter of scrub"),
    ({"lr": {"normal": [0, 1]}}, ["scrub"], "a domain is one of"),
    ({"lr": {"loguniform": [0, 1]}}, ["scrub"], "positive low bound"),
    ({"lr": {"uniform": [1, 0.5]}}, ["scrub"], "low < high"),
    ({"epochs": {"randint": [-3, 2]}}, ["scrub"], "scrub.epochs must be"),
    ({"lr": -1}, ["scrub"], "scrub.lr must be"),
    ({"lr": {"uniform": [0.1, 1]}}, ["scrub", "salun"], "key the file by method name"),
    ({"salun": {"lr": 0.1}}, ["scrub"], "salun is not among the swept methods"),
])
def test_bad_space_files_are_refused_in_one_line(raw, methods, message):
    with pytest.raises(ClulError, match=message) as e:
        parse_space(raw, methods)
    assert "\n" not in str(e.value)


@pytest.mark.pure
def test_methods_to_sweep():
    every = resolve_methods(["all"])
    assert "retrain" not in every and {"bad_teacher", "finetune", "mi_reg"} <= set(every)
    assert resolve_methods(["scrub,salun", "scrub"]) == ["scrub", "salun"]
    with pytest.raises(ClulError, match="retrain has no strengths"):
        resolve_methods(["retrain"])
    with pytest.raises(ClulError, match="unknown unlearning method"):
        resolve_methods(["forgetful"])


@pytest.mark.pure
def test_objective_is_the_weighted_gap_to_retrain_plus_cost():
    ref = {"FA": 0.0, "RA": 1.0, "TA": 0.9, "MIA": 1.0}
    m = {"FA": 0.2, "RA": 0.9, "TA": 0.95, "MIA": 0.6}
    s = score(m, ref, Weights(), seconds=2.0, ref_seconds=4.0)
    assert s["gap"] == pytest.approx((0.2 + 0.1 + 0.05 + 0.4) / 4)
    assert s["objective"] == pytest.approx(s["gap"]) and s["cost"] == pytest.approx(0.5)
    assert s["forget_gap"] == pytest.approx((0.2 + 0.4) / 2)
    assert s["utility_drop"] == pytest.approx((0.1 + 0.0) / 2), "above retrain is no drop"
    w = score(m, ref, Weights(RA=0, TA=0, MIA=0, cost=0.1), 2.0, 4.0)
    assert w["gap"] == pytest.approx(0.2) and w["objective"] == pytest.approx(0.25)


@pytest.mark.pure
def test_pareto_front():
    pts = [(1.0, 1.0), (0.0, 2.0), (2.0, 0.0), (1.5, 1.5), (1.0, 1.0), (math.nan, 0.0)]
    assert pareto_front(pts) == [1, 0, 4, 2]
    assert pareto_front([]) == []


# ---- a tiny sweep ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """bad_teacher, 8 trials of a wide space, 2 seeds, ASHA; the reference function
    wrapped to count its calls (in whatever process runs it); what the driver serialized
    for Ray counted."""
    from torch import nn

    import clul_ray.tune.sweep as sweep_mod
    from clul_ray.tune.sweep import SweepSpec, run_sweep
    from clul_ray.tune.trial import Reference, compute_reference
    from clul_ray.unlearn.compare import Data

    out = tmp_path_factory.mktemp("sweep")
    calls = out / "reference_calls.txt"

    def counting(template, data, recipe, seed, *rest, _real=compute_reference,
                 _log=str(calls)):
        with open(_log, "a") as f:
            f.write(f"{seed}\n")
        return _real(template, data, recipe, seed, *rest)

    spec = SweepSpec(methods=["bad_teacher"], forget="class:3", seeds=2, num_samples=8,
                     model_args={"hidden": 16}, recipe={"epochs": 4},
                     space={"bad_teacher": {"lr": {"loguniform": [1e-6, 5e-2]},
                                            "epochs": {"randint": [3, 6]},
                                            "min_steps": 0}})  # epochs as drawn
    real = sweep_mod.compute_reference
    sweep_mod.compute_reference = counting
    try:
        ticks = []
        with driver_copies(Data, Reference, nn.Module) as copies:
            result = run_sweep(spec, out, lambda d, n, t: ticks.append((d, n, t)))
    finally:
        sweep_mod.compute_reference = real
    return out, result, calls, ticks, copies


def test_sweep_writes_its_files_and_ranks_trials(sweep):
    out, result, _, ticks, _ = sweep
    for name in ("trials.csv", "best.md", "best.yaml", "pareto.png", "sweep.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert len(rows) == 8 and {r["status"] for r in rows} <= {"completed", "stopped", "failed"}
    best = yaml.safe_load((out / "best.yaml").read_text())["bad_teacher"]
    done = [r for r in rows if r["status"] == "completed"]
    top = min(done, key=lambda r: float(r["objective"]))
    assert best["lr"] == pytest.approx(float(top["param.lr"]))
    assert best["temperature"] == pytest.approx(float(top["param.temperature"]))
    assert best["batch_size"] == 256 and best["optimizer"] == "adam", "defaults filled in"
    s = result["summary"]["bad_teacher"]
    assert s["trials"] == 8 and 0 < s["parallel_efficiency"] <= 1
    # the tuned gap is the best trial's; the defaults (chosen on several scenarios) may beat
    # all 8 random trials, so their gap is only checked to be a gap
    assert s["tuned_gap"] == pytest.approx(float(top["gap"]), abs=1e-4)  # csv: 4 decimals
    assert 0 <= s["default_gap"] <= 1
    md = (out / "best.md").read_text()
    assert "| default |" in md and "| default TF1 | tuned TF1 |" in md
    assert s["tuned_TF1"] == pytest.approx(float(top["TF1"]), abs=1e-4) and 0 < s["tuned_TF1"] <= 1
    assert 0 < s["default_TF1"] <= 1
    assert ("tune bad_teacher: trials", 8, 8) in ticks


def test_reference_is_computed_once_per_seed_not_per_trial(sweep):
    _, result, calls, _, _ = sweep
    assert sorted(calls.read_text().split()) == ["0", "1"]
    assert result["meta"]["references_computed"] == 2 and result["meta"]["seeds"] == [0, 1]


def test_the_data_and_references_go_into_the_object_store_once_per_sweep(sweep):
    """Every reference task, default-params task and trial reads them through refs: the
    driver serializes the data, the model template and each seed's reference (with its
    original model) once, not once per seed, per task or per Tuner."""
    from torch import nn

    from clul_ray.tune.trial import Reference
    from clul_ray.unlearn.compare import Data

    copies = sweep[4]
    assert copies.of(Data) == [1], f"the data serialized {copies.of(Data)} times"
    assert copies.of(Reference) == [1, 1], f"references: {copies.of(Reference)}"
    models = copies.of(nn.Module)  # the template, and each reference's original model
    assert models == [1, 1, 1], f"models serialized {models} times"


def test_asha_stops_poor_trials_early(sweep):
    _, result, _, _, _ = sweep
    rows = json.loads((sweep[0] / "sweep.json").read_text())["trials"]
    stopped = [r for r in rows if r["status"] == "stopped"]
    assert result["summary"]["bad_teacher"]["stopped_early"] == len(stopped) >= 1
    for r in stopped:  # stopped before its last epoch's report and the final mean
        assert r["iterations"] < r["params"]["epochs"] + 1


def test_sweep_is_recorded_in_mlflow_as_parent_and_child_runs(sweep):
    from mlflow import MlflowClient

    out, result, _, _, _ = sweep
    m = result["mlflow"]
    assert m is not None and m["child_runs"] == 8
    client = MlflowClient(tracking_uri=m["tracking_uri"])
    parent = client.get_run(m["parent_run"])
    assert parent.data.params["methods"] == "bad_teacher"
    assert parent.data.tags["clul_ray.best_config"] == "best.yaml"
    assert {a.path for a in client.list_artifacts(m["parent_run"])} == {"best.yaml"}
    exp = parent.info.experiment_id
    kids = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = "
                                                   f"'{m['parent_run']}'")
    assert len(kids) == 8 and all("lr" in k.data.params for k in kids)
    assert sum(k.data.tags["clul_ray.best"] == "true" for k in kids) == 1
    done = [k for k in kids if k.data.tags["clul_ray.status"] == "completed"]
    assert all("objective" in k.data.metrics for k in done)


@pytest.mark.pure
def test_summary_and_best_md_carry_the_best_trials_tf1(tmp_path):
    from clul_ray.tune.outputs import summary, write_markdown

    def trial(i: int, objective: float, tf1: float) -> dict:
        return {"method": "neggrad", "trial": f"t{i}", "status": "completed",
                "objective": objective, "gap": objective, "FA": 0.1, "RA": 0.9, "TA": 0.8,
                "TF1": tf1, "MIA": 0.5, "trial_seconds": 1.0, "node_id": "n",
                "params": {"lr": 0.01 * (i + 1)}}

    rows = [trial(0, 0.3, 0.61), trial(1, 0.1, 0.72), trial(2, 0.2, 0.99)]
    meta = {"methods": ["neggrad"], "dataset": "digits", "model": "mlp", "forget": "class:3",
            "num_samples": 3, "scheduler": "fifo", "search": "random", "seeds": [0],
            "cpus": 2, "wall_seconds": {"neggrad": 2.0},
            "defaults": {"neggrad": {"objective": 0.4, "gap": 0.4, "FA": 0.2, "RA": 0.9,
                                     "TA": 0.8, "TF1": 0.55, "MIA": 0.4}},
            "default_params": {"neggrad": {"lr": 0.001}}}
    stats = summary(rows, meta)
    assert (stats["neggrad"]["default_TF1"], stats["neggrad"]["tuned_TF1"]) == (0.55, 0.72)
    md = write_markdown(rows, meta, stats, tmp_path / "best.md").read_text()
    assert "| neggrad | 0.4 | 0.1 | 0.55 | 0.72 | 3 |" in md
    assert "| rank | objective | gap | FA | RA | TA | TF1 | MIA | params |" in md
    # a sweep without TF1 (a stream's, a text one) shows no TF1 column
    for r in rows:
        del r["TF1"]
    del meta["defaults"]["neggrad"]["TF1"]
    meta["shown"] = ("FA", "RA", "TA", "MIA")
    md = write_markdown(rows, meta, summary(rows, meta), tmp_path / "best.md").read_text()
    assert "TF1" not in md and "| neggrad | 0.4 | 0.1 | 3 |" in md


# ---- refusals and use of the result ---------------------------------------------------------
@pytest.mark.pure
def test_bad_tune_input_is_refused_in_one_line(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    broken = tmp_path / "broken.yaml"
    broken.write_text("lr: [1, 2\n")
    alien = tmp_path / "alien.yaml"
    alien.write_text("speed: {uniform: [0, 1]}\n")
    base = ["tune", "--forget", "class:3", "--out", str(tmp_path / "o")]
    for args, msg in [
        (["--method", "teleport"], "unknown unlearning method"),
        (["--method", "scrub", "--space", str(empty)], "is empty"),
        (["--method", "scrub", "--space", str(broken)], "not valid YAML"),
        (["--method", "scrub", "--space", str(alien)], "'speed' is not a parameter of scrub"),
        (["--method", "scrub", "--num-samples", "0"], "num-samples must be at least 1"),
        (["--method", "scrub", "--scheduler", "hyperband"], "tune.scheduler"),
        (["--method", "scrub", "--forget", "class:x"], "integer classes"),
    ]:
        res = runner.invoke(app, [*base, *args])
        assert res.exit_code == 2, (args, res.output)
        assert msg in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "o").exists()


def test_unlearn_uses_a_sweeps_best_params(trained_root, tmp_path):
    root, _ = trained_root
    best = tmp_path / "best.yaml"
    best.write_text(yaml.safe_dump({"neggrad": {"lr": 0.0025, "epochs": 2}}))
    res = runner.invoke(app, ["unlearn", "--root", str(root), "--method", "neggrad",
                              "--forget", "random:0.02", "--params-from", str(best),
                              "--param", "epochs=1", "--json"])
    assert res.exit_code == 0, res.output
    from clul_ray.sisa.records.ledger import Ledger
    from clul_ray.storage.store import Store

    (req,) = Ledger(Store(str(root))).requests()
    assert req.meta["params"] == {"lr": 0.0025, "epochs": 1}, "--param wins over the file"
    res = runner.invoke(app, ["unlearn", "--root", str(root), "--method", "scrub",
                              "--forget", "random:0.02", "--params-from", str(best)])
    assert res.exit_code == 2 and "has no params for scrub" in res.output


def test_compare_adds_a_tuned_row_per_method(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "best.yaml").write_text(yaml.safe_dump({"neggrad": {"lr": 0.003}}))
    res = runner.invoke(app, ["compare", "--forget", "random:0.1", "--out", str(tmp_path / "c"),
                              "--methods", "neggrad", "--epochs", "2", "--model-arg",
                              "hidden=16", "--backend", "local", "--tuned",
                              str(tmp_path / "t"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert [r["method"] for r in out["rows"]] == ["retrain", "original", "neggrad",
                                                 "neggrad (tuned)"]
    assert out["meta"]["params"]["neggrad (tuned)"]["lr"] == 0.003
    assert out["meta"]["params"]["neggrad"]["lr"] != 0.003


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    """SGD with a negative momentum passes the params' checks but torch refuses it when
    the trial builds its optimiser: those trials fail, the others complete."""
    from clul_ray.tune.sweep import SweepSpec, run_sweep

    spec = SweepSpec(methods=["finetune"], forget="class:3", num_samples=4, scheduler="fifo",
                     model_args={"hidden": 16}, recipe={"epochs": 2},
                     space={"finetune": {"optimizer": "sgd", "epochs": 1,
                                         "momentum": {"choice": [-1.0, 0.5]}}})
    result = run_sweep(spec, tmp_path)
    rows = json.loads((tmp_path / "sweep.json").read_text())["trials"]
    failed = [r for r in rows if r["status"] == "failed"]
    done = [r for r in rows if r["status"] == "completed"]
    assert failed and done and len(failed) + len(done) == 4
    assert all(r["params"]["momentum"] == -1.0 and "momentum" in r["error"] for r in failed)
    assert result["summary"]["finetune"]["failed"] == len(failed)
    assert yaml.safe_load((tmp_path / "best.yaml").read_text())["finetune"]["momentum"] == 0.5


def test_optuna_search_through_the_cli(tmp_path):
    res = runner.invoke(app, ["tune", "--method", "mi_reg", "--forget", "class:3",
                              "--num-samples", "3", "--search", "optuna", "--scheduler",
                              "fifo", "--epochs", "2", "--model-arg", "hidden=16",
                              "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["meta"]["search"] == "optuna" and out["summary"]["mi_reg"]["trials"] == 3
    assert set(out["best"]["mi_reg"]) == {"gamma", "lr", "epochs"}
