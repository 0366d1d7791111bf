"""Continual learning and unlearning on one model: a stream of learn / unlearn steps over a
split benchmark, strategies behind one registry (``clul`` and baselines), per-step metrics
with the gap to a retrained oracle, side by side over Ray, written as stream.csv/.md/.png
and recorded in MLflow.

Pure core: :mod:`.tasks`, :mod:`.stream`, :mod:`.buffer`, :mod:`.strategies`,
:mod:`.metrics`, :func:`.runner.run_stream`. Ray only in :func:`.runner.run_side_by_side`.
"""

from .metrics import objective
from .runner import run_side_by_side, run_stream
from .stream import Step, check_stream, parse_items, parse_text
from .tasks import Benchmark, load_benchmark

__all__ = ["Benchmark", "Step", "check_stream", "load_benchmark", "objective", "parse_items",
           "parse_text", "run_side_by_side", "run_stream"]
