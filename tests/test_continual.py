"""Continual learning and unlearning: stream parsing and refusals, the purged buffer, the
strategies against the oracle on split-digits, metrics, reproducibility, outputs. Pure:
no Ray (the side-by-side Ray run and the CLI are in test_continual_cli.py).

Tolerances (split-digits, class-incremental, MLP, the shipped defaults, seed 0): after an
unlearning step CLUL's forget accuracy is at most the oracle's + 0.15 (the UL teacher is a
random network, so the forgotten classes fall to about chance, not exactly to the oracle's
0), and its accuracy on the kept tasks is within 0.15 of the oracle's."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from clul_ray.continual import check_stream, load_benchmark, objective, parse_items, parse_text
from clul_ray.continual import metrics as M
from clul_ray.continual.buffer import Buffer
from clul_ray.continual.outputs import write_all
from clul_ray.continual.runner import advance, run_stream, start
from clul_ray.continual.spec import check_spec, make_spec
from clul_ray.continual.stream import resolve_ids
from clul_ray.errors import ClulError

pytestmark = pytest.mark.pure

FORGET_TOL = 0.15
KEPT_TOL = 0.15
PAPER = "learn 1-4; unlearn 2,4 + learn 5"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("split_digits")


@pytest.fixture(scope="module")
def paper(bench):
    steps = parse_text(PAPER)
    check_stream(steps, bench)
    return steps


@pytest.fixture(scope="module")
def oracle_rows(bench, paper):
    return run_stream("oracle", None, paper, bench, 0)


# ---- the stream ------------------------------------------------------------------------
def test_text_and_yaml_streams_agree(bench):
    text = parse_text("learn 1-4; unlearn 2,4 + learn 5")
    yaml_items = parse_items([{"learn": 1}, {"learn": 2}, {"learn": "3-4"},
                              {"unlearn": [2, 4], "learn": 5}])
    assert text == yaml_items
    assert [s.kind for s in text] == ["learn"] * 4 + ["learn+unlearn"]
    assert text[-1].text() == "unlearn 2,4 + learn 5"
    mixed = parse_items(["learn 1; learn 2", {"unlearn": {"classes": [3]}}])
    assert mixed[-1].unlearn_classes == [3]
    check_stream(mixed, bench)


@pytest.mark.parametrize("stream, message", [
    ("learn 1; learn 6", "unknown task 6"),
    ("learn 1; unlearn 2", "task 2 was never learned"),
    ("learn 1; learn 1", "task 1 is learned twice"),
    ("learn 1; unlearn 1; unlearn 1", "task 1 is already unlearned"),
    ("learn 1; unlearn classes 4", "class 4 is not a learned, kept class"),
    ("learn 1; unlearn 1 + learn 1", "learned and unlearned at once"),
    ("learn 1; forget 2", "bad stream step 'forget 2'"),
    ("learn x", "expected numbers"),
    (" ; ", "the stream is empty"),
])
def test_bad_streams_are_refused_in_one_line(bench, stream, message):
    with pytest.raises(ClulError) as e:
        check_stream(parse_text(stream), bench)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_ids_files_are_read_and_checked(bench, tmp_path):
    train1 = bench.rows.ids[~bench.test & (bench.rows.task == 1)]
    good = tmp_path / "ids.txt"
    good.write_text("\n".join(map(str, train1[:5])) + "\n")
    steps = resolve_ids(parse_text(f"learn 1; unlearn ids {good}"))
    check_stream(steps, bench)
    assert steps[1].ids == train1[:5].tolist()
    test_id = bench.rows.ids[bench.test & (bench.rows.task == 1)][0]
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{test_id}\n")
    with pytest.raises(ClulError, match="no training row of a learned, kept task"):
        check_stream(resolve_ids(parse_text(f"learn 1; unlearn ids {bad}")), bench)
    with pytest.raises(ClulError, match="ids file not found"):
        resolve_ids(parse_text(f"learn 1; unlearn ids {tmp_path / 'none.txt'}"))


def test_spec_refusals(tmp_path):
    with pytest.raises(ClulError, match="unknown strategy 'nope'"):
        check_spec(make_spec({"strategies": "clul,nope"}, "learn 1"))
    with pytest.raises(ClulError, match="parameter clul.gamma must be a number in"):
        check_spec(make_spec({"params": {"clul": {"gamma": 2}}}, "learn 1"))
    with pytest.raises(ClulError, match="no stream given"):
        make_spec({})
    with pytest.raises(ClulError, match=r"split_cifar10 needs torchvision's cifar10 files under"
                                        r" .*missing: cifar-10-batches-py/data_batch_1"):
        load_benchmark("split_cifar10", data_dir=str(tmp_path))


# ---- the buffer ------------------------------------------------------------------------
def test_buffer_reservoir_and_purge_by_task_class_and_id():
    buf = Buffer(50, 3, 4)
    rng = np.random.default_rng(0)
    for task in (1, 2):
        n = 60
        ids = np.arange(n) + 100 * task
        y = torch.from_numpy(rng.integers(2 * (task - 1), 2 * task, n))
        buf.add(torch.randn(n, 3), y, torch.randn(n, 4), ids, np.full(n, task), rng)
    assert len(buf) == 50 and set(buf.task) == {1, 2}
    assert sum(buf.seen.values()) == 120
    some = buf.ids[buf.task == 2][:3]
    assert buf.purge(ids=some) == 3 and not np.isin(some, buf.ids).any()
    buf.purge(classes=[0])
    assert 0 not in buf.y.tolist()
    buf.purge(tasks=[2])
    assert set(buf.task) <= {1} and 2 not in buf.seen
    assert len(buf.x) == len(buf.y) == len(buf.logits) == len(buf.ids) == len(buf.task)


def test_buffer_never_holds_an_unlearned_task_after_the_step(bench, paper):
    state = start("clul", {"epochs": 2}, bench, 0)
    for i, step in enumerate(paper):
        state, row = advance(state, step, i)
        buf = state.strategy.buffer
        if i == 3:  # before the unlearning step the buffer holds tasks 2 and 4
            assert {1, 2, 3, 4} == set(buf.task.tolist())
    unlearned = bench.rows.ids[np.isin(bench.rows.task, [2, 4])]
    assert len(buf) > 0 and not np.isin(buf.ids, unlearned).any()
    assert set(buf.task.tolist()) == {1, 3, 5} and row["buffer_forgotten"] == 0


# ---- strategies against the oracle -----------------------------------------------------
def test_oracle_never_saw_the_unlearned_tasks(oracle_rows):
    last = oracle_rows[-1]
    assert last["kept"] == "1,3,5" and last["forget_acc"] < 0.05 and last["avg_acc"] > 0.9


def test_clul_forgets_like_the_oracle_and_keeps_the_rest(bench, paper, oracle_rows):
    rows = run_stream("clul", None, paper, bench, 0, oracle_rows=oracle_rows)
    last = rows[-1]
    assert last["forget_acc"] <= oracle_rows[-1]["forget_acc"] + FORGET_TOL
    assert last["gap_oracle"] >= -KEPT_TOL
    for k in (1, 3, 5):  # each kept task, too
        assert last[f"acc_task{k}"] >= oracle_rows[-1][f"acc_task{k}"] - 2 * KEPT_TOL
    ft = run_stream("finetune", None, paper, bench, 0, oracle_rows=oracle_rows)
    assert M.stream_average(rows) > M.stream_average(ft) + 0.2
    assert rows[-1]["avg_acc"] > ft[-1]["avg_acc"]


def test_an_unlearn_only_step_drops_the_task_to_the_oracle(bench):
    steps = parse_text("learn 1-3; unlearn 2")
    check_stream(steps, bench)
    oracle = run_stream("oracle", None, steps, bench, 0)
    clul = run_stream("clul", None, steps, bench, 0, oracle_rows=oracle)
    replay = run_stream("replay", None, steps, bench, 0, oracle_rows=oracle)
    assert clul[-1]["forget_acc"] <= oracle[-1]["forget_acc"] + FORGET_TOL
    assert abs(clul[-1]["gap_oracle"]) <= KEPT_TOL
    assert clul[-1]["acc_class2"] <= 0.2 and clul[-1]["acc_class3"] <= 0.2
    # replay has no forgetting term: the purged buffer alone does not forget the task
    assert replay[-1]["forget_acc"] > clul[-1]["forget_acc"] + 0.3


def test_task_incremental_and_class_unlearning(bench):
    til = load_benchmark("split_digits", setting="task")
    steps = parse_text("learn 1; learn 2; unlearn classes 3")
    check_stream(steps, til)
    rows = run_stream("finetune", {"epochs": 3}, steps, til, 0)
    cil = run_stream("finetune", {"epochs": 3}, steps, bench, 0)
    assert rows[1]["acc_task1"] > cil[1]["acc_task1"]  # the task id helps
    assert rows[-1]["kept"] == "1,2" and not math.isnan(rows[-1]["forget_acc"])


def test_the_same_run_twice_is_identical(bench, paper):
    a = run_stream("clul", {"epochs": 2}, paper, bench, 3)
    b = run_stream("clul", {"epochs": 2}, paper, bench, 3)
    def strip(rows):  # repr: NaN == NaN
        return repr([{k: v for k, v in r.items() if k != "seconds"} for r in rows])

    assert strip(a) == strip(b)
    c = run_stream("clul", {"epochs": 2}, paper, bench, 4)
    assert [r["avg_acc"] for r in c] != [r["avg_acc"] for r in a]


# ---- metrics and outputs ---------------------------------------------------------------
def test_stream_metrics_by_hand():
    history = [{1: 0.9, 2: 0.0}, {1: 0.8, 2: 0.95}, {1: 0.6, 2: 0.9}]
    learned = {1: 0, 2: 1}
    assert M.backward_transfer(history, learned, [1, 2]) == pytest.approx(0.6 - 0.9)
    assert M.forgetting_measure(history, learned, [1, 2]) == pytest.approx(0.9 - 0.6)
    assert math.isnan(M.backward_transfer(history[:1], {1: 0}, [1]))
    rows = [{"step": 1, "avg_acc": 0.9, "forget_acc": M.NAN, "mia": M.NAN},
            {"step": 2, "avg_acc": 0.7, "forget_acc": 0.2, "mia": 0.5}]
    oracle = [{"step": 1, "avg_acc": 1.0, "forget_acc": M.NAN, "mia": M.NAN},
              {"step": 2, "avg_acc": 0.9, "forget_acc": 0.0, "mia": 1.0}]
    M.add_gaps(rows, oracle)
    assert rows[1]["gap_oracle"] == pytest.approx(-0.2)
    assert rows[1]["forget_gap"] == pytest.approx(0.2)
    assert objective(rows) == pytest.approx(0.4)


def test_outputs_are_written(bench, tmp_path):
    steps = parse_text("learn 1; learn 2; unlearn 1")
    rows = []
    for name in ("clul", "finetune"):
        for seed in (0, 1):
            rows += run_stream(name, {"epochs": 1}, steps, bench, seed)
    meta = {"benchmark": "split_digits", "setting": "class", "model": "mlp",
            "seeds": [0, 1], "stream": "learn 1; learn 2; unlearn 1"}
    for r in rows:  # avg F1: the mean over the kept tasks of each one's macro F1
        kept = [int(k) for k in r["kept"].split(",")]
        assert r["avg_f1"] == pytest.approx(np.mean([r[f"f1_task{k}"] for k in kept]))
        assert 0 < r["avg_f1"] <= 1 and 0 <= r["f1_task1"] <= 1
    files = write_all(rows, meta, tmp_path / "out")
    csv_text = (tmp_path / "out" / "stream.csv").read_text().splitlines()
    assert len(csv_text) == 1 + 12 and "gap_oracle" in csv_text[0]
    assert "avg_f1" in csv_text[0] and "f1_task2" in csv_text[0]
    md = (tmp_path / "out" / "stream.md").read_text()
    assert "| 3 | unlearn 1 | finetune |" in md and "±" in md
    assert "| step | operation | strategy | avg acc | avg F1 | forget acc |" in md
    assert "Per-task macro F1 after the last step:" in md
    assert (tmp_path / "out" / "stream.png").read_bytes()[:4] == b"\x89PNG"
    assert set(files) == {"csv", "md", "png"}


def test_the_continual_core_imports_no_ray():
    code = ("import sys; import clul_ray.continual.runner, clul_ray.continual.experiment; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
