"""The commit of a model version (the commit point is ``state.json``) and the removal of
what it no longer serves. The version itself is built in :mod:`..decisions.next_version`.
"""

from __future__ import annotations

from ...storage import layout
from ...storage.store import Store
from .predcache import drop_stale
from .version import ModelVersion, write_version


def commit(store: Store, version: ModelVersion) -> None:
    """Write ``version`` (the commit point is ``state.json``), then drop the checkpoints,
    edited models and cached test predictions of models it does not serve: a superseded
    one may carry deleted rows' influence."""
    write_version(store, version)
    keep = version.checkpoint_paths()
    for f in store.checkpoint_files():
        if f not in keep:
            store.delete(f)
    served = version.artifacts()
    for f in store.list_files(layout.UNLEARNED, ".pt"):
        if f not in served:
            store.delete(f)
    drop_stale(store, version)
