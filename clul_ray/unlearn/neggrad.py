"""``neggrad``: gradient ascent on D_f; ``plus=true`` (the ``neggrad+`` variant) gives
NegGrad+ (Kurmanji et al. 2023).

NegGrad: each epoch one seeded pass over D_f minimising -CE(x_f, y_f).
NegGrad+: each epoch one pass over D_r, each retain batch paired with a (cycled) forget
batch, minimising beta·CE(x_r, y_r) - (1 - beta)·CE(x_f, y_f).
Gradient ascent is unbounded: keep epochs and lr small, and compare with retrain.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import nn

from ..hashing import derive_seed
from .base import Split, register_method, register_variant
from .params import BatchSize, Bool, Fraction, OptimParams
from .training import SALT_FORGET, cycled_batches, run_epochs


class NegGradParams(OptimParams):
    forget_batch_size: BatchSize = 16
    plus: Bool = False
    beta: Fraction = 0.999


def _space(tune):
    return {"lr": tune.loguniform(1e-5, 1e-2), "epochs": tune.randint(1, 11)}


@register_method("neggrad", NegGradParams, changes_weights=True,
                 summary="gradient ascent on D_f (plus=true: NegGrad+ with CE on D_r)",
                 space=_space)
def neggrad(model: nn.Module, forget: Split, retain: Split,
            p: NegGradParams) -> tuple[nn.Module, dict[str, Any]]:
    opt = p.optimizer_for(model.parameters())
    use_plus = p.plus and len(retain) > 0
    if not use_plus:
        steps = run_epochs(model, opt, p.seed, p.epochs, len(forget), p.batch_size,
                           lambda idx, _: -F.cross_entropy(model(forget.x[idx]), forget.y[idx]))
        return model, {"variant": "neggrad", "steps": steps}
    forget_stream = cycled_batches(len(forget), p.forget_batch_size,
                                   derive_seed(p.seed, SALT_FORGET))

    def plus_loss(idx, _):
        fidx = next(forget_stream)
        return (p.beta * F.cross_entropy(model(retain.x[idx]), retain.y[idx])
                - (1.0 - p.beta) * F.cross_entropy(model(forget.x[fidx]), forget.y[fidx]))

    steps = run_epochs(model, opt, p.seed, p.epochs, len(retain), p.batch_size, plus_loss)
    return model, {"variant": "neggrad+", "steps": steps}


register_variant("neggrad+", "neggrad", {"plus": True},
                 summary="NegGrad+: beta*CE on D_r - (1-beta)*CE on D_f")
