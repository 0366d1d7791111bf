"""``gpt-tiny``: a small GPT-2-shaped causal language model in plain torch, and the
language-model losses every text path shares.

The model maps token ids, given as the float ``x`` rows every clul_ray model takes
(``(n, context)``: ``<bos> tokens <eos>`` then padding, see :mod:`.tokenizer`), to
next-token logits ``(n, context, vocab)``. Pre-LayerNorm blocks, learned positions, tied
input and output embeddings (GPT-2's shape); causal attention written out (a matmul and a
mask, no fused kernel), so a seeded training is bit-for-bit reproducible per thread count.
Padding sits only at the end of a row, so causal attention from a real token never sees
it; targets that are padding carry no loss.

``CausalLM.task == "lm"`` is how the trainer, the ensemble and the methods tell a language
model from a classifier (``models.is_language_model``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .tokenizer import PAD


class Block(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.fc = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)
        self.drop = nn.Dropout(dropout)

    def attend(self, h: torch.Tensor) -> torch.Tensor:
        n, t, d = h.shape
        q, k, v = self.qkv(h).split(d, dim=2)
        q, k, v = (z.view(n, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        mask = torch.ones(t, t, dtype=torch.bool, device=h.device).triu(1)
        att = self.drop(att.masked_fill(mask, float("-inf")).softmax(-1))
        return self.proj((att @ v).transpose(1, 2).reshape(n, t, d))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.drop(self.attend(self.ln1(h)))
        return h + self.drop(self.out(F.gelu(self.fc(self.ln2(h)))))


class CausalLM(nn.Module):
    """A GPT-2-shaped decoder: ``vocab`` tokens, ``context`` positions."""

    task = "lm"

    def __init__(self, vocab: int, context: int, d_model: int = 128, n_layer: int = 4,
                 n_head: int = 4, dropout: float = 0.0):
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"d_model {d_model} is not a multiple of n_head {n_head}")
        self.vocab, self.context = vocab, context
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.init_weights()

    def init_weights(self) -> None:
        """GPT-2's initialisation, drawn from the global torch RNG (the constructor's draws;
        a module's own ``reset_parameters`` would give the embeddings unit variance)."""
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2's scaled residual projections
            if name.endswith(("proj.weight", "out.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * len(self.blocks)))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The residual stream after the embedding and after each block."""
        ids = ids_of(x)
        t = ids.shape[1]
        h = self.drop(self.tok(ids) + self.pos(torch.arange(t, device=ids.device)))
        out = [h]
        for b in self.blocks:
            h = b(h)
            out.append(h)
        return out

    def logits_from(self, h: torch.Tensor) -> torch.Tensor:
        return self.ln_f(h) @ self.tok.weight.T  # tied embeddings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from(self.hidden_states(x)[-1])


def ids_of(x: torch.Tensor) -> torch.Tensor:
    """Token ids from the float rows clul_ray stores (exact below 2**24)."""
    return x if x.dtype == torch.long else x.round().long()


def trimmed(x: torch.Tensor) -> torch.Tensor:
    """A batch without its trailing columns of padding only (a pure function of the batch:
    a retraining that sees the same batch computes the same thing)."""
    ids = ids_of(x)
    real = (ids != PAD).any(0).nonzero()
    return x[:, :max(2, int(real[-1]) + 1 if len(real) else 2)]


def targets(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token targets ``(n, t-1)`` and their mask (False where the target is padding)."""
    y = ids_of(x)[:, 1:]
    return y, y != PAD


def token_logprobs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log p(x[t+1] | x[:t+1])`` per position ``(n, t-1)`` (0 at padding) and the mask;
    the model runs on the batch without its trailing padding (:func:`trimmed`)."""
    xt = trimmed(x)
    logits = model(xt)[:, :-1]
    y, mask = targets(xt)
    lp = torch.log_softmax(logits.float(), -1).gather(2, y.unsqueeze(2)).squeeze(2) * mask
    pad = x.shape[1] - xt.shape[1]
    if pad:
        lp = torch.nn.functional.pad(lp, (0, pad))
        mask = torch.nn.functional.pad(mask, (0, pad))
    return lp, mask


def sequence_nll(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Each row's mean negative log-likelihood per real target token ``(n,)``."""
    lp, mask = token_logprobs(model, x)
    return -lp.sum(1) / mask.sum(1).clamp_min(1)


def lm_loss(model: nn.Module, x: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy over the real target tokens of a batch (mean or sum)."""
    x = trimmed(x)
    logits = model(x)[:, :-1]
    y, mask = targets(x)
    y = y.masked_fill(~mask, -100)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1),
                           ignore_index=-100, reduction=reduction)


def gpt_tiny(input_shape, num_classes, d_model: int = 128, n_layer: int = 4, n_head: int = 4,
             dropout: float = 0.0) -> CausalLM:
    """The model registry's ``gpt-tiny``: ``input_shape = (context,)``, ``num_classes`` the
    vocabulary size (both set by the text source)."""
    if len(input_shape) != 1:
        raise ValueError(f"gpt-tiny is a language model: it takes the token rows (context,) of "
                         f"a text dataset, got input shape {list(input_shape)}")
    return CausalLM(int(num_classes), int(input_shape[0]), d_model, n_layer, n_head, dropout)
