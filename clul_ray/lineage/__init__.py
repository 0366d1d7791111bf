"""Lineage: every model version as an MLflow run, the registered ensemble, deletion
certificates, the residue scan (``verify``) and the purge of tainted versions.

The storage root is the source of truth; MLflow mirrors it (see ``recorder`` for the failure
policy, ``tracking`` for where a root's lineage is tracked). Importing this package does not
import MLflow.
"""

from .history import sample, taint, tree
from .recorder import LineageWarning, mirror, on_commit, sync, write_note
from .verify import scan, verify, write_certificate

__all__ = ["LineageWarning", "mirror", "on_commit", "sample", "scan", "sync", "taint", "tree",
           "verify", "write_certificate", "write_note"]
