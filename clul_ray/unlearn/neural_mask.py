"""``neural_mask``: activation masking of the penultimate features; no weight changes.

As in the comparative study (VGG16 on CIFAR-10): average the penultimate activations (the
input of the last linear layer) over the forget rows, zero the units whose average is at or
above ``threshold`` (the units the forget rows drive), and predict with
classifier(features(x) ⊙ mask). The weights are bit-identical to the original's: the
knowledge is still in them, and dropping the mask restores the original model. This hides
the forget rows' predictions; it does not remove their influence.

``rule``: ``contrast`` (the default) zeroes the units whose average over D_f exceeds their
average over D_r by ``threshold`` or more; ``absolute`` is the study's rule (average over
D_f at or above ``threshold``, which was 0.5 there). The contrast makes the mask follow the
scenario: on a whole class it picks the units that class drives, on a random sample of
rows (whose averages match D_r's) next to none, where the absolute rule masks units every
class uses (on digits random:0.1 it cut test accuracy by 0.71). Defaults chosen on several
scenarios (benchmarks/defaults_study.py), checked on held-out ones
(benchmarks/RESULTS.md): contrast, threshold 0.15. The study's rule stays one ``--param``
away: ``rule=absolute threshold=0.5``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from ..errors import ClulError
from .base import Split, register_method
from .params import MethodParams

if TYPE_CHECKING:
    import torch
    from torch import nn


class NeuralMaskParams(MethodParams):
    """``rule``: ``contrast`` masks the units with mean(D_f) - mean(D_r) >= ``threshold``,
    ``absolute`` those with mean(D_f) >= ``threshold``."""

    threshold: float = 0.15
    rule: Literal["contrast", "absolute"] = "contrast"


def head_name(model: nn.Module) -> str:
    """The name of the last ``nn.Linear`` submodule: the classifier head."""
    from torch import nn

    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ClulError("neural_mask needs a model whose classifier is an nn.Linear layer")
    return names[-1]


def penultimate_mean(model: nn.Module, head: str, x: torch.Tensor) -> torch.Tensor:
    """Mean of the head's input over the rows of ``x`` (eval mode)."""
    import torch

    seen: list[torch.Tensor] = []
    layer = model.get_submodule(head)
    handle = layer.register_forward_pre_hook(lambda _m, args: seen.append(args[0]) or None)
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[0].flatten(1).mean(0)


def _space(tune):
    return {"threshold": tune.uniform(0.0, 1.0)}


@register_method("neural_mask", NeuralMaskParams, changes_weights=False,
                 summary="zero penultimate units active on D_f; weights unchanged",
                 space=_space)
def neural_mask(model: nn.Module, forget: Split, retain: Split,
                p: NeuralMaskParams) -> tuple[nn.Module, dict[str, Any]]:
    from .neural_masked import NeuralMasked

    head = head_name(model)
    mean = penultimate_mean(model, head, forget.x)
    if p.rule == "contrast" and len(retain):
        mean = mean - penultimate_mean(model, head, retain.x)
    mask = (mean < p.threshold).float()
    masked = int((mask == 0).sum())
    return NeuralMasked(model, head, mask), {
        "head": head, "rule": p.rule, "units": len(mask), "units_masked": masked,
        "note": "weights unchanged: the forget data's influence remains in the weights",
    }


def __getattr__(name: str) -> Any:
    """``NeuralMasked`` (:mod:`.neural_masked`), loaded when asked for: models stored
    before it moved there name this module as its home."""
    if name == "NeuralMasked":
        from .neural_masked import NeuralMasked

        return NeuralMasked
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
