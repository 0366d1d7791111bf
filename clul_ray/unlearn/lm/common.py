"""What the language-model methods share: the params fields, the seeded step loop, and the
masked losses (padding targets never count).

A run draws forget batches from ``cycled_batches`` seeded by ``derive_seed(seed,
SALT_FORGET)`` and retain batches from one seeded by ``derive_seed(seed, SALT_RETAIN)``;
dropout is re-seeded before every step. With the same torch thread count a run is
bit-for-bit reproducible.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ...hashing import derive_seed
from ...optim import make_optimizer
from ..base import Split
from ..params import BatchSize, MethodParams, NonNegative, NonNegInt, Optimizer, Positive
from ..training import SALT_EPOCH, SALT_FORGET, cycled_batches

if TYPE_CHECKING:
    import torch
    from torch import nn

SALT_RETAIN = 7

# (forget rows, retain rows or None) -> the loss to minimise.
StepLoss = Callable[["torch.Tensor", "torch.Tensor | None"], "torch.Tensor"]


class LMParams(MethodParams):
    """``steps`` optimiser steps, each on ``batch_size`` forget rows (and, for the methods
    with a retain term, ``retain_batch_size`` retain rows), with ``optimizer`` at ``lr``."""

    steps: NonNegInt = 30
    lr: Positive = 1e-3
    batch_size: BatchSize = 8
    retain_batch_size: BatchSize = 8
    optimizer: Optimizer = "adam"
    momentum: float = 0.9
    weight_decay: NonNegative = 0.0


def optim_space(tune) -> dict:
    """The step size and length every language-model method sweeps."""
    return {"lr": tune.loguniform(1e-5, 1e-2), "steps": tune.randint(5, 101)}


def frozen_copy(model: nn.Module) -> nn.Module:
    """The original model as a reference: a deep copy in eval mode, without gradients."""
    ref = copy.deepcopy(model).eval()
    for q in ref.parameters():
        q.requires_grad_(False)
    return ref


def run_steps(model: nn.Module, forget: Split, retain: Split | None, p: LMParams,
              loss: StepLoss, params: Iterable[nn.Parameter] | None = None) -> int:
    """``p.steps`` steps minimising ``loss(forget_batch, retain_batch)`` over ``params``
    (default: all of the model's); the retain batch is None when ``retain`` is None or
    empty. Leaves no gradients on the model. Returns the number of steps."""
    import torch

    opt = make_optimizer(list(model.parameters() if params is None else params), p.optimizer,
                         p.lr, p.momentum, p.weight_decay)
    fstream = cycled_batches(len(forget), p.batch_size, derive_seed(p.seed, SALT_FORGET))
    rstream = (cycled_batches(len(retain), p.retain_batch_size,
                              derive_seed(p.seed, SALT_RETAIN))
               if retain is not None and len(retain) else None)
    model.train()
    for step in range(p.steps):
        torch.manual_seed(derive_seed(p.seed, SALT_EPOCH, step))  # dropout
        fx = forget.x[next(fstream)]
        rx = retain.x[next(rstream)] if rstream is not None else None
        opt.zero_grad(set_to_none=True)
        loss(fx, rx).backward()
        opt.step()
    for q in model.parameters():
        q.grad = None
    model.eval()
    return p.steps


def sequence_logprob(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``log pi(y|x)``, the sum of its real tokens' log-probs ``(n,)``, and its
    real target count ``(n,)``."""
    from ...text.lm import token_logprobs

    lp, mask = token_logprobs(model, x)
    return lp.sum(1), mask.sum(1)


def retain_kl(model: nn.Module, ref: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``KL(p_ref || p_model)`` of the next-token distributions, averaged over the batch's
    real target positions."""
    import torch

    from ...text.lm import targets

    logq = torch.log_softmax(model(x)[:, :-1].float(), -1)
    with torch.no_grad():
        logp = torch.log_softmax(ref(x)[:, :-1].float(), -1)
    _, mask = targets(x)
    kl = (logp.exp() * (logp - logq)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp_min(1)
