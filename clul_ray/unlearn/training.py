"""Plain, seeded torch training pieces shared by the methods and the comparison harness.

Every shuffle comes from a ``torch.Generator`` seeded by ``derive_seed``; dropout draws from
the global torch RNG, re-seeded per epoch. With the same torch thread count a run is
bit-for-bit reproducible.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import ClulError
from ..hashing import derive_seed
from .base import Split
from .params import Bool, NonNegative, NonNegInt, OptimFields
from .update_log import LOG_ATTR, UpdateRecorder

if TYPE_CHECKING:
    import torch
    from torch import nn

# Salts of derive_seed, one per purpose, so no two random streams coincide.
SALT_INIT = 1
SALT_EPOCH = 2
SALT_LABELS = 3
SALT_SUBSET = 4
SALT_FORGET = 5
SALT_TEACHER = 6


class TrainRecipe(OptimFields):
    """How the original model is trained; ``retrain`` reuses it on D_r.

    The defaults are the SISA pipeline's (``config.PipelineConfig``): Adam, lr 1e-3,
    batch 64, 20 epochs, no weight decay, standardiser fitted on the training rows.
    """

    label: ClassVar[str] = "recipe"

    epochs: NonNegInt = 20
    momentum: NonNegative = 0.9
    weight_decay: NonNegative = 0.0
    normalize: Bool = True


def run_epochs(model: nn.Module, opt: torch.optim.Optimizer, seed: int, epochs: int, n: int,
               batch_size: int, batch_loss: Callable[[torch.Tensor, Any], torch.Tensor],
               prepare: Callable[[int], Any] | None = None,
               before_step: Callable[[], None] | None = None,
               after_step: Callable[[], None] | None = None) -> int:
    """The methods' shared loop; returns the number of optimiser steps.

    Per epoch: ``begin_epoch(seed, SALT_EPOCH, epoch)`` (which re-seeds dropout), then
    ``prepare(epoch_seed)`` (e.g. fresh random labels), train mode, and one seeded shuffled
    pass over ``range(n)`` in batches, minimising ``batch_loss(idx, prepared)``.
    ``before_step`` / ``after_step`` run around each ``opt.step()`` (gradient and weight
    masks).
    """
    steps = 0
    for epoch in range(epochs):
        s = begin_epoch(seed, SALT_EPOCH, epoch)
        prepared = prepare(s) if prepare is not None else None
        model.train()
        for idx in shuffled_batches(n, batch_size, s):
            opt.zero_grad(set_to_none=True)
            batch_loss(idx, prepared).backward()
            if before_step is not None:
                before_step()
            opt.step()
            if after_step is not None:
                after_step()
            steps += 1
        end_epoch(epoch + 1, model)
    return steps


_EPOCH_HOOK: ContextVar[Callable[[int, nn.Module], None] | None] = ContextVar(
    "clul_ray_epoch_hook", default=None)


@contextlib.contextmanager
def on_epoch_end(hook: Callable[[int, nn.Module], None] | None) -> Iterator[None]:
    """Call ``hook(epoch, model)`` after each epoch of a method run inside this block (a
    sweep reports per-epoch scores through it)."""
    token = _EPOCH_HOOK.set(hook)
    try:
        yield
    finally:
        _EPOCH_HOOK.reset(token)


def end_epoch(epoch: int, model: nn.Module) -> None:
    """The end of a method's epoch ``epoch`` (1-based): the hook, if any, sees the model;
    neither the model's mode nor any random stream is changed by it."""
    hook = _EPOCH_HOOK.get()
    if hook is None:
        return
    import torch

    was = model.training
    with torch.random.fork_rng(devices=[]):
        hook(epoch, model)
    model.train(was)


def shuffled_batches(n: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """A seeded permutation of range(n), cut into batches."""
    if n == 0:
        return []
    import torch

    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return list(perm.split(batch_size))


def cycled_batches(n: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless batches over range(n), reshuffled (seeded) on every pass."""
    rnd = 0
    while True:
        yield from shuffled_batches(n, batch_size, derive_seed(seed, rnd))
        rnd += 1


def begin_epoch(seed: int, *parts: int) -> int:
    """The epoch's seed; also re-seeds the global RNG that dropout draws from."""
    import torch

    s = derive_seed(seed, *parts)
    torch.manual_seed(s)
    return s


def reinitialize(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` with every parameterised submodule freshly initialised.

    Buffers of the standardiser are kept (callers refit them where the data allows); an
    update log the model carries is neither copied nor kept.
    """
    import torch

    log = model.__dict__.get(LOG_ATTR)
    fresh = copy.deepcopy(model, {id(log): None} if log is not None else None)
    fresh.__dict__.pop(LOG_ATTR, None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in fresh.modules():
            if m is not fresh and hasattr(m, "reset_parameters"):
                m.reset_parameters()
    return fresh


def fit_standardizer(model: nn.Module, x: torch.Tensor) -> None:
    from ..models import Standardize

    norm = getattr(model, "norm", None)
    if isinstance(norm, Standardize):
        norm.mean.zero_()
        norm.std.fill_(1.0)
        norm.fit(x)


def train_supervised(model: nn.Module, data: Split, p: OptimFields, seed: int,
                     weight_decay: float = 0.0,
                     recorder: UpdateRecorder | None = None) -> nn.Module:
    """Cross-entropy training in place, ``p.epochs`` seeded passes over ``data``; with a
    ``recorder``, every step's update is recorded (the training itself is unchanged)."""
    import torch.nn.functional as F

    def loss(idx, _):
        return F.cross_entropy(model(data.x[idx]), data.y[idx])

    run_epochs(model, p.optimizer_for(model.parameters(), weight_decay), seed, p.epochs,
               len(data), p.batch_size, loss if recorder is None else recorder.loss(loss),
               after_step=None if recorder is None else recorder.after_step)
    model.eval()
    return model


def train_from_scratch(template: nn.Module, data: Split, recipe: TrainRecipe, seed: int, *,
                       record_updates: bool = False) -> nn.Module:
    """Fresh weights (seeded), standardiser fitted on ``data``, then the recipe's training.

    ``record_updates``: attach every step's update and batch ids to the model, as
    ``model.update_log`` (:mod:`.update_log`; needs ``data.ids``), for ``amnesiac``.
    """
    import torch

    model = reinitialize(template, derive_seed(seed, SALT_INIT))
    recorder = UpdateRecorder(model, data.ids) if record_updates else None
    if recipe.normalize:
        fit_standardizer(model, data.x)
    with torch.random.fork_rng(devices=[]):
        train_supervised(model, data, recipe, derive_seed(seed, SALT_EPOCH),
                         recipe.weight_decay, recorder)
    if recorder is not None:
        setattr(model, LOG_ATTR, recorder.log())
    return model


def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> np.ndarray:
    """Softmax probabilities in eval mode, as float64 numpy (n, C)."""
    import torch
    import torch.nn.functional as F

    model.eval()
    if len(x) == 0:
        return np.zeros((0, 0))
    with torch.no_grad():
        out = [F.softmax(model(x[i:i + batch_size]).double(), dim=1)
               for i in range(0, len(x), batch_size)]
        return torch.cat(out).numpy()


def random_wrong_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator
                        ) -> torch.Tensor:
    """Labels drawn uniformly from the classes other than each row's own: y' != y always.

    (The SalUn reference code draws from all classes, so y' can equal y.)
    """
    if num_classes < 2:
        raise ClulError("random wrong labels need at least 2 classes")
    import torch

    shift = torch.randint(1, num_classes, y.shape, generator=generator)
    return (y + shift) % num_classes


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads (results depend on the thread count)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)

