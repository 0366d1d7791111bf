"""Lists of row ids given by hand: ``--ids 1,2,3``, ``--ids-file FILE`` or ``ids:FILE``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import ClulError


def parse_id_tokens(tokens: Iterable[tuple[int, str]], where: str, unit: str) -> list[int]:
    """Numbered tokens -> ints; refuses a non-integer (naming ``unit`` and its number) and an
    empty list."""
    out: list[int] = []
    for i, tok in tokens:
        try:
            out.append(int(tok))
        except ValueError:
            raise ClulError(f"{where}: {unit} {i} is not an integer id: {tok!r}") from None
    if not out:
        raise ClulError(f"{where}: no ids given")
    return out


def read_id_lines(path: str | Path) -> list[int]:
    """The ids of a file, one per line; blank lines are skipped but keep their numbers."""
    p = Path(path)
    if not p.is_file():
        raise ClulError(f"ids file not found: {path}")
    lines = [(i, ln.strip()) for i, ln in enumerate(p.read_text().splitlines(), 1)
             if ln.strip()]
    return parse_id_tokens(lines, str(path), "line")


def parse_ids(ids: str | None, ids_file: Path | None) -> list[int]:
    """The ids of exactly one of ``--ids`` (comma-separated) and ``--ids-file``."""
    if (ids is None) == (ids_file is None):
        raise ClulError("give exactly one of --ids or --ids-file")
    if ids is None:
        return read_id_lines(ids_file)
    parts = [p.strip() for p in ids.split(",") if p.strip()]
    return parse_id_tokens(enumerate(parts, 1), "--ids", "item")


def repeated_ids(ids: np.ndarray, most: int = 5) -> str:
    """The smallest ``most`` ids that occur more than once, comma-separated; "" if none."""
    uniq, counts = np.unique(ids, return_counts=True)
    return ", ".join(str(int(i)) for i in uniq[counts > 1][:most])


def read_ids_file(path: str) -> np.ndarray:
    """The ids of a file as int64, each at most once (a repeat is refused)."""
    arr = np.asarray(read_id_lines(path), dtype=np.int64)
    rep = repeated_ids(arr)
    if rep:
        raise ClulError(f"{path}: repeated ids ({rep})")
    return arr
