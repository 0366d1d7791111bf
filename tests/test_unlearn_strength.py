"""Scenario-dependent strengths: the quantities the methods read off their splits, and the
rules built on them (benchmarks/defaults_study.py chose the defaults)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_unlearn import acc, digits, one_torch_thread  # noqa: F401 (fixtures)

from clul_ray.unlearn import Split, unlearn_model
from clul_ray.unlearn.strength import epochs_for, forget_fraction, whole_classes


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
    assert d["steps"] == d["epochs"] * per_epoch
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
    """On 40 forget and 60 retain rows one epoch is one batch (bad_teacher) or two
    (random_label): the epochs are raised until min_steps steps are made."""
    data, original, _ = digits
    forget = Split(data["forget"].x[:40], data["forget"].y[:40])
    retain = Split(data["retain"].x[:60], data["retain"].y[:60])
    _, report = unlearn_model(original, forget, retain, method,
                              {"epochs": 1, "min_steps": 7, "batch_size": 64})
    n = 40 + (round(0.65 * 60) if method == "bad_teacher" else 60)
    per_epoch = math.ceil(n / 64)
    assert report.details["epochs"] == math.ceil(7 / per_epoch) > 1
    assert report.details["steps"] == report.details["epochs"] * per_epoch
