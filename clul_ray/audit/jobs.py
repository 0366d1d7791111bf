"""The work of one audited model, in plain torch (a Ray task runs each; so can a loop).

Each job trains (or unlearns) one model — or one SISA ensemble — and returns its
:class:`ModelScore`: the logit-scaled confidence of every forget example (the audit's
signal) and the utility figures of the final score. One torch thread per job, so a job's
result depends on its seed alone.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from torch import nn

from ..metrics import accuracy
from ..metrics.accuracy import classification_scores
from ..unlearn.api import unlearn_model
from ..unlearn.base import Split
from ..unlearn.compare import Data, warm_up
from ..unlearn.training import TrainRecipe, predict_proba, torch_threads, train_from_scratch
from .epsilon import proba_confidence
from .spec import SisaShape


@dataclass
class ModelScore:
    """One audited model: its forget-set signal and utility (test figures macro-averaged)."""

    signal: np.ndarray  # (n_forget,) float64
    RA: float
    FA: float
    TA: float
    precision: float
    recall: float
    F1: float
    seconds: float
    seed: int

    def to_arrays(self) -> dict[str, np.ndarray]:
        scalars = {k: np.float64(getattr(self, k)) for k in SCALARS}
        return {"signal": self.signal, **scalars, "seed": np.int64(self.seed)}

    @classmethod
    def from_arrays(cls, a: Any) -> ModelScore:
        return cls(signal=np.asarray(a["signal"], np.float64), seed=int(a["seed"]),
                   **{k: float(a[k]) for k in SCALARS})


SCALARS = ("RA", "FA", "TA", "precision", "recall", "F1", "seconds")


def score_proba(retain: np.ndarray, forget: np.ndarray, test: np.ndarray, data: Data,
                seconds: float, seed: int) -> ModelScore:
    """A model's score from its probabilities on D_r, D_f and D_t."""
    y_f, y_t = data.forget.y.numpy(), data.test.y.numpy()
    cs = classification_scores(test, y_t)
    return ModelScore(signal=proba_confidence(forget, y_f),
                      RA=accuracy(retain, data.retain.y.numpy()), FA=accuracy(forget, y_f),
                      TA=accuracy(test, y_t), precision=cs["precision"], recall=cs["recall"],
                      F1=cs["F1"], seconds=seconds, seed=seed)


def score_model(model: nn.Module, data: Data, seconds: float, seed: int) -> ModelScore:
    return score_proba(predict_proba(model, data.retain.x), predict_proba(model, data.forget.x),
                       predict_proba(model, data.test.x), data, seconds, seed)


def fit_original(template: nn.Module, data: Data, recipe: TrainRecipe, seed: int,
                 record_updates: bool = False) -> nn.Module:
    """The one original model an approximate method unlearns from (with its update log when
    a method needs it: ``amnesiac``)."""
    with torch_threads(1):
        return train_from_scratch(template, data.full(), recipe, seed,
                                  record_updates=record_updates)


def trained(template: nn.Module, data: Data, recipe: TrainRecipe, seed: int,
            on_full: bool) -> ModelScore:
    """A model trained from scratch with ``seed`` on D_r (a reference, or ``retrain``) or,
    ``on_full``, on D_r ∪ D_f (``original``: no unlearning at all)."""
    with torch_threads(1):
        t0 = time.perf_counter()
        model = train_from_scratch(template, data.full() if on_full else data.retain,
                                   recipe, seed)
        return score_model(model, data, time.perf_counter() - t0, seed)


def unlearned(original: nn.Module, data: Data, method: str, params: dict[str, Any],
              seed: int) -> ModelScore:
    """One run of an approximate method from the original, seeded ``seed``."""
    with torch_threads(1):
        warm_up(original, data.retain.x)
        model, report = unlearn_model(original, data.forget, data.retain, method, params, seed)
        return score_model(model, data, report.seconds, seed)


def _parquet(path: Path, split: Split) -> str:
    x = split.x.numpy()
    table = pa.table({"id": pa.array(split.ids, pa.int64()), "label": pa.array(
        split.y.numpy(), pa.int64()), "x": pa.FixedSizeListArray.from_arrays(
            pa.array(x.reshape(-1)), x.shape[1])})
    pq.write_table(table, path)
    return f"parquet:{path}"


def sisa_ensemble(data: Data, recipe: TrainRecipe, model: str, model_args: dict[str, Any],
                  shape: SisaShape, placement_seed: int, seed: int, delete: bool) -> ModelScore:
    """An S×R SISA ensemble with training seed ``seed``: on D_r alone (a reference) or, with
    ``delete``, on D_r ∪ D_f followed by the pipeline's exact deletion of D_f. Placement is
    ``placement_seed``'s, the same for every ensemble, as on a real root. Scored on the mean
    of its shard models' probabilities."""
    from ..config import make_config
    from ..sisa.compute.ensemble import Ensemble
    from ..sisa.driver.pipeline import Pipeline

    with torch_threads(1), tempfile.TemporaryDirectory(prefix="clul-audit-") as tmp:
        rows = data.full() if delete else data.retain
        cfg = make_config(
            dataset=_parquet(Path(tmp) / "rows.parquet", rows),
            input_shape=list(data.input_shape), num_classes=data.num_classes,
            shards=shape.shards, slices=shape.slices, seed=placement_seed, test_fraction=0.0,
            model=model, model_args=model_args, epochs=recipe.epochs, lr=recipe.lr,
            batch_size=recipe.batch_size, optimizer=recipe.optimizer,
            momentum=recipe.momentum, weight_decay=recipe.weight_decay,
            normalize=recipe.normalize, backend="local", train={"seed": seed})
        pipeline = Pipeline(str(Path(tmp) / "root"))
        t0 = time.perf_counter()
        pipeline.train(cfg)
        if delete:
            t0 = time.perf_counter()  # the deletion is what is timed
            pipeline.delete([int(i) for i in data.forget.ids])
        seconds = time.perf_counter() - t0
        ens = Ensemble(pipeline.config, pipeline.store, pipeline.state)

        def proba(split: Split) -> np.ndarray:
            return ens.shard_proba(split.x.numpy()).mean(axis=0)

        return score_proba(proba(data.retain), proba(data.forget), proba(data.test), data,
                           seconds, seed)
