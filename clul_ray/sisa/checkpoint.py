"""Shard models on storage: slice checkpoints and edited artefacts, written and read here.

A checkpoint holds the model, optimizer and RNG state after a slice step, with the key,
shard, slice and sample count it was trained for (the verification scan checks them).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import torch
from torch import nn

from .. import layout
from ..config import PipelineConfig
from ..models import build_model
from ..store import Store
from .version import ShardState


@dataclass
class SliceResult:
    shard: int
    slice: int
    key: str
    n_samples: int
    seconds: float
    node_id: str
    model_sha256: str


def model_sha256(model: nn.Module) -> str:
    """Digest of a model's parameters and buffers (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def serialize(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def deserialize(data: bytes, device: str = "cpu"):
    return torch.load(io.BytesIO(data), map_location=device, weights_only=False)


def read_checkpoint(store: Store, shard: int, slc: int, key: str, device: str = "cpu") -> dict:
    return deserialize(store.read_bytes(layout.checkpoint_path(shard, slc, key)), device)


def write_checkpoint(store: Store, shard: int, slc: int, key: str, state: dict) -> None:
    store.write_bytes(layout.checkpoint_path(shard, slc, key), serialize(state))


def checkpoint_model(cfg: PipelineConfig, ck: dict) -> nn.Module:
    """A checkpoint's model in eval mode."""
    t = cfg.train
    model = build_model(t.model, cfg.data.input_shape, cfg.data.num_classes, t.model_args)
    model.load_state_dict(ck["model"])
    return model.eval()


def result_from_checkpoint(cfg: PipelineConfig, store: Store, shard: int, slc: int,
                           key: str) -> SliceResult:
    """A stored step's result, read back from its checkpoint (its time and node unknown)."""
    ck = read_checkpoint(store, shard, slc, key)
    return SliceResult(shard, slc, key, ck["n_samples"], 0.0, "unknown",
                       model_sha256(checkpoint_model(cfg, ck)))


def write_artifact(store: Store, request_id: str, shard: int, model: nn.Module) -> str:
    path = layout.artifact_path(request_id, shard)
    store.write_bytes(path, serialize(model.cpu()))
    return path


def load_shard_model(cfg: PipelineConfig, store: Store, s: ShardState,
                     device: str = "cpu") -> nn.Module:
    """The model a version serves for a shard: its edited artefact, or its last checkpoint."""
    if s.artifact:
        return deserialize(store.read_bytes(s.artifact), device).eval()
    last = cfg.partition.slices - 1
    return checkpoint_model(cfg, read_checkpoint(store, s.shard, last, s.keys[last],
                                                 device)).to(device)
