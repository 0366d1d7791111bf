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
        ("1,,x", None, "--ids: item 2 is not an id (ASCII decimal int64): 'x'"),
        ("1,2,２９", None, "--ids: item 3 is not an id (ASCII decimal int64): '２９'"),
        ("5_8", None, "--ids: item 1 is not an id (ASCII decimal int64): '5_8'"),
        (" 1 2", None, "--ids: item 1 is not an id (ASCII decimal int64): '1 2'"),
        ("0x10", None, "--ids: item 1 is not an id (ASCII decimal int64): '0x10'"),
        ("1e3", None, "--ids: item 1 is not an id (ASCII decimal int64): '1e3'"),
        ("1,\u30001", None, "--ids: item 2 is not an id (ASCII decimal int64): '\\u30001'"),
        ("9223372036854775808", None,
         "--ids: item 1 is outside the int64 range: '9223372036854775808'"),
        ("-9223372036854775809", None,
         "--ids: item 1 is outside the int64 range: '-9223372036854775809'"),
        ("9" * 5000, None, "--ids: item 1 is outside the int64 range: "
                           f"'{'9' * 40}'... (5000 chars)"),
        (None, tmp_path, f"ids file {tmp_path} is a directory, not a file of ids"),
        (" , ", None, "--ids: no ids given"),
        (None, tmp_path / "missing.txt", f"ids file not found: {tmp_path / 'missing.txt'}"),
    ]:
        with pytest.raises(ClulError) as info:
            parse_ids(ids, ids_file)
        assert str(info.value) == message
    assert parse_ids("-9223372036854775808,+9223372036854775807,007", None) == [
        -2**63, 2**63 - 1, 7]
    f.write_text("5\n\nseven\n")
    with pytest.raises(ClulError) as info:
        parse_ids(None, f)
    assert str(info.value) == f"{f}: line 3 is not an id (ASCII decimal int64): 'seven'"
    f.write_bytes(b"\xef\xbb\xbf1\r\n2\r\n")  # Notepad's UTF-8: a BOM, CRLF lines
    assert parse_ids(None, f) == [1, 2]
    f.write_bytes(b"1\n\xff\xfe2\n")
    with pytest.raises(ClulError) as info:
        parse_ids(None, f)
    assert str(info.value) == f"ids file {f} is not a text file of ids (not UTF-8)"
    f.write_text("1\n2\x853\n")  # U+0085 is a line break to str.splitlines, not to editors
    with pytest.raises(ClulError) as info:
        parse_ids(None, f)
    assert str(info.value) == f"{f}: line 2 is not an id (ASCII decimal int64): '2\\x853'"
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
        ("1\n\n2.5\n", "./ids.txt: line 3 is not an id (ASCII decimal int64): '2.5'"),
        ("1\n２９\n", "./ids.txt: line 2 is not an id (ASCII decimal int64): '２９'"),
        ("\n", "./ids.txt: no ids given"),
    ]:
        Path("ids.txt").write_text(text)
        with pytest.raises(ClulError) as info:
            read_ids_file("./ids.txt")
        assert str(info.value) == message
    with pytest.raises(ClulError) as info:
        read_ids_file("./none.txt")
    assert str(info.value) == "ids file not found: ./none.txt"
    Path("ids.d").mkdir()
    with pytest.raises(ClulError) as info:
        read_ids_file("./ids.d")
    assert str(info.value) == "ids file ./ids.d is a directory, not a file of ids"
    Path("ids.bin").write_bytes(bytes(range(128, 256)))
    with pytest.raises(ClulError) as info:
        read_ids_file("./ids.bin")
    assert str(info.value) == "ids file ./ids.bin is not a text file of ids (not UTF-8)"
    assert repeated_ids(np.array([9, 1, 9, 2, 2, 2, 5])) == "2, 9"
    assert repeated_ids(np.arange(10) % 7, most=2) == "0, 1"
    assert repeated_ids(np.array([3, 1])) == "" and repeated_ids(np.zeros(0)) == ""
