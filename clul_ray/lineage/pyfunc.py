"""The registered ensemble: an ``mlflow.pyfunc`` model that points into the storage root.

The model artifact holds no weights, only the root URI, the version, its config and its input
contract; loading it reads that version's final shard checkpoints from the root (so any machine
that can read the root can serve it, and a deletion's purge never has copies to chase).

Input contract: the model takes the dataset's *raw* rows (digits as scikit-learn's
``load_digits`` gives them, torchvision images as uint8, synthetic and Parquet rows as they
are) and applies :func:`clul_ray.data.sources.raw_to_features` before the ensemble, the very
transform the partitions were built with. Its MLflow signature says so: input a tensor
``(-1, d)`` of the source's raw dtype, output the predicted class as int64 ``(-1,)``.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from ..data.sources import RAW_DTYPE, raw_to_features, source_kind
from ..data.text import TEXT_KINDS

PIP_REQUIREMENTS = ["clul-ray", "torch", "pyarrow", "pandas"]


def input_contract(config: dict) -> dict | None:
    """What the registered model of a pipeline config takes: the dataset spec, its source kind,
    the model's input shape, the raw row width ``d`` and the raw rows' dtype (None for a
    config whose input shape was never resolved)."""
    data = config["data"]
    if not data.get("input_shape"):
        return None
    kind = source_kind(data["dataset"])
    shape = [int(s) for s in data["input_shape"]]
    if kind in TEXT_KINDS:  # a language model takes texts (see SisaEnsembleModel.predict)
        return {"dataset": data["dataset"], "kind": kind, "task": "lm", "context": shape[0],
                "tokenizer": data.get("tokenizer", "bytes")}
    return {"dataset": data["dataset"], "kind": kind, "input_shape": shape,
            "width": int(np.prod(shape)), "raw_dtype": RAW_DTYPE.get(kind, "float32")}


def model_signature(contract: dict):
    """The MLflow signature of the registered model: raw rows ``(-1, d)`` -> class ``(-1,)``.

    The model checks its input itself (see :meth:`SisaEnsembleModel.predict`): MLflow's own
    tensor enforcement would refuse the other accepted forms (an ``x`` list column beside
    ``id``/``label``, any numeric dtype) and word a wrong width as a dump of the whole input.
    The signature is therefore marked as validated inside the model's ``predict`` (the flag
    MLflow sets for type-hinted models, :func:`.mlflow_private.validated_in_predict`); it
    still describes the contract for callers and ``mlflow models serve`` (whose request body
    is then ``{"inputs": [[...], ...]}``).
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    from .mlflow_private import validated_in_predict

    if contract.get("task") == "lm":  # texts -> the ensemble's NLL per token of each
        return ModelSignature(inputs=Schema([ColSpec("string", "text")]),
                              outputs=Schema([ColSpec("double")]))

    return validated_in_predict(ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(contract["raw_dtype"]), (-1, contract["width"]),
                                  name=None)]),
        outputs=Schema([TensorSpec(np.dtype("int64"), (-1,))])))


def to_rows(model_input: Any) -> np.ndarray:
    """The raw rows of a model input as an (n, width) float32 array.

    Accepted: a pandas DataFrame with an ``x`` list column or one column per feature (``id``
    and ``label`` columns are ignored), a numpy array (or nested lists) of rows; each row
    flattened. All of them are RAW rows (see the module docstring), not canonical features.
    """
    if isinstance(model_input, pd.Series):
        model_input = model_input.to_frame()
    if isinstance(model_input, dict) and "x" in model_input:
        model_input = pd.DataFrame({"x": list(model_input["x"])})
    if isinstance(model_input, pd.DataFrame):
        if "x" in model_input.columns:
            rows = [np.asarray(v, dtype=np.float32).reshape(-1) for v in model_input["x"]]
            widths = {len(r) for r in rows}
            if len(widths) > 1:
                raise ValueError(f"rows of column 'x' have different widths {sorted(widths)}")
            return np.stack(rows) if rows else np.zeros((0, 0), np.float32)
        cols = [c for c in model_input.columns if c not in ("id", "label")]
        return np.array(model_input[cols].to_numpy(dtype=np.float32))  # a writable copy
    arr = np.array(model_input, dtype=np.float32)
    if arr.ndim == 0:
        return arr.reshape(1, 1)
    return arr.reshape(len(arr), int(np.prod(arr.shape[1:])))


