"""The command line: JSON output, one-line refusals with exit code 2, nothing changed."""

from __future__ import annotations

import json

import pytest
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
    ev = invoke("evaluate", "--root", root, "--json")
    assert json.loads(ev.stdout)["ensemble_accuracy"] == d["ensemble_accuracy"]


@pytest.fixture
def cli_root(trained_root):
    return trained_root[0]


@pytest.mark.parametrize("args, message", [
    (["--ids", "1,x,3"], "item 2 is not an integer id"),
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
    assert res.exit_code == 2 and "line 2 is not an integer id: '2.5'" in res.output
    res = invoke("delete", "--root", cli_root, "--ids-file", tmp_path / "none.txt")
    assert res.exit_code == 2 and "ids file not found" in res.output


def test_bad_train_input(tmp_path):
    for args, message in [
        (["--dataset", "nope"], "unknown dataset"),
        (["--shards", "0"], "invalid config: shards"),
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
