"""``neural_mask``: activation masking of the penultimate features; no weight changes.

As in the comparative study (VGG16 on CIFAR-10): average the penultimate activations (the
input of the last linear layer) over the forget rows, zero the units whose average is at or
above ``threshold`` (the units the forget rows drive), and predict with
classifier(features(x) ⊙ mask). The weights are bit-identical to the original's: the
knowledge is still in them, and dropping the mask restores the original model. This hides
the forget rows' predictions; it does not remove their influence. It is meant for class
forgetting; on a random forget set it masks units that every class uses.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ClulError
from .base import Split, register_method
from .params import MethodParams


class NeuralMaskParams(MethodParams):
    threshold: float = 0.5


def head_name(model: nn.Module) -> str:
    """The name of the last ``nn.Linear`` submodule: the classifier head."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ClulError("neural_mask needs a model whose classifier is an nn.Linear layer")
    return names[-1]


class NeuralMasked(nn.Module):
    """A model whose classifier head sees its input multiplied by a fixed 0/1 mask."""

    def __init__(self, inner: nn.Module, head: str, mask: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.head = head
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.inner.get_submodule(self.head)
        handle = layer.register_forward_pre_hook(lambda _m, args: (args[0] * self.mask,))
        try:
            return self.inner(x)
        finally:
            handle.remove()


@torch.no_grad()
def penultimate_mean(model: nn.Module, head: str, x: torch.Tensor) -> torch.Tensor:
    """Mean of the head's input over the rows of ``x`` (eval mode)."""
    seen: list[torch.Tensor] = []
    layer = model.get_submodule(head)
    handle = layer.register_forward_pre_hook(lambda _m, args: seen.append(args[0]) or None)
    try:
        model.eval()
        model(x)
    finally:
        handle.remove()
    return seen[0].flatten(1).mean(0)


def _space(tune):
    return {"threshold": tune.uniform(0.0, 2.0)}


@register_method("neural_mask", NeuralMaskParams, changes_weights=False,
                 summary="zero penultimate units active on D_f; weights unchanged",
                 space=_space)
def neural_mask(model: nn.Module, forget: Split, retain: Split,
                p: NeuralMaskParams) -> tuple[nn.Module, dict[str, Any]]:
    head = head_name(model)
    mean = penultimate_mean(model, head, forget.x)
    mask = (mean < p.threshold).float()
    masked = int((mask == 0).sum())
    return NeuralMasked(model, head, mask), {
        "head": head, "units": len(mask), "units_masked": masked,
        "note": "weights unchanged: the forget data's influence remains in the weights",
    }
