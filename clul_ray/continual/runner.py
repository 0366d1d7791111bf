"""Run strategies along a stream: the pure core (:func:`run_stream`, one strategy x seed,
in-process) and the side-by-side edge (:func:`run_side_by_side`: every strategy x seed, as
a chain of Ray tasks, one per step, or in-process with ``backend: local``).

After every step a row: per-task and per-class test accuracy, per-task macro F1 (over the
task's classes, :func:`clul_ray.metrics.classification_scores`), average accuracy and
average macro F1 over the learned-and-kept tasks, forget accuracy (test rows of unlearned
tasks and classes; the forgotten rows themselves when only ids were unlearned), BWT,
forgetting measure, MIA-Efficacy of every forgotten training row, the buffer's size and how
many of its rows are forgotten ones (always 0), and — once the oracle's rows are known —
the gaps to it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..metrics.accuracy import classification_scores
from ..models import build_model
from ..unlearn.training import torch_threads
from . import metrics as M
from .strategies import StepData, Strategy, get_strategy, make_params
from .strategies.base import StrategyParams
from .stream import Step
from .tasks import Benchmark, Rows

Progress = Callable[[str, int, int], None]
RECIPE = ("epochs", "lr", "batch_size", "optimizer", "momentum", "unlearn_epochs")



@dataclass
class Ledger:
    """What the model may know: learned tasks (and when), and what was unlearned."""

    learned_at: dict[int, int] = field(default_factory=dict)
    tasks: set[int] = field(default_factory=set)
    classes: set[int] = field(default_factory=set)
    ids: set[int] = field(default_factory=set)
    history: list[dict[int, float]] = field(default_factory=list)

    @property
    def kept(self) -> list[int]:
        return sorted(set(self.learned_at) - self.tasks)

    def forgotten(self, bench: Benchmark) -> np.ndarray:
        """Bool per benchmark row: of an unlearned task or class, or an unlearned id."""
        r = bench.rows
        return (np.isin(r.task, list(self.tasks)) | np.isin(r.y.numpy(), list(self.classes))
                | np.isin(r.ids, np.asarray(sorted(self.ids), dtype=np.int64)))

    def allowed(self, bench: Benchmark) -> np.ndarray:
        return np.isin(bench.rows.task, self.kept) & ~self.forgotten(bench)


def step_data(bench: Benchmark, ledger: Ledger, step: Step, index: int) -> StepData:
    """Apply ``step`` to the ledger and gather its rows."""
    train = ~bench.test
    before = ledger.forgotten(bench)
    ledger.tasks |= set(step.unlearn_tasks)
    ledger.classes |= set(step.unlearn_classes)
    ledger.ids |= set(step.ids)
    newly = ledger.forgotten(bench) & ~before & train
    if step.learn is not None:
        ledger.learned_at[step.learn] = index
    learn = (bench.rows.select(train & (bench.rows.task == step.learn))
             if step.learn is not None else None)
    forget = bench.rows.select(newly) if step.forgets else None
    return StepData(index, learn, forget, bench.rows.select(ledger.allowed(bench) & train),
                    list(step.unlearn_tasks), list(step.unlearn_classes), list(step.ids))


@torch.no_grad()
def probabilities(strategy: Strategy, bench: Benchmark, rows: Rows) -> np.ndarray:
    logits = bench.restrict(strategy.logits(rows.x), rows.task)
    return F.softmax(logits.double(), 1).numpy()


def evaluate(strategy: Strategy, bench: Benchmark, ledger: Ledger, seed: int
             ) -> dict[str, Any]:
    """The row's metrics after a step (appends the per-task accuracies to the history)."""
    r = bench.rows
    probs = probabilities(strategy, bench, r)
    pred, y = probs.argmax(1), r.y.numpy()
    gone = ledger.forgotten(bench)
    test = bench.test
    task_acc, task_f1 = {}, {}
    for k in range(1, bench.num_tasks + 1):
        m = test & (r.task == k)
        if k not in ledger.tasks:
            m &= ~gone  # a kept task without its unlearned classes
        task_acc[k] = M.accuracy(pred[m], y[m])
        task_f1[k] = classification_scores(pred[m], y[m])["F1"]
    ledger.history.append(task_acc)
    kept = ledger.kept
    retain = ledger.allowed(bench) & ~test
    kept_test = test & np.isin(r.task, kept) & ~gone
    forget_test = test & gone
    forget_train = ~test & gone
    if forget_test.any():
        forget_acc = M.accuracy(pred[forget_test], y[forget_test])
    else:
        forget_acc = M.accuracy(pred[forget_train], y[forget_train]) if forget_train.any() \
            else M.NAN
    row = {
        "avg_acc": M.mean([task_acc[k] for k in kept]),
        "avg_f1": M.mean([task_f1[k] for k in kept]),
        "forget_acc": forget_acc,
        "bwt": M.backward_transfer(ledger.history, ledger.learned_at, kept),
        "forgetting": M.forgetting_measure(ledger.history, ledger.learned_at, kept),
        "mia": M.mia(probs[retain], y[retain], probs[kept_test], y[kept_test],
                     probs[forget_train], y[forget_train], seed),
        "learned": ",".join(map(str, sorted(ledger.learned_at))),
        "kept": ",".join(map(str, kept)),
    }
    row.update({f"acc_task{k}": v for k, v in task_acc.items()})
    row.update({f"f1_task{k}": v for k, v in task_f1.items()})
    row.update({f"acc_class{c}": v for c, v in
                enumerate(M.per_class_accuracy(pred[test], y[test], bench.num_classes))})
    buf = getattr(strategy, "buffer", None)
    if buf is not None:
        row["buffer_rows"] = len(buf)
        row["buffer_forgotten"] = int(np.isin(buf.ids, r.ids[gone]).sum())
    return row


