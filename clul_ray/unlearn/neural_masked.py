"""The model ``neural_mask`` returns (:mod:`.neural_mask`): the original model with a fixed
0/1 mask on its classifier head's input. A torch module of its own, so that registering the
method imports no torch."""

from __future__ import annotations

import torch
from torch import nn


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
