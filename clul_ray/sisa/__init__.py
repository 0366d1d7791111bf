"""SISA exact unlearning, in four layers: pure decisions (:mod:`.decisions`), what a root
records (:mod:`.records`), where models are computed (:mod:`.compute`) and the request path
(:mod:`.driver`); storage is :mod:`clul_ray.storage`."""

from .decisions.aggregate import aggregate
from .decisions.plan import (
           RequestPlan,
           checkpoint_keys,
           epochs_per_slice,
           expected_cost,
           plan_deletion,
)

__all__ = ["RequestPlan", "aggregate", "checkpoint_keys", "epochs_per_slice",
           "expected_cost", "plan_deletion"]
