"""``finetune``: keep training the original model on D_r only (catastrophic forgetting)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..hashing import derive_seed
from .base import Split, register_method
from .params import OptimParams
from .training import SALT_EPOCH, train_supervised


class FinetuneParams(OptimParams):
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
