"""Lists of row ids given by hand: ``--ids 1,2,3``, ``--ids-file FILE`` or ``ids:FILE``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import ClulError

# ASCII only: Python's int() also takes full-width and other Unicode digits ('２９' -> 29),
# underscores ('5_8' -> 58) and surrounding whitespace, none of which is an id a user typed.
_ID = re.compile(r"[+-]?[0-9]+", re.ASCII)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# what may surround an id (ASCII whitespace only: U+3000 or U+0085 around a number is refused)
_BLANK = " \t\r\n\f\v"
_SHOWN = 40  # longest token quoted whole in a message


def _shown(tok: str) -> str:
    """``tok`` quoted for a one-line message (escapes kept, a long token cut)."""
    return repr(tok) if len(tok) <= _SHOWN else repr(tok[:_SHOWN]) + f"... ({len(tok)} chars)"


def parse_id_tokens(tokens: Iterable[tuple[int, str]], where: str, unit: str) -> list[int]:
    """Numbered tokens -> ints; refuses (naming ``unit`` and its number) a token that is not
    an ASCII decimal integer, one outside the int64 range, and an empty list."""
    out: list[int] = []
    for i, tok in tokens:
        if not _ID.fullmatch(tok):
            raise ClulError(f"{where}: {unit} {i} is not an id (ASCII decimal int64): "
                            f"{_shown(tok)}")
        # int64 has at most 19 digits; more are refused before int(), which refuses over
        # 4300 digits with a ValueError of its own
        long = len(tok.lstrip("+-").lstrip("0")) > 19
        value = 0 if long else int(tok)
        if long or not INT64_MIN <= value <= INT64_MAX:
            raise ClulError(f"{where}: {unit} {i} is outside the int64 range: {_shown(tok)}")
        out.append(value)
    if not out:
        raise ClulError(f"{where}: no ids given")
    return out


def read_id_lines(path: str | Path) -> list[int]:
    """The ids of a UTF-8 text file, one per line; blank lines are skipped but keep their
    numbers. A directory, a missing file and a file that is not UTF-8 text are refused."""
    p = Path(path)
    if p.is_dir():
        raise ClulError(f"ids file {path} is a directory, not a file of ids")
    if not p.is_file():
        raise ClulError(f"ids file not found: {path}")
    try:
        text = p.read_bytes().decode("utf-8-sig")  # a leading BOM (Notepad's) is no id
    except UnicodeDecodeError:
        raise ClulError(f"ids file {path} is not a text file of ids (not UTF-8)") from None
    except OSError as e:
        raise ClulError(f"cannot read ids file {path}: {e.strerror or e}") from None
    # numbered as an editor numbers them: by "\n" (a trailing "\r" is blank around the id)
    lines = [(i, ln.strip(_BLANK)) for i, ln in enumerate(text.split("\n"), 1)
             if ln.strip(_BLANK)]
    return parse_id_tokens(lines, str(path), "line")


def parse_ids(ids: str | None, ids_file: Path | None) -> list[int]:
    """The ids of exactly one of ``--ids`` (comma-separated) and ``--ids-file``."""
    if (ids is None) == (ids_file is None):
        raise ClulError("give exactly one of --ids or --ids-file")
    if ids is None:
        return read_id_lines(ids_file)
    parts = [p.strip(_BLANK) for p in ids.split(",") if p.strip(_BLANK)]
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
