"""``finetune``: sequential training on each new task, nothing else (the lower bound of
continual learning). It keeps no memory, so an unlearn-only step leaves the model as it is;
in a combined step it just learns the new task."""

from __future__ import annotations

from .base import StepData, Strategy, register_strategy


@register_strategy
class Finetune(Strategy):
    name = "finetune"
    summary = "sequential fine-tuning; unlearning is a no-op"

    def learn(self, step: StepData) -> None:
        rows = step.learn
        self.train(step, len(rows), self.p.epochs,
                   lambda idx, _: self.ce(self.model, rows.x[idx], rows.y[idx],
                                          rows.task[idx.numpy()]))

    def unlearn(self, step: StepData) -> None:
        self.details["noop"] = True

    def learn_and_unlearn(self, step: StepData) -> None:
        self.learn(step)
