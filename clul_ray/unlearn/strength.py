"""Scenario-dependent strengths: what a method reads off its forget and retain splits.

The methods' defaults were chosen on several scenarios (benchmarks/defaults_study.py) and
some hold only if the strength follows the scenario:

- :func:`whole_classes`: the forget set is whole classes (no label of D_f occurs in D_r).
  Retraining then never predicts those classes, so its forget accuracy is 0, and a method
  may push until the model's forget accuracy is 0. On any other forget set (a random
  sample) retraining's forget accuracy is about its test accuracy: a method must move the
  model only a little.
  :func:`run_until_forgotten` is the methods' loop with that stop.
- :func:`epochs_for`: a small data set (wine: ~140 training rows) gives few batches per
  epoch; a method that needs ``min_steps`` optimiser steps runs more epochs there.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from .base import Split
from .training import SALT_EPOCH, begin_epoch, end_epoch, shuffled_batches

if TYPE_CHECKING:
    import torch
    from torch import nn


def whole_classes(forget: Split, retain: Split) -> bool:
    """True when no label of the forget rows occurs among the retain rows."""
    if len(forget) == 0:
        return False
    import torch

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


def forget_accuracy(model: nn.Module, forget: Split) -> float:
    """The model's accuracy on the forget rows (eval mode; the mode is restored)."""
    import torch

    was = model.training
    model.eval()
    with torch.no_grad():
        acc = float((model(forget.x).argmax(1) == forget.y).float().mean())
    model.train(was)
    return acc


def run_until_forgotten(model: nn.Module, opt: torch.optim.Optimizer, seed: int, epochs: int,
                        n: int, batch_size: int,
                        batch_loss: Callable[[torch.Tensor], torch.Tensor],
                        forget: Split | None) -> tuple[int, int]:
    """``training.run_epochs`` (the same seeded batches, epoch by epoch) that, given
    ``forget``, checks the model's accuracy on it after every optimiser step: it stops at the
    first step that leaves it at 0 and otherwise ends on the weights of the step with the
    lowest (the first such), as SCRUB+R keeps the checkpoint whose forget error is closest
    to the target. ``forget`` None: every step, no check. Returns (steps, epochs begun)."""
    steps = 0
    best, best_state = forget_accuracy(model, forget) if forget is not None else 0.0, None
    for epoch in range(epochs):
        s = begin_epoch(seed, SALT_EPOCH, epoch)
        model.train()
        for idx in shuffled_batches(n, batch_size, s):
            opt.zero_grad(set_to_none=True)
            batch_loss(idx).backward()
            opt.step()
            steps += 1
            if forget is None:
                continue
            acc = forget_accuracy(model, forget)
            if acc == 0.0:
                end_epoch(epoch + 1, model)
                return steps, epoch + 1
            if acc < best:
                best, best_state = acc, copy.deepcopy(model.state_dict())
            elif best_state is not None and steps == epochs * math.ceil(n / batch_size):
                model.load_state_dict(best_state)  # the last step: back to the best
        end_epoch(epoch + 1, model)
    return steps, epochs
