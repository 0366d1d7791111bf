"""``scrub``: SCRUB (Kurmanji et al. 2023), teacher = the original model in eval mode.

d(x) = KL(p_teacher || p_student)·T². Epoch e = 1..epochs: if e <= msteps, one pass over
D_f minimising -d (the "max" step); then one pass over D_r minimising
gamma·CE + alpha·d (the "min" step); one shared optimizer. Defaults: the paper's small
scale (Adam lr 5e-4, weight decay 0.1, alpha 0.5, gamma 1, T 2, 10 epochs) with the batch
sizes listed for its large scale (128 retain / 32 forget), but msteps 5 (3 left digits
class 7 and class 5 with FA 0.24-0.27 above retrain's) and a scenario-dependent number of
max steps: on a forget set of whole classes (:func:`.strength.whole_classes`) msteps is
raised until the max steps number at least ``min_max_steps`` = 40 (on wine's ~50 forget
rows msteps 5 is 10 max steps, which leave FA 0.93 above retrain's); on any other forget
set it stays, as more ascent there only costs test accuracy. Chosen on several scenarios
(benchmarks/defaults_study.py), checked on held-out ones (benchmarks/RESULTS.md); the
paper's setting stays one ``--param`` away: ``msteps=3 min_max_steps=0``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from ..hashing import derive_seed
from .base import Split, register_method
from .losses import distill_kl
from .params import BatchSize, NonNegInt, OptimParams, Positive
from .strength import epochs_for, whole_classes
from .training import SALT_EPOCH, SALT_FORGET, begin_epoch, end_epoch, shuffled_batches

if TYPE_CHECKING:
    from torch import nn


class ScrubParams(OptimParams):
    """``min_max_steps``: on a whole-class forget set, ``msteps`` (and ``epochs`` with it)
    is raised until the max step runs at least this many batches (0: exactly ``msteps``)."""

    epochs: NonNegInt = 10
    msteps: NonNegInt = 5
    lr: Positive = 5e-4
    weight_decay: float = 0.1
    alpha: float = 0.5
    gamma: float = 1.0
    temperature: Positive = 2.0
    batch_size: BatchSize = 128
    forget_batch_size: BatchSize = 32
    min_max_steps: NonNegInt = 40


def _space(tune):
    return {"temperature": tune.loguniform(0.5, 8.0), "alpha": tune.uniform(0.0, 2.0),
            "gamma": tune.uniform(0.1, 2.0), "msteps": tune.randint(0, 6),
            "epochs": tune.randint(1, 11)}


@register_method("scrub", ScrubParams, changes_weights=True,
                 summary="max KL to the original on D_f, then min CE + KL on D_r",
                 space=_space)
def scrub(model: nn.Module, forget: Split, retain: Split,
          p: ScrubParams) -> tuple[nn.Module, dict[str, Any]]:
    import torch
    import torch.nn.functional as F

    teacher = copy.deepcopy(model).eval()
    opt = p.optimizer_for(model.parameters(), p.weight_decay)
    max_steps = min_steps = 0
    msteps = p.msteps
    if msteps and whole_classes(forget, retain):
        msteps = epochs_for(p.msteps, p.min_max_steps, len(forget), p.forget_batch_size)
    epochs = p.epochs + msteps - p.msteps
    for epoch in range(1, epochs + 1):
        s = begin_epoch(p.seed, SALT_EPOCH, epoch)
        model.train()
        if epoch <= msteps:
            for idx in shuffled_batches(len(forget), p.forget_batch_size,
                                        derive_seed(s, SALT_FORGET)):
                x = forget.x[idx]
                with torch.no_grad():
                    t = teacher(x)
                opt.zero_grad(set_to_none=True)
                (-distill_kl(model(x), t, p.temperature)).backward()
                opt.step()
                max_steps += 1
        for idx in shuffled_batches(len(retain), p.batch_size, s):
            x, y = retain.x[idx], retain.y[idx]
            with torch.no_grad():
                t = teacher(x)
            out = model(x)
            opt.zero_grad(set_to_none=True)
            (p.gamma * F.cross_entropy(out, y)
             + p.alpha * distill_kl(out, t, p.temperature)).backward()
            opt.step()
            min_steps += 1
        end_epoch(epoch, model)
    return model, {"max_steps": max_steps, "min_steps": min_steps, "msteps": msteps,
                   "epochs": epochs}
