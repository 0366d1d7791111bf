"""``grad_diff``: gradient difference, ascent on the forget set and descent on the retain set.

Minimise -NLL(D_f) + alpha * NLL(D_r) (Liu et al. 2022, "Continual Learning and Private
Unlearning"; the GradDiff baseline of TOFU, Maini et al. 2024). With an empty retain set it
is ``ga``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..base import Split, register_method
from ..params import NonNegative
from .common import LMParams, optim_space, run_steps

if TYPE_CHECKING:
    from torch import nn


class GradDiffParams(LMParams):
    """``alpha``: the weight of the retain NLL, which holds the model's other text while
    the forget NLL is pushed up (0 = ``ga``)."""

    alpha: NonNegative = 1.0


def _space(tune):
    return {**optim_space(tune), "alpha": tune.uniform(0.0, 5.0)}


@register_method("grad_diff", GradDiffParams, changes_weights=True,
                 summary="ascent on the forget NLL, descent on alpha * the retain NLL",
                 space=_space, task="lm")
def grad_diff(model: nn.Module, forget: Split, retain: Split,
              p: GradDiffParams) -> tuple[nn.Module, dict[str, Any]]:
    from ...text.lm import lm_loss

    def loss(fx, rx):
        out = -lm_loss(model, fx)
        return out if rx is None else out + p.alpha * lm_loss(model, rx)

    steps = run_steps(model, forget, retain, p, loss)
    return model, {"steps": steps, "retain_term": len(retain) > 0}
