"""Dataset sources, named by a spec string, all yielding canonical Arrow rows.

Canonical rows: ``id`` int64 (unique; the handle users delete by), ``label`` int64 in
``[0, num_classes)``, ``x`` a fixed-size list of float32 (the flattened input, whose shape
is ``input_shape``), and optionally the group column.

Specs: ``digits`` (scikit-learn's bundled 8x8 digits, no network), ``synthetic:N``
(seeded, generated in blocks; options ``synthetic:N:classes=C:dim=D:seed=S``),
``parquet:PATH`` (a user's file or folder), torchvision's ``cifar10``, ``cifar100``,
``mnist`` and ``fashion_mnist`` read from a local data dir, and the text sources
``tofu-synth:N`` and ``text:PATH`` (:mod:`.text`: token rows for a language model).

Raw rows versus features: every source builds ``x`` from its *raw* rows with
:func:`raw_to_features` (digits are scaled from 0..16 to 0..1, torchvision images from uint8
``HWC`` to float ``CHW`` in 0..1; synthetic and Parquet rows are their own features), so a
caller holding raw rows maps them exactly as the partitions were built.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ClulError, MissingGroupColumn
from .text import TEXT_KINDS, open_text

SYNTHETIC_BLOCK = 50_000
TORCHVISION = {
    "cifar10": ("CIFAR10", 10),
    "cifar100": ("CIFAR100", 100),
    "mnist": ("MNIST", 10),
    "fashion_mnist": ("FashionMNIST", 10),
}


RAW_DTYPE = {"digits": "float64", "synthetic": "float32", "parquet": "float32",
             **{k: "uint8" for k in TORCHVISION}}
"""The dtype of each source kind's raw rows, as its files (or generator) give them."""


def source_kind(spec: str) -> str:
    """The kind of a dataset spec: ``digits``, ``synthetic``, ``parquet`` or a torchvision name."""
    return spec.partition(":")[0].strip().lower()


def raw_to_features(kind: str, raw: Any, input_shape: tuple[int, ...] | list[int]) -> np.ndarray:
    """A dataset's raw rows -> its canonical features: an (n, d) float32 array, d the product
    of ``input_shape``. A pure function, and the very transform each source applies when it
    builds its canonical rows (they call it), so the two cannot drift.

    Raw rows per source kind:

    - ``digits``: rows as scikit-learn's ``load_digits().data`` (or ``.images``) gives them,
      pixel values 0..16 -> divided by 16.
    - torchvision sets (``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``): the uint8
      images as their files hold them, ``(n, H, W)`` or ``(n, H, W, C)`` (or those flattened
      to ``(n, H*W*C)``, in that ``HWC`` order) -> channels first, flattened, divided by 255.
    - ``synthetic`` and ``parquet``: identity (a user's Parquet columns are already the
      features), cast to float32.

    Raises ClulError when the rows do not hold ``d`` values each.
    """
    shape = tuple(int(s) for s in input_shape)
    d = int(np.prod(shape))
    a = np.asarray(raw)
    n = len(a) if a.ndim else 0
    if a.ndim == 0 or a.size != n * d:
        got = int(np.prod(a.shape[1:])) if a.ndim > 1 else (1 if a.ndim == 1 else 0)
        raise ClulError(f"expected rows of {d} raw features ({kind}, input shape "
                        f"{list(shape)}), got {got} per row")
    if kind == "digits":
        return a.reshape(n, d).astype(np.float32) / 16.0
    if kind in TORCHVISION:
        c, h, w = shape if len(shape) == 3 else (1, *shape[-2:])
        hwc = a.reshape(n, h, w, c)
        return hwc.transpose(0, 3, 1, 2).reshape(n, d).astype(np.float32) / 255.0
    return a.reshape(n, d).astype(np.float32)


