"""The shard trainer: one slice step of one shard, in plain torch (no Ray).

Every random choice is seeded from (seed, shard, slice, epoch): initialisation from
(seed, shard, -1, 0), the shuffle and dropout of epoch e of slice r from (seed, shard, r, e).
With the same torch thread count this makes a retrain bit-for-bit equal to a fresh run.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from ...config import PipelineConfig, resolve_device
from ...data.sources import features
from ...errors import ClulError
from ...hashing import derive_seed
from ...models import batch_loss, build_model, is_language_model
from ...optim import make_optimizer
from ...storage.store import Store
from ..decisions.plan import epochs_per_slice
from ..records.checkpoint import SliceResult, model_sha256, read_checkpoint, write_checkpoint


def make_shard_optimizer(cfg: PipelineConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer of a shard's trainable parameters (all of them, but a LoRA model's
    adapters only: its frozen base never changes)."""
    t = cfg.train
    params = [p for p in model.parameters() if p.requires_grad]
    return make_optimizer(params, t.optimizer, t.lr, t.momentum, t.weight_decay)


def init_model(cfg: PipelineConfig, shard: int) -> nn.Module:
    torch.manual_seed(derive_seed(cfg.train_seed, shard, -1, 0))
    t = cfg.train
    return build_model(t.model, cfg.data.input_shape, cfg.data.num_classes, t.model_args)


def load_union(store: Store, shard: int, upto: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of slices 0..upto of a shard, ordered by id."""
    t = store.read_shard(shard, upto, ["id", "label", "x"])
    if t is None:
        return np.zeros((0, dim), np.float32), np.zeros(0, np.int64)
    return features(t), t.column("label").to_numpy()


def device_for(cfg: PipelineConfig, node_id: str = "local") -> str:
    """The device this step trains on (:func:`~clul_ray.config.resolve_device` with CUDA as
    found here); refused when it is not the device the step's keys were made for
    (``cfg.device``, the driver's view): a GPU step without CUDA never writes a CPU model
    under a key that names ``cuda``."""
    device = resolve_device(cfg.compute.gpus_per_shard, torch.cuda.is_available())
    if device != cfg.device:
        raise ClulError(f"gpus_per_shard is {cfg.compute.gpus_per_shard:g} and the checkpoint "
                        f"keys name {cfg.device}, but CUDA is not available on node "
                        f"{node_id}: nothing trained (a torch build with CUDA there, or "
                        "gpus_per_shard: 0 to train on the CPU)")
    return device


def train_slice(cfg: PipelineConfig, store: Store, shard: int, slc: int,
                keys: list[str], node_id: str = "local", rank: int = 0,
                world_size: int = 1, prev_sha: str | None = None) -> SliceResult:
    """Train slice ``slc`` of ``shard`` from the checkpoint of slice ``slc-1`` and store it.

    With ``world_size > 1`` (Ray Train, inside an initialised ``torch.distributed`` group)
    the model is wrapped in DistributedDataParallel: every rank draws the same seeded
    permutation and global batch, and takes the rows ``batch[rank::world_size]``, so the
    optimizer makes the same steps over the same batches; gradient averaging changes float
    sums, so results differ from ``world_size == 1`` but are deterministic per world size.
    Rank 0 writes the checkpoint; the other ranks wait for it at a barrier.
    """
    t0 = time.perf_counter()
    torch.set_num_threads(cfg.compute.threads_per_shard)
    device = device_for(cfg, node_id)
    if device == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    x_np, y_np = load_union(store, shard, slc, int(np.prod(cfg.data.input_shape)))
    x, y = torch.tensor(x_np, device=device), torch.tensor(y_np, device=device)

    model = init_model(cfg, shard)
    if slc == 0:
        if cfg.train.normalize and not is_language_model(model):
            model.norm.fit(x)  # statistics from this shard's own first slice only
        model = model.to(device)
        opt = make_shard_optimizer(cfg, model)
    else:
        ck = read_checkpoint(store, shard, slc - 1, keys[slc - 1], device, prev_sha or None)
        model.load_state_dict(ck["model"])
        model = model.to(device)
        opt = make_shard_optimizer(cfg, model)
        opt.load_state_dict(ck["optimizer"])

    net: nn.Module = model
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    n = len(y)
    eps = epochs_per_slice(cfg.train.epochs, cfg.partition.slices, cfg.train.epochs_per_slice)
    if slc >= cfg.partition.slices and len(store.slice_ids(shard, slc)) == 0:
        eps = 0  # an appended slice without rows keeps the previous state (see .grow)
    for epoch in range(eps):
        if n == 0:
            break
        seed = derive_seed(cfg.train_seed, shard, slc, epoch)
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # dropout and any other sampling inside the model
        perm = torch.randperm(n, generator=gen).to(device)
        model.train()
        for i in range(0, n, cfg.train.batch_size):
            idx = perm[i:i + cfg.train.batch_size]
            opt.zero_grad(set_to_none=True)
            if world_size == 1:
                batch_loss(model, x[idx], y[idx]).backward()
            else:  # this rank's share; DDP's mean over ranks makes it the batch mean
                mine = idx[rank::world_size]
                loss = batch_loss(net, x[mine], y[mine], reduction="sum")
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
    digest = ""
    if rank == 0:
        digest = write_checkpoint(store, shard, slc, keys[slc], state)
    if world_size > 1:
        torch.distributed.barrier()  # the next slice (any rank) reads this checkpoint
    return SliceResult(shard, slc, keys[slc], n, time.perf_counter() - t0, node_id,
                       model_sha256(model), digest)


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj
