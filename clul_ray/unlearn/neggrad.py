"""``neggrad``: gradient ascent on D_f; ``plus=true`` (the ``neggrad+`` variant) gives
NegGrad+ (Kurmanji et al. 2023).

NegGrad: each epoch one seeded pass over D_f minimising -CE(x_f, y_f).
NegGrad+: each epoch one pass over D_r, each retain batch paired with a (cycled) forget
batch, minimising beta·CE(x_r, y_r) - (1 - beta)·CE(x_f, y_f).
Gradient ascent is unbounded: keep epochs and lr small, and compare with retrain.

Scenario-dependent strength (:mod:`.strength`), defaults chosen on several scenarios
(benchmarks/defaults_study.py): on a forget set of whole classes the passes go on until
a step leaves the model's accuracy on D_f at 0 (what retraining gives there), at most
``epochs`` (then it ends on the step with the lowest); on any
other forget set (e.g. a random sample, where retraining's forget accuracy is about its
test accuracy and ascent soon costs test accuracy) they run ``partial_epochs`` epochs.
Defaults: Adam lr 1e-3, batch 64, ``epochs`` 30, ``partial_epochs`` 1; chosen on digits
class:3, class:7 and random:0.1, wine class:1, breast_cancer random:0.2, checked on
held-out scenarios (benchmarks/RESULTS.md). The earlier fixed 5 epochs left FA 0.85 above
retrain's on wine class 1 (5 steps) and cost 0.16 test accuracy on digits random:0.1;
they stay one ``--param`` away: ``epochs=5 partial_epochs=5 until_forgotten=false``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..hashing import derive_seed
from .base import Split, register_method, register_variant
from .params import BatchSize, Bool, Fraction, NonNegInt, OptimParams
from .strength import run_until_forgotten, whole_classes
from .training import SALT_FORGET, cycled_batches

if TYPE_CHECKING:
    from torch import nn


class NegGradParams(OptimParams):
    """``epochs``: the passes on a whole-class forget set, where they stop after the first
    step that leaves the accuracy on D_f at 0, else end on the step with the lowest
    (unless ``until_forgotten`` is false);
    ``partial_epochs``: the passes on any other forget set."""

    epochs: NonNegInt = 30
    partial_epochs: NonNegInt = 1
    until_forgotten: Bool = True
    forget_batch_size: BatchSize = 16
    plus: Bool = False
    beta: Fraction = 0.999


def _space(tune):
    return {"lr": tune.loguniform(1e-5, 1e-2), "epochs": tune.randint(1, 31),
            "partial_epochs": tune.randint(0, 6)}


@register_method("neggrad", NegGradParams, changes_weights=True,
                 summary="gradient ascent on D_f (plus=true: NegGrad+ with CE on D_r)",
                 space=_space)
def neggrad(model: nn.Module, forget: Split, retain: Split,
            p: NegGradParams) -> tuple[nn.Module, dict[str, Any]]:
    import torch.nn.functional as F

    opt = p.optimizer_for(model.parameters())
    use_plus = p.plus and len(retain) > 0
    whole = whole_classes(forget, retain)
    if not use_plus:
        n = len(forget)

        def loss(idx):
            return -F.cross_entropy(model(forget.x[idx]), forget.y[idx])
    else:
        n = len(retain)
        forget_stream = cycled_batches(len(forget), p.forget_batch_size,
                                       derive_seed(p.seed, SALT_FORGET))

        def loss(idx):
            fidx = next(forget_stream)
            return (p.beta * F.cross_entropy(model(retain.x[idx]), retain.y[idx])
                    - (1.0 - p.beta) * F.cross_entropy(model(forget.x[fidx]), forget.y[fidx]))

    stop = forget if whole and p.until_forgotten else None
    steps, epochs = run_until_forgotten(model, opt, p.seed,
                                        p.epochs if whole else p.partial_epochs, n,
                                        p.batch_size, loss, stop)
    return model, {"variant": "neggrad+" if use_plus else "neggrad", "steps": steps,
                   "epochs": epochs, "whole_classes": whole}


register_variant("neggrad+", "neggrad", {"plus": True},
                 summary="NegGrad+: beta*CE on D_r - (1-beta)*CE on D_f")
