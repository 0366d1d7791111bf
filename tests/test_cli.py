"""The command line: JSON output, one-line refusals with exit code 2, nothing changed."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from test_sisa_e2e import snapshot
from typer.testing import CliRunner

from clul_ray.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_train_from_yaml_then_delete_json(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("dataset: digits\nshards: 2\nslices: 2\nepochs: 2\nbatch_size: 64\n"
                   "model_args: {hidden: 16}\n")
    root = tmp_path / "root"
    res = invoke("train", "--root", root, "--config", cfg, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["version"] == 1 and out["shards"] == 2 and out["slices"] == 2
    assert len(out["per_shard"]) == 2
    for s in out["per_shard"]:
        assert len(s["model_sha256"]) == 64 and s["node_id"] and 0 <= s["accuracy"] <= 1
    assert out["samples"] + out["test_samples"] == 1797
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("3\n\n17\n")
    res = invoke("delete", "--root", root, "--ids-file", ids_file, "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout.strip().splitlines()[-1])
    assert d["version"] == 2 and d["deleted"] + len(d["already_deleted"]) == 2
    assert d["affected"] and all(int(v) in (0, 1) for v in d["affected"].values())
    st = json.loads(invoke("status", "--root", root, "--json").stdout)
    assert st["version"] == 2 and st["requests"]["committed"] == 1
    ev = json.loads(invoke("evaluate", "--root", root, "--json").stdout)
    scores = ("ensemble_accuracy", "ensemble_precision", "ensemble_recall", "ensemble_f1")
    assert [ev[k] for k in scores] == [d[k] for k in scores]
    assert all(0 < out[k] <= 1 for k in scores) and out["ensemble_precision"] != out["ensemble_f1"]
    shown = invoke("evaluate", "--root", root).stdout
    assert (f"ensemble accuracy {ev['ensemble_accuracy']:.4f}, macro P/R/F1 "
            f"{ev['ensemble_precision']:.4f}/{ev['ensemble_recall']:.4f}/"
            f"{ev['ensemble_f1']:.4f}") in " ".join(shown.split()), shown


@pytest.fixture
def cli_root(trained_root):
    return trained_root[0]


@pytest.mark.parametrize("args, message", [
    (["--ids", "1,x,3"], "item 2 is not an id (ASCII decimal int64): 'x'"),
    (["--ids", "1,2,２９"], "item 3 is not an id (ASCII decimal int64): '２９'"),
    (["--ids", "5_8"], "item 1 is not an id (ASCII decimal int64): '5_8'"),
    (["--ids", "9223372036854775808"], "item 1 is outside the int64 range"),
    (["--ids", ""], "no ids given"),
    (["--ids", "4,4"], "repeated"),
    (["--ids", "123456789"], "unknown ids"),
    ([], "exactly one of --ids or --ids-file"),
])
def test_delete_refuses_bad_input_cleanly(cli_root, args, message):
    before = snapshot(cli_root)
    res = invoke("delete", "--root", cli_root, *args)
    assert res.exit_code == 2
    assert message in res.output and len(res.output.strip().splitlines()) == 1
    assert snapshot(cli_root) == before


def test_malformed_ids_file(cli_root, tmp_path):
    f = tmp_path / "ids.txt"
    f.write_text("1\n2.5\n")
    res = invoke("delete", "--root", cli_root, "--ids-file", f)
    assert res.exit_code == 2
    assert "line 2 is not an id (ASCII decimal int64): '2.5'" in res.output
    res = invoke("delete", "--root", cli_root, "--ids-file", tmp_path / "none.txt")
    assert res.exit_code == 2 and "ids file not found" in res.output


@pytest.mark.pure
def test_bad_ids_files_refused_before_the_root_is_read(tmp_path):
    """An ids file that is a directory or not UTF-8 text: one line, exit 2 (was a
    UnicodeDecodeError traceback); the root is not looked at, so no Ray is needed."""
    binary = tmp_path / "ids.bin"
    binary.write_bytes(b"1\n\x80\x81\n")
    for f, message in [(tmp_path, f"ids file {tmp_path} is a directory, not a file of ids"),
                       (binary, f"ids file {binary} is not a text file of ids (not UTF-8)")]:
        res = invoke("delete", "--root", tmp_path / "none", "--ids-file", f)
        assert res.exit_code == 2, res.output
        assert res.output.strip() == f"error: {message}"
    assert not (tmp_path / "none").exists()


ROOT_COMMANDS = [["train"], ["delete", "--ids", "1"], ["evaluate"], ["status"], ["unlock"],
                 ["lineage"], ["verify"], ["purge"],
                 ["unlearn", "--method", "finetune", "--forget", "class:1"]]


@pytest.mark.pure
@pytest.mark.parametrize("cmd", ROOT_COMMANDS, ids=lambda c: c[0])
def test_a_root_that_is_a_file_is_refused(tmp_path, cmd):
    """`--root` naming a file (or a path under one) is refused in one line before anything
    is written or Ray starts (`train` gave a FileExistsError traceback)."""
    f = tmp_path / "afile"
    f.write_text("not a root\n")
    for root, message in [(f, f"--root {f} is a file, not a folder"),
                          (f / "sub", f"--root {f / 'sub'}: {f} is a file, not a folder")]:
        res = invoke(cmd[0], "--root", root, *cmd[1:])
        assert res.exit_code == 2, res.output
        assert res.output.strip() == f"error: {message}", res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    assert f.read_text() == "not a root\n"


@pytest.mark.pure
def test_checked_root():
    from clul_ray.cli.common import checked_root

    assert checked_root("s3://bucket/x") == "s3://bucket/x"
    assert checked_root("runs/never/made") == "runs/never/made"


def test_bad_train_input(tmp_path):
    for args, message in [
        (["--dataset", "nope"], "unknown dataset"),
        (["--shards", "0"], "invalid config: partition.shards"),
        (["--model", "transformer"], "unknown model"),
        (["--config", tmp_path / "missing.yaml"], "config file not found"),
    ]:
        root = tmp_path / "r"
        res = invoke("train", "--root", root, *args)
        assert res.exit_code == 2 and message in res.output, res.output
        assert not root.exists() or not any(root.rglob("*.json"))


def test_commands_on_an_empty_root(tmp_path):
    for cmd in ("status", "evaluate"):
        res = invoke(cmd, "--root", tmp_path / "empty")
        assert res.exit_code == 2 and "run `clul-ray train`" in res.output


# ---- the package itself: help, --verbose, --train-seed, quickstart's figures, imports -----

RAY_COMMANDS = ("train", "delete", "evaluate", "unlearn", "compare", "quickstart")


def command(name):
    return typer.main.get_command(app).commands[name]


def test_help_is_not_cut_when_piped(monkeypatch):
    """CliRunner's stdout is not a terminal, as with `clul-ray train --help | cat`: with no
    COLUMNS (or TERMINAL_WIDTH) set, help is drawn wider than rich's 80-column fallback
    and no option name or help line is cut."""
    from typer import rich_utils

    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(rich_utils, "MAX_WIDTH", None)
    res = runner.invoke(app, ["train", "--help"])
    assert res.exit_code == 0, res.output
    assert "…" not in res.output
    widest = max(len(line.rstrip()) for line in res.output.splitlines())
    assert 100 <= widest <= 120, res.output
    lines = [" ".join(line.split()) for line in res.output.splitlines()]
    for opt in command("train").params:
        assert any(opt.opts[0] in line for line in lines), opt.opts[0]
    for whole in ("--train-workers-per-shard <int> DDP workers per shard (ray_train)",
                  "--cpus-per-shard <float> CPUs per shard worker",
                  "--model <str> mlp, cnn, resnet18, gpt-tiny, module:fn"):
        assert any(whole in line for line in lines), (whole, res.output)
    assert rich_utils.MAX_WIDTH is None  # set only while help is drawn


def test_help_follows_columns(monkeypatch):
    from typer import rich_utils

    monkeypatch.setattr(rich_utils, "MAX_WIDTH", None)
    res = runner.invoke(app, ["status", "--help"], env={"COLUMNS": "70"})
    assert res.exit_code == 0
    assert max(len(line.rstrip()) for line in res.output.splitlines()) <= 70


def test_verbose_on_every_command_that_starts_ray():
    for name in RAY_COMMANDS:
        assert any("--verbose" in p.opts for p in command(name).params), name
    for name in ("status", "unlock", "lineage", "verify", "purge"):  # start no Ray
        assert not any("--verbose" in p.opts for p in command(name).params), name


def test_verbose_is_set_before_ray_starts(tmp_path, monkeypatch):
    from clul_ray.runtime import VERBOSE_ENV

    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    res = invoke("train", "--root", tmp_path / "r", "--dataset", "nope")
    assert res.exit_code == 2 and VERBOSE_ENV not in os.environ
    res = invoke("train", "--root", tmp_path / "r", "--dataset", "nope", "--verbose")
    assert res.exit_code == 2 and "unknown dataset" in res.output
    assert os.environ[VERBOSE_ENV] == "1"


def test_train_seed_is_the_train_group_seed(tmp_path):
    from clul_ray.cli.pipeline import train_config

    flat = {"shards": 2, "seed": 3, "epochs": None}
    cfg = train_config(None, flat, 5)
    assert (cfg.partition.seed, cfg.train.seed, cfg.partition.shards) == (3, 5, 2)
    assert train_config(None, flat).train.seed is None
    for text in ("dataset: digits\nseed: 1\nepochs: 2\n",
                 "data: {dataset: digits}\npartition: {seed: 1}\ntrain: {epochs: 2, seed: 9}\n"):
        f = tmp_path / "p.yaml"
        f.write_text(text)
        cfg = train_config(f, {"shards": 2, "seed": None}, 5)
        assert (cfg.partition.seed, cfg.train.seed, cfg.train.epochs) == (1, 5, 2)
        assert cfg.partition.shards == 2
    # through the command, on both paths: refused before any training
    for args in ([], ["--config", f]):
        res = invoke("train", "--root", tmp_path / "r", "--train-seed", "-1", *args)
        assert res.exit_code == 2 and "invalid config: train.seed" in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1


def test_quickstart_prints_no_misleading_speed_up():
    """The quickstart states the work a deletion saves in sample-epochs, shows compute
    seconds of the slice steps (not wall time with Ray's start-up), and prints no ratio of
    those seconds: on tiny data fixed per-step costs make that ratio mislead."""
    from rich.console import Console

    from clul_ray.cli.quickstart import cost_report
    from clul_ray.config import make_config

    cfg = make_config(dataset="digits", shards=2, slices=2, epochs=3)
    shard = np.repeat([0, 0, 1, 1], 10)
    slc = np.repeat([0, 1, 0, 1], 10)
    trained = {"per_shard": [{"train_seconds": 3.0}, {"train_seconds": 5.0}],
               "wall_seconds": {"partition_seconds": 4.0, "train_seconds": 30.0}}
    deleted = {"affected": {"0": 1}, "checkpoints_discarded": 1,
               "wall_seconds": {"retrain_seconds": 7.0, "retrain_compute_seconds": 2.0,
                                "delete": 9.0}}
    table, lines = cost_report(cfg, shard, slc, trained, deleted)
    con = Console(record=True, width=120)
    con.print(table)
    text = con.export_text()
    assert "compute seconds of the slice steps" in text
    assert "8.00" in text and "2.00" in text and "30.00" not in text and "7.00" not in text
    work = next(line for line in lines if line.startswith("work redone"))
    # eps = ceil(2*3/3) = 2; full: 2 shards x (10 + 20) x 2 = 120; redo: shard 0 slice 1: 40
    assert "40 of 120 sample-epochs (33%): the deletion costs 3.0x less training work" in work
    assert "4.0x" not in " ".join(lines) and "measured" not in work
    assert "wall time" not in work and any("9.00 s of wall time" in line for line in lines)


CLI_DIR = Path(__file__).resolve().parents[1] / "clul_ray" / "cli"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of what a module of clul_ray.cli imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "clul_ray.cli" if node.level == 1 else "clul_ray" if node.level == 2 else ""
            mod = ".".join(x for x in (base, node.module) if x) if node.level else node.module
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names


def test_cli_package_has_no_import_cycle():
    """Only .commands imports the command modules; they import .common (and the library),
    never the package itself or each other; common imports no command module."""
    modules = {p.stem for p in CLI_DIR.glob("*.py")} - {"__init__", "__main__", "commands"}
    assert {"common", "pipeline", "quickstart", "lineage", "unlearn", "tune"} <= modules
    for name in modules:
        imported = imported_modules(CLI_DIR / f"{name}.py")
        inside = {m for m in imported if m == "clul_ray.cli" or m.startswith("clul_ray.cli.")}
        assert "clul_ray.cli" not in imported and "clul_ray.cli.__init__" not in imported, name
        siblings = {m.split(".")[2] for m in inside}
        assert siblings <= {"common"} - {name}, (name, sorted(inside))
        assert (CLI_DIR / f"{name}.py").read_text().count("\n") < 300, name


def test_cli_import_is_light():
    """Loading the command line (for `--help`, a refusal) imports neither Ray nor MLflow."""
    code = ("import sys, clul_ray.cli; "
            "print(sorted(m for m in ('ray', 'mlflow') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(CLI_DIR.parents[1])})
    assert res.stdout.strip() == "[]", res.stdout + res.stderr


@pytest.mark.pure
def test_the_command_exits_with_its_code_and_flushed_output(tmp_path):
    """``main`` ends a process that started no Ray without the interpreter's teardown: the
    exit code and every line of output must survive that."""
    run = [sys.executable, "-m", "clul_ray.cli"]
    bad = subprocess.run([*run, "delete", "--root", str(tmp_path / "none"), "--ids", "1"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: ")
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "none").exists()
    ok = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "feature-unlearn" in ok.stdout and "quickstart" in ok.stdout


@pytest.mark.pure
@pytest.mark.parametrize("argv", [["delete", "--help"], ["workers", "--help"],
                                  ["delete", "--root", "r", "--ids", "1", "--bogus"],
                                  ["train", "--dataset", "no-such-source:1"]])
def test_the_app_of_one_command_reads_and_answers_as_the_whole_app(argv, monkeypatch,
                                                                  tmp_path):
    """``main`` builds only the invoked command (``app_for``): its help, its refusals and
    its exit codes are the whole app's; no command, or a word naming none, is the whole
    app."""
    from clul_ray.cli.commands import app, app_for

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TERMINAL_WIDTH", "100")
    one = app_for(argv)
    assert one is not app and [c.name for c in one.registered_commands] == [argv[0]]
    runner = CliRunner()
    got, want = runner.invoke(one, argv), runner.invoke(app, argv)
    assert (got.exit_code, got.output) == (want.exit_code, want.output)
    assert not (tmp_path / "runs").exists()
    for whole in ([], ["--help"], ["no-such-command"]):
        assert app_for(whole) is app


@pytest.mark.pure
def test_new_mlflow_databases_are_seeded_from_one_cached_empty_database(tmp_path,
                                                                        monkeypatch):
    from mlflow import MlflowClient

    from clul_ray.lineage.tracking import seed_database

    monkeypatch.setenv("CLUL_RAY_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    a.parent.mkdir()
    b.parent.mkdir()
    seed_database(str(a))
    (template,) = (tmp_path / "cache").glob("mlflow-*-empty.db")
    seed_database(str(b))
    assert a.read_bytes() == b.read_bytes() == template.read_bytes()
    client = MlflowClient(tracking_uri=f"sqlite:///{a}")  # a usable, migrated database
    exp = client.create_experiment("e", artifact_location=str(tmp_path / "art"))
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "m", 1.0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
