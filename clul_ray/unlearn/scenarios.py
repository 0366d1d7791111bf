"""Forget scenarios: which training rows to forget.

Specs:
- ``class:C`` (or ``class:C1,C2``): every training row of those classes. The test rows of
  those classes are left out of D_t, so TA is accuracy on the remaining classes.
- ``random:P``: a seeded random fraction P (0 < P < 1) of the training rows,
  exactly round(P·n) of them.
- ``ids:FILE``: the ids listed in FILE, one per line (blank lines ignored, no id twice);
  every id must be a training row of the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.ids import read_ids_file
from ..errors import ClulError
from ..hashing import derive_seed

SALT_RANDOM_FORGET = 0x5CE


@dataclass(frozen=True)
class Scenario:
    kind: str
    classes: tuple[int, ...] = ()
    fraction: float = 0.0
    path: str = ""

    @property
    def spec(self) -> str:
        if self.kind == "class":
            return "class:" + ",".join(str(c) for c in self.classes)
        if self.kind == "random":
            return f"random:{self.fraction:g}"
        return f"ids:{self.path}"


def parse_scenario(spec: str) -> Scenario:
    kind, sep, arg = spec.partition(":")
    kind = kind.strip().lower()
    arg = arg.strip()
    if not sep or not arg:
        raise ClulError(f"bad forget scenario '{spec}' (expected class:C, random:P or ids:FILE)")
    if kind == "class":
        try:
            classes = tuple(sorted({int(c) for c in arg.split(",") if c.strip()}))
        except ValueError:
            raise ClulError(f"class scenario needs integer classes: 'class:3', got "
                            f"'{spec}'") from None
        if not classes:
            raise ClulError(f"class scenario names no class: '{spec}'")
        return Scenario("class", classes=classes)
    if kind == "random":
        try:  # a fraction, or a percentage: random:0.1 = random:10%
            p = float(arg[:-1]) / 100 if arg.endswith("%") else float(arg)
        except ValueError:
            raise ClulError(f"random scenario needs a fraction: 'random:0.1' or 'random:10%', got "
                            f"'{spec}'") from None
        if not 0.0 < p < 1.0:
            raise ClulError(f"random scenario fraction must be in (0, 1), got {p}")
        return Scenario("random", fraction=p)
    if kind == "ids":
        return Scenario("ids", path=arg)
    raise ClulError(f"unknown forget scenario '{kind}' in '{spec}' "
                    "(expected class:C, random:P or ids:FILE)")


@dataclass
class ForgetSplit:
    """Boolean masks: ``forget`` over the training rows, ``test_keep`` over the test rows."""

    scenario: Scenario
    forget: np.ndarray
    test_keep: np.ndarray


def split_forget(scenario: Scenario, train_ids: np.ndarray, train_labels: np.ndarray,
                 test_ids: np.ndarray, test_labels: np.ndarray, num_classes: int,
                 seed: int) -> ForgetSplit:
    """Which training rows to forget, and which test rows form D_t."""
    n = len(train_ids)
    test_keep = np.ones(len(test_ids), dtype=bool)
    if scenario.kind == "class":
        bad = [c for c in scenario.classes if not 0 <= c < num_classes]
        if bad:
            raise ClulError(f"class {bad[0]} is outside [0, {num_classes})")
        forget = np.isin(train_labels, scenario.classes)
        test_keep = ~np.isin(test_labels, scenario.classes)
        if not forget.any():
            raise ClulError(f"no training rows of class(es) {list(scenario.classes)}")
        if not test_keep.any():
            raise ClulError("no test rows left outside the forgotten classes")
    elif scenario.kind == "random":
        k = round(scenario.fraction * n)
        if k == 0:
            raise ClulError(f"random:{scenario.fraction:g} of {n} training rows is no row")
        rng = np.random.default_rng(derive_seed(seed, SALT_RANDOM_FORGET))
        forget = np.zeros(n, dtype=bool)
        forget[rng.choice(n, k, replace=False)] = True
    else:
        ids = read_ids_file(scenario.path)
        forget = np.isin(train_ids, ids)
        missing = ids[~np.isin(ids, train_ids)]
        if len(missing):
            held = missing[np.isin(missing, test_ids)]
            shown = ", ".join(str(int(i)) for i in missing[:5])
            why = (f" ({len(held)} of them are held-out test rows, never trained on)"
                   if len(held) else "")
            raise ClulError(f"{len(missing)} id(s) in {scenario.path} are not training rows "
                            f"of the dataset (e.g. {shown}){why}")
    if forget.all():
        raise ClulError(f"scenario {scenario.spec} forgets every training row; nothing would "
                        "remain to retrain on")
    return ForgetSplit(scenario, forget, test_keep)
