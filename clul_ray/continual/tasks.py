"""Split benchmarks: a labelled dataset cut into tasks of a few classes each.

Task k (1-based) holds the classes ``order[(k-1)*c : k*c]`` (``c`` classes per task, the
natural class order): split-digits and split-MNIST / split-CIFAR-10 are 5 tasks x 2 classes,
split-CIFAR-100 10 tasks x 10 classes. The train/test split of every row is the seeded id
hash of :func:`clul_ray.data.partition.is_test`, so it never depends on the stream.

Settings: ``class`` (class-incremental: one head over all classes, no task id at test
time) and ``task`` (task-incremental: the logits of a row are restricted to its task's
classes, in training and at test time).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import torch

from ..data.partition import is_test
from ..data.sources import features, open_source
from ..errors import ClulError

Setting = Literal["class", "task"]
# benchmark -> (dataset spec, classes per task)
BENCHMARKS = {
    "split_digits": ("digits", 2),
    "split_mnist": ("mnist", 2),
    "split_cifar10": ("cifar10", 2),
    "split_cifar100": ("cifar100", 10),
}
# the files torchvision reads under --data-dir, named in the refusal when they are missing
FILES = {
    "mnist": ["MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/train-labels-idx1-ubyte",
              "MNIST/raw/t10k-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte"],
    "cifar10": [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]
    + ["cifar-10-batches-py/test_batch"],
    "cifar100": ["cifar-100-python/train", "cifar-100-python/test"],
}
MASK = -1e4  # the logit of a class outside a row's task (task-incremental)


@dataclass
class Rows:
    """Rows in memory: features ``x`` (n, d) float32, labels ``y``, ids and task numbers."""

    x: torch.Tensor
    y: torch.Tensor
    ids: np.ndarray
    task: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def select(self, mask: np.ndarray) -> Rows:
        idx = torch.from_numpy(np.flatnonzero(mask))
        return Rows(self.x[idx], self.y[idx], self.ids[mask], self.task[mask])


@dataclass
class Benchmark:
    """A split benchmark in memory: every row, its task and whether it is a test row."""

    name: str
    setting: Setting
    num_classes: int
    input_shape: tuple[int, ...]
    classes: list[tuple[int, ...]]  # index k-1: the classes of task k
    rows: Rows
    test: np.ndarray  # bool per row

    @property
    def num_tasks(self) -> int:
        return len(self.classes)

    def class_mask(self, tasks: np.ndarray) -> torch.Tensor:
        """(n, C) bool: which classes each row's task holds (every class when class-IL)."""
        n = len(tasks)
        if self.setting == "class":
            return torch.ones(n, self.num_classes, dtype=torch.bool)
        table = torch.zeros(self.num_tasks + 1, self.num_classes, dtype=torch.bool)
        for k, cs in enumerate(self.classes, 1):
            table[k, list(cs)] = True
        return table[torch.from_numpy(np.asarray(tasks, dtype=np.int64))]

    def restrict(self, logits: torch.Tensor, tasks: np.ndarray) -> torch.Tensor:
        """Logits as the setting sees them: unchanged (class-IL), or the classes outside each
        row's task masked out (task-IL)."""
        if self.setting == "class":
            return logits
        return logits.masked_fill(~self.class_mask(tasks), MASK)


def check_files(kind: str, data_dir: str | None, name: str) -> None:
    """Refuse, in one line naming them, the torchvision files missing under ``data_dir``."""
    if not data_dir:
        raise ClulError(f"{name} is read from a local folder: pass --data-dir DIR holding "
                        f"{', '.join(FILES[kind][:1])} and the rest of torchvision's layout")
    missing = [f for f in FILES[kind] if not (Path(data_dir) / f).exists()]
    if missing:
        more = f" (and {len(missing) - 2} more)" if len(missing) > 2 else ""
        raise ClulError(f"{name} needs torchvision's {kind} files under {data_dir}; missing: "
                        f"{', '.join(missing[:2])}{more}")


def load_benchmark(name: str, setting: Setting = "class", seed: int = 0,
                   test_fraction: float = 0.2, data_dir: str | None = None,
                   classes_per_task: int | None = None) -> Benchmark:
    """The benchmark ``name`` (see :data:`BENCHMARKS`) as tasks of classes; one-line refusals
    for an unknown name, a bad setting or missing files."""
    if name not in BENCHMARKS:
        raise ClulError(f"unknown benchmark '{name}' (known: {', '.join(BENCHMARKS)})")
    if setting not in ("class", "task"):
        raise ClulError(f"setting must be 'class' or 'task', got {setting!r}")
    spec, per = BENCHMARKS[name]
    per = classes_per_task or per
    if spec in FILES:
        check_files(spec, data_dir, name)
    src = open_source(spec, data_dir=data_dir)
    table = pa.concat_tables([t.select(["id", "label", "x"]) for t in src.iter_tables()])
    ids = table.column("id").to_numpy().astype(np.int64)
    y = table.column("label").to_numpy().astype(np.int64)
    x = features(table)
    if src.num_classes % per:
        raise ClulError(f"{name}: {src.num_classes} classes do not split into tasks of {per}")
    classes = [tuple(range(k, k + per)) for k in range(0, src.num_classes, per)]
    task = (y // per + 1).astype(np.int64)
    test = is_test(seed, ids, test_fraction)
    if test.all() or not test.any():
        raise ClulError(f"test_fraction {test_fraction} leaves no training or no test rows")
    rows = Rows(torch.from_numpy(np.array(x, dtype=np.float32)), torch.from_numpy(y), ids, task)
    return Benchmark(name, setting, src.num_classes, tuple(src.input_shape), classes, rows,
                     test)
