"""The language-model unlearning methods: they forget, leave the input model alone, are
reproducible, hold the retain set when asked, and refuse the wrong model or bad params."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clul_ray.errors import ClulError
from clul_ray.models import build_model
from clul_ray.text.lm import gpt_tiny, lm_loss, sequence_nll
from clul_ray.text.tokenizer import byte_tokenizer, encode
from clul_ray.unlearn import Split, get_method, method_names, unlearn_model

pytestmark = pytest.mark.pure

LM_METHODS = ["ga", "grad_diff", "npo", "simnpo", "rmu", "kl_retain"]


def split(x: torch.Tensor) -> Split:
    return Split(x, torch.zeros(len(x), dtype=torch.int64))


@pytest.fixture(scope="module")
def memorised():
    """A one-block gpt-tiny trained on 16 random short strings; 4 of them are forgotten."""
    rng = np.random.default_rng(0)
    texts = ["".join(chr(c) for c in rng.integers(97, 123, size=rng.integers(6, 14)))
             for _ in range(16)]
    ids, cut = encode(byte_tokenizer(), texts, 32)
    assert cut == 0
    x = torch.tensor(ids, dtype=torch.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = gpt_tiny((32,), 259, d_model=32, n_layer=1, n_head=2)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(60):
            opt.zero_grad()
            lm_loss(model, x).backward()
            opt.step()
    model.eval()
    return model, split(x[:4]), split(x[4:])


def mean_nll(model, s: Split) -> float:
    with torch.no_grad():
        return float(sequence_nll(model, s.x).mean())


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lm_methods_are_registered_by_task():
    assert method_names(task="lm") == LM_METHODS
    classify = method_names(task="classify")
    assert "neggrad" in classify and "retrain" in classify
    assert not set(classify) & set(LM_METHODS)
    assert method_names() == classify + LM_METHODS
    for name in LM_METHODS:
        assert get_method(name).task == "lm"
    assert get_method("neggrad+").task == "classify"
    with pytest.raises(ClulError, match="unknown task 'vision'"):
        method_names(task="vision")


@pytest.mark.parametrize("method", LM_METHODS)
def test_method_raises_forget_nll_and_keeps_the_input(memorised, method):
    model, forget, retain = memorised
    before = state(model)
    unlearned, report = unlearn_model(model, forget, retain, method)
    assert mean_nll(unlearned, forget) > mean_nll(model, forget) + 1.0, method
    assert same(state(model), before)  # the input model is never modified
    assert not same(state(unlearned), before)
    assert report.method == method and report.changes_weights
    assert report.details["steps"] == get_method(method).make_params().steps
    assert not unlearned.training
    assert all(q.requires_grad and q.grad is None for q in unlearned.parameters())


@pytest.mark.parametrize("method", LM_METHODS)
def test_runs_are_reproducible_bit_for_bit(memorised, method):
    model, forget, retain = memorised
    a, _ = unlearn_model(model, forget, retain, method, {"steps": 5}, seed=3)
    b, _ = unlearn_model(model, forget, retain, method, {"steps": 5}, seed=3)
    assert same(state(a), state(b))


def test_rmu_direction_follows_the_seed(memorised):
    model, forget, retain = memorised
    a, _ = unlearn_model(model, forget, retain, "rmu", {"steps": 5}, seed=0)
    b, _ = unlearn_model(model, forget, retain, "rmu", {"steps": 5}, seed=1)
    assert not same(state(a), state(b))


def test_rmu_trains_only_the_blocks_up_to_its_layer():
    torch.manual_seed(0)
    model = gpt_tiny((16,), 259, d_model=16, n_layer=3, n_head=2).eval()
    x = torch.tensor(encode(byte_tokenizer(), ["abcde", "fghij", "klmno"], 16)[0],
                     dtype=torch.float32)
    out, report = unlearn_model(model, split(x[:1]), split(x[1:]), "rmu",
                                {"layer": 2, "update_layers": 1, "steps": 3})
    assert report.details["trained_blocks"] == [2]
    old, new = state(model), state(out)
    changed = {k.split(".")[1] for k in old if k.startswith("blocks.")
               and not torch.equal(old[k], new[k])}
    assert changed == {"1"}  # block 2 is blocks[1]
    assert all(torch.equal(old[k], new[k]) for k in old if not k.startswith("blocks."))
    with pytest.raises(ClulError, match=r"rmu: layer must be in 1\.\.3"):
        unlearn_model(model, split(x[:1]), split(x[1:]), "rmu", {"layer": 4})


@pytest.mark.parametrize("method", ["grad_diff", "kl_retain", "npo"])
def test_a_retain_term_holds_the_retain_set(memorised, method):
    model, forget, retain = memorised
    steps = {"steps": 30}
    ga, _ = unlearn_model(model, forget, retain, "ga", steps)
    held, report = unlearn_model(model, forget, retain, method, {**steps, "alpha": 1.0})
    assert report.details["retain_term"]
    assert mean_nll(held, retain) < mean_nll(ga, retain)
    rise_f = mean_nll(held, forget) - mean_nll(model, forget)
    rise_r = mean_nll(held, retain) - mean_nll(model, retain)
    assert rise_r < rise_f


def test_an_empty_retain_set_drops_the_retain_term(memorised):
    model, forget, _ = memorised
    empty = split(forget.x[:0])
    out, report = unlearn_model(model, forget, empty, "grad_diff", {"steps": 5})
    ga, _ = unlearn_model(model, forget, empty, "ga", {"steps": 5})
    assert not report.details["retain_term"]
    assert same(state(out), state(ga))


def test_methods_refuse_the_other_kind_of_model(memorised):
    model, forget, retain = memorised
    clf = build_model("mlp", (4,), 3)
    rows = Split(torch.zeros(4, 4), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ClulError, match="ga unlearns a language model, got a classifier") as e:
        unlearn_model(clf, rows, rows, "ga")
    assert "\n" not in str(e.value)
    with pytest.raises(ClulError, match="neggrad unlearns a classifier, got a language "
                                        "model") as e:
        unlearn_model(model, forget, retain, "neggrad")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("config, match", [
    ({"epochs": 3}, r"unknown parameter\(s\) \['epochs'\] for method 'npo'"),
    ({"beta": 0}, "parameter npo.beta must be a number > 0, got 0"),
    ({"alpha": -1}, "parameter npo.alpha must be a number >= 0, got -1"),
    ({"steps": "many"}, "parameter npo.steps"),
])
def test_bad_params_are_refused_in_one_line(config, match):
    with pytest.raises(ClulError, match=match) as e:
        get_method("npo").make_params(config)
    assert "\n" not in str(e.value)


def test_rmu_refuses_a_layer_below_one():
    with pytest.raises(ClulError, match="parameter rmu.layer must be an integer >= 1"):
        get_method("rmu").make_params({"layer": 0})


@pytest.mark.parametrize("method", LM_METHODS)
def test_each_method_has_a_search_space_of_its_params(method):
    m = get_method(method)
    space = m.search_space()
    assert space and set(space) <= set(m.params_cls.model_fields) - {"seed"}
    assert m.params_cls.__doc__ and m.params_cls.__doc__.strip()


def test_compare_and_tune_take_only_classifier_methods():
    from clul_ray.tune.sweep import resolve_methods as sweep_methods
    from clul_ray.unlearn.compare import resolve_methods as compare_methods

    assert not set(compare_methods(["all"])) & set(LM_METHODS)
    assert not set(sweep_methods(["all"])) & set(LM_METHODS)
    with pytest.raises(ClulError, match="npo unlearns language models"):
        compare_methods(["npo"])
    with pytest.raises(ClulError, match="npo unlearns language models"):
        sweep_methods(["npo"])
