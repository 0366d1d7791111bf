"""The shared shape of every approximate unlearning method: data holders, report, registry.

A method is called as ``method(model, forget, retain, config) -> (model, report)``:

- ``model``: a trained ``nn.Module`` mapping flat float32 inputs ``(n, d)`` to logits
  (``models.build_model`` gives one). It is never modified: the method works on a copy.
  A method's ``task`` says which models it takes: ``classify`` (a classifier) or ``lm``
  (a causal language model, :mod:`clul_ray.text.lm`; the methods of :mod:`.lm`).
  A model trained with ``record_updates`` carries its update log (:mod:`.update_log`),
  which the copy shares and the returned model never carries.
- ``forget`` / ``retain``: :class:`Split` holders of in-memory tensors ``x`` (n, d) float32
  and ``y`` (n,) int64, plus the rows' ``ids`` when known. Methods batch them themselves
  with seeded permutations, so a run is a pure function of (model, data, config).
- ``config``: the method's params, a pydantic model (a subclass of
  :class:`~.params.MethodParams` whose field defaults are the method's defaults), or a
  plain dict of overrides.

The report states the method, its params (seed included), the wall seconds, whether the
weights changed, the torch thread count (results are bit-reproducible per thread count)
and method-specific details.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ClulError
from ..hashing import derive_seed
from .params import MethodParams
from .update_log import LOG_ATTR

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass
class Split:
    """A set of rows in memory: features ``x`` (n, d) float32, labels ``y`` (n,) int64."""

    x: torch.Tensor
    y: torch.Tensor
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        import torch

        self.x = torch.as_tensor(self.x, dtype=torch.float32)
        self.y = torch.as_tensor(self.y, dtype=torch.int64)
        if self.x.ndim != 2 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise ClulError(f"a split needs x of shape (n, d) and y of shape (n,), got "
                            f"{tuple(self.x.shape)} and {tuple(self.y.shape)}")
        if self.ids is not None and len(self.ids) != len(self.y):
            raise ClulError(f"a split has {len(self.y)} rows but {len(self.ids)} ids")

    @classmethod
    def from_numpy(cls, x: np.ndarray, y: np.ndarray, ids: np.ndarray | None = None) -> Split:
        import torch

        return cls(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                   torch.from_numpy(np.asarray(y, dtype=np.int64)),
                   None if ids is None else np.asarray(ids, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class UnlearnReport:
    method: str
    params: dict[str, Any]
    seconds: float
    changes_weights: bool
    forget_rows: int
    retain_rows: int
    torch_threads: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


Body = Callable[["nn.Module", Split, Split, Any], tuple["nn.Module", dict[str, Any]]]
# A method's search space of strengths, in Ray Tune's types: ``space(ray.tune) -> {param:
# domain}`` (the module is passed in, so that declaring a space imports no Ray).
Space = Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class Method:
    """A registered method: its params class, whether it edits weights, its body, the
    task of the models it takes (``classify`` or ``lm``), and whether it needs the update
    log recorded while the original trained (:mod:`.update_log`)."""

    name: str
    params_cls: type[MethodParams]
    changes_weights: bool
    summary: str
    body: Body
    preset: tuple[tuple[str, Any], ...] = ()
    space: Space | None = None
    task: str = "classify"
    needs_update_log: bool = False

    def search_space(self) -> dict[str, Any]:
        """The strengths Ray Tune sweeps by default ({} for a method without any)."""
        if self.space is None:
            return {}
        from ray import tune

        return self.space(tune)

    def make_params(self, config: MethodParams | Mapping[str, Any] | None = None,
                    seed: int | None = None) -> MethodParams:
        """Defaults (and a variant's preset) overridden by ``config``; refuses unknown keys
        and ill-typed or out-of-range values with a one-line ClulError."""
        if isinstance(config, MethodParams):
            if not isinstance(config, self.params_cls):
                raise ClulError(f"{self.name} needs {self.params_cls.__name__}, got "
                                f"{type(config).__name__}")
            return config if seed is None else config.model_copy(update={"seed": int(seed)})
        values = {**dict(self.preset), **dict(config or {})}
        if seed is not None:
            values["seed"] = seed
        return self.params_cls.parse(values, self.name, f"method '{self.name}'")

    def __call__(self, model: nn.Module, forget: Split, retain: Split,
                 config: MethodParams | Mapping[str, Any] | None = None
                 ) -> tuple[nn.Module, UnlearnReport]:
        import torch

        from ..models import is_language_model

        params = self.make_params(config)
        if is_language_model(model) != (self.task == "lm"):
            kind = "a language model" if self.task == "lm" else "a classifier"
            raise ClulError(f"{self.name} unlearns {kind}, got a "
                            f"{'language model' if is_language_model(model) else 'classifier'}"
                            f" ({type(model).__name__})")
        if len(forget) == 0:
            raise ClulError(f"{self.name}: the forget set is empty")
        log = getattr(model, LOG_ATTR, None)  # the original's update log: read, not copied
        work = copy.deepcopy(model, {id(log): log} if log is not None else None)
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(params.seed, 0x0FF))
            new_model, details = self.body(work, forget, retain, params)
        seconds = time.perf_counter() - t0
        for m in new_model.modules():  # an unlearned model never carries the log
            m.__dict__.pop(LOG_ATTR, None)
        new_model.eval()
        return new_model, UnlearnReport(
            method=self.name, params=params.model_dump(), seconds=seconds,
            changes_weights=self.changes_weights, forget_rows=len(forget),
            retain_rows=len(retain), torch_threads=torch.get_num_threads(), details=details)


_REGISTRY: dict[str, Method] = {}
# Display order of the built-in methods: the reference first, then by family.
_ORDER = ("retrain", "finetune", "neggrad", "neggrad+", "random_label", "bad_teacher",
          "scrub", "salun", "mi_reg", "amnesiac", "neural_mask",
          "ga", "grad_diff", "npo", "simnpo", "rmu", "kl_retain")
TASKS = ("classify", "lm")


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise ClulError(f"unknown task '{task}' (known: {', '.join(TASKS)})")
    return task


def register_method(name: str, params_cls: type[MethodParams], changes_weights: bool,
                    summary: str, space: Space | None = None, task: str = "classify",
                    needs_update_log: bool = False) -> Callable[[Body], Method]:
    def deco(body: Body) -> Method:
        method = Method(name, params_cls, changes_weights, summary, body, space=space,
                        task=_check_task(task), needs_update_log=needs_update_log)
        _REGISTRY[name] = method
        return method

    return deco


def register_variant(name: str, base: str, preset: Mapping[str, Any], summary: str) -> Method:
    """A named preset of a registered method, e.g. ``neggrad+`` = neggrad with plus=true."""
    b = get_method(base)
    method = Method(name, b.params_cls, b.changes_weights, summary, b.body,
                    tuple(sorted(preset.items())), b.space, b.task, b.needs_update_log)
    _REGISTRY[name] = method
    return method


def method_names(task: str | None = None) -> list[str]:
    """Registered methods: the built-ins in display order, then any added later; with
    ``task`` (``classify`` or ``lm``), only the methods for that kind of model."""
    rank = {n: i for i, n in enumerate(_ORDER)}
    names = sorted(_REGISTRY, key=lambda n: (rank.get(n, len(rank)), n))
    if task is None:
        return names
    _check_task(task)
    return [n for n in names if _REGISTRY[n].task == task]


def get_method(name: str) -> Method:
    if name not in _REGISTRY:
        raise ClulError(f"unknown unlearning method '{name}' (known: "
                        f"{', '.join(method_names())})")
    return _REGISTRY[name]


def num_outputs(model: nn.Module, x: torch.Tensor) -> int:
    """The class count of a classifier, read from one forward pass."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        c = int(model(x[:1]).shape[1])
    model.train(was_training)
    return c
