"""Unlearning methods for causal language models (``task="lm"``), one module each:
``ga``, ``grad_diff``, ``npo``, ``simnpo``, ``rmu`` and ``kl_retain``.

They take the same ``(model, forget, retain, config)`` call as the classifier methods, with
a :class:`~clul_ray.text.lm.CausalLM` and splits of token rows (``y`` is ignored). Each runs
``steps`` optimiser steps on seeded, cycled batches of the forget (and retain) rows; the
shared loop and losses are in :mod:`.common`. Importing this package registers them.
"""

from . import ga, grad_diff, kl_retain, npo, rmu, simnpo  # noqa: F401  (registration)
