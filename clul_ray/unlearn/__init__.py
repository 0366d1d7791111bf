"""Approximate unlearning: one module per method behind one registry and one signature.

``method(model, forget, retain, config) -> (model, report)``; see :mod:`.base` for the data
holders, :mod:`.params` for the params models and :func:`unlearn_model` for the usual entry
point. Importing this package registers every method, the language-model ones of :mod:`.lm`
included, and imports no torch: a method, its helpers and the models they build import it
when they run, so that a driver checks a method's params without it.
"""

from . import (  # noqa: F401  (registration side effects)
    amnesiac,
    bad_teacher,
    finetune,
    lm,
    mi_reg,
    neggrad,
    neural_mask,
    random_label,
    retrain,
    salun,
    scrub,
)
from .api import unlearn_model
from .base import Method, Split, UnlearnReport, get_method, method_names
from .params import MethodParams

__all__ = ["Method", "MethodParams", "Split", "UnlearnReport", "get_method", "method_names",
           "unlearn_model"]
