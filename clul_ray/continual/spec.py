"""What a ``clul-ray continual`` run is: the benchmark, the strategies with their params,
the seeds and the stream; read from a YAML file and command-line overrides, checked before
any work starts (one-line refusals)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import Field

from ..errors import ClulError
from ..unlearn.params import Int, Settings
from .strategies import make_params, strategy_names
from .strategies.base import StrategyParams
from .stream import Step, check_stream, parse_items, parse_text, resolve_ids
from .tasks import Benchmark, load_benchmark

ALL = "all"  # params for every strategy, e.g. {all: {epochs: 5}}


class ContinualSpec(Settings):
    label: ClassVar[str] = "continual"

    benchmark: str = "split_digits"
    setting: Literal["class", "task"] = "class"
    data_dir: str | None = None
    test_fraction: float = Field(0.2, gt=0, lt=1)
    seed: Int = 0  # the test split, and the first training seed
    seeds: Int = Field(1, ge=1)
    model: str = "mlp"
    model_args: dict[str, Any] = Field(default_factory=dict)
    strategies: list[str] = Field(default_factory=lambda: ["clul", "der", "replay",
                                                           "finetune", "oracle"])
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    stream: list[Step] = Field(default_factory=list)
    backend: Literal["ray", "local"] = "ray"

    @property
    def seed_list(self) -> list[int]:
        return [self.seed + k for k in range(self.seeds)]


def read_config(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ClulError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ClulError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ClulError(f"{path} must hold a mapping of settings")
    return data


def make_spec(values: dict[str, Any], stream_text: str | None = None) -> ContinualSpec:
    """Settings (YAML's, with CLI overrides applied) -> the spec; ``stream_text`` (the
    ``--stream`` option) replaces the file's stream."""
    values = dict(values)
    if stream_text is not None:
        values["stream"] = parse_text(stream_text)
    elif "stream" in values:
        values["stream"] = parse_items(values["stream"])
    strategies = values.get("strategies")
    if isinstance(strategies, str):
        values["strategies"] = [s.strip() for s in strategies.split(",") if s.strip()]
    spec = ContinualSpec.model_validate(values)
    if not spec.stream:
        raise ClulError("no stream given (a 'stream:' list in the config, or --stream)")
    return spec


def strategy_params(spec: ContinualSpec, name: str) -> StrategyParams:
    return make_params(name, {**spec.params.get(ALL, {}), **spec.params.get(name, {})})


def check_spec(spec: ContinualSpec) -> tuple[Benchmark, list[Step]]:
    """Every refusal before work: strategies, params, the benchmark's files, the stream."""
    if not spec.strategies:
        raise ClulError("no strategies given")
    for name in spec.strategies:
        if name not in strategy_names():
            raise ClulError(f"unknown strategy '{name}' (known: {', '.join(strategy_names())})")
    if len(set(spec.strategies)) != len(spec.strategies):
        raise ClulError(f"a strategy is named twice: {', '.join(spec.strategies)}")
    for name in spec.params:
        if name != ALL and name not in spec.strategies:
            raise ClulError(f"params for '{name}', which is not among the strategies "
                            f"({', '.join(spec.strategies)})")
    for name in spec.strategies:
        strategy_params(spec, name)
    bench = load_benchmark(spec.benchmark, spec.setting, spec.seed, spec.test_fraction,
                           spec.data_dir)
    steps = resolve_ids(spec.stream)
    check_stream(steps, bench)
    return bench, steps


def load_best_params(path: str | Path) -> dict[str, dict[str, Any]]:
    """``best.yaml`` of ``clul-ray tune --stream`` (or a folder holding it) ->
    ``{strategy: params}``, each checked."""
    from ..config import read_yaml

    p = Path(path)
    if p.is_dir():
        p = p / "best.yaml"
    if not p.is_file():
        raise ClulError(f"no best.yaml at {path} (run `clul-ray tune --stream CONFIG --out "
                        "DIR` first)")
    raw = read_yaml(p, "best params file")
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, dict)
                                                       for v in raw.values()):
        raise ClulError(f"{p} must map each strategy to its params")
    for name, params in raw.items():
        make_params(str(name), params)
    return raw