def fixed_list(x: np.ndarray) -> pa.FixedSizeListArray:
    """A 2-D float array as an Arrow fixed-size list column."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def features(table: pa.Table) -> np.ndarray:
    """The ``x`` column of a canonical table as an (n, d) float32 array."""
    col = table.column("x").combine_chunks()
    d = col.type.list_size
    if len(col) == 0:
        return np.zeros((0, d), dtype=np.float32)
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), d).astype(
        np.float32, copy=False)


def canonical(ids: np.ndarray, labels: np.ndarray, x: np.ndarray) -> pa.Table:
    return pa.table({
        "id": pa.array(np.asarray(ids, dtype=np.int64)),
        "label": pa.array(np.asarray(labels, dtype=np.int64)),
        "x": fixed_list(x),
    })


def synthetic_block(block: int, n: int, seed: int, classes: int, dim: int) -> pa.Table:
    """Rows [block*B, min(n, (block+1)*B)) of the synthetic set; a pure function of its args."""
    start = block * SYNTHETIC_BLOCK
    stop = min(n, start + SYNTHETIC_BLOCK)
    centers = np.random.default_rng([seed, 0x5EED]).normal(0.0, 1.0, (classes, dim))
    rng = np.random.default_rng([seed, block])
    labels = rng.integers(0, classes, stop - start)
    x = centers[labels] + rng.normal(0.0, 1.6, (stop - start, dim))
    return canonical(np.arange(start, stop, dtype=np.int64), labels, x.astype(np.float32))


def canonicalize(table: pa.Table, group_column: str | None, where: str) -> pa.Table:
    """A user's table -> canonical rows: id, label, x (numeric columns or one list column)."""
    names = table.column_names
    for req in ("id", "label"):
        if req not in names:
            raise ClulError(f"{where}: missing required column '{req}'")
    if not pa.types.is_integer(table.schema.field("id").type):
        raise ClulError(f"{where}: column 'id' must be an integer column, got "
                        f"{table.schema.field('id').type}")
    if not pa.types.is_integer(table.schema.field("label").type):
        raise ClulError(f"{where}: column 'label' must be an integer column, got "
                        f"{table.schema.field('label').type}")
    if group_column is not None and group_column not in names:
        raise MissingGroupColumn(f"{where}: group column '{group_column}' not found",
                                 group_column)
    rest = [c for c in names if c not in ("id", "label", group_column)]
    if not rest:
        raise ClulError(f"{where}: no feature columns besides id and label")
    list_cols = [c for c in rest if pa.types.is_list(table.schema.field(c).type)
                 or pa.types.is_fixed_size_list(table.schema.field(c).type)
                 or pa.types.is_large_list(table.schema.field(c).type)]
    if list_cols:
        if len(rest) != 1:
            raise ClulError(f"{where}: a list feature column must be the only feature column, "
                            f"found {rest}")
        import pyarrow.compute as pc  # (imported where a list column is read)

        col = table.column(list_cols[0]).combine_chunks()
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False) if len(col) else []
        if len(col) and (col.null_count or len(set(np.asarray(lengths).tolist())) != 1):
            raise ClulError(f"{where}: list column '{list_cols[0]}' must have one fixed length "
                            "and no nulls")
        d = int(lengths[0]) if len(col) else 0
        if d == 0:
            raise ClulError(f"{where}: list column '{list_cols[0]}' holds no feature values")
        values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        x = values.reshape(len(col), d) if len(col) else np.zeros((0, d), np.float32)
    else:
        for c in rest:
            t = table.schema.field(c).type
            if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
                raise ClulError(f"{where}: feature column '{c}' is {t}, not numeric")
        cols = []
        for c in rest:
            col = table.column(c)
            if col.null_count:
                raise ClulError(f"{where}: feature column '{c}' has missing values")
            cols.append(col.to_numpy().astype(np.float32))
        x = np.stack(cols, axis=1) if cols else np.zeros((table.num_rows, 0), np.float32)
    if table.column("id").null_count:
        raise ClulError(f"{where}: column 'id' has missing values")
    if table.column("label").null_count:
        raise ClulError(f"{where}: column 'label' has missing labels")
    out = canonical(table.column("id").to_numpy(), table.column("label").to_numpy(), x)
    if group_column is not None:
        out = out.append_column(group_column, table.column(group_column))
    return out


