"""Optimisers by name: the names on offer, a check of a training setup, and the torch optimiser."""

from __future__ import annotations

import torch

from .errors import ClulError

OPTIMIZERS = ("adam", "sgd")


def _unknown(name: str) -> str:
    return f"optimizer must be one of {OPTIMIZERS}, got '{name}'"


def check_optim(optimizer: str, lr: float, batch_size: int, epochs: int) -> None:
    """Refuse a setup no optimiser runs: an unknown name, lr <= 0, batch_size < 1, epochs < 0."""
    if optimizer not in OPTIMIZERS:
        raise ClulError(_unknown(optimizer))
    if lr <= 0:
        raise ClulError(f"lr must be positive, got {lr}")
    if batch_size < 1:
        raise ClulError(f"batch_size must be >= 1, got {batch_size}")
    if epochs < 0:
        raise ClulError(f"epochs must be >= 0, got {epochs}")


def make_optimizer(params, name: str, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``sgd`` (with ``momentum``) or ``adam`` over ``params``; both take ``weight_decay``."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ClulError(_unknown(name))
