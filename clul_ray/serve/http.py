"""How the service's HTTP handlers answer a failure: 503 when no shard can serve (or the
board cannot be reached), 400 for bad input, in one line."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from fastapi import HTTPException

from ..errors import ClulError, first_line
from .state import NoServableShard


@contextlib.contextmanager
def answered(*unavailable: type[Exception],
             bad_input: tuple[type[Exception], ...] = (ClulError,)) -> Iterator[None]:
    """Turn ``NoServableShard`` (and ``unavailable``) into 503, ``bad_input`` into 400."""
    try:
        yield
    except (NoServableShard, *unavailable) as e:
        raise HTTPException(503, str(e)) from None
    except bad_input as e:
        raise HTTPException(400, first_line(e)) from None
