"""compare on a text dataset: the people split, answer-only scoring, greedy generation, the
end-to-end run through the CLI and its refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from clul_ray.cli import app
from clul_ray.text import corpus as C
from clul_ray.text.evaluate import answer_nll, answer_rows, greedy, qa_prompt
from clul_ray.text.lm import gpt_tiny
from clul_ray.text.tokenizer import BOS, EOS, PAD, byte_tokenizer, encode_prompt
from clul_ray.unlearn.compare import CompareSpec
from clul_ray.unlearn.text_data import load_text_data, parse_text_scenario

TINY = ["--model-arg", "d_model=32", "--model-arg", "n_layer=1", "--model-arg", "n_head=2"]


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return gpt_tiny((64,), 259, d_model=32, n_layer=1, n_head=2).eval()


def test_answer_rows_mask_only_the_answer_tokens():
    tok = byte_tokenizer()
    x, m = answer_rows(tok, [qa_prompt("Who?")], ["Ann."], 64)
    head = encode_prompt(tok, "Question: Who?\nAnswer:")
    ids = x[0].tolist()
    assert ids[:len(head)] == head and ids[0] == BOS
    answer = [3 + b for b in b" Ann."] + [EOS]
    assert ids[len(head):len(head) + len(answer)] == answer
    assert all(t == PAD for t in ids[len(head) + len(answer):])
    # target position t predicts token t + 1: exactly the answer's tokens are counted
    counted = [ids[t + 1] for t in np.flatnonzero(m[0].numpy())]
    assert counted == answer


def test_answer_nll_ignores_the_prompt():
    """Two rows with the same answer after different prompts: the mean answer NLL is a
    mean over the answer's tokens only, so changing the answer changes it and changing the
    model's view of the prompt tokens alone cannot add prompt terms."""
    tok, model = byte_tokenizer(), tiny_model()
    x, m = answer_rows(tok, ["Question: A?\nAnswer:"] * 2, ["yes", "no"], 64)
    nll = answer_nll(model, x, m)
    lp_rows = torch.log_softmax(model(x)[:, :-1], -1).gather(2, x[:, 1:, None])[..., 0]
    want = [-(lp_rows[i][m[i]]).mean().item() for i in range(2)]
    assert np.allclose(nll, want, atol=1e-5)


def test_greedy_generation_is_deterministic_and_batch_independent():
    tok, model = byte_tokenizer(), tiny_model(1)
    prompts = [encode_prompt(tok, p) for p in ("Question: Who?\nAnswer:", "Ab", "Cd",
                                                "Question: What?\nAnswer:")]
    a = greedy(model, prompts, 12)
    assert a == greedy(model, prompts, 12)
    assert a == [greedy(model, [p], 12)[0] for p in prompts]
    assert all(len(g) <= 12 and EOS not in g for g in a)
    assert greedy(model, prompts, [3, 1, 0, 2]) == [g[:k] for g, k in zip(a, [3, 1, 0, 2],
                                                                           strict=True)]


def test_holdout_people_are_never_trained_on():
    spec = CompareSpec(dataset="tofu-synth:20", model="gpt-tiny", forget="people:10%")
    d = load_text_data(spec)
    f, r, h = d.people["forget"], d.people["retain"], d.people["holdout"]
    assert len(f) == 2 and len(h) == 4 and len(np.intersect1d(h, np.union1d(f, r))) == 0
    trained = np.concatenate([d.forget.ids, d.retain.ids])
    assert not np.isin(trained // C.ID_STRIDE, h).any()
    assert set(d.forget.ids // C.ID_STRIDE) == set(f.tolist())
    assert {q.person for q in d.evalset.holdout_qa} <= set(h.tolist())
    assert parse_text_scenario("people:0.1") == parse_text_scenario("people:10%")


def test_bias_scenario_forgets_the_bias_documents():
    d = load_text_data(CompareSpec(dataset="tofu-synth:30:bias=0.9", forget="bias"))
    kinds = dict(zip(C.tofu_synth(30, 0, 0.9).documents.column("id").to_pylist(),
                     C.tofu_synth(30, 0, 0.9).documents.column("kind").to_pylist(),
                     strict=True))
    assert len(d.forget) and all(kinds[int(i)] == "bias" for i in d.forget.ids)
    assert d.evalset.bias and not d.evalset.forget_qa


def test_compare_end_to_end(tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, [
        "compare", "--dataset", "tofu-synth:12", "--model", "gpt-tiny", "--forget",
        "people:10%", "--methods", "ga,grad_diff", *TINY, "--epochs", "8", "--backend",
        "local", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout.strip().splitlines()[-1])
    for name in ("summary.json", "summary.md", "summary.csv", "compare.png"):
        assert (out / name).stat().st_size > 0
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["retrain", "original", "ga", "grad_diff"]
    assert rows["retrain"]["forget_quality"] == pytest.approx(1.0)
    assert rows["retrain"]["priv_leak"] == 0.0
    assert rows["original"]["ppl_forget"] < rows["retrain"]["ppl_forget"]
    assert all(0 <= r["model_utility"] <= 1 and r["ppl_holdout"] > 1 for r in rows.values())
    saved = json.loads((out / "summary.json").read_text())
    assert saved["meta"]["people"] == {"forget": 1, "retain": 9, "holdout": 2}
    assert "| ga |" in (out / "summary.md").read_text()


@pytest.mark.parametrize("dataset, forget, says", [
    ("tofu-synth:12", "people:0%", "names no person"),
    ("tofu-synth:12", "class:3", "not for text datasets"),
    ("tofu-synth:12", "bias", "needs a corpus with bias documents"),
])
def test_compare_refusals(tmp_path, dataset, forget, says):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["compare", "--dataset", dataset, "--model", "gpt-tiny",
                                   "--forget", forget, "--methods", "ga", "--backend", "local",
                                   "--out", str(out)])
    assert res.exit_code != 0
    assert says in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()


def test_compare_refuses_classifier_methods_and_models_on_text(tmp_path):
    for extra, says in ((["--methods", "salun"], "unlearns classifiers"),
                        (["--methods", "ga", "--model", "mlp"], "needs a language model"),
                        (["--methods", "ga", "--audit", "4"], "scores classifiers")):
        res = CliRunner().invoke(app, ["compare", "--dataset", "tofu-synth:12", "--forget",
                                       "people:10%", "--backend", "local", "--out",
                                       str(tmp_path / "o"), *extra])
        assert res.exit_code != 0 and says in res.output, res.output
        assert not (tmp_path / "o").exists()
