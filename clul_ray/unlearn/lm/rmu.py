"""``rmu``: Representation Misdirection for Unlearning (Li et al. 2024, "The WMDP Benchmark:
Measuring and Reducing Malicious Use With Unlearning").

At hidden state ``layer`` (an index into ``CausalLM.hidden_states``: 0 the embeddings, k the
output of block k), minimise MSE(h_theta(x_f), c * u) + alpha * MSE(h_theta(x_r),
h_orig(x_r)), u a fixed random unit vector (seeded; drawn uniform in [0, 1)^d then
normalised, as the paper does), c = ``steer`` and h_orig the frozen original model. The
MSEs average over the rows' real (non-padding) positions and the model width. Only the
``update_layers`` blocks ending at ``layer`` are trained (all of their parameters; the
paper trains the MLPs of the three layers ending at its steered layer); the embeddings,
the other blocks and the final norm stay as they were.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from ...errors import ClulError
from ...hashing import derive_seed
from ...text.tokenizer import PAD
from ..base import Split, register_method
from ..params import Int, NonNegative, Positive
from .common import LMParams, frozen_copy, optim_space, run_steps

if TYPE_CHECKING:
    import torch
    from torch import nn

SALT_DIRECTION = 8
PositiveInt = Annotated[Int, Field(ge=1)]


class RMUParams(LMParams):
    """``layer``: the hidden state steered (1..n_layer). ``update_layers``: how many blocks
    ending at ``layer`` are trained. ``steer``: the norm c of the target c * u (large: the
    forget activations land further from anything the model computes). ``alpha``: the
    weight of the retain MSE to the original activations (large: other text keeps its
    representation, and the forget push is slower)."""

    lr: Positive = 1e-3
    layer: PositiveInt = 1
    update_layers: PositiveInt = 3
    steer: Positive = 20.0
    alpha: NonNegative = 10.0


def _space(tune):
    return {**optim_space(tune), "steer": tune.loguniform(1.0, 100.0),
            "alpha": tune.loguniform(0.1, 1000.0)}


def _masked_mse(h: torch.Tensor, target: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the real positions of ``x`` and the model width."""
    from ...text.lm import ids_of

    real = (ids_of(x) != PAD).unsqueeze(-1).to(h.dtype)
    return (((h - target) ** 2) * real).sum() / (real.sum() * h.shape[-1]).clamp_min(1)


@register_method("rmu", RMUParams, changes_weights=True,
                 summary="steer the forget rows' activations at a layer to a random "
                         "direction, keep the retain rows' (alpha)",
                 space=_space, task="lm")
def rmu(model: nn.Module, forget: Split, retain: Split,
        p: RMUParams) -> tuple[nn.Module, dict[str, Any]]:
    import torch

    blocks = getattr(model, "blocks", None)
    n_layer = len(blocks) if blocks is not None else 0
    if p.layer > n_layer:
        raise ClulError(f"rmu: layer must be in 1..{n_layer} (the model's blocks), "
                        f"got {p.layer}")
    first = max(0, p.layer - p.update_layers)
    trained = [q for b in blocks[first:p.layer] for q in b.parameters()]
    ref = frozen_copy(model)
    with torch.no_grad():
        d = model.hidden_states(forget.x[:1])[p.layer].shape[-1]
    u = torch.rand(d, generator=torch.Generator().manual_seed(derive_seed(p.seed,
                                                                          SALT_DIRECTION)))
    target = p.steer * u / u.norm()
    keep = {id(q) for q in trained}
    frozen = [q for q in model.parameters() if id(q) not in keep and q.requires_grad]
    for q in frozen:
        q.requires_grad_(False)

    def loss(fx, rx):
        out = _masked_mse(model.hidden_states(fx)[p.layer], target, fx)
        if rx is None:
            return out
        with torch.no_grad():
            h_ref = ref.hidden_states(rx)[p.layer]
        return out + p.alpha * _masked_mse(model.hidden_states(rx)[p.layer], h_ref, rx)

    try:
        steps = run_steps(model, forget, retain if p.alpha > 0 else None, p, loss, trained)
    finally:
        for q in frozen:
            q.requires_grad_(True)
    return model, {"steps": steps, "trained_blocks": list(range(first + 1, p.layer + 1)),
                   "retain_term": p.alpha > 0 and len(retain) > 0}
