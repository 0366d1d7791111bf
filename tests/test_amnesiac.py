"""Amnesiac unlearning: the update log recorded by training (complete, paired with its
batches, sized as stated), the undo of the steps that held forget rows, its refusals, and
the method on digits through the comparison harness (backend local: no Ray)."""

from __future__ import annotations

import copy
import json
import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from clul_ray.errors import ClulError
from clul_ray.hashing import derive_seed
from clul_ray.models import build_model
from clul_ray.unlearn import Split, get_method, unlearn_model
from clul_ray.unlearn import compare as compare_mod
from clul_ray.unlearn.amnesiac import NO_LOG
from clul_ray.unlearn.compare import CompareSpec, run_compare
from clul_ray.unlearn.training import (
    SALT_INIT,
    TrainRecipe,
    reinitialize,
    train_from_scratch,
)
from clul_ray.unlearn.update_log import LOG_ATTR, UpdateLog, update_log_of

pytestmark = [pytest.mark.pure, pytest.mark.usefixtures("one_torch_thread")]

N, D, C, BATCH, EPOCHS = 50, 6, 3, 8, 3
STEPS = EPOCHS * math.ceil(N / BATCH)


def rows() -> Split:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    ids = np.random.default_rng(0).permutation(5000)[:N]  # not 0..N-1: ids, not positions
    return Split(x, y, ids)


def vec(model) -> torch.Tensor:
    return parameters_to_vector(model.parameters()).detach().clone()


def trained(recipe: TrainRecipe | None = None, dropout: float = 0.1, seed: int = 3,
            record: bool = True):
    template = build_model("mlp", (D,), C, {"hidden": 16, "dropout": dropout})
    recipe = recipe or TrainRecipe(epochs=EPOCHS, batch_size=BATCH, lr=1e-2)
    data = rows()
    model = train_from_scratch(template, data, recipe, seed, record_updates=record)
    theta0 = vec(reinitialize(template, derive_seed(seed, SALT_INIT)))
    return model, data, theta0


def subset(data: Split, keep: np.ndarray) -> Split:
    return Split(data.x[keep], data.y[keep], data.ids[keep])


def test_recording_changes_nothing_in_training_and_the_log_travels_with_the_model():
    model, _, _ = trained()
    plain, _, _ = trained(record=False)
    assert torch.equal(vec(model), vec(plain))
    assert update_log_of(plain) is None
    log = update_log_of(model)
    assert isinstance(log, UpdateLog) and log.steps == STEPS
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        got = update_log_of(other)
        assert torch.equal(got.deltas, log.deltas)
        assert np.array_equal(got.row_ids, log.row_ids)


def test_undoing_every_step_gives_back_the_initial_weights():
    model, data, theta0 = trained()
    assert (vec(model) - theta0).abs().max() > 0.05  # training moved the weights
    empty = Split(torch.zeros(0, D), torch.zeros(0, dtype=torch.int64), np.zeros(0, np.int64))
    undone, report = unlearn_model(model, data, empty, "amnesiac", {"repair_epochs": 0})
    assert report.details["steps_undone"] == report.details["steps_total"] == STEPS
    assert report.details["repair_steps"] == 0
    assert torch.allclose(vec(undone), theta0, rtol=0, atol=1e-6)


def test_each_logged_update_is_its_batch_step():
    """SGD without momentum or dropout: step b moved θ by −lr·∇(loss on step b's batch),
    with θ before it = θ0 + the updates before b. Every epoch's batches hold each row once."""
    lr = 0.05
    recipe = TrainRecipe(epochs=EPOCHS, batch_size=BATCH, lr=lr, optimizer="sgd", momentum=0)
    model, data, theta0 = trained(recipe, dropout=0.0)
    log = update_log_of(model)
    per_epoch = STEPS // EPOCHS
    for e in range(EPOCHS):
        seen = np.concatenate([log.batch_ids(b) for b in range(e * per_epoch,
                                                                (e + 1) * per_epoch)])
        assert sorted(seen.tolist()) == sorted(data.ids.tolist())
    position = {int(i): k for k, i in enumerate(data.ids)}
    probe = copy.deepcopy(model).train()
    for b in (0, 1, per_epoch + 2, STEPS - 1):
        vector_to_parameters(theta0 + log.deltas[:b].sum(0), probe.parameters())
        idx = torch.tensor([position[int(i)] for i in log.batch_ids(b)])
        probe.zero_grad()
        F.cross_entropy(probe(data.x[idx]), data.y[idx]).backward()
        grad = torch.cat([p.grad.reshape(-1) for p in probe.parameters()])
        assert torch.allclose(log.deltas[b], -lr * grad, rtol=1e-3, atol=1e-6), b


