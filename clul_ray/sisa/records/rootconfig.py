"""A root's stored pipeline config (``config.json``): read and written here only."""

from __future__ import annotations

from ...config import PipelineConfig
from ...storage import layout
from ...storage.store import Store


def read_config(store: Store) -> PipelineConfig | None:
    return store.read_record(layout.CONFIG, PipelineConfig)


def require_config(store: Store) -> PipelineConfig:
    return store.require_record(layout.CONFIG, PipelineConfig, f"no pipeline under "
                                f"{store.root}: run `clul-ray train` first")


def write_config(store: Store, cfg: PipelineConfig) -> None:
    store.write_json(layout.CONFIG, cfg.model_dump())
