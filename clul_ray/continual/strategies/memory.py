"""What the replay strategies share: a reservoir :class:`~..buffer.Buffer` filled after
each learned task, purged of forgotten rows before anything else happens in a step."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from ...hashing import derive_seed
from ...unlearn.params import NonNegInt
from ..buffer import Buffer
from ..tasks import Rows
from .base import SALT_BUFFER, StepData, Strategy, StrategyParams


class MemoryParams(StrategyParams):
    buffer_size: NonNegInt = 200


class MemoryStrategy(Strategy):
    params_cls: ClassVar[type[StrategyParams]] = MemoryParams

    def __init__(self, bench, template, params, seed):
        super().__init__(bench, template, params, seed)
        d = int(np.prod(bench.input_shape))
        self.buffer = Buffer(params.buffer_size, d, bench.num_classes)

    def purge(self, step: StepData) -> None:
        dropped = self.buffer.purge(step.tasks, step.classes, step.ids)
        self.details["buffer_purged"] = dropped

    def remember(self, step: StepData, rows: Rows) -> None:
        """Offer the task's rows to the reservoir (seeded order), with their logits now."""
        rng = np.random.default_rng(derive_seed(self.seed, SALT_BUFFER, step.index))
        order = rng.permutation(len(rows))
        idx = torch.from_numpy(order)
        self.buffer.add(rows.x[idx], rows.y[idx], self.logits(rows.x[idx]), rows.ids[order],
                        rows.task[order], rng)
        self.details["buffer_rows"] = len(self.buffer)

    def buffer_batch(self, generator: torch.Generator) -> torch.Tensor:
        return self.buffer.sample(self.p.batch_size, generator)

    def generator(self, step: StepData, salt: int) -> torch.Generator:
        return torch.Generator().manual_seed(derive_seed(self.seed, SALT_BUFFER, step.index,
                                                         salt))

    def memory_loss(self, b: torch.Tensor) -> torch.Tensor:
        """The loss on buffer rows ``b`` (a strategy's replay term)."""
        raise NotImplementedError

    def learn(self, step: StepData) -> None:
        rows = step.learn
        gen = self.generator(step, 1)

        def loss(idx, _):
            out = self.ce(self.model, rows.x[idx], rows.y[idx], rows.task[idx.numpy()])
            b = self.buffer_batch(gen)
            return out + self.memory_loss(b) if len(b) else out

        self.train(step, len(rows), self.p.epochs, loss)
        self.remember(step, rows)

    def unlearn(self, step: StepData) -> None:
        """Purge, then train on the remaining memory for ``unlearn_epochs`` passes (the
        model forgets only through drift: these baselines have no forgetting term)."""
        self.purge(step)
        if len(self.buffer):
            self.train(step, len(self.buffer), self.p.unlearn_epochs,
                       lambda idx, _: self.memory_loss(idx))

    def learn_and_unlearn(self, step: StepData) -> None:
        self.purge(step)
        self.learn(step)
