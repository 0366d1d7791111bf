"""The shard trainer: one slice step of one shard, in plain torch (no Ray).

Every random choice is seeded from (seed, shard, slice, epoch): initialisation from
(seed, shard, -1, 0), the shuffle and dropout of epoch e of slice r from (seed, shard, r, e).
With the same torch thread count this makes a retrain bit-for-bit equal to a fresh run.
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from ..config import PipelineConfig
from ..data.sources import features
from ..hashing import derive_seed
from ..models import build_model
from ..store import Store
from .plan import epochs_per_slice


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


def make_optimizer(cfg: PipelineConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def init_model(cfg: PipelineConfig, shard: int) -> nn.Module:
    torch.manual_seed(derive_seed(cfg.seed, shard, -1, 0))
    return build_model(cfg.model, cfg.input_shape, cfg.num_classes, cfg.model_args)


def load_union(store: Store, shard: int, upto: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of slices 0..upto of a shard, ordered by id."""
    tables = [t for r in range(upto + 1)
              if (t := store.read_slice(shard, r, ["id", "label", "x"])) is not None]
    d = dim
    if not tables:
        return np.zeros((0, d), np.float32), np.zeros(0, np.int64)
    t = pa.concat_tables(tables).sort_by("id")
    return features(t), t.column("label").to_numpy()


def serialize(obj: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def deserialize(data: bytes, device: str = "cpu") -> dict:
    return torch.load(io.BytesIO(data), map_location=device, weights_only=False)


def _read_checkpoint(cfg: PipelineConfig, store: Store, shard: int, slc: int, key: str,
                     device: str = "cpu") -> tuple[nn.Module, dict]:
    ck = deserialize(store.read_bytes(store.checkpoint_path(shard, slc, key)), device)
    model = build_model(cfg.model, cfg.input_shape, cfg.num_classes, cfg.model_args)
    model.load_state_dict(ck["model"])
    return model, ck


def load_checkpoint_model(cfg: PipelineConfig, store: Store, shard: int, slc: int,
                          key: str, device: str = "cpu") -> nn.Module:
    model, _ = _read_checkpoint(cfg, store, shard, slc, key, device)
    return model.to(device).eval()


def result_from_checkpoint(cfg: PipelineConfig, store: Store, shard: int, slc: int,
                           key: str) -> SliceResult:
    """A stored step's result, read back from its checkpoint (its time and node unknown)."""
    model, ck = _read_checkpoint(cfg, store, shard, slc, key)
    return SliceResult(shard, slc, key, ck["n_samples"], 0.0, "unknown", model_sha256(model))


def device_for(cfg: PipelineConfig) -> str:
    return "cuda" if cfg.gpus_per_shard > 0 and torch.cuda.is_available() else "cpu"


def train_slice(cfg: PipelineConfig, store: Store, shard: int, slc: int,
                keys: list[str], node_id: str = "local", rank: int = 0,
                world_size: int = 1) -> SliceResult:
    """Train slice ``slc`` of ``shard`` from the checkpoint of slice ``slc-1`` and store it.

    With ``world_size > 1`` (Ray Train, inside an initialised ``torch.distributed`` group)
    the model is wrapped in DistributedDataParallel: every rank draws the same seeded
    permutation and global batch, and takes the rows ``batch[rank::world_size]``, so the
    optimizer makes the same steps over the same batches; gradient averaging changes float
    sums, so results differ from ``world_size == 1`` but are deterministic per world size.
    Rank 0 writes the checkpoint; the other ranks wait for it at a barrier.
    """
    t0 = time.perf_counter()
    torch.set_num_threads(cfg.threads_per_shard)
    device = device_for(cfg)
    if device == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    x_np, y_np = load_union(store, shard, slc, int(np.prod(cfg.input_shape)))
    x, y = torch.tensor(x_np, device=device), torch.tensor(y_np, device=device)

    model = init_model(cfg, shard)
    if slc == 0:
        if cfg.normalize:  # statistics from this shard's own first slice only
            model.norm.fit(x)
        model = model.to(device)
        opt = make_optimizer(cfg, model)
    else:
        ck = deserialize(store.read_bytes(store.checkpoint_path(shard, slc - 1, keys[slc - 1])),
                         device)
        model.load_state_dict(ck["model"])
        model = model.to(device)
        opt = make_optimizer(cfg, model)
        opt.load_state_dict(ck["optimizer"])

    loss_fn = nn.CrossEntropyLoss()
    net: nn.Module = model
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    n = len(y)
    for epoch in range(epochs_per_slice(cfg.epochs, cfg.slices, cfg.epochs_per_slice)):
        if n == 0:
            break
        seed = derive_seed(cfg.seed, shard, slc, epoch)
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # dropout and any other sampling inside the model
        perm = torch.randperm(n, generator=gen).to(device)
        model.train()
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            if world_size == 1:
                loss_fn(model(x[idx]), y[idx]).backward()
            else:  # this rank's share; DDP's mean over ranks makes it the batch mean
                mine = idx[rank::world_size]
                loss = nn.functional.cross_entropy(net(x[mine]), y[mine], reduction="sum")
                (loss * (world_size / len(idx))).backward()
            opt.step()
    model.eval()
    state = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": _to_cpu(opt.state_dict()),
        "rng": torch.get_rng_state(),
        "key": keys[slc], "shard": shard, "slice": slc, "n_samples": n,
        "training_digest": cfg.training_digest(),
    }
    if rank == 0:
        store.write_bytes(store.checkpoint_path(shard, slc, keys[slc]), serialize(state))
    if world_size > 1:
        torch.distributed.barrier()  # the next slice (any rank) reads this checkpoint
    return SliceResult(shard, slc, keys[slc], n, time.perf_counter() - t0, node_id,
                       model_sha256(model))


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj
