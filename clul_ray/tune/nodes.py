"""A sweep on a cluster of several nodes: where its results land, what its trials share
through the object store, and which node ran each trial.

- **Where.** ``--out`` is a local folder or an object-store URI (``s3://...``). Tune's
  ``storage_path`` is ``OUT/ray_results``; a local ``OUT`` on a multi-node cluster must be a
  mount every node shares (``--shared-storage``), else the sweep is refused before anything
  is written (trials on the other nodes would write their results to their own disks). With
  a URI, the sweep's files (``trials.csv``, ``best.yaml`` ...) are written to a local staging
  folder and copied under the URI at the end (pyarrow); Tune writes there itself.
- **What travels.** Each bulky value the trials share is put into the object store once
  (:class:`Puts`), and the trials get its ObjectRef; the sweep's JSON names what was put, its
  size in the store, and the nodes holding a copy when the trials are done (a copy on a node
  other than the driver's is one transfer), with the pickled size of the trainable Tune ships
  to each trial (small: refs, not copies).
- **Which node.** Every result a trial reports carries ``node_id`` (:func:`with_node`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ClulError
from ..runtime import check_storage_root, node_id


def is_uri(out: str | Path) -> bool:
    return "://" in str(out)


@dataclass
class SweepOut:
    """``target``: what the user gave; ``local``: where the sweep's files are written;
    ``storage_path``: Tune's."""

    target: str
    local: Path
    storage_path: str

    @property
    def remote(self) -> bool:
        return is_uri(self.target)

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        """Copy the staged files under the URI (a local ``--out`` has nothing to copy);
        ``result`` then names them there."""
        if not self.remote:
            return result
        from pyarrow import fs

        try:
            fs.copy_files(str(self.local), self.target.rstrip("/"))
        except OSError as e:
            raise ClulError(f"cannot write the sweep's files to {self.target}: "
                            f"{str(e).splitlines()[0]}") from None
        finally:
            shutil.rmtree(self.local, ignore_errors=True)
        base = self.target.rstrip("/")
        files = {k: f"{base}/{Path(v).relative_to(self.local)}"
                 for k, v in result.get("files", {}).items()}
        return {**result, "out": self.target, "files": files}


def prepare_out(out: str | Path, alive_nodes: int, shared_storage: bool) -> SweepOut:
    """Check ``out`` against the cluster, then create the local folder (or the staging one).

    Call after Ray is connected and before anything is written."""
    target = str(out)
    if is_uri(target):
        base = target.rstrip("/")
        check_bucket(base)
        return SweepOut(target, Path(tempfile.mkdtemp(prefix="clul_tune_")),
                        f"{base}/ray_results")
    check_storage_root(target, True, alive_nodes, shared_storage)
    local = Path(target)
    local.mkdir(parents=True, exist_ok=True)
    return SweepOut(target, local, str((local / "ray_results").resolve()))


def check_bucket(uri: str) -> None:
    """Refuse, in one line, an object-store URI whose bucket cannot be reached (missing,
    credentials refused, endpoint down) before any trial runs."""
    from pyarrow import fs

    if uri.startswith("file://"):
        return
    try:
        store, path = fs.FileSystem.from_uri(uri)
        bucket = path.split("/")[0]
        found = store.get_file_info(bucket).type != fs.FileType.NotFound
    except (OSError, ValueError) as e:
        raise ClulError(f"--out {uri}: {str(e).splitlines()[0]}") from None
    if not found:
        raise ClulError(f"--out {uri}: bucket {bucket} does not exist")


def connect_out(out: str | Path, address: str | None, shared_storage: bool) -> SweepOut:
    """Connect to Ray (``address`` or a local instance), then :func:`prepare_out`."""
    from ..runtime import ensure_ray, node_resources

    ensure_ray(address)
    return prepare_out(out, len(node_resources()), shared_storage)


@dataclass
class Puts:
    """The values a sweep puts into the object store once, by name."""

    refs: dict[str, Any] = field(default_factory=dict)

    def put(self, name: str, value: Any) -> Any:
        import ray

        self.refs[name] = ray.put(value)
        return self.refs[name]

    def report(self, trainable_bytes: int) -> dict[str, Any]:
        """Each put's size in the store and the nodes holding a copy, now."""
        import ray

        where = ray.experimental.get_object_locations(list(self.refs.values()))
        here = node_id()
        objects = {}
        for name, ref in self.refs.items():
            loc = where.get(ref) or {}
            nodes = sorted(loc.get("node_ids") or [])
            size = int(loc.get("object_size") or 0)
            objects[name] = {"bytes": size, "nodes": nodes,
                             "copies_elsewhere": sum(n != here for n in nodes)}
        return {"put": objects, "put_bytes": sum(o["bytes"] for o in objects.values()),
                "transferred_bytes": sum(o["bytes"] * o["copies_elsewhere"]
                                         for o in objects.values()),
                "driver_node": here, "trainable_bytes": trainable_bytes}


def pickled_size(obj: Any) -> int:
    from ray import cloudpickle

    return len(cloudpickle.dumps(obj))


def with_node(report: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """``report`` adding the id of the node the trial runs on to every result."""
    here = node_id()
    return lambda metrics: report({**metrics, "node_id": here})


def node_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Trials per node (trials that reported nothing are left out)."""
    return dict(Counter(r["node_id"] for r in rows if r.get("node_id")))


def placement(rows: list[dict[str, Any]], puts: Puts, trainable: Any) -> dict[str, Any]:
    """What a sweep's JSON says about its nodes: trials per node, how many distinct nodes,
    what was put into the object store and the pickled size of the trainable."""
    per_node = node_counts(rows)
    return {"trials_per_node": per_node, "distinct_nodes": len(per_node),
            "object_store": puts.report(pickled_size(trainable))}
