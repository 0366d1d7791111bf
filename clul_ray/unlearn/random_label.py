"""``random_label``: CE on D_f relabelled with random wrong classes, together with D_r.

Each epoch draws fresh labels y' != y for D_f (uniform over the other classes) and makes
one seeded, shuffled pass over D_f(y') ∪ D_r, as in the SalUn code's random-label
baseline (which concatenates the two sets), without its y' = y bug.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..hashing import derive_seed
from .base import MethodParams, Split, num_outputs, register_method
from .training import (
    SALT_EPOCH,
    SALT_LABELS,
    begin_epoch,
    check_optim,
    make_optimizer,
    random_wrong_labels,
    shuffled_batches,
)


@dataclass
class RandomLabelParams(MethodParams):
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 64
    optimizer: str = "adam"
    momentum: float = 0.9

    def check(self) -> None:
        check_optim(self.optimizer, self.lr, self.batch_size, self.epochs)


def relabelled_union(forget: Split, retain: Split, num_classes: int,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of D_f (random wrong labels, seeded) followed by D_r."""
    gen = torch.Generator().manual_seed(derive_seed(seed, SALT_LABELS))
    y_f = random_wrong_labels(forget.y, num_classes, gen)
    return torch.cat([forget.x, retain.x]), torch.cat([y_f, retain.y])


@register_method("random_label", RandomLabelParams, changes_weights=True,
                 summary="CE on D_f with random wrong labels y' != y, plus CE on D_r")
def random_label(model: nn.Module, forget: Split, retain: Split,
                 p: RandomLabelParams) -> tuple[nn.Module, dict[str, Any]]:
    c = num_outputs(model, forget.x)
    opt = make_optimizer(model.parameters(), p.optimizer, p.lr, p.momentum)
    for epoch in range(p.epochs):
        s = begin_epoch(p.seed, SALT_EPOCH, epoch)
        x, y = relabelled_union(forget, retain, c, s)
        model.train()
        for idx in shuffled_batches(len(y), p.batch_size, s):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model, {}
