"""``finetune``: keep training the original model on D_r only (catastrophic forgetting)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..hashing import derive_seed
from .base import Split, register_method
from .training import SALT_EPOCH, OptimParams, TrainRecipe, train_supervised


@dataclass
class FinetuneParams(OptimParams):
    weight_decay: float = 0.0


@register_method("finetune", FinetuneParams, changes_weights=True,
                 summary="continue training on D_r only")
def finetune(model: nn.Module, forget: Split, retain: Split,
             p: FinetuneParams) -> tuple[nn.Module, dict[str, Any]]:
    recipe = TrainRecipe(epochs=p.epochs, lr=p.lr, batch_size=p.batch_size,
                         optimizer=p.optimizer, momentum=p.momentum,
                         weight_decay=p.weight_decay)
    return train_supervised(model, retain, recipe, derive_seed(p.seed, SALT_EPOCH)), {}
