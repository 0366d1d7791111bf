"""``finetune``: keep training the original model on D_r only (catastrophic forgetting).

Defaults: chosen by ``clul-ray tune`` on digits with the project's MLP (class:3 and
random:0.1; benchmarks/RESULTS.md): Adam lr 8e-3, 6 epochs, batch 64. The common
baseline setting (the original recipe's Adam lr 1e-3, 5 epochs) leaves FA at 0.80 on
class:3; it stays one ``--param`` away: ``lr=1e-3 epochs=5``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..hashing import derive_seed
from .base import Split, register_method
from .params import NonNegInt, OptimParams, Positive
from .training import SALT_EPOCH, train_supervised

if TYPE_CHECKING:
    from torch import nn


class FinetuneParams(OptimParams):
    epochs: NonNegInt = 6
    lr: Positive = 8e-3
    weight_decay: float = 0.0


def _space(tune):
    return {"lr": tune.loguniform(1e-4, 1e-1), "epochs": tune.randint(1, 11)}


@register_method("finetune", FinetuneParams, changes_weights=True,
                 summary="continue training on D_r only",
                 space=_space)
def finetune(model: nn.Module, forget: Split, retain: Split,
             p: FinetuneParams) -> tuple[nn.Module, dict[str, Any]]:
    return train_supervised(model, retain, p, derive_seed(p.seed, SALT_EPOCH),
                            p.weight_decay), {}
