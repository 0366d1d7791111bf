"""The two private MLflow APIs clul_ray relies on, behind one door. Checked on MLflow 3.17.2;
``tests/test_mlflow_private.py`` fails, naming the API, when an upgrade removes or changes
either.

* ``ModelSignature._is_signature_from_type_hint`` (:func:`validated_in_predict`): the flag
  MLflow sets on a signature it inferred from a ``PythonModel.predict``'s type hints. With
  it set, ``PyFuncModel.predict`` skips its schema enforcement (``_validate_prediction_input``)
  and hands the input to the model as it came, ``Model.to_dict`` writes it into the MLmodel
  file (``is_signature_from_type_hint``) so the loaded model keeps it, and the scoring server
  takes ``{"inputs": ...}``. The registered ensemble needs that
  (:func:`clul_ray.lineage.pyfunc.model_signature`): its signature describes the contract
  (raw rows ``(-1, d)`` in, the class out), while ``predict`` accepts forms MLflow's tensor
  enforcement refuses (an ``x`` list column beside ``id``/``label``, any numeric dtype,
  images) and words a wrong width itself. MLflow has no public switch for this.
* ``mlflow.data.dataset.Dataset._to_mlflow_entity()`` (:func:`dataset_entity`): the
  ``mlflow.entities.Dataset`` that ``MlflowClient.log_inputs`` takes (inside a
  ``DatasetInput``), made from the dataset object naming a shard's training data. The
  fluent ``mlflow.log_input`` converts it the same way, but logs to the process's active
  run, which clul_ray never uses (see :mod:`.tracking`).
"""

from __future__ import annotations

from typing import Any

CHECKED_ON = "3.17.2"  # the MLflow version both uses were checked on


def validated_in_predict(signature: Any) -> Any:
    """``signature`` (a ``ModelSignature``) marked as checked by the model's own
    ``predict``, not by MLflow's schema enforcement; returned."""
    signature._is_signature_from_type_hint = True
    return signature


def dataset_entity(dataset: Any) -> Any:
    """An ``mlflow.data`` dataset as the ``mlflow.entities.Dataset`` that
    ``MlflowClient.log_inputs`` logs."""
    return dataset._to_mlflow_entity()
