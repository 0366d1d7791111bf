"""The rows a command reads: a training source with its config completed (class count,
input shape, a text root's tokenizer), and an addition's rows, made as the root's were."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ...config import PipelineConfig
from ...data.sources import DataSource, open_source
from ...data.text import is_text
from ...errors import ClulError
from ...storage import layout
from ...storage.store import Store
from ...text.tokenizer import load, tokenizer_spec
from ..records.rootconfig import read_tokenizer


def training_source(cfg: PipelineConfig) -> tuple[PipelineConfig, DataSource, object]:
    """``train``'s source, its config completed from it (and the tokenizer of a text
    dataset, named by digest), after checking that the model fits the data."""
    d = cfg.data
    tok = load(d.tokenizer) if cfg.task == "lm" else None
    source = open_source(d.dataset, d.data_dir, d.download, d.num_classes, d.input_shape,
                         cfg.partition.group_column, tok)
    cfg = cfg.updated(num_classes=d.num_classes or source.num_classes,
                      input_shape=list(source.input_shape),
                      **({"tokenizer": tokenizer_spec(tok)} if tok is not None else {}))
    cfg = resolved_base(cfg)
    check_model(cfg)
    return cfg, source, tok


def resolved_base(cfg: PipelineConfig) -> PipelineConfig:
    """A ``base`` model arg (``gpt-tiny-lora``) made an absolute path, with the file's
    sha256 recorded as ``base_sha256`` (so it keys every checkpoint); refuses a base
    trained with another tokenizer than the root's."""
    args = cfg.train.model_args
    if "base" not in args:
        return cfg
    from ...text.base import file_sha256, read_base

    path = os.path.abspath(str(args["base"]))
    sha = file_sha256(path)
    _, meta = read_base(path)
    if cfg.task != "lm":
        raise ClulError(f"a base model ({path}) serves text roots only, not {cfg.data.dataset}")
    if meta["tokenizer"] != cfg.data.tokenizer:
        raise ClulError(f"the base model {path} was trained with tokenizer "
                        f"{meta['tokenizer'][:19]}, the root uses {cfg.data.tokenizer[:19]} "
                        "(train the base with the root's --tokenizer)")
    return cfg.updated(model_args={**args, "base": path, "base_sha256": sha})


def check_base(cfg: PipelineConfig) -> None:
    """Refuse to change a root whose base model file (``gpt-tiny-lora``) is missing or
    differs from the one its checkpoints were trained over."""
    args = cfg.train.model_args
    if "base_sha256" not in args:
        return
    from ...text.base import file_sha256

    sha = file_sha256(args["base"])
    if sha != args["base_sha256"]:
        raise ClulError(f"{args['base']}: the base model file changed since this root was "
                        f"trained (sha256 {sha:.12}, recorded {args['base_sha256']:.12}); "
                        "restore it, or train a new --root over the new base")


def check_model(cfg: PipelineConfig) -> None:
    """Build the model once (fails early) and refuse a model of the other task."""
    from ...models import build_model, is_language_model

    t = cfg.train
    lm = is_language_model(build_model(t.model, cfg.data.input_shape, cfg.data.num_classes,
                                       t.model_args))
    if lm and cfg.task != "lm":
        raise ClulError(f"{t.model} is a language model: it trains on a text dataset "
                        f"(tofu-synth:N, text:PATH), not {cfg.data.dataset}")
    if not lm and cfg.task == "lm":
        raise ClulError(f"{cfg.data.dataset} is text: train a language model on it "
                        f"(--model gpt-tiny), not {t.model}")
    if lm and cfg.ddp_world_size > 1:
        raise ClulError("a language model trains with one worker per shard "
                        "(train_workers_per_shard: 1)")


def added_source(store: Store, cfg: PipelineConfig, dataset: str, data_dir: str | None,
                 download: bool) -> DataSource:
    """``add``'s rows, read with the root's shape (and a text root's own tokenizer)."""
    if is_text(dataset) != (cfg.task == "lm"):
        raise ClulError(f"{dataset} is {'text' if is_text(dataset) else 'not text'} but "
                        f"{store.root} holds {'text' if cfg.task == 'lm' else 'no text'}")
    tok = read_tokenizer(store, cfg) if cfg.task == "lm" else None
    return open_source(dataset, data_dir, download, None, cfg.data.input_shape,
                       cfg.partition.group_column, tok)


def group_ids(store: Store, cfg: PipelineConfig, groups: Sequence[str]) -> list[int]:
    """The ids of every row (training and test) of ``groups``, values of the root's group
    column compared as text; refuses a root not placed by group and a group of no rows."""
    col = cfg.partition.group_column
    if col is None:
        raise ClulError(f"{store.root} was not placed by group (train --group-column COL): "
                        "name the rows by --ids")
    if not groups:
        raise ClulError("the deletion request names no group")
    tables = [t for rel in (layout.TRAIN, layout.TEST)
              if (t := store.read_tables(rel, ["id", col])) is not None]
    if not tables:
        raise ClulError(f"{store.root} holds no rows")
    t = pa.concat_tables(tables)
    values = np.asarray(t.column(col).cast(pa.string()).to_pylist(), dtype=object)
    ids = t.column("id").to_numpy()
    out: list[np.ndarray] = []
    for g in groups:
        mine = ids[values == str(g)]
        if not len(mine):
            raise ClulError(f"group '{g}' names no rows of {store.root} (column {col}; "
                            "already deleted, or not in the data)")
        out.append(mine)
    return sorted(int(i) for i in np.unique(np.concatenate(out)))
