"""Shard models on storage: slice checkpoints and edited artefacts, written and read here.

A checkpoint holds the model, optimizer and RNG state after a slice step, with the key,
shard, slice and sample count it was trained for (the verification scan checks them).
"""

from __future__ import annotations

import hashlib
import io

import torch
from torch import nn

from ...config import PipelineConfig
from ...errors import first_line
from ...models import build_model
from ...storage import layout
from ...storage.store import CorruptFile, Store
from .version import ShardState, SliceResult  # noqa: F401 (SliceResult re-exported)


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


def read_checkpoint(store: Store, shard: int, slc: int, key: str, device: str = "cpu",
                    sha256: str | None = None, with_digest: bool = False):
    """The checkpoint of (shard, slice, key), checked: it exists, its file digest is
    ``sha256`` (when given), it loads, and it records this key, shard and slice. Anything
    else is a one-line ClulError naming the file (never a model trained on a substitute).
    With ``with_digest``: (checkpoint, file digest)."""
    rel = layout.checkpoint_path(shard, slc, key)
    path = store.path(rel)
    if not store.exists(rel):
        raise CorruptFile(path, "missing checkpoint")
    data = store.read_bytes(rel)
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise CorruptFile(path, f"file digest {digest:.12} differs from the recorded "
                                f"{sha256:.12}")
    try:
        ck = deserialize(data, device)
    except Exception as e:  # truncated or not a checkpoint: torch's many error types
        raise CorruptFile(path, f"unreadable checkpoint ({first_line(e)})") from None
    recorded = (ck.get("key"), ck.get("shard"), ck.get("slice")) if isinstance(ck, dict) \
        else None
    if recorded != (key, shard, slc):
        got = "nothing" if recorded is None else \
            f"key {str(recorded[0]):.12} shard {recorded[1]} slice {recorded[2]}"
        raise CorruptFile(path, f"records {got}, expected key {key:.12} shard {shard} "
                                f"slice {slc}")
    return (ck, digest) if with_digest else ck


def write_checkpoint(store: Store, shard: int, slc: int, key: str, state: dict) -> str:
    """Store a checkpoint; returns its file digest."""
    data = serialize(state)
    store.write_bytes(layout.checkpoint_path(shard, slc, key), data)
    return hashlib.sha256(data).hexdigest()


def checkpoint_model(cfg: PipelineConfig, ck: dict) -> nn.Module:
    """A checkpoint's model in eval mode."""
    t = cfg.train
    model = build_model(t.model, cfg.data.input_shape, cfg.data.num_classes, t.model_args)
    model.load_state_dict(ck["model"])
    return model.eval()


def result_from_checkpoint(cfg: PipelineConfig, store: Store, shard: int, slc: int,
                           key: str) -> SliceResult:
    """A stored step's result, read back from its checkpoint (its time and node unknown)."""
    ck, digest = read_checkpoint(store, shard, slc, key, with_digest=True)
    return SliceResult(shard, slc, key, ck["n_samples"], 0.0, "unknown",
                       model_sha256(checkpoint_model(cfg, ck)), digest)


def write_artifact(store: Store, request_id: str, shard: int, model: nn.Module) -> str:
    path = layout.artifact_path(request_id, shard)
    store.write_bytes(path, serialize(model.cpu()))
    return path


def load_shard_model(cfg: PipelineConfig, store: Store, s: ShardState,
                     device: str = "cpu") -> nn.Module:
    """The model a version serves for a shard: its edited artefact, or its last checkpoint."""
    if s.artifact:
        return deserialize(store.read_bytes(s.artifact), device).eval()
    last = cfg.partition.total_slices - 1
    return checkpoint_model(cfg, read_checkpoint(store, s.shard, last, s.keys[last],
                                                 device)).to(device)
