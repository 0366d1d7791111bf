"""Method params, the training recipe and the comparison spec as pydantic models: defaults,
CLI text read as before, and refusals as one-line ClulErrors naming model and field."""

from __future__ import annotations

import pytest

from clul_ray.errors import ClulError
from clul_ray.unlearn import MethodParams, get_method, method_names
from clul_ray.unlearn.compare import CompareSpec, check_spec
from clul_ray.unlearn.neggrad import NegGradParams
from clul_ray.unlearn.scrub import ScrubParams
from clul_ray.unlearn.training import TrainRecipe

pytestmark = pytest.mark.pure


def refused(method: str, config: dict, match: str) -> str:
    with pytest.raises(ClulError, match=match) as info:
        get_method(method).make_params(config)
    text = str(info.value)
    assert "\n" not in text and text.strip() == text
    return text


def test_every_method_builds_its_defaults_and_dumps_them():
    for name in method_names():
        m = get_method(name)
        p = m.make_params()
        assert isinstance(p, MethodParams) and isinstance(p, m.params_cls)
        assert p.model_dump()["seed"] == 0
        assert m.make_params(p.model_dump()) == p  # a dump reads back as itself
        assert m.make_params(p, seed=4).seed == 4 and p.seed == 0  # a copy, not an edit


def test_cli_text_is_read_as_before():
    p = get_method("scrub").make_params({"lr": "0.01", "msteps": "5.0", "epochs": "1e1",
                                          "alpha": " 2 ", "seed": "7", "batch_size": "64.",
                                          "gamma": "1e-1"})
    assert (p.lr, p.msteps, p.epochs, p.alpha, p.seed) == (0.01, 5, 10, 2.0, 7)
    assert (p.batch_size, p.gamma) == (64, 0.1)
    assert type(p.msteps) is int and type(p.alpha) is float
    assert get_method("scrub").make_params({"msteps": 4.0, "lr": 1}).msteps == 4
    for text, want in [("true", True), ("yes", True), ("on", True), ("1", True),
                       (" TRUE ", True), ("false", False), ("no", False), ("off", False),
                       ("0", False), ("Off", False)]:
        assert get_method("neggrad").make_params({"plus": text}).plus is want, text
    r = get_method("retrain").make_params({"normalize": "false", "optimizer": "sgd",
                                           "batch_size": "32"})
    assert (r.normalize, r.optimizer, r.batch_size) == (False, "sgd", 32)
    assert get_method("neggrad+").make_params({"plus": "false"}).plus is False  # over preset


def test_unknown_keys_are_refused_in_one_line():
    text = refused("salun", {"learning_rate": 0.1, "lr": 0.1},
                   r"unknown parameter\(s\) \['learning_rate'\] for method 'salun'")
    assert text.endswith("(known: batch_size, epochs, keep_fraction, lr, momentum, seed, "
                         "weight_decay)")
    refused("neggrad+", {"speed": 3}, "for method 'neggrad\\+'")


@pytest.mark.parametrize("method, config, message", [
    ("scrub", {"lr": "abc"}, "parameter scrub.lr must be a number > 0, got 'abc'"),
    ("scrub", {"msteps": "two"}, "parameter scrub.msteps must be an integer >= 0, got 'two'"),
    ("scrub", {"msteps": 2.5}, "parameter scrub.msteps must be an integer >= 0, got 2.5"),
    ("scrub", {"epochs": None}, "parameter scrub.epochs must be an integer >= 0, got None"),
    ("neggrad", {"plus": "maybe"}, "parameter neggrad.plus must be true or false, got 'maybe'"),
    ("finetune", {"optimizer": "rmsprop"},
     "parameter finetune.optimizer must be one of 'adam', 'sgd', got 'rmsprop'"),
    ("neural_mask", {"threshold": "x"}, "parameter neural_mask.threshold must be a number, "
                                        "got 'x'"),
])
def test_ill_typed_values_are_refused_in_one_line(method, config, message):
    assert refused(method, config, "must be") == message