@dataclass
class DataSource:
    """A named dataset: its shape, class count, and its rows as Arrow (in blocks)."""

    spec: str
    kind: str
    num_classes: int
    input_shape: tuple[int, ...]
    group_column: str | None = None
    table: pa.Table | None = None  # in-memory rows (digits, a user table), else None
    options: dict[str, Any] = field(default_factory=dict)  # synthetic or Parquet: how to read

    # ---- rows -------------------------------------------------------------------------
    def iter_tables(self) -> Iterator[pa.Table]:
        """Canonical rows in blocks, without Ray (validation, small data, tests)."""
        if self.table is not None:
            yield self.table
        elif self.kind in ("synthetic", "synthetic-fair"):
            o = self.options
            make, k = o.get("make", synthetic_block), o.get("groups", self.num_classes)
            for b in range(o["blocks"]):
                yield make(b, o["n"], o["seed"], k, o["dim"])
        elif self.kind == "parquet":
            import pyarrow.dataset as pads

            ds = pads.dataset(self.options["path"], format="parquet",
                              filesystem=self.options["fs"])
            for batch in ds.to_batches(batch_size=65_536):
                yield canonicalize(pa.Table.from_batches([batch]), self.group_column,
                                   self.spec)

    def ray_dataset(self):
        """Canonical rows as a Ray Dataset, streamed block by block."""
        from ..runtime import import_ray_data

        rdata = import_ray_data()

        if self.table is not None:
            return rdata.from_arrow(self.table)
        if self.kind in ("synthetic", "synthetic-fair"):
            o, make = self.options, self.options.get("make", synthetic_block)
            n, seed, classes, dim = o["n"], o["seed"], o.get("groups", self.num_classes), o["dim"]

            def gen(batch: pa.Table) -> pa.Table:
                blocks = batch.column("id").to_numpy()
                return pa.concat_tables([make(int(b), n, seed, classes, dim) for b in blocks])

            return rdata.range(o["blocks"], override_num_blocks=o["blocks"]).map_batches(
                gen, batch_size=1, batch_format="pyarrow")
        group, spec = self.group_column, self.spec
        ds = rdata.read_parquet(self.options["path"], filesystem=self.options["fs"])
        return ds.map_batches(lambda t: canonicalize(t, group, spec), batch_format="pyarrow")

    # ---- checks -----------------------------------------------------------------------
    def validate(self) -> int:
        """Stream the rows once and refuse bad data; returns the row count."""
        seen: list[np.ndarray] = []
        n, max_label = 0, -1
        d = int(np.prod(self.input_shape))
        for t in self.iter_tables():
            if t.num_rows == 0:
                continue
            n += t.num_rows
            labels = t.column("label").to_numpy()
            if labels.min() < 0:
                raise ClulError(f"{self.spec}: negative label {int(labels.min())}")
            max_label = max(max_label, int(labels.max()))
            x = features(t)
            if x.shape[1] != d:
                raise ClulError(f"{self.spec}: rows have {x.shape[1]} features, expected {d}")
            bad = ~np.isfinite(x).all(axis=1)
            if bad.any():
                first = int(t.column("id").to_numpy()[bad][0])
                raise ClulError(f"{self.spec}: NaN or infinite features in {int(bad.sum())} "
                                f"rows (first id {first})")
            seen.append(t.column("id").to_numpy())
        if n == 0:
            raise ClulError(f"{self.spec}: the dataset is empty")
        if max_label >= self.num_classes:
            raise ClulError(f"{self.spec}: label {max_label} is outside [0, {self.num_classes})")
        ids = np.sort(np.concatenate(seen))
        dup = ids[1:][ids[1:] == ids[:-1]]
        if len(dup):
            shown = ", ".join(str(int(i)) for i in np.unique(dup)[:5])
            raise ClulError(f"{self.spec}: {len(np.unique(dup))} duplicate ids (e.g. {shown})")
        return n


def digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``load_digits`` gives them (``data``, ``target``), read from
    its bundled file without importing scikit-learn (a large part of a fresh process)."""
    import gzip
    from importlib.util import find_spec

    spec = find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is None or not path.exists():
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.data, d.target
    with gzip.open(path, "rt", encoding="utf-8") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1], data[:, -1].astype(int)


def _options(parts: list[str], spec: str) -> dict[str, str]:
    out = {}
    for p in parts:
        if "=" not in p:
            raise ClulError(f"bad dataset option '{p}' in '{spec}' (expected key=value)")
        k, v = p.split("=", 1)
        out[k] = v
    return out


def open_source(spec: str, data_dir: str | None = None, download: bool = False,
                num_classes: int | None = None, input_shape: list[int] | None = None,
                group_column: str | None = None, tokenizer: Any = None) -> DataSource:
    """Resolve a dataset spec to a source. Raises ClulError with a one-line reason.
    ``tokenizer`` (text sources only): a tokenizer, or its spec (``bytes``, the default,
    or a tokenizer JSON path; see :mod:`clul_ray.text.tokenizer`)."""
    kind, rest = source_kind(spec), spec.partition(":")[2]
    if kind in TEXT_KINDS:
        from ..text.tokenizer import load

        tok = load(tokenizer) if tokenizer is None or isinstance(tokenizer, str) else tokenizer
        return open_text(spec, input_shape, group_column, tok)
    if kind == "digits":
        if group_column:
            raise MissingGroupColumn("digits has no group column", group_column, False)
        data, target = digits_raw()
        t = canonical(np.arange(len(target)), target, raw_to_features("digits", data, (1, 8, 8)))
        return DataSource(spec, "digits", 10, (1, 8, 8), table=t)
    if kind == "synthetic":
        n_s, *opts = rest.split(":") if rest else [""]
        try:
            n = int(n_s.replace("_", ""))
        except ValueError:
            raise ClulError(f"synthetic needs a row count: 'synthetic:N', got '{spec}'") from None
        if n <= 0:
            raise ClulError(f"synthetic row count must be positive, got {n}")
        o = _options(opts, spec)
        unknown = set(o) - {"classes", "dim", "seed"}
        if unknown:
            raise ClulError(f"unknown synthetic option(s) {sorted(unknown)} in '{spec}'")
        classes, dim = int(o.get("classes", 10)), int(o.get("dim", 32))
        blocks = -(-n // SYNTHETIC_BLOCK)
        return DataSource(spec, "synthetic", classes, (dim,), group_column,
                          options={"n": n, "dim": dim, "seed": int(o.get("seed", 0)),
                                    "blocks": blocks})
    if kind == "synthetic-fair":  # rows with a planted sensitive column z (feature/synthetic.py)
        from ..feature.synthetic import parse_fair

        try:
            o = parse_fair(spec, rest)
        except ValueError as e:
            raise ClulError(str(e)) from None
        return DataSource(spec, kind, 2, (o["dim"],), group_column, options=o)
    if kind == "parquet":
        return _parquet(spec, rest, num_classes, input_shape, group_column)
    if kind in TORCHVISION:
        from .vision import open_torchvision

        return open_torchvision(spec, kind, data_dir, download)
    raise ClulError(f"unknown dataset '{spec}' (expected digits, synthetic:N, synthetic-fair:N, "
                    f"parquet:PATH, tofu-synth:N, text:PATH, or one of "
                    f"{', '.join(TORCHVISION)})")


def _parquet(spec, path, num_classes, input_shape, group_column) -> DataSource:
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    if not path:
        raise ClulError("parquet needs a path: 'parquet:PATH'")
    try:
        fs, p = pafs.FileSystem.from_uri(path)
    except (pa.ArrowInvalid, ValueError):
        fs, p = pafs.LocalFileSystem(), path
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.NotFound:
        raise ClulError(f"parquet path not found: {path}")
    try:
        ds = pads.dataset(p, format="parquet", filesystem=fs)
        first = next(iter(ds.to_batches(batch_size=16)), None)
    except (pa.ArrowInvalid, OSError) as e:
        raise ClulError(f"{path} is not a readable Parquet dataset: "
                        f"{str(e).splitlines()[0]}") from None
    if first is None:
        raise ClulError(f"{spec}: the dataset is empty")
    head = canonicalize(pa.Table.from_batches([first]), group_column, spec)
    d = head.column("x").type.list_size
    shape = tuple(input_shape) if input_shape else (d,)
    if int(np.prod(shape)) != d:
        raise ClulError(f"input_shape {list(shape)} does not match {d} features")
    if num_classes is None:
        import pyarrow.compute as pc

        max_label = -1
        for b in ds.to_batches(columns=["label"]):
            col = b.column(0)
            if len(col) and col.null_count < len(col):
                max_label = max(max_label, int(pc.max(col).as_py()))
        num_classes = max(2, max_label + 1)
    return DataSource(spec, "parquet", num_classes, shape, group_column,
                      options={"path": p, "fs": fs})
