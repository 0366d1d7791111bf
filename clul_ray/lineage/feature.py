"""A ``feature-unlearn`` run in MLflow, in the root's experiment (:mod:`.tracking`): one run
(tags ``kind=feature``, ``operation=feature-unlearn``, the sensitive column, method, t, the
transform / input / output digests and the root's feature version), the report's metrics,
the transform and the curve as artifacts, and a version of the registered model
``<root model>-feature`` whose source is the run's transform artifact. An MLflow failure is a
:class:`LineageWarning`; the files under the root stand."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from ..storage.store import Store
from .recorder import LineageWarning
from .tracking import TAG, Tracking, enabled, recorded, root_uri


def record_feature(store: Store, record: dict[str, Any], transform_json: str,
                   files: list[str]) -> dict[str, Any] | None:
    """Log one feature-unlearn run; returns {run_id, registry_version, model} or None."""
    if not enabled():
        return None
    return recorded(lambda: _record(store, record, transform_json, files), "feature transform",
                    f"it is saved under {store.root}", LineageWarning)


def _record(store: Store, rec: dict[str, Any], transform_json: str,
            files: list[str]) -> dict[str, Any]:
    from mlflow.exceptions import MlflowException

    t = Tracking(store)
    tags = {f"{TAG}kind": "feature", f"{TAG}operation": "feature-unlearn",
            f"{TAG}feature_version": str(rec["version"]), f"{TAG}sensitive": rec["sensitive"],
            f"{TAG}method": rec["method"], f"{TAG}t": str(rec["t"]),
            f"{TAG}dataset": rec.get("dataset"), f"{TAG}root": root_uri(store),
            f"{TAG}transform_sha256": rec["transform_sha256"],
            f"{TAG}input_digest": rec.get("input_digest"),
            f"{TAG}output_digest": rec.get("output_digest"),
            f"{TAG}transform_path": rec["transform"]}
    run = t.client.create_run(t.experiment_id, start_time=int(rec["created"] * 1000),
                              run_name=f"feature-v{rec['version']}-{rec['method']}",
                              tags={k: str(v) for k, v in tags.items() if v is not None})
    rid = run.info.run_id
    params = {k: str(rec[k]) for k in ("method", "sensitive", "t", "dataset", "out", "rows")
              if k in rec}
    metrics = {k: v for k, v in (rec.get("report") or {}).items() if isinstance(v, float)}
    t.log_batch(rid, params=params, metrics=metrics)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "transform.json"
        p.write_text(transform_json)
        t.client.log_artifact(rid, str(p), "transform")
    for f in files:
        if Path(f).is_file():
            t.client.log_artifact(rid, f, "report")
    name = f"{t.model_name}-feature"
    try:
        t.client.get_registered_model(name)
    except MlflowException:
        t.client.create_registered_model(
            name, tags={f"{TAG}root": root_uri(store)},
            description=f"feature-unlearning transforms of {root_uri(store)}")
    source = f"{t.client.get_run(rid).info.artifact_uri}/transform"
    mv = t.client.create_model_version(
        name, source=source, run_id=rid,
        tags={f"{TAG}feature_version": str(rec["version"]), f"{TAG}method": rec["method"],
              f"{TAG}sensitive": rec["sensitive"],
              f"{TAG}transform_sha256": rec["transform_sha256"]},
        description=f"feature transform v{rec['version']} ({rec['method']}, "
                    f"sensitive={rec['sensitive']})")
    t.log_batch(rid, tags={f"{TAG}registry_version": mv.version, f"{TAG}recorded": "true"},
                timestamp=int(time.time() * 1000))
    t.client.set_terminated(rid, "FINISHED")
    return {"run_id": rid, "registered_model": name, "registry_version": int(mv.version),
            "tracking_uri": t.uri}
