"""Purge tainted versions: delete their MLflow artifacts and leftover checkpoints, keep the trail.

A version is tainted when a later deletion removed training ids it was trained on. Its
run's artifacts (the checkpoint listing, the pointer model) and its logged model's artifacts
are deleted; its run, params, metrics, tags, nested runs, registry version and certificate
(digests and paths, no data) stay, tagged ``clul_ray.purged``. Checkpoint files of a tainted
version that the current version does not use are deleted from the store.
"""

from __future__ import annotations

import time

from ..errors import ClulError, first_line
from ..sisa.records.ledger import Ledger
from ..sisa.records.version import list_versions, read_current
from ..storage.store import Store
from . import history
from .tracking import TAG, enabled, tracking

KEEP = ("certificate",)  # the metadata trail: digests, counts and paths only


def purge(store: Store) -> dict:
    vs = list_versions(store)
    if not vs:
        raise ClulError(f"no trained model under {store.root}: run `clul-ray train`")
    tainted = history.taint(vs, Ledger(store).requests())
    state = read_current(store) or vs[-1]
    keep = state.checkpoint_paths()
    checkpoints = []
    for v in vs:
        if v.version not in tainted:
            continue
        for s in v.shards:
            for path in s.checkpoint_paths():
                if path not in keep and path not in checkpoints and store.exists(path):
                    store.delete(path)
                    checkpoints.append(path)
    out = {"root": store.root, "current_version": state.version,
           "tainted_versions": sorted(tainted), "purged_versions": [],
           "artifacts_removed": [], "checkpoints_removed": checkpoints,
           "kept": "runs, params, metrics, tags, nested runs, registry versions, certificates"}
    if enabled() and tainted:
        try:
            _purge_mlflow(store, tainted, out)
        except ClulError:
            raise
        except Exception as e:
            raise ClulError(f"cannot purge MLflow artifacts of {store.root} "
                            f"({len(checkpoints)} checkpoint files removed): "
                            f"{first_line(e)}") from None
    return out


def _purge_mlflow(store: Store, tainted: dict[int, str], out: dict) -> None:
    from .recorder import sync

    sync(store)  # every version logged and tainted versions tagged before deleting anything
    t = tracking(store)
    runs, mvs = t.version_runs(), t.model_versions()
    children: dict[str, list] = {}
    for c in t.runs("shard"):
        children.setdefault(c.data.tags.get("mlflow.parentRunId", ""), []).append(c)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for n in sorted(tainted):
        run = runs.get(n)
        if run is None:
            continue
        removed = []
        for r in [run, *children.get(run.info.run_id, [])]:
            repo = t.artifact_repo(r.info.artifact_uri)
            for a in t.client.list_artifacts(r.info.run_id):
                if a.path not in KEEP:
                    repo.delete_artifacts(a.path)
                    removed.append(f"{r.info.artifact_uri}/{a.path}")
        model_id = run.data.tags.get(f"{TAG}model_id")
        if model_id:
            lm = t.client.get_logged_model(model_id)
            repo = t.artifact_repo(lm.artifact_location)
            if repo.list_artifacts():
                repo.delete_artifacts()
                removed.append(lm.artifact_location)
            t.client.set_logged_model_tags(model_id, {f"{TAG}purged": stamp})
        if run.data.tags.get(f"{TAG}purged") is None or removed:
            t.client.set_tag(run.info.run_id, f"{TAG}purged", stamp)
            if (mv := mvs.get(n)) is not None:
                t.client.set_model_version_tag(t.model_name, mv.version, f"{TAG}purged", stamp)
        if removed:
            out["purged_versions"].append(n)
            out["artifacts_removed"].extend(removed)
