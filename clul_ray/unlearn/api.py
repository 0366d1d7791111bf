"""One entry point for callers (the comparison harness, SISA-root integration per shard)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from .base import Split, UnlearnReport, get_method
from .params import MethodParams


def unlearn_model(model: nn.Module, forget: Split, retain: Split, method: str,
                  params: MethodParams | Mapping[str, Any] | None = None,
                  seed: int = 0) -> tuple[nn.Module, UnlearnReport]:
    """Apply ``method`` to a copy of ``model``; ``params`` override the method's defaults.

    Deterministic given ``seed`` and the torch thread count (recorded in the report).
    The input model is left unchanged. Raises ClulError on an unknown method or param.
    """
    m = get_method(method)
    return m(model, forget, retain, m.make_params(params, seed=seed))
