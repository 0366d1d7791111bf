"""Exact deletion for text roots: a person's documents deleted from a SISA root of tiny
language models equals a fresh training without them, bit for bit; placement by group;
the tokenizer as part of the root; refusals of bad text input; the service's text routes."""

from __future__ import annotations

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
from clul_ray.errors import ClulError
from clul_ray.text.corpus import ids_of_people, tofu_synth
from clul_ray.text.tokenizer import learn_bpe, vocab_size

LM = dict(model="gpt-tiny", model_args={"d_model": 32, "n_layer": 1, "n_head": 2},
          input_shape=[64], shards=3, slices=2, epochs=2, batch_size=8, test_fraction=0.1)
PEOPLE = 6
runner = CliRunner()


def text_cfg(**kw):
    return make_config(**{"dataset": f"tofu-synth:{PEOPLE}", "group_column": "person",
                          **LM, **kw})


def corpus_parquet(path, drop_people=(), group=True):
    docs = tofu_synth(PEOPLE).documents
    keep = ~np.isin(docs.column("person").to_numpy(), list(drop_people))
    cols = ["id", "text", "person"] if group else ["id", "text"]
    pq.write_table(docs.filter(pa.array(keep)).select(cols), path)
    return f"text:{path}"


def shas(result):
    return [s["model_sha256"] for s in result["per_shard"]]


@pytest.fixture(scope="module")
def text_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("text") / "root"
    return root, Pipeline(str(root)).train(text_cfg())


def test_deleting_a_persons_documents_equals_training_without_them(text_root,
                                                                    tmp_path_factory):
    """On the session's Ray: `delete --group` of one person retrains only the shard that
    held them and gives the models (and the perplexity) of a fresh training without the
    person, made in this process from a user's Parquet of the other documents."""
    root, trained = text_root
    p = Pipeline(str(root))
    ids = p.group_ids(["2"])
    assert ids == ids_of_people(tofu_synth(PEOPLE), [2]).tolist()
    after = p.delete(ids)
    assert len(after["retrained"]) == 1, "a person's documents sit in one shard"
    data = corpus_parquet(tmp_path_factory.mktemp("minus") / "docs.parquet", [2])
    ref = Pipeline(str(tmp_path_factory.mktemp("ref") / "root")).train(
        text_cfg(dataset=data, backend="local"))
    assert shas(after) == shas(ref)
    assert after["ensemble_perplexity"] == ref["ensemble_perplexity"]
    kept = [k for k in range(3) if str(k) not in after["retrained"]]
    assert [shas(after)[k] for k in kept] == [shas(trained)[k] for k in kept]
    with pytest.raises(ClulError, match="group '2' names no rows"):
        p.group_ids(["2"])


@pytest.mark.pure
def test_placement_by_person_retrains_one_shard_where_id_placement_retrains_more(tmp_path):
    from clul_ray.data.partition import assign

    docs = tofu_synth(40).documents
    ids, people = docs.column("id").to_numpy(), docs.column("person").to_numpy()
    by_group, _ = assign(0, ids, 8, 4, people)
    by_id, _ = assign(0, ids, 8, 4)
    for person in range(40):
        mine = people == person
        assert len(set(by_group[mine])) == 1
    spread = [len(set(by_id[people == k])) for k in range(40)]
    assert np.mean(spread) > 3, "a person's ~8 documents spread over several of 8 shards"


@pytest.mark.pure
def test_a_learned_tokenizer_is_stored_with_the_root_and_checked(tmp_path):
    """A BPE vocabulary learned from a never-deletable corpus: stored with the root and
    named by digest; a root whose stored tokenizer does not match refuses to add rows, and
    training the root again with another tokenizer is refused, changing nothing."""
    tok = learn_bpe(["Question: Where was the author born?\nAnswer:"] * 30, 300)
    (tmp_path / "tok.json").write_text(tok.to_str())
    root = tmp_path / "root"
    cfg = text_cfg(tokenizer=str(tmp_path / "tok.json"), backend="local", shards=2, slices=1,
                   epochs=1)
    out = Pipeline(str(root)).train(cfg)
    assert out["ensemble_perplexity"] > 1
    stored = Pipeline(str(root)).config
    assert stored.data.tokenizer.startswith("sha256:")
    assert stored.data.num_classes == vocab_size(tok) > 259
    assert (root / "tokenizer.json").read_text() == tok.to_str()
    before = snapshot(root)
    with pytest.raises(ClulError, match="partitioned with other tokenizer"):
        Pipeline(str(root)).train(text_cfg(backend="local", shards=2, slices=1, epochs=1))
    other = learn_bpe(["something else entirely"] * 30, 300)
    (root / "tokenizer.json").write_text(other.to_str())
    before = snapshot(root)
    extra = corpus_parquet(tmp_path / "x.parquet")
    with pytest.raises(ClulError, match="tokenizer mismatch with the root"):
        Pipeline(str(root)).add(extra)
    assert snapshot(root) == before


