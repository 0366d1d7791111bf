"""The update log of a training run: per optimiser step, the batch's row ids and the step's
parameter update Δθ = θ_after − θ_before, for amnesiac unlearning (:mod:`.amnesiac`).

The forget set is not known while the model trains, so every step is logged: the log holds
``steps × trainable parameters`` float32 values (4 bytes each) plus the ids of every
batch's rows, ``epochs × rows`` int64 values (8 bytes each). :attr:`UpdateLog.nbytes` is
that sum, exactly.

Training records a log only when asked (``train_from_scratch(..., record_updates=True)``);
it is then attached to the trained model as the attribute named :data:`LOG_ATTR`, which
``copy.deepcopy`` and pickling (Ray's object store) carry with the model. An unlearned
model never carries it: :class:`~.base.Method` drops it from every method's output, since
the log is made of the forget rows' updates too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ClulError

if TYPE_CHECKING:
    import torch
    from torch import nn

LOG_ATTR = "update_log"
DELTA_BYTES = 4  # float32
ID_BYTES = 8  # int64


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimiser step moves, in ``model.parameters()`` order."""
    return [p for p in model.parameters() if p.requires_grad]


def flat(model: nn.Module) -> torch.Tensor:
    """The trainable parameters as one flat float32 vector (a copy)."""
    import torch
    from torch.nn.utils import parameters_to_vector

    return parameters_to_vector(trainable(model)).detach().to(torch.float32).clone()


@dataclass
class UpdateLog:
    """Every step's update, ``deltas`` (steps, params) float32, and its batch's row ids:
    ``row_ids[offsets[b]:offsets[b + 1]]`` for step ``b``."""

    deltas: torch.Tensor
    row_ids: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        if self.deltas.ndim != 2 or len(self.offsets) != len(self.deltas) + 1:
            raise ClulError(f"an update log needs one batch per step, got "
                            f"{len(self.offsets) - 1} batches for {len(self.deltas)} steps")

    @property
    def steps(self) -> int:
        return int(self.deltas.shape[0])

    @property
    def params(self) -> int:
        return int(self.deltas.shape[1])

    @property
    def delta_bytes(self) -> int:
        """steps × trainable parameters × 4."""
        return self.steps * self.params * DELTA_BYTES

    @property
    def id_bytes(self) -> int:
        """The batches' row ids: one int64 per row per epoch."""
        return int(len(self.row_ids)) * ID_BYTES

    @property
    def nbytes(self) -> int:
        return self.delta_bytes + self.id_bytes

    def batch_ids(self, step: int) -> np.ndarray:
        return self.row_ids[self.offsets[step]:self.offsets[step + 1]]

    def holds(self, ids: np.ndarray) -> np.ndarray:
        """Per id: whether any logged batch held it."""
        return np.isin(np.asarray(ids, dtype=np.int64), self.row_ids)

    def steps_holding(self, ids: np.ndarray) -> np.ndarray:
        """The steps (ascending) whose batch held at least one of ``ids``."""
        hit = np.isin(self.row_ids, np.asarray(ids, dtype=np.int64))
        step_of_row = np.repeat(np.arange(self.steps), np.diff(self.offsets))
        return np.unique(step_of_row[hit])

    def summed(self, steps: np.ndarray) -> torch.Tensor:
        """Σ Δθ over ``steps``, summed in float64."""
        import torch

        idx = torch.as_tensor(np.asarray(steps, dtype=np.int64))
        return self.deltas.index_select(0, idx).to(torch.float64).sum(0)


def undo_steps(model: nn.Module, log: UpdateLog, steps: np.ndarray) -> None:
    """θ ← θ − Σ_{b ∈ steps} Δθ_b, in place (in float64, stored back as the parameters'
    dtype)."""
    import torch

    params = trainable(model)
    total = sum(p.numel() for p in params)
    if total != log.params:
        raise ClulError(f"the update log has {log.params} parameters per step but the model "
                        f"has {total} trainable parameters")
    delta = log.summed(steps)
    at = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            p.copy_((p.to(torch.float64) - delta[at:at + n].view_as(p)).to(p.dtype))
            at += n


class UpdateRecorder:
    """Records a training loop's steps: wrap its batch loss with :meth:`loss` (which notes
    the batch and θ before the step) and call :meth:`after_step` after each
    ``opt.step()``; :meth:`log` gives the :class:`UpdateLog`."""

    def __init__(self, model: nn.Module, ids: np.ndarray | None):
        if ids is None:
            raise ClulError("recording updates needs the training rows' ids")
        self.model = model
        self.ids = np.asarray(ids, dtype=np.int64)
        self.before: torch.Tensor | None = None
        self.deltas: list[torch.Tensor] = []
        self.batches: list[np.ndarray] = []

    def loss(self, fn: Callable[[torch.Tensor, Any], torch.Tensor]
             ) -> Callable[[torch.Tensor, Any], torch.Tensor]:
        def wrapped(idx: torch.Tensor, prepared: Any) -> torch.Tensor:
            self.before = flat(self.model)
            self.batches.append(self.ids[idx.numpy()])
            return fn(idx, prepared)

        return wrapped

    def after_step(self) -> None:
        assert self.before is not None
        self.deltas.append(flat(self.model) - self.before)
        self.before = None

    def log(self) -> UpdateLog:
        import torch

        n = sum(p.numel() for p in trainable(self.model))
        deltas = torch.stack(self.deltas) if self.deltas else torch.zeros(0, n)
        sizes = np.array([len(b) for b in self.batches], dtype=np.int64)
        row_ids = (np.concatenate(self.batches) if self.batches
                   else np.zeros(0, dtype=np.int64))
        return UpdateLog(deltas, row_ids, np.concatenate([[0], np.cumsum(sizes)]))


def update_log_of(model: nn.Module) -> UpdateLog | None:
    """The log attached to ``model`` by training, or None."""
    log = getattr(model, LOG_ATTR, None)
    return log if isinstance(log, UpdateLog) else None
