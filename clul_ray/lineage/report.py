"""What ``clul-ray lineage`` shows: the store's version tree, joined with its MLflow records."""

from __future__ import annotations

import os

from ..errors import ClulError, first_line
from ..sisa.records.rootconfig import read_config
from ..sisa.records.version import read_current
from ..storage.store import Store
from . import history
from .background import wait as wait_for_sync
from .tracking import ALIAS, TAG, Tracking, enabled, experiment_name, model_name, tracking_uri


def lineage(store: Store, sync: bool = False) -> dict:
    """The version tree; with ``sync``, first log whatever MLflow lacks."""
    if read_config(store) is None:
        raise ClulError(f"no pipeline under {store.root}: run `clul-ray train` first")
    rows = history.tree(store)
    state = read_current(store)
    current_version = state.version if state else None
    out = {"root": store.root, "current_version": current_version, "versions": rows,
           "tracking_uri": None, "experiment": None, "registered_model": None,
           "mlflow_error": None}
    for r in rows:
        r.update(run_id=None, registry_version=None, current=r["version"] == current_version,
                 purged=None)
    if not enabled():
        out["mlflow_error"] = "lineage recording is off (CLUL_RAY_LINEAGE=0)"
        return out
    try:
        out["tracking_uri"] = tracking_uri(store)
        out["experiment"], out["registered_model"] = experiment_name(store), model_name(store)
        if not sync:
            wait_for_sync(store)  # a command's detached sync, should one run
        if not sync and "MLFLOW_TRACKING_URI" not in os.environ and not store.exists("mlflow.db"):
            out["mlflow_error"] = "no MLflow records yet (run with --sync)"
            return out
        if sync:
            from .recorder import sync as do_sync

            try:
                out["synced"] = do_sync(store)
            except Exception as e:
                raise ClulError(f"cannot record the lineage of {store.root} in MLflow at "
                                f"{out['tracking_uri']}: {first_line(e)}") from None
        t = Tracking(store, create=False)
        runs, mvs = t.version_runs(), t.model_versions()
        current = t.aliases().get(ALIAS)
    except ClulError as e:
        if sync:
            raise
        out["mlflow_error"] = str(e)
        return out
    except Exception as e:
        out["mlflow_error"] = f"{type(e).__name__}: {first_line(e)}"
        return out
    for r in rows:
        run, mv = runs.get(r["version"]), mvs.get(r["version"])
        if run is not None:
            tags = run.data.tags
            r.update(run_id=run.info.run_id, purged=tags.get(f"{TAG}purged"),
                     recorded=tags.get(f"{TAG}recorded") == "true",
                     mlflow_tainted=tags.get(f"{TAG}tainted") == "true")
        if mv is not None:
            r.update(registry_version=int(mv.version),
                     registry_current=current is not None and str(current) == str(mv.version))
    return out
