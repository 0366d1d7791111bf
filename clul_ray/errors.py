"""The one exception type users see (a one-line message naming the problem), and the
helpers that turn any other exception into such a line."""

from __future__ import annotations


class ClulError(Exception):
    """Bad input or a state that refuses the operation. The message is one line."""


class MissingGroupColumn(ClulError):
    """A dataset without the group column asked for (``column``); ``has_columns`` is False
    for a source with no columns of its own to group by (digits)."""

    def __init__(self, message: str, column: str, has_columns: bool = True):
        super().__init__(message)
        self.column, self.has_columns = column, has_columns


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def last_line(e: BaseException) -> str:
    """The last line of an exception's message: for a Ray task error (a remote traceback),
    the line that names the remote exception."""
    s = str(e).strip()
    return s.splitlines()[-1] if s else type(e).__name__
