"""Search spaces: each method's default strengths (declared beside its params, in Ray
Tune's types) overridden by a user's YAML file.

A space file maps a parameter to a domain or a fixed value; for several methods, a method
name to such a mapping::

    lr: {loguniform: [1.0e-5, 1.0e-2]}     # or uniform / quniform [lo, hi, q]
    epochs: {randint: [1, 6]}              # lo <= n < hi
    temperature: {choice: [1, 2, 4]}
    retain_fraction: 0.3                    # fixed

Every key must be a parameter of the method; every bound is checked, and a fixed value is
checked as the method checks its params. Parsing is pure; :func:`to_domain` builds the Ray
Tune object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import read_yaml
from ..errors import ClulError
from ..unlearn import get_method, method_names

KINDS = {"uniform": 2, "loguniform": 2, "quniform": 3, "randint": 2, "choice": None}


def sweepable(method: str) -> bool:
    return bool(get_method(method).search_space())


def check_domain(method: str, name: str, spec: Any, target: Any = None) -> Any:
    """A domain spec ``{kind: args}`` or a fixed value, checked; returned as given.
    ``target``: what has ``params_cls`` and ``make_params`` (default: the unlearning
    method named ``method``)."""
    m = target if target is not None else get_method(method)
    fields = set(m.params_cls.model_fields) - {"seed"}
    if name not in fields:
        raise ClulError(f"space: '{name}' is not a parameter of {method} (its parameters: "
                        f"{', '.join(sorted(fields))})")
    where = f"space: {method}.{name}"
    if isinstance(spec, dict):
        if len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise ClulError(f"{where}: a domain is one of {{{', '.join(KINDS)}: [...]}}, got "
                            f"{spec!r}")
        kind, args = next(iter(spec.items()))
        if not isinstance(args, list) or not args:
            raise ClulError(f"{where}: {kind} needs a list, got {args!r}")
        if KINDS[kind] is not None:
            if len(args) != KINDS[kind] or not all(isinstance(a, int | float)
                                                   and not isinstance(a, bool) for a in args):
                raise ClulError(f"{where}: {kind} needs {KINDS[kind]} numbers, got {args!r}")
            lo, hi = args[0], args[1]
            if not lo < hi:
                raise ClulError(f"{where}: {kind} needs low < high, got {args!r}")
            if kind == "loguniform" and lo <= 0:
                raise ClulError(f"{where}: loguniform needs a positive low bound, got {lo}")
            probes = [lo, hi - 1] if kind == "randint" else [lo, hi]
        else:
            probes = args
        for v in probes:  # the bounds (and choices) must be values the method accepts
            m.make_params({name: v})
        return spec
    m.make_params({name: spec})
    return spec


def parse_space(raw: Any, methods: list[str], where: str = "space") -> dict[str, dict]:
    """A loaded space file -> ``{method: {param: spec}}`` for the swept methods."""
    if raw is None or raw == {}:
        raise ClulError(f"{where} is empty: give at least one parameter")
    if not isinstance(raw, dict):
        raise ClulError(f"{where} must map parameters (or methods) to domains, got "
                        f"{type(raw).__name__}")
    named = sorted(k for k in raw if k in method_names())
    if named:  # keyed by method
        stray = sorted(set(raw) - set(methods))
        if stray:
            raise ClulError(f"{where}: {stray[0]} is not among the swept methods "
                            f"({', '.join(methods)})")
    elif len(methods) == 1:
        raw = {methods[0]: raw}
    else:
        raise ClulError(f"{where}: with several methods, key the file by method name "
                        f"({', '.join(methods)})")
    out = {}
    for method, params in raw.items():
        if not isinstance(params, dict) or not params:
            raise ClulError(f"{where}: {method} needs a mapping of parameters to domains")
        out[method] = {k: check_domain(method, str(k), v) for k, v in params.items()}
    return out


def load_space(path: str | Path, methods: list[str]) -> dict[str, dict]:
    return parse_space(read_yaml(path, "space file"), methods, f"space file {path}")


def to_domain(spec: Any, tune) -> Any:
    """A checked spec as a Ray Tune domain (a fixed value stays a value)."""
    if not isinstance(spec, dict):
        return spec
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        return tune.choice(args)
    return getattr(tune, kind)(*args)


def space_for(method: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The method's default space with a user's overrides, as Ray Tune domains."""
    from ray import tune

    space = get_method(method).search_space()
    space.update({k: to_domain(v, tune) for k, v in (overrides or {}).items()})
    return space
