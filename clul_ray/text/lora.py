"""``gpt-tiny-lora``: one LoRA adapter per shard over a frozen base (:mod:`.base`).

The factory loads the base file, checks it against the root (vocabulary size and context;
the file's sha256 against the ``base_sha256`` the root recorded when it was trained),
builds the ``gpt-tiny`` of the base's args with its weights, and wraps it with ``peft``:
only the ``lora_`` weights train. Their initialisation is A random (from the global torch
generator the trainer seeds before it builds a shard's model) and B zero, so a fresh
training is bit-for-bit repeatable and a deletion's retraining equals it. The wrapped
model takes the same float token rows and keeps ``task == "lm"`` reachable.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..errors import ClulError
from .base import file_sha256, read_base

TARGETS = ("qkv", "proj", "fc", "out")  # the attention and MLP linears of each block


class BaseModelError(ClulError, ValueError):
    """A base file that does not fit the root (one line)."""


def targets_of(target: str | Sequence[str] | None) -> list[str]:
    """``"qkv,proj"`` or ``["qkv", "proj"]`` -> the Linear names LoRA adapts."""
    names = target.split(",") if isinstance(target, str) else list(target or TARGETS)
    names = [str(n).strip() for n in names if str(n).strip()]
    unknown = sorted(set(names) - set(TARGETS))
    if unknown or not names:
        raise BaseModelError(f"LoRA target must name block linears among {list(TARGETS)}, "
                             f"got {names or target!r}")
    return names


def gpt_tiny_lora(input_shape, num_classes, base: str | None = None, r: int = 8,
                  alpha: float = 16, dropout: float = 0.0,
                  target: str | Sequence[str] | None = None,
                  base_sha256: str | None = None) -> nn.Module:
    """The model registry's ``gpt-tiny-lora`` (``model_args``: ``base`` the base file,
    ``r``, ``alpha``, ``dropout``, ``target``; ``base_sha256`` is recorded by ``train``)."""
    from peft import LoraConfig, get_peft_model

    from .lm import gpt_tiny

    if not base:
        raise BaseModelError("gpt-tiny-lora needs a base model: --model-arg base=FILE "
                             "(clul-ray lm-base writes one)")
    if int(r) < 1:
        raise BaseModelError(f"LoRA rank r must be at least 1, got {r}")
    names = targets_of(target)
    sha = file_sha256(base)
    if base_sha256 is not None and sha != base_sha256:
        raise BaseModelError(f"{base}: the base model file changed since this root was "
                             f"trained (sha256 {sha:.12}, recorded {base_sha256:.12})")
    state, meta = read_base(base)
    shape = list(input_shape)
    if shape != [meta["context"]] or int(num_classes) != meta["vocab_size"]:
        raise BaseModelError(f"the base model {base} has vocabulary {meta['vocab_size']} and "
                             f"context {meta['context']}, the root {num_classes} and "
                             f"{shape[0] if len(shape) == 1 else shape} (train with "
                             f"--context {meta['context']} and the base's tokenizer)")
    model = gpt_tiny((meta["context"],), meta["vocab_size"], **meta["model_args"])
    model.load_state_dict(state)
    cfg = LoraConfig(r=int(r), lora_alpha=alpha, lora_dropout=float(dropout),
                     target_modules=names)
    return get_peft_model(model, cfg)


def base_key(name: str) -> str:
    """A wrapped model's state-dict key -> the base's (``base_model.model.`` and
    ``.base_layer`` dropped); ``lora_`` keys have none."""
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")
