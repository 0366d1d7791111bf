"""SISA exact unlearning: shard plan, slice checkpoints, shard training, aggregation, deletion."""

from .decisions.aggregate import aggregate
from .decisions.plan import (
           DeletionPlan,
           checkpoint_keys,
           epochs_per_slice,
           expected_cost,
           plan_deletion,
)

__all__ = ["DeletionPlan", "aggregate", "checkpoint_keys", "epochs_per_slice",
           "expected_cost", "plan_deletion"]