@dataclass
class RunState:
    """One strategy x seed along the stream (picklable: Ray tasks hand it on)."""

    name: str
    seed: int
    strategy: Strategy
    ledger: Ledger


def start(name: str, params: StrategyParams | dict[str, Any] | None, bench: Benchmark,
          seed: int, model: str = "mlp", model_args: dict[str, Any] | None = None) -> RunState:
    p = params if isinstance(params, StrategyParams) else make_params(name, params)
    template = build_model(model, bench.input_shape, bench.num_classes, model_args)
    with torch_threads(1):
        strategy = get_strategy(name)(bench, template, p, seed)
    return RunState(name, seed, strategy, Ledger())


def advance(state: RunState, step: Step, index: int) -> tuple[RunState, dict[str, Any]]:
    """Apply stream step ``index`` (0-based) and score the model: (new state, row)."""
    state = copy.copy(state)
    with torch_threads(1):
        data = step_data(state.strategy.bench, state.ledger, step, index)
        t0 = time.perf_counter()
        details = state.strategy.apply(data)
        seconds = time.perf_counter() - t0
        row = {"strategy": state.name, "seed": state.seed, "step": index + 1,
               "operation": step.text(), "kind": step.kind,
               "task": "" if step.learn is None else step.learn, "seconds": seconds}
        row.update(evaluate(state.strategy, state.strategy.bench, state.ledger, state.seed))
        row["optimizer_steps"] = details.get("steps", 0)
    return state, row


def oracle_params(params: StrategyParams) -> StrategyParams:
    """The oracle with another strategy's training recipe."""
    return make_params("oracle", {k: getattr(params, k) for k in RECIPE})


def run_stream(strategy: str, params: StrategyParams | dict[str, Any] | None,
               stream: list[Step], tasks: Benchmark, seed: int, model: str = "mlp",
               model_args: dict[str, Any] | None = None,
               oracle_rows: list[dict[str, Any]] | None = None,
               on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """One strategy x seed along the stream, in-process: a row per step, gaps to the oracle
    included (the oracle, with this strategy's recipe, is run here unless its rows are
    given). ``stream`` must have passed :func:`~.stream.check_stream` (ids resolved)."""
    state = start(strategy, params, tasks, seed, model, model_args)
    rows = []
    for i, step in enumerate(stream):
        state, row = advance(state, step, i)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    if strategy == "oracle":
        oracle_rows = rows
    elif oracle_rows is None:
        oracle_rows = run_stream("oracle", oracle_params(state.strategy.p), stream, tasks, seed,
                                 model, model_args)
    M.add_gaps(rows, oracle_rows)
    return rows


def run_side_by_side(runs: list[tuple[str, StrategyParams]], seeds: list[int],
                     stream: list[Step], bench: Benchmark, model: str,
                     model_args: dict[str, Any], backend: str = "local",
                     progress: Progress | None = None) -> list[dict[str, Any]]:
    """Every (strategy, seed) along the stream; rows with the gaps to the oracle (the
    listed oracle's, else one with the first strategy's recipe, run once per seed)."""
    tick = progress or (lambda *_: None)
    todo = list(runs)
    if "oracle" not in [n for n, _ in runs]:
        todo.append(("oracle", oracle_params(runs[0][1])))
    done: dict[str, int] = {}

    def finished(row: dict[str, Any]) -> None:
        done[row["strategy"]] = done.get(row["strategy"], 0) + 1
        tick(f"continual: {row['strategy']}", done[row["strategy"]], len(stream) * len(seeds))

    for name, _ in todo:
        tick(f"continual: {name}", 0, len(stream) * len(seeds))
    rows: list[dict[str, Any]] = []
    if backend == "local":
        for seed in seeds:
            for name, p in todo:
                state = start(name, p, bench, seed, model, model_args)
                for i, step in enumerate(stream):
                    state, row = advance(state, step, i)
                    rows.append(row)
                    finished(row)
    else:
        rows = _on_ray(todo, seeds, stream, bench, model, model_args, finished)
    for seed in seeds:
        ref = [r for r in rows if r["strategy"] == "oracle" and r["seed"] == seed]
        M.add_gaps([r for r in rows if r["seed"] == seed], ref)
    listed = [n for n, _ in runs]
    rows = [r for r in rows if r["strategy"] in listed]
    return sorted(rows, key=lambda r: (listed.index(r["strategy"]), r["seed"], r["step"]))


def _on_ray(todo, seeds, stream, bench, model, model_args, finished) -> list[dict[str, Any]]:
    """One chain of Ray tasks per (strategy, seed): step i's task takes step i-1's state."""
    import ray

    from ..runtime import ensure_ray, gather

    ensure_ray()
    start_task = ray.remote(start).options(num_cpus=1, name="clul_ray.continual.start")
    step_task = ray.remote(advance).options(num_cpus=1, num_returns=2,
                                            name="clul_ray.continual.step")
    bench_ref = ray.put(bench)
    labels: dict[Any, str] = {}
    for seed in seeds:
        for name, p in todo:
            state = start_task.remote(name, p, bench_ref, seed, model, model_args)
            for i, step in enumerate(stream):
                state, row = step_task.remote(state, step, i)
                labels[row] = f"{name} (seed {seed}) step {i + 1}"
    rows: list[dict[str, Any]] = []
    gather(labels, lambda _ref, row: (rows.append(row), finished(row)))
    return rows