def test_undo_subtracts_exactly_the_steps_that_held_a_forget_row():
    model, data, _ = trained()
    log = update_log_of(model)
    pick = np.zeros(N, bool)
    pick[[4, 17]] = True
    forget, retain = subset(data, pick), subset(data, ~pick)
    want = [b for b in range(log.steps) if set(log.batch_ids(b)) & set(forget.ids.tolist())]
    assert 0 < len(want) <= 2 * EPOCHS < log.steps
    assert log.steps_holding(forget.ids).tolist() == want
    expected = vec(model).double()
    for b in want:
        expected -= log.deltas[b].double()
    undone, report = unlearn_model(model, forget, retain, "amnesiac", {"repair_epochs": 0})
    assert report.details["steps_undone"] == len(want)
    assert torch.allclose(vec(undone), expected.float(), rtol=0, atol=1e-7)
    assert not torch.equal(vec(undone), vec(model))
    repaired, rep = unlearn_model(model, forget, retain, "amnesiac", {"repair_epochs": 2})
    assert rep.details["repair_steps"] == 2 * math.ceil(len(retain) / 64)
    assert not torch.equal(vec(repaired), vec(undone))


def test_log_size_is_steps_times_params_times_four_and_is_reported():
    model, data, _ = trained()
    log = update_log_of(model)
    params = sum(p.numel() for p in model.parameters())
    assert log.params == params
    assert log.delta_bytes == STEPS * params * 4 == log.deltas.numel() * 4
    assert log.nbytes == STEPS * params * 4 + EPOCHS * N * 8
    _, report = unlearn_model(model, subset(data, np.arange(N) < 3),
                              subset(data, np.arange(N) >= 3), "amnesiac")
    d = report.details
    assert (d["log_bytes"], d["delta_bytes"], d["params"], d["steps_total"]) == (
        log.nbytes, log.delta_bytes, params, STEPS)


def test_the_unlearned_model_never_carries_the_log_and_the_original_is_untouched():
    model, data, _ = trained()
    before = vec(model)
    forget, retain = subset(data, np.arange(N) < 5), subset(data, np.arange(N) >= 5)
    for method in ("amnesiac", "finetune", "neural_mask"):
        new, _ = unlearn_model(model, forget, retain, method)
        assert all(not hasattr(m, LOG_ATTR) for m in new.modules()), method
    assert torch.equal(vec(model), before) and update_log_of(model) is not None
    retrained, _ = unlearn_model(model, forget, retain, "retrain")
    assert update_log_of(retrained) is None


def one_line_refusal(match: str, fn, *args, **kwargs) -> None:
    with pytest.raises(ClulError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)


def test_refusals_are_one_line():
    model, data, _ = trained()
    plain, _, _ = trained(record=False)
    forget, retain = subset(data, np.arange(N) < 3), subset(data, np.arange(N) >= 3)
    one_line_refusal("needs the original's recorded updates", unlearn_model, plain, forget,
                     retain, "amnesiac")
    assert NO_LOG.startswith("amnesiac needs the original's recorded updates: train it "
                             "with record_updates")
    no_ids = Split(forget.x, forget.y)
    one_line_refusal("needs the forget rows' ids", unlearn_model, model, no_ids, retain,
                     "amnesiac")
    stranger = Split(forget.x, forget.y, np.array([9001, 9002, int(forget.ids[0])]))
    one_line_refusal("2 of the 3 forget rows are in no batch", unlearn_model, model,
                     stranger, retain, "amnesiac")
    template = build_model("mlp", (D,), C, {"hidden": 16})
    one_line_refusal("needs the training rows' ids", train_from_scratch, template,
                     Split(data.x, data.y), TrainRecipe(epochs=1), 0, record_updates=True)
    wider = copy.deepcopy(model)
    setattr(wider, LOG_ATTR, UpdateLog(torch.zeros(STEPS, 5), update_log_of(model).row_ids,
                                       update_log_of(model).offsets))
    one_line_refusal("5 parameters per step but the model has", unlearn_model, wider, forget,
                     retain, "amnesiac")
    one_line_refusal("amnesiac.repair_epochs must be an integer >= 0", unlearn_model, model,
                     forget, retain, "amnesiac", {"repair_epochs": -1})


