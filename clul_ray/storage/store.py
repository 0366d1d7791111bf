"""Typed access to the files under one storage root that ``pyarrow.fs`` opens: a local
folder on one machine; ``s3://`` / ``gs://`` (or a shared mount) on a cluster. Where each
artefact lives is :mod:`clul_ray.storage.layout`.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..errors import ClulError, first_line
from ..hashing import sha256_ids
from . import layout, s3
from .columns import keep_rows, table, to_numpy

T = TypeVar("T")


class CorruptFile(ClulError):
    """A file under the root that is missing, unreadable or not what was recorded."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path


def open_fs(root: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local folder or any URI pyarrow.fs knows (``s3://``: with
    the endpoint from the environment and bounded retries, :mod:`clul_ray.storage.s3`)."""
    if s3.is_s3(root):
        return s3.filesystem(root)
    if "://" in root:
        try:
            return pafs.FileSystem.from_uri(root)
        except (pa.ArrowInvalid, ValueError, OSError) as e:
            raise ClulError(f"cannot open storage root {root}: {e}") from None
    return pafs.LocalFileSystem(), os.path.abspath(root)


class Store:
    """Typed access to the files under a storage root. Picklable (sent to Ray workers)."""

    def __init__(self, root: str):
        self.root = root
        self._fs: pafs.FileSystem | None = None
        self._base: str | None = None

    def __getstate__(self) -> dict:
        return {"root": self.root}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["root"])

    @property
    def fs(self) -> pafs.FileSystem:
        if self._fs is None:
            self._fs, self._base = open_fs(self.root)
        return self._fs

    @property
    def base(self) -> str:
        self.fs  # noqa: B018 - opens the filesystem
        return self._base  # type: ignore[return-value]

    def path(self, *parts: str) -> str:
        return "/".join([self.base.rstrip("/"), *parts])

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def is_s3(self) -> bool:
        return s3.is_s3(self.root)

    def _key(self, rel: str) -> tuple[str, str]:
        """(bucket, key) of ``rel`` under an ``s3://`` root."""
        bucket, key = self.path(rel).split("/", 1)
        return bucket, key

    # ---- generic ---------------------------------------------------------------------
    keeps_reads = False  # (a caching store keeps what it reads: reading ahead pays)

    def memo(self, rels: tuple[str, ...], tag: str, compute: Callable[[], T]) -> T:
        """``compute()``: a value derived from the files under ``rels`` alone. This store
        computes it on every call; a caching store (:mod:`clul_ray.storage.cache`) keeps it
        while those files are unchanged."""
        return compute()

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write atomically: on S3 one PUT of the whole object (S3 keeps the old version
        until it succeeds; its "move" is a copy and a delete), elsewhere a temporary file,
        then a move (atomic on a local or mounted root)."""
        target = self.path(rel)
        try:
            self._put(target, data)
        except OSError as e:  # a full disk, a read-only mount: the previous content stays
            raise ClulError(f"cannot write {target}: {first_line(e)}") from None

    def _put(self, target: str, data: bytes) -> None:
        if self.is_s3:
            s3.put(*target.split("/", 1), data)
            return
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            self.fs.move(tmp, target)
        except OSError:
            if self.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                self.fs.delete_file(tmp)
            raise

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self.path(rel)) as f:
            return f.read()

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def read_record(self, rel: str, model: type[T]) -> T | None:
        """A small JSON record validated as a pydantic ``model`` (None when absent); a
        record that does not fit is a one-line ClulError naming the file."""
        raw = self.read_json(rel)
        if raw is None:
            return None
        try:
            return model.model_validate(raw)
        except ValueError as e:  # pydantic's ValidationError
            err = e.errors()[0] if hasattr(e, "errors") else {"loc": (), "msg": str(e)}
            where = ".".join(str(x) for x in err["loc"]) or "record"
            raise CorruptFile(self.path(rel), f"not a valid {model.__name__} record "
                              f"({where}: {err['msg']})") from None

    def require_record(self, rel: str, model: type[T], missing: str) -> T:
        """:meth:`read_record`, refusing an absent record with ``missing`` (one line)."""
        rec = self.read_record(rel, model)
        if rec is None:
            raise ClulError(missing)
        return rec

    def read_json(self, rel: str) -> Any | None:
        """A small JSON file's content (None when absent); an unreadable or garbage file is
        a one-line ClulError naming it."""
        if not self.exists(rel):
            return None
        try:
            return json.loads(self.read_bytes(rel))
        except (ValueError, OSError) as e:  # JSONDecodeError, UnicodeDecodeError
            raise CorruptFile(self.path(rel), f"not valid JSON ({first_line(e)})") from None

    # ---- conditional writes (the root's lock) ------------------------------------------
    def create_exclusive(self, rel: str, data: bytes) -> bool | None:
        """Create ``rel`` with ``data`` only if it is absent, atomically: ``O_CREAT|O_EXCL``
        locally, ``If-None-Match: *`` on S3. False when it exists; None where the filesystem
        has no atomic create-if-absent (other object stores)."""
        if self.is_local:
            path = self.path(rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        if self.is_s3:
            return s3.create(*self._key(rel), data)
        return None

    def read_versioned(self, rel: str) -> tuple[bytes, str | None] | None:
        """(content, version) of ``rel``, None when absent; the version (the S3 ETag) lets
        :meth:`delete_version` remove exactly this content."""
        if self.is_s3:
            return s3.get(*self._key(rel))
        return (self.read_bytes(rel), None) if self.exists(rel) else None

    def delete_version(self, rel: str, version: str | None) -> bool:
        """Delete ``rel`` if it still holds ``version`` (S3: ``If-Match`` on the ETag;
        elsewhere unconditionally). False when it changed or vanished."""
        if self.is_s3 and version is not None:
            return s3.delete_if(*self._key(rel), version)
        self.delete(rel)
        return True

    def delete(self, rel: str) -> None:
        p = self.path(rel)
        info = self.fs.get_file_info(p)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(p)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(p)

    def list_files(self, rel: str, suffix: str = "") -> list[str]:
        """Relative paths of the files under ``rel`` (recursive), sorted."""
        p = self.path(rel)
        if self.fs.get_file_info(p).type != pafs.FileType.Directory:
            return []
        sel = pafs.FileSelector(p, recursive=True)
        base = self.base.rstrip("/") + "/"
        return sorted(i.path[len(base):] for i in self.fs.get_file_info(sel)
                      if i.type == pafs.FileType.File and i.path.endswith(suffix)
                      and ".tmp-" not in i.path)

    def write_table(self, rel: str, table: pa.Table) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf, use_dictionary=False)  # faster for ids and floats
        self.write_bytes(rel, buf.getvalue())

    def read_tables(self, rel: str, columns: list[str] | None = None) -> pa.Table | None:
        files = self.list_files(rel, ".parquet")
        if not files:
            return None
        tables = [self.read_parquet(f, columns) for f in files]
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def read_parquet(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        """One Parquet file; a truncated or garbage file is a one-line ClulError naming it."""
        try:  # (one file: no dataset discovery, and no import of pyarrow.dataset and pandas)
            with self.fs.open_input_file(self.path(rel)) as f:
                return pq.ParquetFile(f).read(columns=columns)
        except (pa.ArrowException, OSError) as e:
            raise CorruptFile(self.path(rel), f"unreadable Parquet ({first_line(e)})") from None

    # ---- partitions ------------------------------------------------------------------
    def read_slice(self, shard: int, slc: int,
                   columns: list[str] | None = None) -> pa.Table | None:
        """Rows of one slice sorted by id, or None when the slice holds no rows."""
        t = self.read_tables(layout.slice_dir(shard, slc), columns)
        return t.sort_by("id") if t is not None else None

    def read_shard(self, shard: int, upto: int,
                   columns: list[str] | None = None) -> pa.Table | None:
        """Rows of slices 0..upto of a shard sorted by id, or None when they hold none."""
        tables = [t for r in range(upto + 1)
                  if (t := self.read_tables(layout.slice_dir(shard, r), columns)) is not None]
        return pa.concat_tables(tables).sort_by("id") if tables else None

    def slice_ids(self, shard: int, slc: int) -> np.ndarray:
        """The ids of one slice, sorted (treat as read-only)."""
        def read() -> np.ndarray:  # (numpy's sort: no pyarrow.compute in a driver)
            t = self.read_tables(layout.slice_dir(shard, slc), ["id"])
            return np.sort(to_numpy(t.column("id"))) if t is not None else np.zeros(0, np.int64)

        return self.memo((layout.slice_dir(shard, slc),), "ids", read)

    def slice_digest(self, shard: int, slc: int) -> str:
        """SHA-256 of one slice's ids (what its checkpoint key chains in)."""
        return self.memo((layout.slice_dir(shard, slc),), "sha256",
                         lambda: sha256_ids(self.slice_ids(shard, slc)))

    def remove_rows(self, rel_dir: str, ids: np.ndarray) -> int:
        """Rewrite every Parquet file under ``rel_dir`` without ``ids``; idempotent."""
        removed = 0
        for f in self.list_files(rel_dir, ".parquet"):
            t = self.read_parquet(f)
            keep = ~np.isin(to_numpy(t.column("id")), ids)
            if keep.all():
                continue
            removed += int((~keep).sum())
            if keep.any():
                self.write_table(f, keep_rows(t, keep))
            else:
                self.delete(f)
        return removed

    # ---- index -----------------------------------------------------------------------
    def read_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, shard, slice) of every training row (treat as read-only)."""
        return self.memo((layout.INDEX,), "index", self._read_index)

    def _read_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = self.read_tables(layout.INDEX)
        if t is None:
            z = np.zeros(0, np.int64)
            return z, z, z
        ids, shard, slc = (to_numpy(t.column(c)) for c in ("id", "shard", "slice"))
        _, first = np.unique(ids, return_index=True)  # a resumed rewrite may leave twins
        keep = np.sort(first) if len(first) < len(ids) else slice(None)
        return ids[keep], shard[keep].astype(np.int64), slc[keep].astype(np.int64)

    def rewrite_index(self, ids: np.ndarray, shard: np.ndarray, slc: np.ndarray) -> None:
        old = self.list_files(layout.INDEX, ".parquet")
        name = f"{layout.INDEX}/index-{uuid.uuid4().hex[:12]}.parquet"
        self.write_table(name, table({"id": ids, "shard": shard, "slice": slc}))
        for f in old:
            if f != name:
                self.delete(f)

    def test_ids(self) -> np.ndarray:
        t = self.read_tables(layout.TEST, ["id"])
        return to_numpy(t.column("id")) if t is not None else np.zeros(0, np.int64)

    # ---- checkpoints -----------------------------------------------------------------
    def has_checkpoint(self, shard: int, slc: int, key: str) -> bool:
        return self.exists(layout.checkpoint_path(shard, slc, key))

    def checkpoint_files(self, shard: int | None = None) -> list[str]:
        return self.list_files(layout.checkpoint_dir(shard), ".pt")

    def discard_checkpoints(self, shard: int, from_slice: int) -> list[str]:
        gone = []
        for f in self.checkpoint_files(shard):
            if layout.checkpoint_slice(f) >= from_slice:
                self.delete(f)
                gone.append(f)
        return gone
