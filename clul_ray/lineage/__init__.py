"""Lineage: every model version as an MLflow run, the registered ensemble, the sample-id
history and the purge of tainted versions.

The storage root is the source of truth; MLflow mirrors it. :class:`LineageRecorder` is an
observer of the pipeline's commits (see ``recorder`` for the failure policy, ``tracking``
for where a root's lineage is tracked). Importing this package does not import MLflow.
"""

from .history import sample, taint, tree
from .recorder import LineageRecorder, LineageWarning, mirror, sync, write_note

__all__ = ["LineageRecorder", "LineageWarning", "mirror", "sample", "sync", "taint", "tree",
           "write_note"]
