"""``amnesiac``: amnesiac unlearning (Graves, Nagisetty & Ganesh, "Amnesiac Machine
Learning", AAAI 2021).

While the original model trains, every optimiser step's update Δθ_b and its batch's row ids
are recorded (``train_from_scratch(..., record_updates=True)``, :mod:`.update_log`). To
forget, subtract the updates of every step whose batch held a forget row,
θ' = θ − Σ_{b ∋ forget} Δθ_b, then repair with ``repair_epochs`` epochs of training on D_r.

Storage: the forget set is unknown at training time, so every step is kept: steps ×
trainable parameters × 4 bytes (float32), plus the batches' row ids (epochs × rows × 8
bytes). A forget row sits in one batch per epoch, so a forget set of k rows undoes up to
k × epochs steps; a forget set spread over most batches (a whole class, a random 10%)
undoes nearly every step and brings the model back to its initial weights, after which the
repair is a short retraining on D_r. The report's details say how many steps were undone.

Defaults: chosen on digits with the project's MLP (class:3 and random:0.1, 2 seeds;
benchmarks/RESULTS.md): 2 repair epochs of Adam lr 1e-2, batch 64. The paper repairs with
one epoch or less; one epoch here leaves a larger gap to retrain, mostly on random:0.1
(``--param amnesiac.repair_epochs=1``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ClulError
from ..hashing import derive_seed
from ..optim import make_optimizer
from .base import Split, register_method
from .params import BatchSize, MethodParams, NonNegInt, Optimizer, Positive
from .training import SALT_EPOCH, run_epochs
from .update_log import undo_steps, update_log_of

if TYPE_CHECKING:
    from torch import nn

NO_LOG = ("amnesiac needs the original's recorded updates: train it with record_updates "
          "(compare and tune do this when amnesiac is among the methods)")


class AmnesiacParams(MethodParams):
    """The repair after the undo: ``repair_epochs`` passes over D_r (0: no repair)."""

    repair_epochs: NonNegInt = 2
    lr: Positive = 1e-2
    batch_size: BatchSize = 64
    optimizer: Optimizer = "adam"
    momentum: float = 0.9


def _space(tune):
    return {"repair_epochs": tune.randint(0, 6), "lr": tune.loguniform(1e-4, 1e-1)}


@register_method("amnesiac", AmnesiacParams, changes_weights=True,
                 summary="subtract the recorded updates of the batches that held D_f, "
                         "then repair on D_r",
                 space=_space, needs_update_log=True)
def amnesiac(model: nn.Module, forget: Split, retain: Split,
             p: AmnesiacParams) -> tuple[nn.Module, dict[str, Any]]:
    import torch.nn.functional as F

    log = update_log_of(model)
    if log is None:
        raise ClulError(NO_LOG)
    if forget.ids is None:
        raise ClulError("amnesiac needs the forget rows' ids to find the batches that "
                        "held them")
    missing = int((~log.holds(forget.ids)).sum())
    if missing:
        raise ClulError(f"{missing} of the {len(forget)} forget rows are in no batch of the "
                        f"update log: it does not record this model's training on them")
    undone = log.steps_holding(forget.ids)
    undo_steps(model, log, undone)
    opt = make_optimizer(model.parameters(), p.optimizer, p.lr, p.momentum)
    repair_steps = run_epochs(
        model, opt, derive_seed(p.seed, SALT_EPOCH), p.repair_epochs, len(retain),
        p.batch_size, lambda idx, _: F.cross_entropy(model(retain.x[idx]), retain.y[idx]))
    return model, {"steps_total": log.steps, "steps_undone": int(len(undone)),
                   "repair_steps": repair_steps, "params": log.params,
                   "log_bytes": log.nbytes, "delta_bytes": log.delta_bytes}
