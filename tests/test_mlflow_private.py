"""The private MLflow APIs of ``clul_ray.lineage.mlflow_private`` still exist and still do
what clul_ray relies on; an MLflow upgrade that removes or changes one fails here, by name."""

from __future__ import annotations

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

from clul_ray.lineage import mlflow_private
from clul_ray.lineage.pyfunc import model_signature

pytestmark = [pytest.mark.pure,
              pytest.mark.filterwarnings("ignore:.*input example was not provided")]

FLAG = "ModelSignature._is_signature_from_type_hint"
UPGRADE = (f"(checked on MLflow {mlflow_private.CHECKED_ON}, running {mlflow.__version__}): "
           "see clul_ray/lineage/mlflow_private.py")


class Echo(mlflow.pyfunc.PythonModel):
    """Returns what reached its ``predict``: the input's type name and row count. ``predict``
    is hinted as the ensemble's is."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return np.array([type(model_input).__name__, str(len(model_input))])


def saved_and_loaded(tmp_path, name: str, signature):
    path = str(tmp_path / name)
    mlflow.pyfunc.save_model(path, python_model=Echo(), signature=signature,
                             pip_requirements=[])
    return mlflow.pyfunc.load_model(path)


def test_the_signature_flag_is_kept_and_skips_mlflows_input_enforcement(tmp_path):
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    contract = {"raw_dtype": "float64", "width": 4}
    sig = model_signature(contract)  # what the registered ensemble is logged with
    assert getattr(sig, "_is_signature_from_type_hint", None) is True, \
        f"{FLAG} can no longer be set {UPGRADE}"
    assert Model(signature=sig).to_dict().get("is_signature_from_type_hint") is True, \
        f"the MLmodel file no longer records {FLAG} {UPGRADE}"

    # forms the ensemble takes that the tensor signature (float64, width 4) does not describe
    forms = [np.arange(6, dtype=np.int64).reshape(2, 3),
             pd.DataFrame({"id": [1, 2], "label": [0, 1], "x": [[0.0] * 4, [1.0] * 4]})]
    flagged = saved_and_loaded(tmp_path, "flagged", sig)
    assert flagged.metadata.signature._is_signature_from_type_hint is True, \
        f"a loaded model no longer keeps {FLAG} {UPGRADE}"
    for form in forms:
        try:
            got = flagged.predict(form)
        except MlflowException as e:
            raise AssertionError(f"MLflow enforced the schema despite {FLAG} {UPGRADE}: "
                                 f"{str(e).splitlines()[0]}") from None
        assert list(got) == [type(form).__name__, "2"], \
            f"with {FLAG}, the input no longer reaches predict as it came {UPGRADE}: {got}"

    # the control: the same signature unflagged is enforced (so the flag is what skips it)
    plain = model_signature(contract)
    plain._is_signature_from_type_hint = False
    unflagged = saved_and_loaded(tmp_path, "unflagged", plain)
    for form in forms:
        with pytest.raises(MlflowException):
            unflagged.predict(form)


def test_datasets_convert_to_the_entity_log_inputs_takes(tmp_path):
    from mlflow.entities import Dataset as DatasetEntity

    from clul_ray.lineage.recorder import _shard_dataset
    from clul_ray.storage.store import Store

    digest = "0123456789abcdef" * 4
    ds = _shard_dataset(Store(str(tmp_path)), 3, digest)  # the class the recorder logs
    assert callable(getattr(ds, "_to_mlflow_entity", None)), \
        f"{type(ds).__module__}.{type(ds).__name__}._to_mlflow_entity is gone {UPGRADE}"
    entity = mlflow_private.dataset_entity(ds)
    assert isinstance(entity, DatasetEntity), \
        f"Dataset._to_mlflow_entity returns {type(entity).__name__}, not " \
        f"mlflow.entities.Dataset {UPGRADE}"
    assert (entity.name, entity.digest) == ("shard=3", digest[:32]), \
        f"Dataset._to_mlflow_entity changed the name or digest {UPGRADE}"
    assert entity.source_type and "shard=3" in entity.source, \
        f"Dataset._to_mlflow_entity no longer carries the source {UPGRADE}: {entity.source}"
