"""What commands report about a version (pure): the dict behind ``--json`` and the tables."""

from __future__ import annotations

from typing import Any

from ...config import PipelineConfig
from ..records.version import ModelVersion


def summarize(root: str, cfg: PipelineConfig, v: ModelVersion) -> dict[str, Any]:
    acc, ppl = v.metrics.shard_accuracy, v.metrics.shard_perplexity
    out = {
        "root": root, "version": v.version, "parent": v.parent, "operation": v.operation,
        "shards": cfg.partition.shards, "slices": cfg.partition.total_slices,
        "dataset": cfg.data.dataset, "model": cfg.train.model, "samples": v.samples,
        "test_samples": v.metrics.test_samples,
        "ensemble_accuracy": v.metrics.ensemble_accuracy,
        "per_shard": [{"shard": s.shard, "samples": s.n_samples,
                       "accuracy": acc.get(str(s.shard)), "model_sha256": s.model_sha256,
                       "node_id": s.node_id, "step_nodes": s.step_nodes,
                       "train_seconds": s.seconds, "retrained_from": s.retrained_from,
                       "approximate": s.approximate}
                      for s in v.shards],
        "wall_seconds": dict(v.timings),
    }
    if cfg.task == "lm":  # a language model: perplexity on the test documents
        out["ensemble_perplexity"] = v.metrics.ensemble_perplexity
        for row in out["per_shard"]:
            row["perplexity"] = ppl.get(str(row["shard"]))
    else:  # a classifier: the ensemble's macro precision / recall / F1 beside its accuracy
        out.update(ensemble_precision=v.metrics.ensemble_precision,
                   ensemble_recall=v.metrics.ensemble_recall,
                   ensemble_f1=v.metrics.ensemble_f1)
    return out


def request_summary(plan_affected: dict[int, int], request_id: str | None,
                    deleted: int, discarded: int) -> dict[str, Any]:
    return {"request_id": request_id, "deleted": deleted,
            "affected": {str(k): v for k, v in sorted(plan_affected.items())},
            "checkpoints_discarded": discarded}
