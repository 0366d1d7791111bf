"""The registered ensemble's model directory, written from a template saved once.

Every version's pyfunc directory is the same but for its ``MLmodel`` file: the entry file
(``model_code.py``), ``requirements.txt``, ``conda.yaml`` and ``python_env.yaml`` depend
only on the MLflow and Python versions and the requirements. ``mlflow.pyfunc.save_model``
re-derives them each time, scanning every installed distribution's metadata for its
requirement check. :func:`write_model_dir` runs ``save_model`` once, into a template kept in
``CLUL_RAY_CACHE`` (default ``~/.cache/clul_ray``), keyed by the MLflow and Python versions,
the requirements and the entry file; each version copies the template's files and writes
its own ``MLmodel`` (model config, signature, ids, creation time). Should the cache be
unwritable, the template is saved in a temporary folder for this process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tempfile
import uuid
import warnings
from datetime import UTC, datetime
from typing import Any

MODEL_CODE = os.path.join(os.path.dirname(__file__), "model_code.py")
MLMODEL = "MLmodel"
_templates: dict[str, str] = {}  # key -> template folder, this process


def template_key(requirements: list[str]) -> str:
    import mlflow

    with open(MODEL_CODE, "rb") as f:
        code = f.read()
    h = hashlib.sha256(repr((mlflow.__version__, sys.version, requirements)).encode() + code)
    return f"mlflow-{mlflow.__version__}-pyfunc-{h.hexdigest()[:12]}"


def _save(path: str, requirements: list[str], model_config: dict, signature: Any = None,
          mlflow_model: Any = None) -> None:
    """``mlflow.pyfunc.save_model`` of the ensemble's entry file, without its chatter."""
    import mlflow.pyfunc

    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_log.level
    pyfunc_log.setLevel(logging.ERROR)  # MLflow's notes on models from code
    try:
        with warnings.catch_warnings():
            # no input example by design: saving one would load the ensemble to check it
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            mlflow.pyfunc.save_model(path, python_model=MODEL_CODE, pip_requirements=requirements,
                                     model_config=model_config, signature=signature,
                                     mlflow_model=mlflow_model)
    finally:
        pyfunc_log.setLevel(level)


def template(requirements: list[str]) -> str:
    """The template folder for ``requirements``: saved on first use (machine-wide)."""
    key = template_key(requirements)
    if key in _templates and os.path.isfile(os.path.join(_templates[key], MLMODEL)):
        return _templates[key]
    cache = os.environ.get("CLUL_RAY_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "clul_ray")
    path = os.path.join(cache, key)
    if not os.path.isfile(os.path.join(path, MLMODEL)):
        try:
            os.makedirs(cache, exist_ok=True)
            tmp = os.path.join(cache, f"{key}.tmp-{uuid.uuid4().hex[:8]}")
            _save(tmp, requirements, {})
            try:
                os.rename(tmp, path)  # atomic; another process may have won
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:  # an unwritable cache: a template for this process only
            path = os.path.join(tempfile.mkdtemp(prefix="clul-ray-pyfunc-"), "model")
            _save(path, requirements, {})
    _templates[key] = path
    return path


def write_model_dir(path: str, requirements: list[str], model_config: dict,
                    signature: Any, model_id: str, run_id: str, artifact_path: str) -> None:
    """The pyfunc directory of one version at ``path``: what ``save_model`` would write with
    this config, signature and logged model, from the template."""
    from mlflow.models import Model

    src = template(requirements)
    os.makedirs(path)
    for name in os.listdir(src):
        if name != MLMODEL:
            shutil.copy2(os.path.join(src, name), os.path.join(path, name))
    m = Model.load(os.path.join(src, MLMODEL))
    flavor = m.flavors["python_function"]
    flavor["config"] = model_config
    flavor["model_code_path"] = MODEL_CODE
    m.artifact_path, m.run_id = artifact_path, run_id
    m.model_uuid = m.model_id = model_id
    m.utc_time_created = str(datetime.now(UTC).replace(tzinfo=None))
    m.signature = signature
    m.save(os.path.join(path, MLMODEL))
