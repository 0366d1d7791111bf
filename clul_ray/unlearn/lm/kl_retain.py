"""``kl_retain``: gradient ascent on the forget set with a KL-to-the-original penalty on the
retain set.

Minimise -NLL(D_f) + alpha * KL(p_orig || p_theta), the KL of the next-token distributions
averaged over the retain rows' real target positions, p_orig the frozen original model
(the KL baseline of TOFU, Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for
LLMs"). With an empty retain set it is ``ga``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..base import Split, register_method
from ..params import NonNegative
from .common import LMParams, frozen_copy, optim_space, retain_kl, run_steps

if TYPE_CHECKING:
    from torch import nn


class KLRetainParams(LMParams):
    """``alpha``: the weight of the retain KL to the original model, which keeps the
    model's predictions on other text where they were (0 = ``ga``)."""

    alpha: NonNegative = 1.0


def _space(tune):
    return {**optim_space(tune), "alpha": tune.loguniform(0.1, 10.0)}


@register_method("kl_retain", KLRetainParams, changes_weights=True,
                 summary="ascent on the forget NLL, alpha * KL to the original on retain",
                 space=_space, task="lm")
def kl_retain(model: nn.Module, forget: Split, retain: Split,
              p: KLRetainParams) -> tuple[nn.Module, dict[str, Any]]:
    from ...text.lm import lm_loss

    ref = frozen_copy(model)

    def loss(fx, rx):
        out = -lm_loss(model, fx)
        return out if rx is None else out + p.alpha * retain_kl(model, ref, rx)

    steps = run_steps(model, forget, retain, p, loss)
    return model, {"steps": steps, "retain_term": len(retain) > 0}
