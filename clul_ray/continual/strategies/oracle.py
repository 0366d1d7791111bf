"""``oracle``: after every step, a fresh model (seeded per step) trained with the same
recipe on every training row currently allowed (learned, not unlearned): the reference a
continual unlearner should match."""

from __future__ import annotations

from ...hashing import derive_seed
from ...unlearn.training import SALT_INIT, reinitialize
from .base import StepData, Strategy, register_strategy


@register_strategy
class Oracle(Strategy):
    name = "oracle"
    summary = "retrain from scratch on the allowed tasks after every step"

    def __init__(self, bench, template, params, seed):
        super().__init__(bench, template, params, seed)
        self.template = template

    def retrain(self, step: StepData) -> None:
        self.model = reinitialize(self.template, derive_seed(self.seed, SALT_INIT, step.index))
        rows = step.allowed
        if len(rows):
            self.train(step, len(rows), self.p.epochs,
                       lambda idx, _: self.ce(self.model, rows.x[idx], rows.y[idx],
                                              rows.task[idx.numpy()]))

    learn = unlearn = learn_and_unlearn = retrain
