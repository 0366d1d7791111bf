"""Model registry: name -> factory(input_shape, num_classes, **args) -> nn.Module.

Built in: ``mlp``, ``cnn`` (a small convnet) and ``resnet18`` (torchvision's, adapted to
small images: 3x3 stem, no max-pool, any channel count). Users add their own with
:func:`register_model`, or name a factory as ``"package.module:function"``.

Every model takes flat float inputs ``(n, prod(input_shape))``; :func:`build_model` wraps
a classifier with a standardiser whose statistics are buffers in the state dict. A
language model (``gpt-tiny``, :mod:`clul_ray.text.lm`; ``gpt-tiny-lora``, adapters over a
frozen base, :mod:`clul_ray.text.lora`; ``model.task == "lm"``) takes token rows
``(n, context)`` and is returned as built; :func:`batch_loss` is the one training loss
of either kind.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .errors import ClulError

Factory = Callable[..., nn.Module]
_REGISTRY: dict[str, Factory] = {}


def register_model(name: str) -> Callable[[Factory], Factory]:
    def deco(fn: Factory) -> Factory:
        _REGISTRY[name] = fn
        return fn

    return deco


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def get_factory(name: str) -> Factory:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        mod, _, fn = name.partition(":")
        try:
            return getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as e:
            raise ClulError(f"cannot load model factory '{name}': {e}") from None
    raise ClulError(f"unknown model '{name}' (known: {', '.join(model_names())}, "
                    "or 'module:function')")


class Standardize(nn.Module):
    """x -> (x - mean) / std with per-feature statistics kept as buffers."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: torch.Tensor) -> None:
        if len(x) == 0:
            return
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0, unbiased=False).clamp_min(1e-3) if len(x) > 1
                       else torch.ones_like(self.std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Reshape(nn.Module):
    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), *self.shape)


class Wrapped(nn.Module):
    """Standardiser -> reshape -> network, on flat float inputs ``(n, prod(input_shape))``."""

    def __init__(self, net: nn.Module, input_shape: Sequence[int]):
        super().__init__()
        self.norm = Standardize(math.prod(input_shape))
        self.reshape = Reshape(input_shape)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.reshape(self.norm(x)))


@register_model("mlp")
def mlp(input_shape, num_classes, hidden: int = 128, depth: int = 2, dropout: float = 0.1):
    d = math.prod(input_shape)
    layers: list[nn.Module] = [nn.Flatten()]
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout)]
        d = hidden
    layers.append(nn.Linear(d, num_classes))
    return nn.Sequential(*layers)


@register_model("cnn")
def cnn(input_shape, num_classes, width: int = 32, dropout: float = 0.1):
    if len(input_shape) != 3:
        raise ClulError(f"cnn needs image input (C, H, W), got shape {list(input_shape)}")
    c = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width * 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width * 2, width * 2, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
        nn.Linear(width * 2, num_classes),
    )


@register_model("resnet18")
def resnet18(input_shape, num_classes):
    from torchvision.models import resnet18 as tv_resnet18

    if len(input_shape) != 3:
        raise ClulError(f"resnet18 needs image input (C, H, W), got shape {list(input_shape)}")
    net = tv_resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(input_shape[0], 64, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


@register_model("gpt-tiny")
def gpt_tiny(input_shape, num_classes, **args):
    from .text.lm import gpt_tiny as make

    return make(input_shape, num_classes, **args)


@register_model("gpt-tiny-lora")
def gpt_tiny_lora(input_shape, num_classes, **args):
    from .text.lora import gpt_tiny_lora as make

    return make(input_shape, num_classes, **args)


def is_language_model(model: nn.Module) -> bool:
    """Whether ``model`` is a causal language model (next-token logits per position)."""
    return getattr(model, "task", None) == "lm"


def batch_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               reduction: str = "mean") -> torch.Tensor:
    """The training loss of a batch: cross-entropy of a classifier's logits against ``y``,
    or a language model's next-token cross-entropy over the rows' real tokens."""
    if is_language_model(model):
        from .text.lm import lm_loss

        return lm_loss(model, x, reduction)
    return nn.functional.cross_entropy(model(x), y, reduction=reduction)


def build_model(name: str, input_shape: Sequence[int], num_classes: int,
                args: dict | None = None) -> Wrapped:
    try:
        net = get_factory(name)(tuple(input_shape), num_classes, **(args or {}))
    except ClulError:
        raise
    except (TypeError, ValueError) as e:
        raise ClulError(f"model '{name}' does not accept these model_args: {e}") from None
    if not isinstance(net, nn.Module):
        raise ClulError(f"model factory '{name}' did not return a torch.nn.Module")
    if is_language_model(net):
        return net
    return Wrapped(net, input_shape)
