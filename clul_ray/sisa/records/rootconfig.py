"""A root's stored pipeline config (``config.json``): read and written here only."""

from __future__ import annotations

from ...config import PipelineConfig
from ...errors import ClulError
from ...storage import layout
from ...storage.store import Store


def read_config(store: Store) -> PipelineConfig | None:
    return store.read_record(layout.CONFIG, PipelineConfig)


def require_config(store: Store) -> PipelineConfig:
    cfg = read_config(store)
    if cfg is None:
        raise ClulError(f"no pipeline under {store.root}: run `clul-ray train` first")
    return cfg


def write_config(store: Store, cfg: PipelineConfig) -> None:
    store.write_json(layout.CONFIG, cfg.model_dump())
