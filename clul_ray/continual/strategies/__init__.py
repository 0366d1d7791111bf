"""Continual strategies behind one registry; importing the package registers them all.

``clul`` (the CLUL paper's method) and the baselines ``finetune``, ``replay``, ``der`` and
``oracle`` (retrain from scratch on the allowed tasks after every step)."""

from . import clul, der, finetune, oracle, replay  # noqa: F401  (registration)
from .base import (
    StepData,
    Strategy,
    StrategyParams,
    get_strategy,
    make_params,
    register_strategy,
    strategy_names,
)

__all__ = ["StepData", "Strategy", "StrategyParams", "get_strategy", "make_params",
           "register_strategy", "strategy_names"]