@pytest.mark.pure
@pytest.mark.parametrize("table, message", [
    (pa.table({"id": pa.array([1, 2], pa.int64()), "text": ["a b", ""]}),
     "empty or missing text in 1 rows (first id 2)"),
    (pa.table({"id": pa.array([1, 2], pa.int64()), "text": pa.array([b"ok", b"\xff\xfe"])}),
     "non-UTF-8 bytes in 1 rows (first id 2)"),
    (pa.table({"id": pa.array([1], pa.int64()), "body": ["x"]}), "missing required column 'text'"),
    (pa.table({"id": pa.array([], pa.int64()), "text": pa.array([], pa.string())}),
     "the dataset is empty"),
])
def test_bad_text_input_is_one_line_and_writes_nothing(tmp_path, table, message):
    pq.write_table(table, tmp_path / "bad.parquet")
    root = tmp_path / "r"
    res = runner.invoke(app, ["train", "--root", str(root), "--dataset",
                              f"text:{tmp_path / 'bad.parquet'}", "--model", "gpt-tiny",
                              "--backend", "local"])
    assert res.exit_code == 2 and message in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not root.exists() or not any(root.rglob("*"))


@pytest.mark.pure
@pytest.mark.parametrize("args, message", [
    (["--dataset", "digits", "--model", "gpt-tiny"], "gpt-tiny is a language model"),
    (["--dataset", "tofu-synth:4", "--model", "mlp"], "is text: train a language model"),
    (["--dataset", "tofu-synth:0", "--model", "gpt-tiny"], "must be positive"),
    (["--dataset", "tofu-synth:4", "--model", "gpt-tiny", "--group-column", "author"],
     "group column 'author' not found"),
])
def test_models_and_data_of_other_kinds_are_refused(tmp_path, args, message):
    root = tmp_path / "r"
    res = runner.invoke(app, ["train", "--root", str(root), "--backend", "local", *args])
    assert res.exit_code == 2 and message in res.output, res.output
    assert not root.exists() or not any(root.rglob("*"))


def test_delete_by_group_refusals(text_root, tmp_path):
    root, _ = text_root
    before = snapshot(root)
    for args, message in [(["--group", "no-such-person"], "names no rows"),
                          (["--group", "1", "--ids", "5"], "--group names the rows itself")]:
        res = runner.invoke(app, ["delete", "--root", str(root), *args])
        assert res.exit_code == 2 and message in res.output, res.output
    assert snapshot(root) == before
    plain = tmp_path / "plain"
    Pipeline(str(plain)).train(text_cfg(group_column=None, backend="local", shards=2,
                                        slices=1, epochs=1))
    res = runner.invoke(app, ["delete", "--root", str(plain), "--group", "1"])
    assert res.exit_code == 2 and "was not placed by group" in res.output


@pytest.mark.pure
def test_trimmed_batches_score_as_full_ones():
    from clul_ray.text.ensemble import mean_logprobs
    from clul_ray.text.lm import gpt_tiny, token_logprobs
    from clul_ray.text.tokenizer import byte_tokenizer, encode

    torch.manual_seed(0)
    m = gpt_tiny((40,), 259, d_model=16, n_layer=1, n_head=2).eval()
    x = torch.from_numpy(encode(byte_tokenizer(), ["short", "a bit longer text"], 40)[0]
                         .astype(np.float32))
    with torch.no_grad():
        lp, mask = token_logprobs(m, x)
        full = torch.log_softmax(m(x)[:, :-1], -1).gather(
            2, x[:, 1:].long().unsqueeze(2)).squeeze(2) * mask
        ens, _ = mean_logprobs([m, m], x)
    assert lp.shape == (2, 39) and int(mask.sum()) == 5 + 1 + 17 + 1
    assert torch.allclose(lp, full, atol=1e-5)
    assert torch.allclose(ens, lp, atol=1e-5)


def test_the_service_scores_and_generates_with_the_shards_that_may_vote(text_root, tmp_path):
    """A text root served (in process, no HTTP): /score and /generate use the mean of the
    voting shards' distributions; while a person's deletion is pending their shard does not
    vote; after the commit the scores are those of the new version's models; /predict is
    refused on a text root."""
    import shutil
    import time

    from clul_ray.faults import Faults
    from clul_ray.serve.service import DeletionService
    from clul_ray.sisa.records.checkpoint import load_shard_model
    from clul_ray.text.ensemble import score_texts
    from clul_ray.text.tokenizer import byte_tokenizer

    src, _ = text_root
    shutil.copytree(src, tmp_path / "root")
    svc = DeletionService(str(tmp_path / "root"), lineage=False,
                          faults=Faults(retrain_delay_s=1.0))
    try:
        texts = ["Question: Where was the author born?\nAnswer:", "A short line."]
        first = svc.text("score", texts)
        trained = [s.shard for s in svc.pipeline.state.trained_shards()]
        assert first["shards"] == trained and len(first["scores"]) == 2
        gen = svc.text("generate", "Question: What", 8)
        assert gen == svc.text("generate", "Question: What", 8) and gen["tokens"] <= 8
        with pytest.raises(ClulError, match="serves a language model"):
            svc.features([[1.0] * 64])
        ack = svc.submit(svc.pipeline.group_ids(["4"]))
        pending = svc.text("score", texts)
        assert pending["excluded"] == [int(k) for k in ack["affected"]]
        assert not set(pending["shards"]) & set(pending["excluded"])
        deadline = time.time() + 120
        while svc.describe()["pending"] and time.time() < deadline:
            time.sleep(0.2)
        after = svc.text("score", texts)
        assert after["version"] == first["version"] + 1 and after["excluded"] == []
        cfg, store = svc.pipeline.config, svc.pipeline.store
        models = [load_shard_model(cfg, store, s).eval()
                  for s in svc.pipeline.state.trained_shards()]
        assert after["scores"] == score_texts(models, byte_tokenizer(), 64, texts)
    finally:
        svc.close()