def raw_features(contract: dict | None, model_input: Any) -> np.ndarray:
    """A model input -> the ensemble's (n, d) float32 features: its rows (:func:`to_rows`),
    their width checked against ``contract`` (:func:`input_contract`), the dataset's
    preprocessing applied (:func:`raw_to_features`). The registered model and the deletion
    service's ``/predict`` both take their input through it. ``contract`` None: a model
    logged before the input contract, which takes canonical features.

    Input that is not numeric rows, or rows of a width other than the dataset's, is refused
    with a one-line ClulError (naming the expected width).
    """
    from ..errors import ClulError

    try:
        x = to_rows(model_input)
    except (TypeError, ValueError) as e:
        raise ClulError(f"model input is not numeric rows: {str(e).splitlines()[0]}") \
            from None
    c = contract
    if c is not None and len(x) and x.shape[1] != c["width"]:
        raise ClulError(f"expected raw rows of {c['width']} features ({c['dataset']}, "
                        f"input shape {c['input_shape']}), got {x.shape[1]}")
    if c is None or len(x) == 0:
        return x
    return raw_to_features(c["kind"], x, c["input_shape"])


class SisaEnsembleModel(mlflow.pyfunc.PythonModel):
    """Predicts class labels with the SISA ensemble of one version of one storage root."""

    def load_context(self, context) -> None:
        from ..config import PipelineConfig
        from ..errors import ClulError
        from ..sisa.compute.ensemble import Ensemble
        from ..sisa.records.rootconfig import read_tokenizer
        from ..sisa.records.version import read_version
        from ..storage.store import Store

        conf = context.model_config
        store = Store(conf["root"])
        version = int(conf["version"])
        v = read_version(store, version)
        if v is None:
            raise ClulError(f"version {version} is not recorded under {conf['root']}")
        cfg = PipelineConfig(**conf["config"])
        last = cfg.partition.total_slices - 1
        served = [s.artifact or s.checkpoint_paths()[last] for s in v.trained_shards()]
        missing = [p for p in served if not store.exists(p)]
        if missing:
            raise ClulError(f"version {version} of {conf['root']} cannot be loaded: "
                            f"{len(missing)} shard models are gone (e.g. {missing[0]}); "
                            "a deletion superseded it")
        self.ensemble = Ensemble(cfg, store, v)
        self.tokenizer = read_tokenizer(store, cfg) if cfg.task == "lm" else None
        # Models logged before the input contract took canonical features: keep that.
        self.contract = conf.get("input")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        """Raw dataset rows -> int64 classes. ``model_input`` is a DataFrame (an ``x`` list
        column, or one column per feature) or an array of rows: see :func:`to_rows`.

        A row width other than the dataset's is refused with a one-line ClulError naming the
        expected width (:func:`raw_features`).
        """
        if self.tokenizer is not None:
            return self.score_texts(model_input)
        x = raw_features(self.contract, model_input)
        if len(x) == 0:
            return np.zeros(0, np.int64)
        return self.ensemble.predict(x).astype(np.int64)

    def score_texts(self, model_input: Any) -> np.ndarray:
        """A text root's model: texts (a ``text`` column, or a list of strings) -> each
        one's negative log-likelihood per token under the mean of the shards' next-token
        distributions."""
        from ..text.ensemble import score_texts

        if isinstance(model_input, pd.DataFrame):
            if "text" not in model_input.columns:
                from ..errors import ClulError

                raise ClulError("a text root's model takes a 'text' column")
            model_input = model_input["text"].tolist()
        texts = [model_input] if isinstance(model_input, str) else list(model_input)
        rows = score_texts(self.ensemble.models, self.tokenizer, self.contract["context"],
                           texts)
        return np.array([r["nll"] for r in rows], dtype=np.float64)
