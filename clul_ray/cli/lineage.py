"""``clul-ray lineage``, ``verify`` and ``purge``: the version tree, what a storage root
still holds of deleted ids, and the removal of tainted artifacts."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from .common import (
    Address,
    AsJson,
    Root,
    Verbose,
    emit,
    emit_progress,
    err,
    open_root,
    out,
    run,
    verbose_ray,
)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _acc(a: float | None) -> str:
    return "-" if a is None else f"{a:.4f}"


def show_tree(r: dict) -> None:
    text = any(v.get("ensemble_perplexity") is not None for v in r["versions"])
    t = Table("version", "parent", "operation", "request", "perplexity" if text else "accuracy",
              *(() if text else ("macro F1",)), "tainted", "mlflow run", "registry",
              title=f"lineage of {r['root']}")
    for v in r["versions"]:
        reg = "-" if v["registry_version"] is None else str(v["registry_version"])
        if v.get("registry_current"):
            reg += " @current"
        taint = f"by {v['tainted_by']}" if v["tainted"] else "no"
        if v.get("purged"):
            taint += " (purged)"
        t.add_row(str(v["version"]) + (" *" if v["current"] else ""),
                  "-" if v["parent"] is None else str(v["parent"]), v["operation"],
                  v["request_id"] or "-",
                  _acc(v["ensemble_perplexity" if text else "ensemble_accuracy"]),
                  *(() if text else (_acc(v.get("ensemble_f1")),)), taint,
                  (v["run_id"] or "-")[:12], reg)
    out.print(t)
    if r["tracking_uri"]:
        out.print(f"MLflow: {r['tracking_uri']}  experiment {r['experiment']}  "
                  f"model {r['registered_model']}", highlight=False)
    if r["mlflow_error"]:
        out.print(f"MLflow: {r['mlflow_error']}", highlight=False)


def show_sample(r: dict) -> None:
    where = (f"shard {r['location']['shard']} slice {r['location']['slice']}"
             if r["location"] else "-")
    out.print(f"id {r['sample_id']} ({r['split']} split): "
              f"{'present' if r['present'] else 'removed'}, {where}", highlight=False)
    trained = ", ".join(map(str, r["trained_versions"])) or "none"
    out.print(f"versions trained with it: {trained}", highlight=False)
    out.print(f"current version {r['current_version']}: "
              f"{'clean of it' if r['current_clean'] else 'trained with it'}", highlight=False)
    rm = r["removed_by"]
    if rm:
        out.print(f"removed by request {rm['request_id']} ({rm['state']}), version "
                  f"{rm['version'] if rm['version'] is not None else '-'}, committed "
                  f"{_when(rm['committed_at'])}; certificate {rm['certificate'] or '-'}",
                  highlight=False)


def show_verify(r: dict) -> None:
    c = r["checked"]
    out.print(f"[bold]{r['root']}[/bold] version {r['version']}: scanned {c['data_files']} data "
              f"files, {c['index_files']} index files, {c['checkpoints']} checkpoints of "
              f"{c['shards']} shards for {r['ids']} deleted ids of {len(r['requests'])} "
              f"requests: {'[green]clean[/green]' if r['ok'] else '[red]residue found[/red]'}",
              highlight=False)
    if r["findings"]:
        t = Table("kind", "path", "finding")
        for f in r["findings"]:
            t.add_row(f["kind"], f["path"], f["message"])
        out.print(t)


def show_purge(r: dict) -> None:
    out.print(f"[bold]{r['root']}[/bold]: tainted versions "
              f"{', '.join(map(str, r['tainted_versions'])) or 'none'}; purged "
              f"{', '.join(map(str, r['purged_versions'])) or 'nothing new'}", highlight=False)
    for a in r["artifacts_removed"]:
        out.print(f"removed MLflow artifact {a}", highlight=False)
    for c in r["checkpoints_removed"]:
        out.print(f"removed checkpoint {c}", highlight=False)
    out.print(f"kept: {r['kept']}", highlight=False)


def lineage(
    root: Root = "runs/default",
    sample_id: Annotated[int | None, typer.Option(
        "--sample-id", help="which versions were trained with this id, and who removed it")]
    = None,
    sync: Annotated[bool, typer.Option(
        "--sync", help="first log to MLflow any version it is missing")] = False,
    as_json: AsJson = False,
) -> None:
    """The version tree, or with --sample-id which versions saw an id and who removed it."""
    from ..lineage import history
    from ..lineage.report import lineage as version_tree
    from ..storage.store import Store

    def body() -> None:
        store = Store(root)
        if sample_id is not None:
            emit(history.sample(store, sample_id), as_json, show_sample)
        else:
            emit(version_tree(store, sync=sync), as_json, show_tree)

    run(body)


def verify(
    root: Root = "runs/default",
    request: Annotated[str | None, typer.Option(
        "--request", help="one committed request id (default: all committed requests)")]
    = None,
    as_json: AsJson = False,
) -> None:
    """Re-scan storage: deleted ids, partitions against the index, every served checkpoint
    (key chain, recorded key/shard/slice/rows, file digest); exit 1 on any finding."""
    from ..phases import phase
    from ..sisa.records.certificate import verify as scan
    from ..storage.store import Store

    def body() -> dict:
        with phase("scan"):
            result = scan(Store(root), request)
        emit(result, as_json, show_verify)
        return result

    result = run(body)
    if not result["ok"]:
        shown = "; ".join(f"{f['path']}: {f['message']}" for f in result["findings"][:3])
        more = len(result["findings"]) - 3
        err.print(f"[red]error:[/red] verification of {root} failed: {shown}"
                  + (f" (and {more} more)" if more > 0 else ""),
                  highlight=False, soft_wrap=True)
        sys.stderr.flush()
        raise typer.Exit(1)


def repair(root: Root = "runs/default", address: Address = None, as_json: AsJson = False,
           verbose: Verbose = False) -> None:
    """Rebuild what can be rebuilt (index, checkpoints, pending requests); refuse lost rows."""

    def body() -> None:
        verbose_ray(verbose)
        emit_progress(lambda prog: open_root(root, address, prog).repair(), as_json, show_repair)

    run(body)


def show_repair(r: dict) -> None:
    out.print(f"[bold]{r['root']}[/bold]: version {r['version']}", highlight=False)
    for a in r["actions"]:
        out.print(f"- {a}", highlight=False)


def purge(root: Root = "runs/default", as_json: AsJson = False) -> None:
    """Delete MLflow artifacts and stray checkpoints of tainted versions; keep the trail."""
    from ..lineage.purge import purge as do_purge
    from ..storage.store import Store

    run(lambda: emit(do_purge(Store(root)), as_json, show_purge))
