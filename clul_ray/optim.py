"""Optimisers by name: the names on offer (no torch needed to check one) and the torch
optimiser."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ClulError

if TYPE_CHECKING:
    import torch

OPTIMIZERS = ("adam", "sgd")


def _unknown(name: str) -> str:
    return f"optimizer must be one of {OPTIMIZERS}, got '{name}'"


def make_optimizer(params, name: str, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``sgd`` (with ``momentum``) or ``adam`` over ``params``; both take ``weight_decay``."""
    import torch

    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ClulError(_unknown(name))
