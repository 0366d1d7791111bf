"""The shared optimiser factory and the id-list parsers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clul_ray.data.ids import parse_ids, read_ids_file, repeated_ids
from clul_ray.errors import ClulError
from clul_ray.optim import OPTIMIZERS, make_optimizer

pytestmark = pytest.mark.pure


def test_make_optimizer():
    w = [torch.nn.Parameter(torch.zeros(3))]
    sgd = make_optimizer(w, "sgd", 0.1, momentum=0.5, weight_decay=0.01)
    assert isinstance(sgd, torch.optim.SGD)
    assert (sgd.defaults["lr"], sgd.defaults["momentum"], sgd.defaults["weight_decay"]) == (
        0.1, 0.5, 0.01)
    adam = make_optimizer(w, "adam", 0.2)
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["weight_decay"] == 0.0
    assert OPTIMIZERS == ("adam", "sgd")
    with pytest.raises(ClulError, match="optimizer must be one of"):
        make_optimizer(w, "rmsprop", 0.1)


def test_parse_ids_from_the_option_and_from_a_file(tmp_path):
    assert parse_ids("1, 2,,3 ,", None) == [1, 2, 3]
    f = tmp_path / "ids.txt"
    f.write_text("5\n\n 7 \n5\n")
    assert parse_ids(None, f) == [5, 7, 5]  # repeats are the caller's to judge here
    for ids, ids_file, message in [
        (None, None, "give exactly one of --ids or --ids-file"),
        ("1", f, "give exactly one of --ids or --ids-file"),
        ("1,,x", None, "--ids: item 2 is not an integer id: 'x'"),
        (" , ", None, "--ids: no ids given"),
        (None, tmp_path / "missing.txt", f"ids file not found: {tmp_path / 'missing.txt'}"),
    ]:
        with pytest.raises(ClulError) as info:
            parse_ids(ids, ids_file)
        assert str(info.value) == message
    f.write_text("5\n\nseven\n")
    with pytest.raises(ClulError) as info:
        parse_ids(None, f)
    assert str(info.value) == f"{f}: line 3 is not an integer id: 'seven'"
    f.write_text("\n  \n")
    with pytest.raises(ClulError) as info:
        parse_ids(None, f)
    assert str(info.value) == f"{f}: no ids given"


def test_read_ids_file(tmp_path, monkeypatch):
    f = tmp_path / "ids.txt"
    f.write_text("105\n\n150\n-3\n")
    ids = read_ids_file(str(f))
    assert ids.dtype == np.int64 and ids.tolist() == [105, 150, -3]
    monkeypatch.chdir(tmp_path)  # messages name the path as given
    for text, message in [
        ("1\n2\n1\n3\n3\n", "./ids.txt: repeated ids (1, 3)"),
        ("1\n\n2.5\n", "./ids.txt: line 3 is not an integer id: '2.5'"),
        ("\n", "./ids.txt: no ids given"),
    ]:
        Path("ids.txt").write_text(text)
        with pytest.raises(ClulError) as info:
            read_ids_file("./ids.txt")
        assert str(info.value) == message
    with pytest.raises(ClulError) as info:
        read_ids_file("./none.txt")
    assert str(info.value) == "ids file not found: ./none.txt"
    assert repeated_ids(np.array([9, 1, 9, 2, 2, 2, 5])) == "2, 9"
    assert repeated_ids(np.arange(10) % 7, most=2) == "0, 1"
    assert repeated_ids(np.array([3, 1])) == "" and repeated_ids(np.zeros(0)) == ""
