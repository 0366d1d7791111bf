"""The MLflow models-from-code entry of the registered ensemble (see ``pyfunc.py``)."""

import mlflow.models

from clul_ray.lineage.pyfunc import SisaEnsembleModel

mlflow.models.set_model(SisaEnsembleModel())
