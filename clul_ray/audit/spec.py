"""What an ε-score audit runs: the scenario, the method under audit and the model counts.

The sides of an audit, N models each (seeds from :func:`side_seeds`, never shared):

- **unlearned**: for an approximate method, N runs of it from ONE original model (trained
  with ``seed``), differing by seed, as in the NeurIPS 2023 challenge. ``retrain`` and
  ``original`` are the yardsticks: N models trained from scratch on D_r (``retrain``, seeds
  independent of the reference's) or on D_r ∪ D_f with no unlearning (``original``). ``sisa``
  is the exact deletion of D_f from N S×R ensembles, each trained on D_r ∪ D_f with its own
  training seed (a deletion is a deterministic function of its ensemble, so the spread of
  the side is the spread of training, as for retrain).
- **reference**: N models retrained from scratch on D_r (for ``sisa``: N S×R ensembles
  trained on D_r alone), cached by content key (:mod:`.cache`).
- **null** (unless ``null`` is off): N more reference models, scored against the first N
  as if they were an unlearning method. The challenge's estimator takes the largest ε over
  hundreds of thousands of thresholds on N samples per side, so even two samples of one
  distribution get ε well above 0 at finite N: F of the null is the best any method can
  score at this N, and ``F / F_null`` says how close a method comes to it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from ..errors import ClulError
from ..hashing import derive_seed
from ..unlearn.compare import ScenarioSpec
from ..unlearn.params import Int, Settings
from ..unlearn.scenarios import parse_scenario

BASELINES = ("retrain", "original", "sisa")  # audited sides that are not registered methods
SALT_UNLEARNED, SALT_REFERENCE, SALT_ORIGINALS = 0xA1, 0xA2, 0xA3


class SisaShape(Settings):
    """The ensembles of ``--method sisa``: shards × slices (training as the recipe)."""

    label: ClassVar[str] = "sisa"

    shards: Int = Field(4, ge=1, le=64)
    slices: Int = Field(2, ge=1, le=64)


class AuditSpec(ScenarioSpec):
    label: ClassVar[str] = "audit"

    method: str = "finetune"
    params: dict[str, Any] = Field(default_factory=dict)
    models: Int = Field(8, description="N: models per side")
    sisa: SisaShape = Field(default_factory=SisaShape)
    null: bool = True
    cache: str | None = None

    def cache_dir(self) -> Path:
        """Where reference models' scores are kept: ``cache``, else ``$CLUL_RAY_CACHE/audit``,
        else ``~/.cache/clul-ray/audit``."""
        if self.cache:
            return Path(self.cache)
        base = os.environ.get("CLUL_RAY_CACHE") or Path.home() / ".cache" / "clul-ray"
        return Path(base) / "audit"


def scenario_of(spec: Any) -> dict[str, Any]:
    """The scenario fields a compare or sweep spec has, to audit that scenario."""
    return {k: getattr(spec, k) for k in ScenarioSpec.model_fields if hasattr(spec, k)}


def check_spec(spec: AuditSpec) -> None:
    """Refuse a bad audit before any work starts, in one line."""
    from ..unlearn.base import get_method

    if spec.models < 2:
        raise ClulError(f"--models must be at least 2 (the estimator compares two samples of "
                        f"models), got {spec.models}")
    parse_scenario(spec.forget)
    if spec.method in BASELINES:
        if spec.params:
            raise ClulError(f"{spec.method} takes no --param (its training is the recipe: "
                            "--epochs / --lr / --batch-size)")
        return
    m = get_method(spec.method)
    if m.task != "classify":
        raise ClulError(f"{spec.method} unlearns language models; the audit scores "
                        "classifier methods")
    m.make_params(spec.params)


def side_seeds(spec: AuditSpec, side: str) -> list[int]:
    """The N seeds of a side: ``unlearned``, ``reference``, ``null`` or ``originals``."""
    n = spec.models
    if side == "reference":
        return [derive_seed(spec.seed, SALT_REFERENCE, j) for j in range(n)]
    if side == "null":
        return [derive_seed(spec.seed, SALT_REFERENCE, j) for j in range(n, 2 * n)]
    if side == "unlearned":
        return [derive_seed(spec.seed, SALT_UNLEARNED, i) for i in range(n)]
    if side == "originals":
        return [derive_seed(spec.seed, SALT_ORIGINALS, i) for i in range(n)]
    raise ValueError(f"unknown side {side!r}")
