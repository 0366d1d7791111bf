"""What every command shares: the consoles, the one-line refusal (``error: …``, exit 2),
``--json`` output, progress bars, the help width, and the options used by more than one
command, each declared once."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from ..errors import ClulError

out = Console()
err = Console(stderr=True)

T = TypeVar("T")

def checked_root(root: str, option: str = "--root") -> str:
    """``root`` unchanged, unless it is a local path that cannot be a folder: the path, or
    the nearest of its parents that exists, is a file (or a broken link). Refused in one line
    before anything is written (the store would fail with FileExistsError or
    NotADirectoryError halfway). URIs (``s3://``, ``gs://``, …) pass; ``file://`` is checked
    as the local path it names."""
    local = root
    if "://" in root:
        if not root.startswith("file://"):
            return root
        from urllib.parse import unquote, urlparse

        local = unquote(urlparse(root).path)
    p = Path(local)
    for q in (p, *p.parents):
        if q.is_dir():
            return root
        if q.is_symlink() and not q.exists():
            what = f"{option} {root} is a broken link" if q == p else \
                f"{option} {root}: {q} is a broken link"
            raise ClulError(f"{what}, not a folder")
        if q.exists():
            what = f"{option} {root} is a file" if q == p else f"{option} {root}: {q} is a file"
            raise ClulError(f"{what}, not a folder")
    return root


def root_option(value: str | None) -> str | None:
    """The ``--root`` option's check, run as its value is parsed (before the command's body,
    so before Ray starts or anything is written)."""
    if value is None:
        return value
    try:
        return probed_root(value)
    except ClulError as e:
        fail(str(e))


def probed_root(root: str, option: str = "--root") -> str:
    """:func:`checked_root`, and an ``s3://`` root's bucket probed: missing, refused
    credentials or an endpoint that is down is one line before Ray starts."""
    root = checked_root(root, option)
    from ..storage import s3

    if s3.is_s3(root):
        s3.probe(root)
    return root


Root = Annotated[str, typer.Option("--root", help="storage root: a folder or a pyarrow.fs URI",
                                   callback=root_option)]
Address = Annotated[str | None, typer.Option(
    "--address", envvar="RAY_ADDRESS", help="Ray cluster address (default: start local Ray)")]
AsJson = Annotated[bool, typer.Option("--json", help="print one JSON object")]
Verbose = Annotated[bool, typer.Option(
    "--verbose", help="let Ray's own log lines and warnings through to the terminal")]
Dataset = Annotated[str | None, typer.Option(
    help="digits | synthetic:N | parquet:PATH | cifar10 | cifar100 | mnist | fashion_mnist | "
         "tofu-synth:N | text:PATH")]
DataDir = Annotated[str | None, typer.Option(help="folder of torchvision datasets")]
Model = Annotated[str | None, typer.Option(help="mlp, cnn, resnet18, gpt-tiny, module:fn")]
Forget = Annotated[str, typer.Option(
    help="class:C | random:P (0.1 or 10%) | ids:FILE | people:P or bias (text)")]


HELP_WIDTH = 110


def help_width() -> int | None:
    """The width typer's rich help is drawn at. Typer sizes its help console from
    ``TERMINAL_WIDTH`` (read once, into ``typer.rich_utils.MAX_WIDTH``), else rich asks
    ``COLUMNS`` and then the terminal, and falls back to 80 columns, where option names are
    cut. So: a width the user set wins, a terminal gets its own width, and help written to
    a pipe or a file (``clul-ray train --help | less``) gets :data:`HELP_WIDTH`."""
    from typer import rich_utils

    if rich_utils.MAX_WIDTH is not None:
        return rich_utils.MAX_WIDTH
    if os.environ.get("COLUMNS", "").isdigit() or sys.stdout.isatty():
        return None
    return HELP_WIDTH


class _HelpWidth:
    """Draws ``--help`` at :func:`help_width` (typer's rich help has no per-app setting:
    ``context_settings`` ``max_content_width`` / ``terminal_width`` only reach click's plain
    formatter, so the width typer reads is set for the time of the call)."""

    def format_help(self, ctx, formatter) -> None:
        from typer import rich_utils

        saved = rich_utils.MAX_WIDTH
        rich_utils.MAX_WIDTH = help_width()
        try:
            super().format_help(ctx, formatter)  # type: ignore[misc]
        finally:
            rich_utils.MAX_WIDTH = saved


class HelpGroup(_HelpWidth, TyperGroup):
    """The ``clul-ray`` group, with :func:`help_width` help."""


class HelpCommand(_HelpWidth, TyperCommand):
    """A ``clul-ray`` command, with :func:`help_width` help."""


def parse_model_args(items: list[str]) -> dict[str, Any]:
    """``["hidden=64", "dropout=0.2"]`` -> ``{"hidden": 64, "dropout": 0.2}``."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ClulError(f"bad key=value '{item}' (expected key=value, e.g. hidden=64)")
        try:
            parsed[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key.strip()] = value
    return parsed


