"""``ga``: gradient ascent on the forget set's next-token NLL.

Minimise -NLL(D_f), the mean negative log-likelihood of the forget rows' real tokens
(Jang et al. 2023, "Knowledge Unlearning for Mitigating Privacy Risks in Language Models";
the GA baseline of TOFU, Maini et al. 2024). Unbounded: keep ``steps`` and ``lr`` small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..base import Split, register_method
from .common import LMParams, optim_space, run_steps

if TYPE_CHECKING:
    from torch import nn


class GAParams(LMParams):
    """Only the step size and length (``lr``, ``steps``) set how far the ascent goes."""


@register_method("ga", GAParams, changes_weights=True,
                 summary="gradient ascent on the forget rows' next-token NLL",
                 space=optim_space, task="lm")
def ga(model: nn.Module, forget: Split, retain: Split,
       p: GAParams) -> tuple[nn.Module, dict[str, Any]]:
    from ...text.lm import lm_loss

    steps = run_steps(model, forget, None, p, lambda fx, _: -lm_loss(model, fx))
    return model, {"steps": steps}
