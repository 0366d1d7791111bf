"""``retrain``: the reference. Fresh weights, trained on D_r alone with the original recipe."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Split, register_method
from .params import MethodParams
from .training import TrainRecipe, train_from_scratch

if TYPE_CHECKING:
    from torch import nn


class RetrainParams(MethodParams, TrainRecipe):
    """The original training recipe (defaults: the SISA pipeline's, see TrainRecipe)."""


@register_method("retrain", RetrainParams, changes_weights=True,
                 summary="retrain from scratch on D_r with the original recipe (reference)")
def retrain(model: nn.Module, forget: Split, retain: Split,
            p: RetrainParams) -> tuple[nn.Module, dict[str, Any]]:
    return train_from_scratch(model, retain, p, p.seed), {}
