"""A base language model trained only on a corpus declared never-deletable, for the
per-shard LoRA adapters of :mod:`.lora` (``clul-ray lm-base``).

Like a learned tokenizer, the base keeps what it learned from its corpus: a deletion from
a SISA root retrains only the adapters over it, so the base may see no row that could ever
be deleted. The file holds the ``gpt-tiny`` state dict and what it is: the model args, the
vocabulary size, the context, the tokenizer spec, and what it was trained on (corpus,
rows, epochs, seed). A root records the file's sha256 (``base_sha256``) and refuses a
file whose content changed since it was trained.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ClulError

FORMAT = "clul-ray-lm-base/1"
Progress = Callable[[str, int, int], None]


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes; a missing file is a one-line ClulError."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except FileNotFoundError:
        raise ClulError(f"base model file not found: {path} (clul-ray lm-base writes one)"
                        ) from None
    except OSError as e:
        raise ClulError(f"cannot read base model file {path}: {e.strerror}") from None
    return h.hexdigest()


def read_base(path: str | Path) -> tuple[dict, dict[str, Any]]:
    """A base file's ``(state dict, meta)``; refuses a missing or foreign file in one line."""
    import io

    import torch

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ClulError(f"base model file not found: {path} (clul-ray lm-base writes one)"
                        ) from None
    except OSError as e:
        raise ClulError(f"cannot read base model file {path}: {e.strerror}") from None
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types for a file that is not its own
        obj = None
    if not isinstance(obj, dict) or obj.get("meta", {}).get("format") != FORMAT:
        raise ClulError(f"{path} is not a base model file (clul-ray lm-base writes one)")
    return obj["state"], obj["meta"]


def train_base(x: np.ndarray, out: str | Path, tok, corpus: str,
               model_args: dict[str, Any] | None = None, epochs: int = 1, lr: float = 1e-3,
               batch_size: int = 32, seed: int = 0,
               progress: Progress | None = None) -> dict[str, Any]:
    """Train a ``gpt-tiny`` on the token rows ``x`` (``(n, context)``, the documents of the
    never-deletable ``corpus`` made with the tokenizer ``tok``) in this process, seeded,
    with Adam, and write the base file ``out``; returns its meta with its sha256."""
    import torch

    from .lm import gpt_tiny, lm_loss
    from .tokenizer import tokenizer_spec, vocab_size

    for name, value in (("epochs", epochs), ("batch size", batch_size)):
        if value < 1:
            raise ClulError(f"the {name} must be at least 1, got {value}")
    if lr <= 0:
        raise ClulError(f"the learning rate must be positive, got {lr}")
    if Path(out).is_dir():
        raise ClulError(f"--out {out} is a folder")
    rows = torch.tensor(np.asarray(x, dtype=np.float32))
    context = int(rows.shape[1])
    args = dict(model_args or {})
    torch.manual_seed(seed)
    try:
        model = gpt_tiny((context,), vocab_size(tok), **args)
    except (TypeError, ValueError) as e:
        raise ClulError(f"gpt-tiny does not accept these model args: {e}") from None
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * -(-len(rows) // batch_size)
    report = progress or (lambda desc, done, total: None)
    report("training the base", 0, steps)
    model.train()
    gen = torch.Generator().manual_seed(seed)
    done = 0
    for _ in range(epochs):
        perm = torch.randperm(len(rows), generator=gen)
        for i in range(0, len(rows), batch_size):
            opt.zero_grad(set_to_none=True)
            loss = lm_loss(model, rows[perm[i:i + batch_size]])
            loss.backward()
            opt.step()
            done += 1
            report("training the base", done, steps)
    model.eval()
    meta = {"format": FORMAT, "model": "gpt-tiny", "model_args": args,
            "vocab_size": vocab_size(tok), "context": context, "tokenizer": tokenizer_spec(tok),
            "trained_on": {"corpus": corpus, "rows": int(len(rows)), "epochs": int(epochs),
                           "seed": int(seed), "lr": float(lr), "batch_size": int(batch_size)},
            "final_loss": float(loss.detach())}
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save({"state": state, "meta": meta}, out)
    return {**meta, "out": str(out), "sha256": file_sha256(out)}
