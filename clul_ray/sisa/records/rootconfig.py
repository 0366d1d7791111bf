"""A root's stored pipeline config (``config.json``): read and written here only."""

from __future__ import annotations

from ...config import PipelineConfig
from ...errors import ClulError
from ...storage import layout
from ...storage.store import Store
from ...text.tokenizer import BYTES, byte_tokenizer, from_json, tokenizer_spec


def read_config(store: Store) -> PipelineConfig | None:
    return store.read_record(layout.CONFIG, PipelineConfig)


def require_config(store: Store) -> PipelineConfig:
    return store.require_record(layout.CONFIG, PipelineConfig, f"no pipeline under "
                                f"{store.root}: run `clul-ray train` first")


def write_config(store: Store, cfg: PipelineConfig) -> None:
    store.write_json(layout.CONFIG, cfg.model_dump())


def write_tokenizer(store: Store, cfg: PipelineConfig, tok) -> None:
    """A text root's learned tokenizer, beside its config (the byte tokenizer is not
    stored: it is the library's, and learns nothing)."""
    if cfg.task == "lm" and cfg.data.tokenizer != BYTES:
        store.write_bytes(layout.TOKENIZER, tok.to_str().encode())


def read_tokenizer(store: Store, cfg: PipelineConfig):
    """The tokenizer a text root's rows were made with; refuses a stored file whose digest
    is not the one its config records (a tokenizer mismatch with the root)."""
    if cfg.data.tokenizer == BYTES:
        return byte_tokenizer()
    if not store.exists(layout.TOKENIZER):
        raise ClulError(f"{store.root} records tokenizer {cfg.data.tokenizer[:19]}... but "
                        f"has no {layout.TOKENIZER}")
    tok = from_json(store.read_bytes(layout.TOKENIZER).decode())
    if tokenizer_spec(tok) != cfg.data.tokenizer:
        raise ClulError(f"tokenizer mismatch with the root: {layout.TOKENIZER} is "
                        f"{tokenizer_spec(tok)[:19]}..., the config records "
                        f"{cfg.data.tokenizer[:19]}...")
    return tok
