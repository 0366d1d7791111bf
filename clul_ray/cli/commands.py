"""The ``clul-ray`` typer app: each command lives in the module of its group
(``pipeline``, ``quickstart``, ``lineage``, ``unlearn``, ``tune``, ``feature``, …) and is
added here; :func:`run` runs it (the entry point is :func:`clul_ray.cli.main`).

The command modules import what they share from :mod:`.common` and nothing from this
module, so there is no import cycle and no registration order to respect.
"""

from __future__ import annotations

import os
import sys
import warnings

import typer

from . import (
    audit,
    continual,
    feature,
    lineage,
    pipeline,
    quickstart,
    serve,
    text,
    tune,
    unlearn,
    workers,
)
from .common import HelpCommand, HelpGroup

HELP = "Exact (SISA) and approximate unlearning on Ray."
app = typer.Typer(cls=HelpGroup, add_completion=False, no_args_is_help=True, help=HELP)

for _name, _command in [
    ("train", pipeline.train),
    ("add", pipeline.add),
    ("delete", pipeline.delete),
    ("evaluate", pipeline.evaluate),
    ("status", pipeline.status),
    ("unlock", pipeline.unlock),
    ("quickstart", quickstart.quickstart),
    ("lineage", lineage.lineage),
    ("verify", lineage.verify),
    ("purge", lineage.purge),
    ("repair", lineage.repair),
    ("compare", unlearn.compare),
    ("unlearn", unlearn.unlearn),
    ("tune", tune.tune),
    ("audit", audit.audit),
    ("continual", continual.continual),
    ("serve", serve.serve),
    ("workers", workers.workers),
    ("feature-unlearn", feature.feature_unlearn),
    ("tokenizer", text.tokenizer),
    ("lm-base", text.lm_base),
]:
    app.command(_name, cls=HelpCommand)(_command)


def _one_line(message, category, filename, lineno, line=None) -> str:
    """A warning of clul_ray as ``warning: <message>`` (its own words, one line); others as
    Python formats them."""
    if category.__module__.startswith("clul_ray."):
        return f"warning: {message}\n"
    return _python_format(message, category, filename, lineno, line)


_python_format = warnings.formatwarning


def run(argv: list[str]) -> None:
    """Run the command ``argv`` names (``sys.argv[1:]``) and end the process."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    warnings.formatwarning = _one_line
    try:
        app_for(argv)()
    except SystemExit as e:
        _exit(e.code)
    _exit(0)


def app_for(argv: list[str]) -> typer.Typer:
    """The app that runs ``argv``: where its first word names a command, an app of that
    command alone — the same group, options and help (typer builds the click command of
    every registered command, from its signature, each time an app runs: those of the
    commands not run are not built); else (``--help``, no command, a word that names none)
    the whole app."""
    name = argv[0] if argv and not argv[0].startswith("-") else None
    chosen = [c for c in app.registered_commands if c.name == name]
    if not chosen:
        return app
    one = typer.Typer(cls=HelpGroup, add_completion=False, no_args_is_help=True, help=HELP)
    one.registered_commands = chosen
    one.callback()(_group)  # (a group, not a one-command app: the command's name is read)
    return one


def _group() -> None:
    return None  # (the group's callback: nothing to do before the command)


def _exit(code) -> None:
    """End the process. A command that started no Ray, or only joined a cluster
    (``--address``), skips the interpreter's teardown of torch, MLflow and scikit-learn
    (benchmarks/RESULTS.md) once its output is flushed and its files are closed; with a
    local Ray it started, Ray's own exit hooks must run (they stop the local instance)."""
    from ..runtime import connected_to_cluster
    from ..sisa.compute.site import ray_started

    if ray_started() and not connected_to_cluster():
        sys.exit(code)
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code or 0)


__all__ = ["app", "app_for", "run"]
