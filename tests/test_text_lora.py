"""Per-shard LoRA adapters over a base trained only on never-deletable documents: a person's
documents deleted from a ``gpt-tiny-lora`` root equals a fresh training without them, bit
for bit; every checkpoint holds the base unchanged; the base file keys the root (a changed
file, a missing one, one of another shape or tokenizer are refused in one line)."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from test_sisa_e2e import snapshot
from typer.testing import CliRunner

from clul_ray import Pipeline
from clul_ray.cli import app
from clul_ray.config import make_config
from clul_ray.data.sources import features, open_source
from clul_ray.errors import ClulError
from clul_ray.models import build_model, is_language_model
from clul_ray.text.base import file_sha256, read_base, train_base
from clul_ray.text.corpus import tofu_synth
from clul_ray.text.lora import base_key
from clul_ray.text.tokenizer import byte_tokenizer, learn_bpe

PEOPLE, KEPT = 6, (4, 5)  # the documents of people 4 and 5 are never deleted: the base's
TINY = ["--model-arg", "d_model=32", "--model-arg", "n_layer=1", "--model-arg", "n_head=2"]
runner = CliRunner()


def docs_parquet(path, people):
    docs = tofu_synth(PEOPLE).documents
    keep = np.isin(docs.column("person").to_numpy(), list(people))
    pq.write_table(docs.filter(pa.array(keep)).select(["id", "text", "person"]), path)
    return f"text:{path}"


def lora_cfg(data, base, **kw):
    return make_config(**{"dataset": data, "group_column": "person", "model": "gpt-tiny-lora",
                          "model_args": {"base": str(base), "r": 4}, "input_shape": [64],
                          "shards": 2, "slices": 2, "epochs": 2, "batch_size": 8,
                          "test_fraction": 0.1, "backend": "local", **kw})


def shas(result):
    return [s["model_sha256"] for s in result["per_shard"]]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lora")
    keep = docs_parquet(d / "keep.parquet", KEPT)
    res = runner.invoke(app, ["lm-base", "--corpus", keep, "--out", str(d / "base.pt"),
                              "--context", "64", "--epochs", "2", "--json", *TINY])
    assert res.exit_code == 0, res.output
    others = [p for p in range(PEOPLE) if p not in KEPT]
    return d, docs_parquet(d / "root.parquet", others), others


@pytest.fixture(scope="module")
def lora_root(files):
    d, data, _ = files
    return d / "root", Pipeline(str(d / "root")).train(lora_cfg(data, d / "base.pt"))


def test_the_base_file_records_what_it_is(files):
    d, _, _ = files
    state, meta = read_base(d / "base.pt")
    assert meta["vocab_size"] == 259 and meta["context"] == 64 and meta["tokenizer"] == "bytes"
    assert meta["model_args"] == {"d_model": 32, "n_layer": 1, "n_head": 2}
    assert meta["trained_on"]["corpus"].endswith("keep.parquet")
    assert meta["trained_on"]["rows"] == int(np.isin(
        tofu_synth(PEOPLE).documents.column("person").to_numpy(), KEPT).sum())
    assert "tok.weight" in state


def test_deleting_a_persons_documents_retrains_adapters_equal_to_a_fresh_training(
        lora_root, files):
    root, trained = lora_root
    d, _, others = files
    stored = Pipeline(str(root)).config.train.model_args
    assert stored["base_sha256"] == file_sha256(d / "base.pt")
    p = Pipeline(str(root))
    after = p.delete(p.group_ids(["2"]))
    assert len(after["retrained"]) == 1, "a person's documents sit in one shard"
    minus = docs_parquet(d / "minus.parquet", [q for q in others if q != 2])
    ref = Pipeline(str(d / "ref")).train(lora_cfg(minus, d / "base.pt"))
    assert shas(after) == shas(ref)
    assert after["ensemble_perplexity"] == ref["ensemble_perplexity"]
    kept = [k for k in range(2) if str(k) not in after["retrained"]]
    assert [shas(after)[k] for k in kept] == [shas(trained)[k] for k in kept]


def test_every_checkpoint_holds_the_base_unchanged_and_trained_adapters(lora_root, files):
    root, _ = lora_root
    base, _ = read_base(files[0] / "base.pt")
    cks = sorted((root / "checkpoints").rglob("*.pt"))
    assert cks
    for path in cks:
        state = torch.load(path, weights_only=False)["model"]
        lora = {k: v for k, v in state.items() if "lora_" in k}
        rest = {base_key(k): v for k, v in state.items() if "lora_" not in k}
        assert rest.keys() == base.keys()
        assert all(torch.equal(rest[k], base[k]) for k in base), path
        assert any(k.endswith("lora_B.default.weight") and v.abs().sum() > 0
                   for k, v in lora.items()), "the adapters trained"
    model = build_model("gpt-tiny-lora", [64], 259, {"base": str(files[0] / "base.pt"),
                                                     "r": 4})
    assert is_language_model(model)
    assert {n for n, q in model.named_parameters() if q.requires_grad} == {
        n for n, _ in model.named_parameters() if "lora_" in n}


def one_line_refusal(args, message, root):
    res = runner.invoke(app, ["train", "--root", str(root), "--backend", "local", *args])
    assert res.exit_code == 2 and message in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1, res.output
    assert not root.exists() or not any(root.rglob("*"))


def test_a_missing_base_or_one_of_another_shape_or_tokenizer_is_refused(files, tmp_path):
    d, data, _ = files
    lora = ["--dataset", data, "--model", "gpt-tiny-lora"]
    one_line_refusal([*lora, "--model-arg", f"base={tmp_path / 'none.pt'}", "--context", "64"],
                     "base model file not found", tmp_path / "a")
    one_line_refusal([*lora, "--context", "64"], "needs a base model", tmp_path / "b")
    one_line_refusal([*lora, "--model-arg", f"base={d / 'base.pt'}", "--context", "32"],
                     "has vocabulary 259 and context 64, the root 259 and 32", tmp_path / "c")
    tok = learn_bpe(["Question: Where was the author born?\nAnswer:"] * 30, 300)
    (tmp_path / "tok.json").write_text(tok.to_str())
    one_line_refusal([*lora, "--model-arg", f"base={d / 'base.pt'}", "--context", "64",
                      "--tokenizer", str(tmp_path / "tok.json")],
                     "was trained with tokenizer bytes", tmp_path / "d")
    with pytest.raises(ClulError, match="vocabulary 259 and context 64, the root 300 and 64"):
        build_model("gpt-tiny-lora", [64], 300, {"base": str(d / "base.pt")})
    res = runner.invoke(app, ["lm-base", "--corpus", "tofu-synth:3", "--out",
                              str(tmp_path / "b.pt")])
    assert res.exit_code == 2 and "--corpus must be text:PATH" in res.output, res.output
    assert not (tmp_path / "b.pt").exists()
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    one_line_refusal([*lora, "--model-arg", f"base={tmp_path / 'junk.pt'}"],
                     "is not a base model file", tmp_path / "e")


def test_a_changed_base_file_is_refused_and_changes_nothing(files, tmp_path):
    d, data, _ = files
    base = tmp_path / "base.pt"
    shutil.copy(d / "base.pt", base)
    root = tmp_path / "root"
    Pipeline(str(root)).train(lora_cfg(data, base, slices=1, epochs=1))
    keep = f"text:{d / 'keep.parquet'}"
    train_base(features(open_source(keep, input_shape=[64]).table), base, byte_tokenizer(),
               keep, {"d_model": 32, "n_layer": 1, "n_head": 2}, seed=1)  # overwritten
    before = snapshot(root)
    extra = tmp_path / "extra.parquet"
    pq.write_table(pa.table({"id": pa.array([10_000], pa.int64()), "text": ["A new document."],
                             "person": pa.array([9], pa.int64())}), extra)
    for command in (lambda p: p.add(f"text:{extra}"),
                    lambda p: p.train(lora_cfg(data, base, slices=1, epochs=1)),
                    lambda p: p.delete(p.group_ids(["0"])),
                    lambda p: p.evaluate()):
        with pytest.raises(ClulError, match="the base model file changed since this root "
                                            "was trained") as e:
            command(Pipeline(str(root)))
        assert "\n" not in str(e.value)
        assert snapshot(root) == before
