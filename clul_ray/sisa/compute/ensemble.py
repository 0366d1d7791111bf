"""The SISA ensemble: the shard models a version serves, aggregated."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from ...config import PipelineConfig
from ...data.sources import features
from ...storage.store import Store
from ...text.lm import token_logprobs
from ..decisions.aggregate import aggregate
from ..records.checkpoint import load_shard_model
from ..records.version import ModelVersion


@torch.no_grad()
def models_proba(cfg: PipelineConfig, models: list, x: np.ndarray, device: str = "cpu",
                 batch: int = 4096) -> np.ndarray:
    """(models, n, classes) probabilities; a language model's are (models, n, context -
    1): each model's probability of each true next token, NaN where the target is padding
    (:attr:`PipelineConfig.prediction_width`)."""
    xt = torch.from_numpy(np.require(x, np.float32, ["C", "W"]))
    lm = cfg.task == "lm"
    batch = min(batch, 64) if lm else batch
    out = np.zeros((len(models), len(xt), cfg.prediction_width), np.float32)
    for i, m in enumerate(models):
        for j in range(0, len(xt), batch):
            xb = xt[j:j + batch].to(device)
            if lm:
                lp, mask = token_logprobs(m, xb)
                out[i, j:j + batch] = lp.exp().masked_fill(~mask, float("nan")).cpu().numpy()
            else:
                out[i, j:j + batch] = torch.softmax(m(xb), 1).cpu().numpy()
    return out


class Ensemble:
    """Predicts by majority vote of shard labels (default) or mean shard probability."""

    def __init__(self, cfg: PipelineConfig, store: Store, version: ModelVersion,
                 device: str = "cpu", shards: list[int] | None = None):
        """``shards``: only these of the version's trained shards (default: all)."""
        self.cfg = cfg
        self.device = device
        trained = [s for s in version.trained_shards() if shards is None or s.shard in shards]
        self.shards = [s.shard for s in trained]
        self.models = [load_shard_model(cfg, store, s, device) for s in trained]

    def shard_proba(self, x: np.ndarray, batch: int = 4096) -> np.ndarray:
        """(shards, n, classes) probabilities (:func:`models_proba`)."""
        return models_proba(self.cfg, self.models, x, self.device, batch)

    def predict(self, x: np.ndarray, method: str | None = None) -> np.ndarray:
        return aggregate(self.shard_proba(x), method or self.cfg.serve.aggregation)

    def predict_table(self, t: pa.Table) -> pa.Table:
        """Canonical rows -> id, pred, shard_pred (n, shards) and the label when present."""
        probs = self.shard_proba(features(t))
        cols = {"id": t.column("id"),
                "pred": pa.array(aggregate(probs, self.cfg.serve.aggregation).astype(np.int64))}
        if "label" in t.column_names:
            cols["label"] = t.column("label")
        shard_pred = probs.argmax(2).T.astype(np.int64)  # (n, shards)
        cols["shard_pred"] = pa.FixedSizeListArray.from_arrays(
            pa.array(shard_pred.reshape(-1)), max(1, shard_pred.shape[1]))
        return pa.table(cols)

    def proba_table(self, t: pa.Table) -> pa.Table:
        """Canonical rows -> id, proba: each row's (shards, classes) probabilities, flat."""
        probs = self.shard_proba(features(t)).transpose(1, 0, 2)  # (n, shards, classes)
        flat = pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(probs).reshape(-1)),
            max(1, probs.shape[1] * probs.shape[2]))
        return pa.table({"id": t.column("id"), "proba": flat})


class BatchPredictor:
    """A Ray Data ``map_batches`` callable around :meth:`Ensemble.predict_table` (or
    :meth:`Ensemble.proba_table` of some ``shards``, with ``proba``)."""

    def __init__(self, cfg: dict, root: str, version: dict, shards: list[int] | None = None,
                 proba: bool = False):
        torch.set_num_threads(1)
        self.ens = Ensemble(PipelineConfig(**cfg), Store(root), ModelVersion(**version),
                            shards=shards)
        self.proba = proba

    def __call__(self, t: pa.Table) -> pa.Table:
        return self.ens.proba_table(t) if self.proba else self.ens.predict_table(t)
