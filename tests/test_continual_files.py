"""Split-MNIST read from torchvision's files under ``--data-dir``: the files are made here
(idx format, the layout torchvision reads), so the whole path — files, torchvision's reader,
the split into tasks, a stream run from the command line — runs without the network."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from typer.testing import CliRunner

from clul_ray.cli import app
from clul_ray.continual.tasks import load_benchmark

pytestmark = pytest.mark.pure


def write_idx(path, array: np.ndarray) -> None:
    """An idx file (MNIST's format): magic (0, 0, 0x08 ubyte, ndim), sizes, then the data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    head += b"".join(struct.pack(">I", n) for n in array.shape)
    path.write_bytes(head + array.astype(np.uint8).tobytes())


def fake_mnist(root, n_train=400, n_test=100, seed=0):
    """Digits-like images: class c lights a 6x6 block at its own place, over noise."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = np.arange(n) % 10
        x = rng.integers(0, 60, size=(n, 28, 28))
        for i, c in enumerate(y):
            r, q = divmod(int(c), 5)
            x[i, 4 + 12 * r: 10 + 12 * r, 2 + 5 * q: 8 + 5 * q] = 250
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
    return root


def test_split_mnist_from_files_has_five_tasks_of_two_classes(tmp_path):
    b = load_benchmark("split_mnist", data_dir=str(fake_mnist(tmp_path)))
    assert b.num_classes == 10 and b.classes == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert b.input_shape == (1, 28, 28) and len(b.rows.ids) == 500
    assert set(np.unique(b.rows.task).tolist()) == {1, 2, 3, 4, 5}
    assert 0 < b.test.mean() < 0.4


def test_a_stream_runs_on_split_mnist_from_the_command_line(tmp_path):
    data = fake_mnist(tmp_path / "data")
    res = CliRunner().invoke(app, [
        "continual", "--benchmark", "split_mnist", "--data-dir", str(data), "--out",
        str(tmp_path / "out"), "--strategies", "clul,finetune", "--backend", "local",
        "--stream", "learn 1; learn 2; unlearn 1 + learn 3", "--param", "all.epochs=3",
        "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout.strip().splitlines()[-1])
    last = {r["strategy"]: r for r in result["summary"] if r["step"] == 3}
    assert last["clul"]["forget_acc"] <= 0.15
    assert last["clul"]["avg_acc"] > last["finetune"]["avg_acc"]
    assert (tmp_path / "out" / "stream.png").exists()
