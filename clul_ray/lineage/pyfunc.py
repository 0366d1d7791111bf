"""The registered ensemble: an ``mlflow.pyfunc`` model that points into the storage root.

The model artifact holds no weights, only the root URI, the version and its config; loading
it reads that version's final shard checkpoints from the root (so any machine that can read
the root can serve it, and a deletion's purge never has copies to chase).
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

PIP_REQUIREMENTS = ["clul-ray", "torch", "pyarrow", "pandas"]


def to_features(model_input: Any) -> np.ndarray:
    """A pandas DataFrame with an ``x`` list column or one column per feature (``id`` and
    ``label`` columns are ignored), or an array -> (n, d) float32."""
    if isinstance(model_input, pd.DataFrame):
        if "x" in model_input.columns:
            return np.stack([np.asarray(v, dtype=np.float32).reshape(-1)
                             for v in model_input["x"]]) if len(model_input) else \
                np.zeros((0, 0), np.float32)
        cols = [c for c in model_input.columns if c not in ("id", "label")]
        return np.array(model_input[cols].to_numpy(dtype=np.float32))  # a writable copy
    arr = np.array(model_input, dtype=np.float32)
    return arr.reshape(len(arr), -1)


class SisaEnsembleModel(mlflow.pyfunc.PythonModel):
    """Predicts class labels with the SISA ensemble of one version of one storage root."""

    def load_context(self, context) -> None:
        from ..config import PipelineConfig
        from ..errors import ClulError
        from ..sisa.ensemble import Ensemble
        from ..sisa.version import read_version
        from ..store import Store

        conf = context.model_config
        store = Store(conf["root"])
        version = int(conf["version"])
        v = read_version(store, version)
        if v is None:
            raise ClulError(f"version {version} is not recorded under {conf['root']}")
        cfg = PipelineConfig(**conf["config"])
        last = cfg.partition.slices - 1
        served = [s.artifact or s.checkpoint_paths()[last] for s in v.trained_shards()]
        missing = [p for p in served if not store.exists(p)]
        if missing:
            raise ClulError(f"version {version} of {conf['root']} cannot be loaded: "
                            f"{len(missing)} shard models are gone (e.g. {missing[0]}); "
                            "a deletion superseded it")
        self.ensemble = Ensemble(cfg, store, v)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        x = to_features(model_input)
        if len(x) == 0:
            return np.zeros(0, np.int64)
        return self.ensemble.predict(x).astype(np.int64)
