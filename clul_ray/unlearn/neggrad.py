"""``neggrad``: gradient ascent on D_f; ``plus=true`` (the ``neggrad+`` variant) gives
NegGrad+ (Kurmanji et al. 2023).

NegGrad: each epoch one seeded pass over D_f minimising -CE(x_f, y_f).
NegGrad+: each epoch one pass over D_r, each retain batch paired with a (cycled) forget
batch, minimising beta·CE(x_r, y_r) - (1 - beta)·CE(x_f, y_f).
Gradient ascent is unbounded: keep epochs and lr small, and compare with retrain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import nn

from ..errors import ClulError
from ..hashing import derive_seed
from .base import MethodParams, Split, register_method, register_variant
from .training import (
    SALT_EPOCH,
    SALT_FORGET,
    begin_epoch,
    check_optim,
    cycled_batches,
    make_optimizer,
    shuffled_batches,
)


@dataclass
class NegGradParams(MethodParams):
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 64
    forget_batch_size: int = 16
    optimizer: str = "adam"
    momentum: float = 0.9
    plus: bool = False
    beta: float = 0.999

    def check(self) -> None:
        check_optim(self.optimizer, self.lr, self.batch_size, self.epochs)
        if not 0.0 <= self.beta <= 1.0:
            raise ClulError(f"neggrad.beta must be in [0, 1], got {self.beta}")
        if self.forget_batch_size < 1:
            raise ClulError("neggrad.forget_batch_size must be >= 1")


@register_method("neggrad", NegGradParams, changes_weights=True,
                 summary="gradient ascent on D_f (plus=true: NegGrad+ with CE on D_r)")
def neggrad(model: nn.Module, forget: Split, retain: Split,
            p: NegGradParams) -> tuple[nn.Module, dict[str, Any]]:
    opt = make_optimizer(model.parameters(), p.optimizer, p.lr, p.momentum)
    use_plus = p.plus and len(retain) > 0
    forget_stream = cycled_batches(len(forget), p.forget_batch_size,
                                   derive_seed(p.seed, SALT_FORGET))
    steps = 0
    for epoch in range(p.epochs):
        s = begin_epoch(p.seed, SALT_EPOCH, epoch)
        model.train()
        if not use_plus:
            for idx in shuffled_batches(len(forget), p.batch_size, s):
                opt.zero_grad(set_to_none=True)
                (-F.cross_entropy(model(forget.x[idx]), forget.y[idx])).backward()
                opt.step()
                steps += 1
            continue
        for idx in shuffled_batches(len(retain), p.batch_size, s):
            fidx = next(forget_stream)
            opt.zero_grad(set_to_none=True)
            loss = (p.beta * F.cross_entropy(model(retain.x[idx]), retain.y[idx])
                    - (1.0 - p.beta) * F.cross_entropy(model(forget.x[fidx]), forget.y[fidx]))
            loss.backward()
            opt.step()
            steps += 1
    return model, {"variant": "neggrad+" if use_plus else "neggrad", "steps": steps}


register_variant("neggrad+", "neggrad", {"plus": True},
                 summary="NegGrad+: beta*CE on D_r - (1-beta)*CE on D_f")
