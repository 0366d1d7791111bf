"""Text sources: ``tofu-synth:N`` (the synthetic fictitious-people corpus,
:mod:`clul_ray.text.corpus`) and ``text:PATH`` (a user's Parquet: ``id`` int64 and
``text`` string, optional ``group``), as the canonical rows every clul_ray source yields.

A text row is ``id``, ``label`` 0 (a language model has no label), and ``x`` the
document's token ids as floats, ``(context,)``: ``<bos> tokens <eos>`` then padding
(:func:`clul_ray.text.tokenizer.encode`). So partitions, placement, slice digests,
checkpoint keys and certificates are the classifiers' unchanged; the class count is the
tokenizer's vocabulary and the input shape ``[context]``. Tokenizing is a pure function of
the text and the tokenizer, so a deletion's retraining sees exactly the tokens a fresh
training sees.

Options: ``tofu-synth:N:seed=S:bias=B`` (B the fraction of people with a stereotyped
'bias' document, :func:`clul_ray.text.corpus.tofu_synth`); the context length is
``data.input_shape`` (default 256 tokens). ``tofu-synth`` carries the ``person`` column
(a group column).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ClulError, MissingGroupColumn
from ..text.tokenizer import encode, vocab_size

TEXT_KINDS = ("tofu-synth", "text")
DEFAULT_CONTEXT = 256
TOFU_GROUP = "person"


def is_text(spec: str) -> bool:
    return spec.partition(":")[0].strip().lower() in TEXT_KINDS


def context_of(input_shape: list[int] | tuple[int, ...] | None) -> int:
    if not input_shape:
        return DEFAULT_CONTEXT
    if len(input_shape) != 1:
        raise ClulError(f"a text dataset's input_shape is [context], got {list(input_shape)}")
    return int(input_shape[0])


def text_rows(ids: np.ndarray, texts: list[str], tok, context: int, where: str,
              extra: dict[str, Any] | None = None) -> tuple[pa.Table, int]:
    """Canonical rows of documents (and how many were cut at the context length)."""
    from .sources import canonical

    tokens, cut = encode(tok, texts, context)
    t = canonical(ids, np.zeros(len(ids), np.int64), tokens.astype(np.float32))
    for name, col in (extra or {}).items():
        t = t.append_column(name, col)
    return t, cut


def read_texts(table: pa.Table, where: str) -> list[str]:
    """The ``text`` column as Python strings; refuses nulls, empty and non-UTF-8 text."""
    if "text" not in table.column_names:
        raise ClulError(f"{where}: missing required column 'text'")
    col = table.column("text")
    typ = col.type
    ids = table.column("id").to_numpy()
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        try:
            col = col.cast(pa.large_string())
        except pa.ArrowInvalid:
            bad = [i for i, v in zip(ids, col.to_pylist(), strict=True)
                   if v is not None and not _utf8(v)]
            raise ClulError(f"{where}: column 'text' holds non-UTF-8 bytes in {len(bad)} rows "
                            f"(first id {int(bad[0]) if bad else '?'})") from None
    elif not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
        raise ClulError(f"{where}: column 'text' must be a string column, got {typ}")
    texts = col.to_pylist()
    empty = [int(i) for i, v in zip(ids, texts, strict=True) if v is None or not v.strip()]
    if empty:
        raise ClulError(f"{where}: empty or missing text in {len(empty)} rows "
                        f"(first id {empty[0]})")
    return texts


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def tofu_synth_options(spec: str) -> tuple[int, int, float]:
    """``tofu-synth:N[:seed=S][:bias=B]`` -> ``(N, S, B)`` (seed 0 and bias 0 by default)."""
    from .sources import _options

    n_s, *opts = spec.partition(":")[2].split(":")
    try:
        n = int(n_s.replace("_", ""))
    except ValueError:
        raise ClulError(f"tofu-synth needs a person count: 'tofu-synth:N', got '{spec}'"
                        ) from None
    o = _options(opts, spec)
    unknown = set(o) - {"seed", "bias"}
    if unknown:
        raise ClulError(f"unknown tofu-synth option(s) {sorted(unknown)} in '{spec}'")
    if n <= 0:
        raise ClulError(f"tofu-synth person count must be positive, got {n}")
    try:
        return n, int(o.get("seed", 0)), float(o.get("bias", 0.0))
    except ValueError:
        raise ClulError(f"tofu-synth seed must be an integer and bias a number: '{spec}'"
                        ) from None


def open_text(spec: str, input_shape: list[int] | None, group_column: str | None, tok):
    """A text dataset spec -> a ``DataSource`` of canonical rows (in memory)."""
    from .sources import DataSource, source_kind

    kind, rest = source_kind(spec), spec.partition(":")[2]
    context = context_of(input_shape)
    if kind == "tofu-synth":
        from ..text.corpus import tofu_synth

        n, seed, bias = tofu_synth_options(spec)
        docs = tofu_synth(n, seed, bias).documents
        if group_column not in (None, TOFU_GROUP):
            raise MissingGroupColumn(f"{spec}: group column '{group_column}' not found "
                                     f"(tofu-synth has '{TOFU_GROUP}')", group_column)
        extra = {TOFU_GROUP: docs.column(TOFU_GROUP)} if group_column else {}
        table, _ = text_rows(docs.column("id").to_numpy(), docs.column("text").to_pylist(),
                             tok, context, spec, extra)
    elif kind == "text":
        table = _read_user_text(spec, rest, group_column, tok, context)
    else:
        raise ClulError(f"not a text dataset: '{spec}'")
    return DataSource(spec, kind, vocab_size(tok), (context,), group_column, table=table)


def _read_user_text(spec: str, path: str, group_column: str | None, tok,
                    context: int) -> pa.Table:
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    if not path:
        raise ClulError("text needs a path: 'text:PATH' (Parquet with id and text columns)")
    try:
        fs, p = pafs.FileSystem.from_uri(path)
    except (pa.ArrowInvalid, ValueError):
        fs, p = pafs.LocalFileSystem(), path
    if fs.get_file_info(p).type == pafs.FileType.NotFound:
        raise ClulError(f"text path not found: {path}")
    try:
        table = pads.dataset(p, format="parquet", filesystem=fs).to_table()
    except (pa.ArrowInvalid, OSError) as e:
        raise ClulError(f"{path} is not a readable Parquet dataset: "
                        f"{str(e).splitlines()[0]}") from None
    if table.num_rows == 0:
        raise ClulError(f"{spec}: the dataset is empty")
    if "id" not in table.column_names:
        raise ClulError(f"{spec}: missing required column 'id'")
    if not pa.types.is_integer(table.schema.field("id").type) or table.column("id").null_count:
        raise ClulError(f"{spec}: column 'id' must be an integer column without missing values")
    if group_column is not None and group_column not in table.column_names:
        raise MissingGroupColumn(f"{spec}: group column '{group_column}' not found",
                                 group_column)
    texts = read_texts(table, spec)
    extra = {group_column: table.column(group_column)} if group_column else {}
    rows, _ = text_rows(table.column("id").to_numpy(), texts, tok, context, spec, extra)
    return rows
