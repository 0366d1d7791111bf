"""Scenario-dependent strengths: what a method reads off its forget and retain splits.

The methods' defaults were chosen on several scenarios (benchmarks/defaults_study.py) and
some hold only if the strength follows the scenario:

- :func:`whole_classes`: the forget set is whole classes (no label of D_f occurs in D_r).
  Retraining then never predicts those classes, so its forget accuracy is 0, and a method
  may push until the model's forget accuracy is 0. On any other forget set (a random
  sample) retraining's forget accuracy is about its test accuracy: a method must move the
  model only a little.
- :func:`epochs_for`: a small data set (wine: ~140 training rows) gives few batches per
  epoch; a method that needs ``min_steps`` optimiser steps runs more epochs there.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import Split


def whole_classes(forget: Split, retain: Split) -> bool:
    """True when no label of the forget rows occurs among the retain rows."""
    if len(forget) == 0:
        return False
    return not bool(torch.isin(forget.y.unique(), retain.y).any())


def forget_fraction(forget: Split, retain: Split) -> float:
    """|D_f| / (|D_f| + |D_r|)."""
    n = len(forget) + len(retain)
    return len(forget) / n if n else 0.0


def epochs_for(epochs: int, min_steps: int, n: int, batch_size: int) -> int:
    """``epochs``, raised so that passes over ``n`` rows in batches of ``batch_size`` make at
    least ``min_steps`` optimiser steps."""
    if n == 0 or min_steps == 0:
        return epochs
    per_epoch = math.ceil(n / batch_size)
    return max(epochs, math.ceil(min_steps / per_epoch))


@torch.no_grad()
def forget_accuracy(model: nn.Module, forget: Split) -> float:
    """The model's accuracy on the forget rows (eval mode; the mode is restored)."""
    was = model.training
    model.eval()
    acc = float((model(forget.x).argmax(1) == forget.y).float().mean())
    model.train(was)
    return acc
