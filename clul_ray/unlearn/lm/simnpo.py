"""``simnpo``: SimNPO (Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference
Optimization for LLM Unlearning").

Minimise -(2/beta) * E_f[log sigmoid(-(beta/|y|) * log pi_theta(y|x) - gamma)]
+ alpha * NLL(D_r): NPO without the reference model, the sequence log-likelihood
normalised by the row's real token count |y|, and a reward margin gamma.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..base import Split, register_method
from ..params import NonNegative, Positive
from .common import LMParams, optim_space, run_steps, sequence_logprob

if TYPE_CHECKING:
    import torch
    from torch import nn


class SimNPOParams(LMParams):
    """``beta``: the inverse temperature on the per-token NLL (large: the forget push fades
    sooner once a row's NLL exceeds gamma/beta). ``gamma``: the reward margin, how far the
    per-token NLL is pushed before the weight fades. ``alpha``: the weight of the retain
    NLL (0 = SimNPO without a retain term)."""

    beta: Positive = 2.5
    gamma: NonNegative = 0.0
    alpha: NonNegative = 1.0


def _space(tune):
    return {**optim_space(tune), "beta": tune.loguniform(0.5, 10.0),
            "gamma": tune.uniform(0.0, 2.0), "alpha": tune.uniform(0.0, 5.0)}


def simnpo_loss(logp: torch.Tensor, length: torch.Tensor, beta: float,
                gamma: float) -> torch.Tensor:
    """-(2/beta) * mean(log sigmoid(-(beta/|y|) * logp - gamma))."""
    import torch.nn.functional as F

    return -(2.0 / beta) * F.logsigmoid(-beta * logp / length.clamp_min(1) - gamma).mean()


@register_method("simnpo", SimNPOParams, changes_weights=True,
                 summary="reference-free, length-normalised NPO (+ alpha * retain NLL)",
                 space=_space, task="lm")
def simnpo(model: nn.Module, forget: Split, retain: Split,
           p: SimNPOParams) -> tuple[nn.Module, dict[str, Any]]:
    from ...text.lm import lm_loss

    def loss(fx, rx):
        logp, length = sequence_logprob(model, fx)
        out = simnpo_loss(logp, length, p.beta, p.gamma)
        return out if rx is None or p.alpha == 0 else out + p.alpha * lm_loss(model, rx)

    steps = run_steps(model, forget, retain if p.alpha > 0 else None, p, loss)
    return model, {"steps": steps, "retain_term": p.alpha > 0 and len(retain) > 0}
