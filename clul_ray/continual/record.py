"""A continual run in MLflow: a parent run for the stream, and per strategy x seed one
child run per step: a model version whose params name the operation, the task, the
strategy, the seed and its parent (the previous step's run of the same strategy and seed,
also the tag ``clul_ray.parent_run``), with the step's metrics. Tracking goes to
``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<out>/mlflow.db``. A
failure to record warns; the run's files stand."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ..lineage.tracking import TAG, flat_params, folder_run, quiet, recorded, tracking_uri

EXPERIMENT = "clul-ray-continual"
METRICS = ("avg_acc", "avg_f1", "forget_acc", "bwt", "forgetting", "mia", "gap_oracle",
           "forget_gap", "mia_gap", "seconds", "buffer_rows", "buffer_forgotten")


class ContinualRecordWarning(UserWarning):
    """MLflow could not record a continual run; its files are written."""


def metrics_of(row: dict[str, Any]) -> dict[str, float]:
    keys = [*METRICS, *(k for k in row if k.startswith(("acc_task", "f1_task", "acc_class")))]
    return {k: float(row[k]) for k in keys
            if isinstance(row.get(k), int | float) and not math.isnan(float(row[k]))}


def record_stream(rows: list[dict[str, Any]], meta: dict[str, Any], out: Path,
                  uri: str | None = None) -> dict[str, Any] | None:
    return recorded(lambda: _record(rows, meta, out, tracking_uri(out, uri)), "continual run",
                    f"its files are in {out}", ContinualRecordWarning)


def _record(rows, meta, out: Path, uri: str) -> dict[str, Any]:
    quiet()
    from mlflow.entities import Metric, Param
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    client, exp_id, pid = folder_run(uri, EXPERIMENT, f"stream-{meta['benchmark']}", "stream",
                                     out)
    now = int(time.time() * 1000)
    params = {"benchmark": meta["benchmark"], "setting": meta["setting"],
              "model": meta["model"], "stream": meta["stream"],
              "strategies": ",".join(meta["strategies"]),
              "seeds": ",".join(map(str, meta["seeds"]))}
    params.update(flat_params(meta["params"], "params."))
    client.log_batch(pid, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    previous: dict[tuple[str, int], str] = {}
    children = 0
    for r in sorted(rows, key=lambda r: (r["strategy"], r["seed"], r["step"])):
        key = (r["strategy"], r["seed"])
        parent_run = previous.get(key, "")
        child = client.create_run(
            exp_id, run_name=f"{r['strategy']}-s{r['seed']}-step{r['step']}", tags={
                MLFLOW_PARENT_RUN_ID: pid, f"{TAG}kind": "continual_step",
                f"{TAG}strategy": r["strategy"], f"{TAG}parent_run": parent_run,
                f"{TAG}version": str(r["step"])})
        cid = child.info.run_id
        ps = {"operation": r["operation"], "kind": r["kind"], "task": str(r["task"]),
              "strategy": r["strategy"], "seed": str(r["seed"]), "step": str(r["step"]),
              "parent": parent_run or "none", "learned": r["learned"], "kept": r["kept"]}
        client.log_batch(cid, params=[Param(k, v) for k, v in ps.items()],
                         metrics=[Metric(k, v, now, 0) for k, v in metrics_of(r).items()])
        client.set_terminated(cid, "FINISHED")
        previous[key] = cid
        children += 1
    client.set_terminated(pid, "FINISHED")
    return {"tracking_uri": uri, "experiment": EXPERIMENT, "parent_run": pid,
            "child_runs": children}
