"""A sweep in MLflow: one parent run, one child run per trial (its params, final metrics
and the per-iteration objective), the best params per method as the parent's tagged
artifact ``best.yaml``. Tracking goes to ``MLFLOW_TRACKING_URI``, else
``sqlite:///<out>/mlflow.db``. A failure to record warns; the sweep's files stand."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ..lineage.tracking import TAG, flat_params, folder_run, quiet, recorded, tracking_uri
from .outputs import best_rows
from .text_objective import TEXT_METRICS

EXPERIMENT = "clul-ray-tune"


class TuneRecordWarning(UserWarning):
    """MLflow could not record a sweep; its files are written."""


def _metrics(row: dict[str, Any]) -> dict[str, float]:
    keys = ("objective", "gap", "forget_gap", "utility_drop", "cost", "FA", "RA", "TA", "TF1",
            "MIA", "ZRF", "KL", "seconds", "iterations", "trial_seconds", *TEXT_METRICS)
    return {k: float(row[k]) for k in keys
            if row.get(k) is not None and not math.isnan(float(row[k]))}


def record_sweep(rows: list[dict[str, Any]], meta: dict[str, Any], result: dict[str, Any],
                 out: Path) -> dict[str, Any] | None:
    return recorded(lambda: _record(rows, meta, result, out), "sweep",
                    f"its files are in {out}", TuneRecordWarning)


def _record(rows, meta, result, out: Path) -> dict[str, Any]:
    quiet()
    from mlflow.entities import Metric, Param
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    uri = tracking_uri(out)
    client, exp_id, pid = folder_run(uri, EXPERIMENT, f"tune-{'-'.join(meta['methods'])}",
                                     "sweep", out)
    now = int(time.time() * 1000)
    params = {k: meta[k] for k in ("dataset", "model", "forget", "num_samples", "scheduler",
                                   "search")}
    params.update(methods=",".join(meta["methods"]), seeds=",".join(map(str, meta["seeds"])))
    params.update(flat_params(meta["weights"], "weights."))
    client.log_batch(pid, params=[Param(k, str(v)) for k, v in params.items()])
    best = best_rows(rows)
    children = 0
    for r in rows:
        child = client.create_run(exp_id, run_name=f"{r['method']}-{r['trial']}", tags={
            MLFLOW_PARENT_RUN_ID: pid, f"{TAG}kind": "trial", f"{TAG}method": r["method"],
            f"{TAG}status": r["status"],
            f"{TAG}best": str(best.get(r["method"]) is r).lower()})
        cid = child.info.run_id
        ms = [Metric(k, v, now, 0) for k, v in _metrics(r).items()]
        ms += [Metric("objective_by_iteration", v, now, i)
               for i, v in enumerate(r.get("history", []), 1) if not math.isnan(v)]
        ps = [Param(k, str(v)) for k, v in r["params"].items()]
        for i in range(0, max(len(ms), len(ps), 1), 100):
            client.log_batch(cid, metrics=ms[i:i + 100], params=ps[i:i + 100])
        if r.get("error"):
            client.set_tag(cid, f"{TAG}error", r["error"][:5000])
        client.set_terminated(cid, {"completed": "FINISHED", "stopped": "KILLED",
                                    "failed": "FAILED"}[r["status"]])
        children += 1
    for m, s in result["summary"].items():
        client.log_batch(pid, metrics=[Metric(f"{m}.{k}", float(v), now, 0)
                                       for k, v in s.items() if not math.isnan(float(v))])
    client.log_artifact(pid, result["files"]["best_yaml"])
    client.set_tag(pid, f"{TAG}best_config", "best.yaml")
    for m, r in best.items():
        client.set_tag(pid, f"{TAG}best.{m}", r["trial"])
    client.set_terminated(pid, "FINISHED")
    return {"tracking_uri": uri, "experiment": EXPERIMENT, "parent_run": pid,
            "child_runs": children}

