"""``salun``: saliency-masked random labelling (Fan et al., ICLR 2024).

Mask: g = ∇_θ Σ_{x∈D_f} -CE(x) at θ_o in eval mode; keep the top ``keep_fraction`` of all
parameters by |g| (exact top-k over the concatenation, ties broken by position).
Training: random wrong labels y' != y on D_f plus CE on D_r, one shuffled loader per epoch
(SGD momentum 0.9, weight decay 5e-4, lr 0.01, 10 epochs). Only masked weights move: the
gradient, the weight-decay term and hence the momentum are all multiplied by the mask, and
after each step frozen entries are restored from θ_o, so they stay bit-identical to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from ..optim import make_optimizer
from .base import Split, register_method
from .params import BatchSize, MethodParams, NonNegInt, Positive
from .random_label import relabelled_epochs

if TYPE_CHECKING:
    import torch
    from torch import nn


class SalUnParams(MethodParams):
    epochs: NonNegInt = 10
    lr: Positive = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: BatchSize = 64
    keep_fraction: float = Field(0.5, gt=0, le=1)


def saliency_mask(model: nn.Module, forget: Split, keep_fraction: float,
                  batch_size: int = 1024) -> dict[str, torch.Tensor]:
    """name -> bool mask of the parameters whose |∂(-CE on D_f)/∂θ| is in the top fraction."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    for i in range(0, len(forget), batch_size):
        loss = -F.cross_entropy(model(forget.x[i:i + batch_size]),
                                forget.y[i:i + batch_size], reduction="sum")
        loss.backward()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    scores = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).abs().flatten()
                        for _, p in named])
    k = round(keep_fraction * len(scores))
    order = torch.argsort(scores, descending=True, stable=True)
    keep = torch.zeros(len(scores), dtype=torch.bool)
    keep[order[:k]] = True
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    masks, start = {}, 0
    for n, p in named:
        masks[n] = keep[start:start + p.numel()].view_as(p)
        start += p.numel()
    return masks


def _space(tune):
    return {"keep_fraction": tune.uniform(0.1, 1.0), "lr": tune.loguniform(1e-3, 1e-1),
            "epochs": tune.randint(1, 11)}


@register_method("salun", SalUnParams, changes_weights=True,
                 summary="random wrong labels on D_f + CE on D_r, only salient weights move",
                 space=_space)
def salun(model: nn.Module, forget: Split, retain: Split,
          p: SalUnParams) -> tuple[nn.Module, dict[str, Any]]:
    import torch

    masks = saliency_mask(model, forget, p.keep_fraction)
    params = dict(model.named_parameters())
    frozen_values = {n: params[n].detach().clone() for n in masks}
    opt = make_optimizer([params[n] for n in masks], "sgd", p.lr, p.momentum)

    @torch.no_grad()
    def mask_gradients() -> None:  # salient weights get CE + weight decay, the rest none
        for n, m in masks.items():
            w = params[n]
            g = w.grad if w.grad is not None else torch.zeros_like(w)
            w.grad = torch.where(m, g + p.weight_decay * w, torch.zeros_like(w))

    @torch.no_grad()
    def restore_frozen() -> None:  # momentum must not move a non-salient weight either
        for n, m in masks.items():
            params[n].copy_(torch.where(m, params[n], frozen_values[n]))

    relabelled_epochs(model, opt, forget, retain, p.seed, p.epochs, p.batch_size,
                      before_step=mask_gradients, after_step=restore_frozen)
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    return model, {"kept_parameters": kept, "total_parameters": total,
                   "kept_fraction": kept / max(total, 1)}
