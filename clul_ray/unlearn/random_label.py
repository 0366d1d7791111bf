"""``random_label``: CE on D_f relabelled with random wrong classes, together with D_r.

Each epoch draws fresh labels y' != y for D_f (uniform over the other classes) and makes
one seeded, shuffled pass over D_f(y') ∪ D_r, as in the SalUn code's random-label
baseline (which concatenates the two sets), without its y' = y bug.
Defaults: Adam lr 1e-3, batch 64, 10 epochs, ``min_steps`` 30, chosen on several
scenarios (benchmarks/defaults_study.py) and checked on held-out ones
(benchmarks/RESULTS.md); 5 epochs (15 steps on wine) left FA 0.39 above retrain's on
wine class 1. Scenario-dependent: on a small data set the epochs are raised until the
passes make ``min_steps`` optimiser steps (:func:`.strength.epochs_for`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..hashing import derive_seed
from .base import Split, num_outputs, register_method
from .params import NonNegInt, OptimParams
from .strength import epochs_for
from .training import SALT_LABELS, random_wrong_labels, run_epochs

if TYPE_CHECKING:
    import torch
    from torch import nn


class RandomLabelParams(OptimParams):
    """``min_steps``: ``epochs`` is raised until the passes over D_f ∪ D_r make at least
    this many optimiser steps (0: exactly ``epochs``)."""

    epochs: NonNegInt = 10
    min_steps: NonNegInt = 30


def relabelled_union(forget: Split, retain: Split, num_classes: int,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of D_f (random wrong labels, seeded) followed by D_r."""
    import torch

    gen = torch.Generator().manual_seed(derive_seed(seed, SALT_LABELS))
    y_f = random_wrong_labels(forget.y, num_classes, gen)
    return torch.cat([forget.x, retain.x]), torch.cat([y_f, retain.y])


def relabelled_epochs(model: nn.Module, opt: torch.optim.Optimizer, forget: Split,
                      retain: Split, seed: int, epochs: int, batch_size: int,
                      **hooks: Callable[[], None]) -> int:
    """``run_epochs`` of CE over D_f (fresh random wrong labels each epoch) and D_r in one
    shuffled loader; ``hooks``: its ``before_step`` / ``after_step``."""
    import torch.nn.functional as F

    c = num_outputs(model, forget.x)
    return run_epochs(model, opt, seed, epochs, len(forget) + len(retain), batch_size,
                      lambda idx, xy: F.cross_entropy(model(xy[0][idx]), xy[1][idx]),
                      prepare=lambda s: relabelled_union(forget, retain, c, s), **hooks)


def _space(tune):
    return {"lr": tune.loguniform(1e-4, 1e-1), "epochs": tune.randint(1, 11)}


@register_method("random_label", RandomLabelParams, changes_weights=True,
                 summary="CE on D_f with random wrong labels y' != y, plus CE on D_r",
                 space=_space)
def random_label(model: nn.Module, forget: Split, retain: Split,
                 p: RandomLabelParams) -> tuple[nn.Module, dict[str, Any]]:
    epochs = epochs_for(p.epochs, p.min_steps, len(forget) + len(retain), p.batch_size)
    steps = relabelled_epochs(model, p.optimizer_for(model.parameters()), forget, retain,
                              p.seed, epochs, p.batch_size)
    return model, {"epochs": epochs, "steps": steps}
