"""The ``clul-ray`` command line (:mod:`.commands`: the typer app and its commands).

:func:`main` is the entry point. A command is a short-lived process: it collects no
garbage while the package and its libraries load (a collection then walks every object
they made, several times over), and freezes what they made out of later collections; and
it builds only the click command it runs (:func:`.commands.app_for`).
"""

from __future__ import annotations

import gc
import sys


def __getattr__(name: str):
    if name == "app":  # (``from clul_ray.cli import app``: the typer app, for tests)
        from .commands import app

        return app
    raise AttributeError(f"module 'clul_ray.cli' has no attribute {name!r}")


def main() -> None:
    gc.disable()
    try:
        from .commands import run
    finally:
        gc.enable()
        gc.freeze()
    run(sys.argv[1:])


__all__ = ["app", "main"]
