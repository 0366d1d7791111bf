"""One entry point for callers (the comparison harness, SISA-root integration per shard)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ClulError
from .base import Split, UnlearnReport, get_method
from .params import MethodParams

if TYPE_CHECKING:
    from torch import nn


def unlearn_model(model: nn.Module, forget: Split, retain: Split, method: str,
                  params: MethodParams | Mapping[str, Any] | None = None,
                  seed: int = 0) -> tuple[nn.Module, UnlearnReport]:
    """Apply ``method`` to a copy of ``model``; ``params`` override the method's defaults.

    Deterministic given ``seed`` and the torch thread count (recorded in the report).
    The input model is left unchanged. Raises ClulError on an unknown method or param.
    """
    m = get_method(method)
    return m(model, forget, retain, m.make_params(params, seed=seed))


def check_for_root(method: str, params: Mapping[str, Any] | None,
                   seed: int = 0) -> MethodParams:
    """``method`` and its params as ``unlearn`` on a SISA root takes them, refused in one
    line before anything changes: a shard model carries no update log."""
    m = get_method(method)
    if m.needs_update_log:
        raise ClulError(f"{method} needs the updates recorded while the original trained, "
                        "which a SISA root's shard models do not have (use compare, or an "
                        "exact delete)")
    return m.make_params(params, seed=seed)
