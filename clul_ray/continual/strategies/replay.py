"""``replay`` (experience replay): cross-entropy on the new task plus ``buffer_ce`` times
cross-entropy on a buffer batch; no distillation. Unlearning purges the buffer."""

from __future__ import annotations

from typing import ClassVar

from ...unlearn.params import NonNegative
from .base import StrategyParams, register_strategy
from .memory import MemoryParams, MemoryStrategy


class ReplayParams(MemoryParams):
    buffer_ce: NonNegative = 1.0


@register_strategy
class Replay(MemoryStrategy):
    name = "replay"
    params_cls: ClassVar[type[StrategyParams]] = ReplayParams
    summary = "experience replay from a reservoir buffer (purged on unlearning)"

    def memory_loss(self, b):
        buf = self.buffer
        return self.p.buffer_ce * self.ce(self.model, buf.x[b], buf.y[b], buf.task[b.numpy()])
