"""The whole ``clul-ray continual`` run: check the spec, run every strategy x seed along the
stream side by side, write stream.csv/.md/.png and record the lineage in MLflow."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .outputs import summarize, write_all
from .record import record_stream
from .runner import Progress, run_side_by_side
from .spec import ContinualSpec, check_spec, strategy_params
from .stream import Step
from .tasks import Benchmark


def run_continual(spec: ContinualSpec, out: str | Path, progress: Progress | None = None,
                  tracking_uri: str | None = None, record: bool = True,
                  checked: tuple[Benchmark, list[Step]] | None = None) -> dict[str, Any]:
    """``checked``: what :func:`~.spec.check_spec` returned, when the caller checked the
    spec already (the CLI does, before any progress is drawn or Ray starts)."""
    tick = progress or (lambda *_: None)
    bench, steps = checked or check_spec(spec)
    runs = [(name, strategy_params(spec, name)) for name in spec.strategies]
    t0 = time.perf_counter()
    rows = run_side_by_side(runs, spec.seed_list, steps, bench, spec.model, spec.model_args,
                            spec.backend, tick)
    wall = time.perf_counter() - t0
    meta = {"benchmark": spec.benchmark, "setting": spec.setting, "model": spec.model,
            "model_args": spec.model_args, "strategies": spec.strategies,
            "seeds": spec.seed_list, "backend": spec.backend,
            "stream": "; ".join(s.text() for s in steps), "wall_seconds": wall,
            "params": {name: p.model_dump() for name, p in runs},
            "tasks": {k: list(cs) for k, cs in enumerate(bench.classes, 1)}}
    out = Path(out)
    files = write_all(rows, meta, out)
    mlflow = record_stream(rows, meta, out, tracking_uri) if record else None
    return {"out": str(out), "files": files, "meta": meta, "rows": rows,
            "summary": summarize(rows), "mlflow": mlflow}