def test_compare_records_updates_only_when_amnesiac_runs(tmp_path, monkeypatch):
    seen: list[bool] = []
    real = compare_mod.train_original

    def spy(*args, record_updates=False):
        seen.append(record_updates)
        model, info = real(*args, record_updates=record_updates)
        assert (update_log_of(model) is not None) == record_updates
        return model, info

    monkeypatch.setattr(compare_mod, "train_original", spy)
    tiny = dict(backend="local", model_args={"hidden": 8}, recipe=TrainRecipe(epochs=1))
    run_compare(CompareSpec(methods=["finetune"], params={"finetune": {"epochs": 1}}, **tiny),
                tmp_path / "a")
    run_compare(CompareSpec(methods=["amnesiac"], **tiny), tmp_path / "b")
    assert seen == [False, True]


def test_amnesiac_forgets_class_3_on_digits(tmp_path):
    """Every batch of 64 holds a class-3 row, so every step is undone: the repair epoch
    on D_r does the work, and class 3 is never seen again."""
    spec = CompareSpec(backend="local", methods=["amnesiac"], recipe=TrainRecipe(epochs=5))
    result = run_compare(spec, tmp_path)
    row = {r["method"]: r for r in result["rows"]}
    original, amnesiac, retrain = row["original"], row["amnesiac"], row["retrain"]
    assert original["FA"] > 0.9
    assert amnesiac["FA"] < 0.1 and retrain["FA"] < 0.05
    assert amnesiac["TA"] > 0.85 and original["TA"] > 0.9
    reports = json.loads((tmp_path / "compare.json").read_text())["reports"]
    d = next(r for r in reports if r["method"] == "amnesiac")["details"]
    n = result["meta"]["rows"]["retain"] + result["meta"]["rows"]["forget"]
    assert d["steps_undone"] == d["steps_total"] == 5 * math.ceil(n / 64)
    assert d["delta_bytes"] == d["steps_total"] * d["params"] * 4


def test_a_sisa_root_refuses_amnesiac_before_anything_changes(tmp_path):
    from clul_ray.sisa.driver.pipeline import Pipeline
    from clul_ray.unlearn.api import check_for_root

    assert get_method("amnesiac").needs_update_log
    assert not any(get_method(m).needs_update_log for m in ("finetune", "neggrad+", "scrub"))
    assert check_for_root("scrub", {"lr": "0.01"}, 2).seed == 2
    one_line_refusal("amnesiac needs the updates recorded while the original trained",
                     check_for_root, "amnesiac", {})
    root = tmp_path / "root"
    pipe = Pipeline(str(root))
    pipe.train(tiny_config(backend="local", epochs=1))
    files = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    one_line_refusal("a SISA root's shard models do not have", pipe.unlearn, "amnesiac",
                     "class:3")
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == files
    assert pipe.status()["requests"]["pending"] == []


def test_its_search_space_names_its_params():
    stub = type("Tune", (), {"randint": staticmethod(lambda lo, hi: ("int", lo, hi)),
                             "loguniform": staticmethod(lambda lo, hi: ("log", lo, hi))})
    m = get_method("amnesiac")
    space = m.space(stub)
    assert set(space) == {"repair_epochs", "lr"} <= set(m.params_cls.model_fields)
    assert space["repair_epochs"][0] == "int" and space["repair_epochs"][1] == 0


def test_a_sweeps_reference_carries_the_log_only_for_amnesiac():
    """The work `clul-ray tune` does once per seed, and a trial at amnesiac's defaults,
    called in process."""
    from clul_ray.tune.objective import Weights
    from clul_ray.tune.trial import Shared, compute_reference, default_score

    spec = CompareSpec(backend="local", model_args={"hidden": 8})
    data = compare_mod.load_data(spec)
    template = build_model("mlp", data.input_shape, data.num_classes, {"hidden": 8})
    recipe = TrainRecipe(epochs=2)
    plain = compute_reference(template, data, recipe, 0)
    assert update_log_of(plain.original) is None
    ref = compute_reference(template, data, recipe, 0, True)
    assert update_log_of(ref.original).steps == 2 * math.ceil(
        (len(data.retain) + len(data.forget)) / 64)
    result = default_score("amnesiac", data, Shared({0: ref}, Weights()))
    assert result["final"] == 1 and result["FA"] < 0.2
    one_line_refusal("needs the original's recorded updates", default_score, "amnesiac",
                     data, Shared({0: plain}, Weights()))


def test_a_fresh_copy_neither_copies_nor_keeps_the_log():
    model, _, _ = trained()
    fresh = reinitialize(model, 5)
    assert update_log_of(fresh) is None and update_log_of(model) is not None
    assert not torch.equal(vec(fresh), vec(model))
