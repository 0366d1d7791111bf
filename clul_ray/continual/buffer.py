"""A reservoir replay buffer that keeps, per slot, the row's id, task, label, input and the
logits the model gave it when it was stored (dark experience replay needs them).

:meth:`Buffer.purge` removes every slot of the given tasks, classes or ids, and the
reservoir's count of rows seen forgets them too, so new rows fill the freed slots first.
There is one buffer: nothing else keeps forgotten rows (the CLUL paper's code keeps a
second FIFO buffer that is never purged and replays forgotten classes).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch


class Buffer:
    def __init__(self, capacity: int, dim: int, num_classes: int):
        self.capacity = int(capacity)
        self.x = torch.zeros(0, dim)
        self.y = torch.zeros(0, dtype=torch.int64)
        self.logits = torch.zeros(0, num_classes)
        self.ids = np.zeros(0, dtype=np.int64)
        self.task = np.zeros(0, dtype=np.int64)
        self.seen: dict[int, int] = {}  # task -> rows of it the reservoir has seen

    def __len__(self) -> int:
        return len(self.y)

    def add(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, ids: np.ndarray,
            task: np.ndarray, rng: np.random.Generator) -> None:
        """Reservoir sampling over the rows seen so far (of kept tasks), in the given order."""
        if self.capacity == 0:
            return
        xs, ys, ls = list(self.x), list(self.y), list(self.logits)
        id_list, task_list = list(self.ids), list(self.task)
        n = sum(self.seen.values())
        for i in range(len(y)):
            slot = len(ys) if len(ys) < self.capacity else int(rng.integers(0, n + 1))
            if slot < self.capacity:
                row = (x[i], y[i], logits[i].detach(), ids[i], task[i])
                if slot == len(ys):
                    for lst, v in zip((xs, ys, ls, id_list, task_list), row, strict=True):
                        lst.append(v)
                else:
                    xs[slot], ys[slot], ls[slot], id_list[slot], task_list[slot] = row
            n += 1
            self.seen[int(task[i])] = self.seen.get(int(task[i]), 0) + 1
        self.x, self.y, self.logits = torch.stack(xs), torch.stack(ys), torch.stack(ls)
        self.ids = np.asarray(id_list, dtype=np.int64)
        self.task = np.asarray(task_list, dtype=np.int64)

    def purge(self, tasks: Iterable[int] = (), classes: Iterable[int] = (),
              ids: Iterable[int] = ()) -> int:
        """Drop every slot of these tasks, classes or ids; returns how many were dropped."""
        tasks, classes, ids = list(tasks), list(classes), list(ids)
        drop = (np.isin(self.task, tasks) | np.isin(self.y.numpy(), classes)
                | np.isin(self.ids, np.asarray(ids, dtype=np.int64)))
        for t in tasks:
            self.seen.pop(int(t), None)
        # classes and ids leave the reservoir's count as the slots that held them
        for t, k in zip(*np.unique(self.task[drop & ~np.isin(self.task, tasks)],
                                   return_counts=True), strict=True):
            self.seen[int(t)] = max(0, self.seen.get(int(t), 0) - int(k))
        keep = torch.from_numpy(np.flatnonzero(~drop))
        self.x, self.y, self.logits = self.x[keep], self.y[keep], self.logits[keep]
        self.ids, self.task = self.ids[~drop], self.task[~drop]
        return int(drop.sum())

    def sample(self, size: int, generator: torch.Generator) -> torch.Tensor:
        """Indices of a random batch (without replacement), empty when the buffer is."""
        if len(self) == 0:
            return torch.zeros(0, dtype=torch.int64)
        return torch.randperm(len(self), generator=generator)[:size]
