"""Scenario-dependent strengths: the quantities the methods read off their splits, and the
rules built on them (benchmarks/defaults_study.py chose the defaults)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_unlearn import acc, digits  # noqa: F401 (fixtures)

from clul_ray.unlearn import Split, unlearn_model
from clul_ray.unlearn.strength import (
    epochs_for,
    forget_accuracy,
    forget_fraction,
    run_until_forgotten,
    whole_classes,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def split(labels: list[int]) -> Split:
    return Split(torch.zeros(len(labels), 2), torch.tensor(labels))


def test_whole_classes_and_forget_fraction():
    assert whole_classes(split([3, 3, 5]), split([0, 1, 2, 4]))
    assert not whole_classes(split([3, 0]), split([0, 1, 2]))
    assert not whole_classes(split([]), split([0, 1]))
    assert forget_fraction(split([1, 1]), split([0] * 6)) == 0.25


@pytest.mark.parametrize("epochs,min_steps,n,batch,want", [
    (1, 10, 1000, 256, 3),   # 4 steps per epoch: 3 epochs reach 10
    (1, 10, 110, 256, 10),   # one batch per epoch (wine-sized)
    (5, 10, 1000, 256, 5),   # already enough
    (1, 0, 110, 256, 1),     # off
    (2, 10, 0, 256, 2),      # nothing to pass over
])
def test_epochs_for_raises_epochs_to_reach_min_steps(epochs, min_steps, n, batch, want):
    assert epochs_for(epochs, min_steps, n, batch) == want


FORGET_1D = Split(torch.tensor([[1.0], [2.0], [3.0]]), torch.zeros(3, dtype=torch.long))


def scripted(moves: list[float]) -> tuple[torch.nn.Linear, int]:
    """``run_until_forgotten`` on a 1-d, 2-class linear model whose step k adds ``moves[k]``
    to the class-0 weight w (SGD, lr 1; one row per batch), the forget rows x = 1, 2, 3 of
    class 0, biases 1 and 0: a row is right while 1 + w·x >= 0. Returns the model and the
    steps it made."""
    model = torch.nn.Linear(1, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([1.0, 0.0]))
    step = iter(moves)
    steps, _ = run_until_forgotten(model, torch.optim.SGD(model.parameters(), lr=1.0), 0, 1,
                                   len(moves), 1, lambda idx: -model.weight[0, 0] * next(step),
                                   FORGET_1D)
    return model, steps


def test_run_until_forgotten_stops_at_zero_or_ends_on_the_best_step():
    # margins 1 + w·x, x = 1..3: w = -0.4 -> x=3 wrong (FA 2/3); w = 0.1 -> all right
    model, steps = scripted([-0.4, 0.5, 0.0])
    assert steps == 3
    assert model.weight[0, 0].item() == pytest.approx(-0.4)  # back to the best step
    assert forget_accuracy(model, FORGET_1D) == pytest.approx(2 / 3)
    # w = -2 leaves every margin below 0: stop there, the later moves never run
    model, steps = scripted([-0.4, -1.6, 5.0, 5.0])
    assert steps == 2 and model.weight[0, 0].item() == pytest.approx(-2.0)
    # without a forget set: every step, no check
    lin = torch.nn.Linear(1, 2)
    moves = iter([1.0, 1.0])
    steps, epochs = run_until_forgotten(lin, torch.optim.SGD(lin.parameters(), lr=1.0), 0, 1,
                                        2, 1, lambda idx: -lin.weight[0, 0] * next(moves), None)
    assert (steps, epochs) == (2, 1)


def random_half(data: dict, frac: float = 0.1) -> tuple[Split, Split]:
    """A seeded random ``frac`` of the retain rows as a forget set (not whole classes)."""
    r = data["retain"]
    pick = np.random.default_rng(0).permutation(len(r))
    k = round(frac * len(r))
    f, rest = pick[:k], pick[k:]
    return Split(r.x[f], r.y[f]), Split(r.x[rest], r.y[rest])


def test_neggrad_stops_once_a_whole_class_is_forgotten(digits):  # noqa: F811
    data, original, _ = digits
    model, report = unlearn_model(original, data["forget"], data["retain"], "neggrad")
    d = report.details
    assert d["whole_classes"] and 1 <= d["epochs"] < 30
    assert acc(model, data["forget"]) == 0.0
    per_epoch = math.ceil(len(data["forget"]) / 64)
    assert (d["epochs"] - 1) * per_epoch < d["steps"] <= d["epochs"] * per_epoch
    # without the stop it runs every epoch
    _, full = unlearn_model(original, data["forget"], data["retain"], "neggrad",
                            {"epochs": d["epochs"] + 2, "until_forgotten": False})
    assert full.details["epochs"] == d["epochs"] + 2


def test_neggrad_on_a_random_sample_runs_partial_epochs(digits):  # noqa: F811
    data, original, _ = digits
    forget, retain = random_half(data)
    model, report = unlearn_model(original, forget, retain, "neggrad", {"partial_epochs": 2})
    assert not report.details["whole_classes"]
    assert report.details["epochs"] == 2
    assert report.details["steps"] == 2 * math.ceil(len(forget) / 64)
    assert acc(model, data["test_other"]) > acc(original, data["test_other"]) - 0.05


def test_scrub_raises_max_steps_only_on_whole_classes(digits):  # noqa: F811
    data, original, _ = digits
    params = {"epochs": 1, "msteps": 1, "min_max_steps": 12}
    _, cls = unlearn_model(original, data["forget"], data["retain"], "scrub", params)
    per_epoch = math.ceil(len(data["forget"]) / 32)
    assert cls.details["msteps"] == math.ceil(12 / per_epoch)
    assert cls.details["max_steps"] == cls.details["msteps"] * per_epoch >= 12
    assert cls.details["epochs"] == cls.details["msteps"]  # epochs raised with msteps
    forget, retain = random_half(data)
    _, rnd = unlearn_model(original, forget, retain, "scrub", params)
    assert rnd.details["msteps"] == 1 and rnd.details["epochs"] == 1


def test_neural_mask_contrast_masks_the_class_units_not_a_random_sample(digits):  # noqa: F811
    data, original, _ = digits
    masked, cls = unlearn_model(original, data["forget"], data["retain"], "neural_mask")
    assert cls.details["rule"] == "contrast" and cls.details["units_masked"] > 0
    assert acc(masked, data["forget"]) < 0.05
    forget, retain = random_half(data)
    _, rnd = unlearn_model(original, forget, retain, "neural_mask")
    _, absolute = unlearn_model(original, forget, retain, "neural_mask",
                                {"rule": "absolute", "threshold": 0.5})
    assert rnd.details["units_masked"] < absolute.details["units_masked"] / 4


@pytest.mark.parametrize("method", ["bad_teacher", "random_label"])
def test_min_steps_raise_epochs_on_small_data(digits, method):  # noqa: F811
    """On 40 forget and 60 retain rows one epoch is two batches of 64: the epochs are
    raised until min_steps steps are made."""
    data, original, _ = digits
    forget = Split(data["forget"].x[:40], data["forget"].y[:40])
    retain = Split(data["retain"].x[:60], data["retain"].y[:60])
    params = {"epochs": 1, "min_steps": 7, "batch_size": 64}
    if method == "bad_teacher":
        params["until_forgotten"] = False  # every step, no stop on this whole class
    _, report = unlearn_model(original, forget, retain, method, params)
    n = 40 + (round(0.65 * 60) if method == "bad_teacher" else 60)
    per_epoch = math.ceil(n / 64)
    assert report.details["epochs"] == math.ceil(7 / per_epoch) > 1
    assert report.details["steps"] == report.details["epochs"] * per_epoch


def test_bad_teacher_stops_once_a_whole_class_is_forgotten(digits):  # noqa: F811
    data, original, _ = digits
    model, report = unlearn_model(original, data["forget"], data["retain"], "bad_teacher")
    d = report.details
    assert d["whole_classes"] and acc(model, data["forget"]) == 0.0
    _, full = unlearn_model(original, data["forget"], data["retain"], "bad_teacher",
                            {"until_forgotten": False})
    assert d["steps"] < full.details["steps"] == 32  # 4 batches an epoch, 8 epochs