def fail(msg: str) -> NoReturn:
    err.print(f"[red]error:[/red] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def run(fn: Callable[[], T]) -> T:
    """Run a command body, turning ClulError into a one-line error and exit code 2; its
    phases (:mod:`clul_ray.phases`) are measured from the process's start."""
    from ..phases import measuring, process_seconds

    with measuring(process_seconds() or 0.0):
        try:
            return fn()
        except ClulError as e:
            fail(str(e))


def verbose_ray(verbose: bool) -> None:
    """``--verbose``: let Ray's own warnings through. Call before anything starts Ray."""
    if verbose:
        from ..runtime import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"


def open_root(root: str, address: str | None = None, progress=None, writer: bool = False):
    """The pipeline on a root (imported here: ``--help`` loads neither Ray nor torch); a
    ``writer`` reads through a caching store; MLflow's mirror is a detached process unless
    ``CLUL_RAY_LINEAGE=inline``. A file as a local root is refused (:func:`checked_root`)."""
    from ..phases import phase

    with phase("imports"):
        from ..api import open_pipeline
        from ..lineage.tracking import inline
        from ..storage.cache import CachingStore

    path = probed_root(root)
    return open_pipeline(path, address=address, progress=progress,
                         store=CachingStore(path) if writer else None,
                         lineage_background=not inline())


class RichProgress:
    """Pipeline progress callback -> rich progress bars on stderr."""

    def __init__(self, enabled: bool = True):
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=err, disable=not enabled,
                            transient=False)
        self.tasks: dict[str, int] = {}

    def __call__(self, desc: str, done: int, total: int) -> None:
        if desc not in self.tasks:
            self.tasks[desc] = self.bar.add_task(desc, total=max(total, 1))
        self.bar.update(self.tasks[desc], completed=done if total else 1, total=max(total, 1))

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()


def with_progress(work: Callable[[RichProgress], T], enabled: bool = True) -> T:
    """``work(progress)`` with progress bars on stderr while it runs (none when not
    ``enabled``)."""
    with RichProgress(enabled) as prog:
        return work(prog)


def emit_progress(work: Callable[[RichProgress], dict[str, Any]], as_json: bool,
                  printer: Callable[[dict], None] | None = None) -> None:
    """A command's work with progress bars (none with ``--json``), then its result
    :func:`emit`-ted."""
    emit(with_progress(work, not as_json), as_json, printer)


def emit(result: dict[str, Any], as_json: bool,
         printer: Callable[[dict], None] | None = None) -> None:
    """One JSON object with --json, else a table (``show``, or the command's own printer),
    once the command has :func:`finish`-ed (with --json: its ``phases``)."""
    result = finish(result, as_json)
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    else:
        (printer or show)(result)


def print_outputs(out, result: dict[str, Any], runs: str) -> None:
    """A run's files, then its MLflow record (``runs``: what its child runs are)."""
    for k, p in result["files"].items():
        out.print(f"{k}: {p}", highlight=False)
    if result.get("mlflow"):
        m = result["mlflow"]
        out.print(f"MLflow: {m['tracking_uri']} run {m['parent_run']} "
                  f"({m['child_runs']} {runs} runs)", highlight=False)


def macro_scores(r: dict) -> str:
    """``, macro P/R/F1 a/b/c`` of a classifier root's ensemble ("" when not evaluated)."""
    keys = ("ensemble_precision", "ensemble_recall", "ensemble_f1")
    if any(r.get(k) is None for k in keys):
        return ""
    return ", macro P/R/F1 " + "/".join(f"{r[k]:.4f}" for k in keys)


def show(r: dict) -> None:
    """A pipeline result (train, delete, evaluate, status, unlearn) as text and a table."""
    lm = "ensemble_perplexity" in r  # a text root: perplexity, not accuracy
    acc = r.get("ensemble_perplexity" if lm else "ensemble_accuracy")
    out.print(f"[bold]{r['root']}[/bold]  version {r['version']} ({r.get('operation')}), "
              f"{r['shards']} shards x {r['slices']} slices, {r.get('samples')} training rows, "
              f"ensemble {'perplexity' if lm else 'accuracy'} {acc:.4f}{macro_scores(r)}"
              if acc is not None else f"[bold]{r['root']}[/bold]  version {r['version']}",
              highlight=False)
    if r.get("per_shard"):
        t = Table("shard", "rows", "perplexity" if lm else "accuracy", "retrained from",
                  "model sha256", "node")
        for s in r["per_shard"]:
            a = s["perplexity" if lm else "accuracy"]
            t.add_row(str(s["shard"]), str(s["samples"]), f"{a:.4f}" if a is not None else "-",
                      "-" if s["retrained_from"] is None else f"slice {s['retrained_from']}",
                      s["model_sha256"][:12], str(s["node_id"])[:12])
        out.print(t)
    extra = {k: r[k] for k in ("request_id", "added", "added_test", "new_slice",
                               "rows_per_shard", "deleted", "already_deleted", "affected",
                               "requests", "deleted_ids", "added_ids", "checkpoints")
             if k in r}
    for k, v in extra.items():
        out.print(f"{k}: {v}", highlight=False)
    for problem in r.get("problems", []):
        out.print(f"[yellow]problem:[/yellow] {problem}", highlight=False)
    if r.get("locked_by"):
        from ..storage.lock import describe

        out.print(f"locked by {describe(r['locked_by'])}", highlight=False)
    if r.get("wall_seconds"):
        out.print("seconds: " + ", ".join(f"{k}={v:.2f}" for k, v in r["wall_seconds"].items()),
                  highlight=False)


def finish(result: Any, as_json: bool) -> Any:
    """Stop the local Ray this command started; with --json, add its ``phases``."""
    from ..phases import current
    from ..runtime import stop_started_ray

    if (p := current()) is not None:
        stop_started_ray(p)
        if as_json and isinstance(result, dict) and "phases" not in result:
            result = {**result, **p.output()}
    return result