@pytest.mark.parametrize("method, key, value, want", [
    ("scrub", "lr", -1, "a number > 0"),
    ("scrub", "temperature", 0, "a number > 0"),
    ("scrub", "forget_batch_size", 0, "an integer >= 1"),
    ("scrub", "msteps", -1, "an integer >= 0"),
    ("neggrad+", "beta", 1.5, "a number in [0, 1]"),
    ("neggrad", "forget_batch_size", "0", "an integer >= 1"),
    ("bad_teacher", "retain_fraction", -0.1, "a number in [0, 1]"),
    ("bad_teacher", "temperature", -2, "a number > 0"),
    ("mi_reg", "gamma", -1, "a number >= 0"),
    ("salun", "keep_fraction", 0, "a number in (0, 1]"),
    ("salun", "batch_size", 0, "an integer >= 1"),
    ("retrain", "weight_decay", -1, "a number >= 0"),
    ("retrain", "momentum", -0.5, "a number >= 0"),
    ("random_label", "epochs", -1, "an integer >= 0"),
])
def test_out_of_range_values_are_refused_in_one_line(method, key, value, want):
    text = refused(method, {key: value}, "must be")
    assert text == f"parameter {method}.{key} must be {want}, got {value!r}"


def test_the_old_bounds_are_kept_where_they_were():
    """Fields the dataclasses never checked stay unchecked (no new refusals)."""
    assert get_method("scrub").make_params({"weight_decay": -1, "alpha": -1}).alpha == -1
    assert get_method("neggrad").make_params({"momentum": -1}).momentum == -1
    assert get_method("salun").make_params({"weight_decay": -1}).weight_decay == -1
    assert get_method("scrub").make_params({"epochs": 0, "msteps": 0}).epochs == 0


def test_params_classes_refuse_directly_too():
    with pytest.raises(ClulError, match=r"^parameter ScrubParams.lr must be a number > 0"):
        ScrubParams(lr=0)
    with pytest.raises(ClulError, match=r"unknown parameter\(s\) \['bogus'\]"):
        NegGradParams(bogus=1)
    with pytest.raises(ClulError, match="neggrad needs NegGradParams, got ScrubParams"):
        get_method("neggrad").make_params(ScrubParams())


def test_recipe_and_compare_spec_refuse_in_one_line():
    assert TrainRecipe() == TrainRecipe(epochs=20, lr=1e-3, batch_size=64, optimizer="adam",
                                        momentum=0.9, weight_decay=0.0, normalize=True)
    for kwargs, message in [
        (dict(epochs=-1), "parameter recipe.epochs must be an integer >= 0, got -1"),
        (dict(lr=0), "parameter recipe.lr must be a number > 0, got 0"),
        (dict(optimizer="x"), "parameter recipe.optimizer must be one of 'adam', 'sgd', "
                              "got 'x'"),
        (dict(normalize="perhaps"), "parameter recipe.normalize must be true or false, "
                                    "got 'perhaps'"),
    ]:
        with pytest.raises(ClulError) as info:
            TrainRecipe(**kwargs)
        assert str(info.value) == message
    for kwargs, message in [
        (dict(seeds=0), "parameter compare.seeds must be an integer >= 1, got 0"),
        (dict(test_fraction=1.0), "parameter compare.test_fraction must be a number in "
                                  "(0, 1), got 1.0"),
        (dict(backend="gpu"), "parameter compare.backend must be one of 'ray', 'local', "
                              "got 'gpu'"),
        (dict(recipe={"batch_size": 0}), "parameter recipe.batch_size must be an integer "
                                         ">= 1, got 0"),
        (dict(colour="red"), "unknown parameter(s) ['colour'] for 'compare'"),
    ]:
        with pytest.raises(ClulError) as info:
            CompareSpec(**kwargs)
        assert str(info.value).startswith(message), str(info.value)
    spec = CompareSpec(seeds="2", recipe={"epochs": "3"}, params={"scrub": {"lr": "0.1"}},
                       methods=["scrub"])
    assert spec.seeds == 2 and spec.recipe.epochs == 3
    assert check_spec(spec) == ["retrain", "scrub"]
    with pytest.raises(ClulError, match="parameter scrub.lr must be a number > 0"):
        check_spec(CompareSpec(params={"scrub": {"lr": "-1"}}, methods=["scrub"]))
