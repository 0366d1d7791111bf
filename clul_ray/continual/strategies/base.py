"""The shape of a continual strategy, its params and the registry.

A strategy is a plain torch object holding its model (and teachers, buffer). The runner
calls :meth:`Strategy.apply` once per stream step with a :class:`StepData`; it dispatches
to :meth:`learn`, :meth:`unlearn` or :meth:`learn_and_unlearn`. Every random choice comes
from ``derive_seed(seed, salt, step)``; dropout from the global RNG re-seeded per epoch
(``unlearn.training.run_epochs``), so a run is bit-reproducible for one torch thread count.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ClulError
from ...hashing import derive_seed
from ...unlearn.params import BatchSize, NonNegInt, OptimFields, Optimizer, Positive
from ...unlearn.training import SALT_INIT, reinitialize, run_epochs
from ..tasks import Benchmark, Rows

SALT_TRAIN = 11
SALT_BUFFER = 12
SALT_EMA = 13
SALT_UL_TEACHER = 14


class StrategyParams(OptimFields):
    """The training recipe every strategy shares (scaled to split-digits with an MLP):
    SGD, lr 0.05, momentum 0.9, batch 32, 10 epochs per learned task; a fresh optimiser per
    step. ``unlearn_epochs``: passes over the forget rows of an unlearn-only step."""

    label: ClassVar[str] = "strategy"

    epochs: NonNegInt = 10
    lr: Positive = 0.05
    batch_size: BatchSize = 32
    optimizer: Optimizer = "sgd"
    momentum: float = 0.9
    unlearn_epochs: NonNegInt = 5


@dataclass
class StepData:
    """What one stream step hands a strategy. ``learn``: the new task's training rows;
    ``forget``: the training rows to forget (of ``tasks``, ``classes`` and ``ids``);
    ``allowed``: every training row the model may know after the step (the oracle's)."""

    index: int
    learn: Rows | None
    forget: Rows | None
    allowed: Rows
    tasks: list[int] = field(default_factory=list)
    classes: list[int] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)


class Strategy:
    name: ClassVar[str] = ""
    params_cls: ClassVar[type[StrategyParams]] = StrategyParams
    summary: ClassVar[str] = ""
    # the strengths `clul-ray tune --stream` sweeps: {param: {uniform|loguniform|quniform|
    # randint|choice: [...]}} (the format of a space file, :mod:`clul_ray.tune.space`)
    space: ClassVar[dict[str, Any]] = {}

    def __init__(self, bench: Benchmark, template: nn.Module, params: StrategyParams,
                 seed: int):
        self.bench = bench
        self.p = params
        self.seed = seed
        self.model = reinitialize(template, derive_seed(seed, SALT_INIT)).eval()
        self.details: dict[str, Any] = {}

    # ---- the step ----------------------------------------------------------------------
    def apply(self, step: StepData) -> dict[str, Any]:
        self.details = {}
        if step.learn is not None and step.forget is not None:
            self.learn_and_unlearn(step)
        elif step.forget is not None:
            self.unlearn(step)
        elif step.learn is not None:
            self.learn(step)
        self.model.eval()
        return self.details

    def learn(self, step: StepData) -> None:
        raise NotImplementedError

    def unlearn(self, step: StepData) -> None:
        raise NotImplementedError

    def learn_and_unlearn(self, step: StepData) -> None:
        raise NotImplementedError

    # ---- shared pieces -----------------------------------------------------------------
    def ce(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
           task: np.ndarray) -> torch.Tensor:
        return F.cross_entropy(self.bench.restrict(model(x), task), y)

    def train(self, step: StepData, n: int, epochs: int,
              batch_loss: Callable[[torch.Tensor, Any], torch.Tensor],
              after_step: Callable[[], None] | None = None, salt: int = 0) -> int:
        """``epochs`` seeded passes over ``range(n)`` with a fresh optimiser."""
        opt = self.p.optimizer_for(self.model.parameters())
        seed = derive_seed(self.seed, SALT_TRAIN, step.index, salt)
        steps = run_epochs(self.model, opt, seed, epochs, n, self.p.batch_size, batch_loss,
                           after_step=after_step)
        self.details["steps"] = self.details.get("steps", 0) + steps
        return steps

    @torch.no_grad()
    def logits(self, x: torch.Tensor, batch: int = 4096) -> torch.Tensor:
        self.model.eval()
        return torch.cat([self.model(x[i:i + batch]) for i in range(0, len(x), batch)]) \
            if len(x) else torch.zeros(0, self.bench.num_classes)


def features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The penultimate representation and the logits, when the network is a ``Sequential``
    ending in a ``Linear`` layer (``models.mlp``); else the logits twice."""
    net = getattr(model, "net", None)
    if isinstance(net, nn.Sequential) and isinstance(net[-1], nn.Linear):
        h = net[:-1](model.reshape(model.norm(x)))
        return h, net[-1](h)
    out = model(x)
    return out, out


def frozen_copy(model: nn.Module) -> nn.Module:
    m = copy.deepcopy(model).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


_REGISTRY: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    _REGISTRY[cls.name] = cls
    return cls


def strategy_names() -> list[str]:
    return list(_REGISTRY)


def get_strategy(name: str) -> type[Strategy]:
    if name not in _REGISTRY:
        raise ClulError(f"unknown strategy '{name}' (known: {', '.join(_REGISTRY)})")
    return _REGISTRY[name]


def make_params(name: str, values: dict[str, Any] | None = None) -> StrategyParams:
    """The params of ``name``: its defaults overridden by ``values`` (one-line refusals)."""
    cls = get_strategy(name).params_cls
    return cls.parse(dict(values or {}), name, f"strategy '{name}'")
