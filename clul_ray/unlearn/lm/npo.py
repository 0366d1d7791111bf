"""``npo``: Negative Preference Optimization (Zhang et al. 2024, "Negative Preference
Optimization: From Catastrophic Collapse to Effective Unlearning").

Minimise (2/beta) * E_f[log(1 + (pi_theta(y|x) / pi_ref(y|x))^beta)] + alpha * NLL(D_r),
pi the sequence likelihood (the sum of a row's real tokens' log-probs) and pi_ref the
frozen original model. The forget gradient is gradient ascent weighted by
2 * sigmoid(beta * log ratio), which fades once a row is forgotten: NPO slows the collapse
that ``ga`` runs into. alpha > 0 is the paper's NPO+RT (retain NLL); alpha = 0 is NPO.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..base import Split, register_method
from ..params import NonNegative, Positive
from .common import LMParams, frozen_copy, optim_space, run_steps, sequence_logprob

if TYPE_CHECKING:
    import torch
    from torch import nn


class NPOParams(LMParams):
    """``beta``: the inverse temperature of the preference loss (small: close to ``ga``
    at the start; large: the ascent stops sooner once a row's likelihood falls below the
    original's). ``alpha``: the weight of the retain NLL (0 = plain NPO)."""

    beta: Positive = 0.1
    alpha: NonNegative = 1.0


def _space(tune):
    return {**optim_space(tune), "beta": tune.loguniform(0.01, 1.0),
            "alpha": tune.uniform(0.0, 5.0)}


def npo_loss(logp: torch.Tensor, logp_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """(2/beta) * mean(log(1 + exp(beta * (logp - logp_ref)))), written with logsigmoid."""
    import torch.nn.functional as F

    return -(2.0 / beta) * F.logsigmoid(-beta * (logp - logp_ref)).mean()


@register_method("npo", NPOParams, changes_weights=True,
                 summary="negative preference optimisation against the original (+ alpha * "
                         "retain NLL)",
                 space=_space, task="lm")
def npo(model: nn.Module, forget: Split, retain: Split,
        p: NPOParams) -> tuple[nn.Module, dict[str, Any]]:
    import torch

    from ...text.lm import lm_loss

    ref = frozen_copy(model)

    def loss(fx, rx):
        logp, _ = sequence_logprob(model, fx)
        with torch.no_grad():
            logp_ref, _ = sequence_logprob(ref, fx)
        out = npo_loss(logp, logp_ref, p.beta)
        return out if rx is None or p.alpha == 0 else out + p.alpha * lm_loss(model, rx)

    steps = run_steps(model, forget, retain if p.alpha > 0 else None, p, loss)
    return model, {"steps": steps, "retain_term": p.alpha > 0 and len(retain) > 0}
