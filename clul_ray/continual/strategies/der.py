"""``der`` (dark experience replay, DER++ form; the CLUL paper's continual-learning base):
cross-entropy on the new task, ``alpha`` times the MSE between the model's logits on a
buffer batch and the logits stored with it, and ``beta`` times cross-entropy on a buffer
batch. Defaults alpha 0.1, beta 0.5 (mammoth's DER++ for a 200-row buffer). Logits are
stored when a task ends. Unlearning purges the buffer."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F

from ...unlearn.params import NonNegative
from .base import StrategyParams, register_strategy
from .memory import MemoryParams, MemoryStrategy


class DerParams(MemoryParams):
    alpha: NonNegative = 0.1
    beta: NonNegative = 0.5


@register_strategy
class Der(MemoryStrategy):
    name = "der"
    params_cls: ClassVar[type[StrategyParams]] = DerParams
    summary = "dark experience replay (logit matching on the buffer)"

    def memory_loss(self, b):
        buf = self.buffer
        out = self.model(buf.x[b])
        loss = self.p.alpha * F.mse_loss(out, buf.logits[b])
        if self.p.beta:
            loss = loss + self.p.beta * F.cross_entropy(
                self.bench.restrict(out, buf.task[b.numpy()]), buf.y[b])
        return loss
