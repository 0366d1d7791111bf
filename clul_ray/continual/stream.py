"""A stream of operations on one model: learn a task, unlearn tasks / classes / ids, or
both in one step (unlearn j while learning k, the CLUL paper's protocol).

YAML (a list under ``stream:``), each item a mapping or a text step::

    - learn: 1
    - {unlearn: [2, 4], learn: 5}     # unlearn tasks 2 and 4 while learning task 5
    - unlearn: {classes: [3]}          # or {ids: FILE}: one id a line
    - "unlearn 2 + learn 3"           # the text syntax below
    - learn: 1-4                       # (or [1, 2, 3, 4]) one learn step per task

Text (``--stream``): steps separated by ``;``, the parts of one step by ``+``::

    learn 1-4; unlearn 2,4 + learn 5; unlearn classes 3,7; unlearn ids FILE

``learn A-B`` expands to one learn step per task. Task numbers are 1-based. The checks
(:func:`check_stream`) refuse in one line: an unknown task or class, learning a task twice,
unlearning what was never learned (or already unlearned), ids that are no training row of a
kept task, and a bad ids file.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..data.ids import read_ids_file
from ..errors import ClulError
from .tasks import Benchmark


class Step(BaseModel):
    """One operation. ``ids`` are read from ``ids_file`` by :func:`resolve_ids`."""

    model_config = ConfigDict(extra="forbid")

    learn: int | None = None
    unlearn_tasks: list[int] = Field(default_factory=list)
    unlearn_classes: list[int] = Field(default_factory=list)
    ids_file: str | None = None
    ids: list[int] = Field(default_factory=list)

    @property
    def forgets(self) -> bool:
        return bool(self.unlearn_tasks or self.unlearn_classes or self.ids_file or self.ids)

    @property
    def kind(self) -> str:
        if self.learn is not None and self.forgets:
            return "learn+unlearn"
        return "learn" if self.learn is not None else "unlearn"

    def text(self) -> str:
        """The step in the text syntax, e.g. ``unlearn 2,4 + learn 5``."""
        parts = []
        if self.unlearn_tasks:
            parts.append("unlearn " + ",".join(map(str, self.unlearn_tasks)))
        if self.unlearn_classes:
            parts.append("unlearn classes " + ",".join(map(str, self.unlearn_classes)))
        if self.ids_file or self.ids:
            parts.append(f"unlearn ids {self.ids_file or f'({len(self.ids)} ids)'}")
        if self.learn is not None:
            parts.append(f"learn {self.learn}")
        return " + ".join(parts)


def _ints(text: str, where: str) -> list[int]:
    out: list[int] = []
    for tok in (t.strip() for t in text.split(",")):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", tok)
        if not m:
            raise ClulError(f"{where}: expected numbers like 2 or 2,4 or 1-4, got {tok!r}")
        a, b = int(m[1]), int(m[2] or m[1])
        if b < a:
            raise ClulError(f"{where}: empty range {tok!r}")
        out += list(range(a, b + 1))
    return out


def parse_text(text: str) -> list[Step]:
    """``"learn 1-4; unlearn 2,4 + learn 5"`` -> steps."""
    steps: list[Step] = []
    for raw in text.split(";"):
        raw = raw.strip()
        if not raw:
            continue
        fields: dict[str, Any] = {}
        expand: list[int] | None = None
        for part in (p.strip() for p in raw.split("+")):
            words = part.split(None, 2)
            verb = words[0].lower() if words else ""
            if verb == "learn" and len(words) == 2:
                tasks = _ints(words[1], f"step '{raw}'")
                if "learn" in fields or (len(tasks) > 1 and len(raw.split("+")) > 1):
                    raise ClulError(f"step '{raw}': one task is learned per step")
                fields["learn"] = tasks[0]
                expand = tasks if len(tasks) > 1 else None
            elif verb == "unlearn" and len(words) == 2:
                fields.setdefault("unlearn_tasks", []).extend(_ints(words[1], f"step '{raw}'"))
            elif verb == "unlearn" and len(words) == 3 and words[1].lower() == "classes":
                fields.setdefault("unlearn_classes", []).extend(
                    _ints(words[2], f"step '{raw}'"))
            elif verb == "unlearn" and len(words) == 3 and words[1].lower() == "ids":
                fields["ids_file"] = words[2].strip()
            else:
                raise ClulError(f"bad stream step '{part}' (expected 'learn K', 'unlearn J[,J]',"
                                " 'unlearn classes C[,C]' or 'unlearn ids FILE', joined by "
                                "'+', steps separated by ';')")
        steps += [Step(learn=k) for k in expand] if expand else [Step(**fields)]
    if not steps:
        raise ClulError("the stream is empty")
    return steps


def _as_list(value: Any, where: str) -> list[int]:
    if isinstance(value, bool):
        raise ClulError(f"{where}: expected task numbers, got {value!r}")
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        return _ints(value, where)
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                       for v in value):
        return list(value)
    raise ClulError(f"{where}: expected a number or a list of numbers, got {value!r}")


def parse_items(items: Any) -> list[Step]:
    """A YAML ``stream:`` list -> steps (text items use :func:`parse_text`)."""
    if isinstance(items, str):
        return parse_text(items)
    if not isinstance(items, list) or not items:
        raise ClulError("stream must be a non-empty list of steps")
    steps: list[Step] = []
    for i, item in enumerate(items, 1):
        where = f"stream step {i}"
        if isinstance(item, str):
            steps += parse_text(item)
            continue
        if not isinstance(item, dict) or not item or set(item) - {"learn", "unlearn"}:
            raise ClulError(f"{where}: expected a mapping with 'learn' and/or 'unlearn', got "
                            f"{item!r}")
        fields: dict[str, Any] = {}
        if "learn" in item:
            learn = _as_list(item["learn"], where)
            if len(learn) > 1 and "unlearn" not in item:
                steps += [Step(learn=k) for k in learn]  # learn: 1-4 is four steps
                continue
            if len(learn) != 1:
                raise ClulError(f"{where}: one task is learned per step, got {learn}")
            fields["learn"] = learn[0]
        u = item.get("unlearn")
        if isinstance(u, dict):
            if set(u) - {"tasks", "classes", "ids"} or not u:
                raise ClulError(f"{where}: unlearn takes tasks, classes or ids, got {u!r}")
            if "tasks" in u:
                fields["unlearn_tasks"] = _as_list(u["tasks"], where)
            if "classes" in u:
                fields["unlearn_classes"] = _as_list(u["classes"], where)
            if "ids" in u:
                fields["ids_file"] = str(u["ids"])
        elif u is not None:
            fields["unlearn_tasks"] = _as_list(u, where)
        steps.append(Step(**fields))
    return steps


def resolve_ids(steps: list[Step]) -> list[Step]:
    """Each step with its ids file read (one id a line; a repeat or a bad line refused)."""
    return [s.model_copy(update={"ids": read_ids_file(s.ids_file).tolist()})
            if s.ids_file and not s.ids else s for s in steps]


def check_stream(steps: list[Step], bench: Benchmark) -> None:
    """Refuse an impossible stream in one line, before any work starts."""
    if not steps:
        raise ClulError("the stream is empty")
    learned: set[int] = set()
    gone_tasks: set[int] = set()
    gone_classes: set[int] = set()
    gone_ids: set[int] = set()
    train = ~bench.test
    for i, s in enumerate(steps, 1):
        where = f"stream step {i} ({s.text() or 'empty'})"
        if s.learn is None and not s.forgets:
            raise ClulError(f"stream step {i} neither learns nor unlearns")
        for k in [*s.unlearn_tasks] + ([s.learn] if s.learn is not None else []):
            if not 1 <= k <= bench.num_tasks:
                raise ClulError(f"{where}: unknown task {k} ({bench.name} has tasks "
                                f"1..{bench.num_tasks})")
        for j in s.unlearn_tasks:
            if j not in learned:
                raise ClulError(f"{where}: task {j} was never learned")
            if j in gone_tasks:
                raise ClulError(f"{where}: task {j} is already unlearned")
        kept = learned - gone_tasks - set(s.unlearn_tasks)
        for c in s.unlearn_classes:
            if not 0 <= c < bench.num_classes:
                raise ClulError(f"{where}: unknown class {c} (classes 0..{bench.num_classes - 1})")
            task = next(k for k, cs in enumerate(bench.classes, 1) if c in cs)
            if task not in kept or c in gone_classes:
                raise ClulError(f"{where}: class {c} is not a learned, kept class")
        if s.ids:
            ids = np.asarray(s.ids, dtype=np.int64)
            ok = train & np.isin(bench.rows.task, list(kept))
            ok &= ~np.isin(bench.rows.y.numpy(), list(gone_classes | set(s.unlearn_classes)))
            known = np.isin(ids, bench.rows.ids[ok]) & ~np.isin(ids, list(gone_ids))
            if not known.all():
                bad = ids[~known]
                raise ClulError(f"{where}: {len(bad)} id(s) are no training row of a learned, "
                                f"kept task (e.g. {int(bad[0])})")
        if s.learn is not None:
            if s.learn in s.unlearn_tasks:
                raise ClulError(f"{where}: task {s.learn} is learned and unlearned at once")
            if s.learn in learned:
                raise ClulError(f"{where}: task {s.learn} is learned twice")
        gone_tasks |= set(s.unlearn_tasks)
        gone_classes |= set(s.unlearn_classes)
        gone_ids |= set(s.ids)
        if s.learn is not None:
            learned.add(s.learn)
