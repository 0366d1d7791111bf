"""A SISA language-model ensemble at work: each shard's next-token distribution, their
mean, and what that mean scores and generates. The shards of a version that may vote are
given by the caller (the deletion service excludes a shard that holds rows of a pending
request), so a text the ensemble scores or writes is never computed with an excluded
shard."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ClulError
from .lm import token_logprobs
from .tokenizer import EOS, decode, encode, encode_prompt

MAX_NEW_TOKENS = 512


@torch.no_grad()
def mean_logprobs(models: Sequence[nn.Module], x: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``log`` of the shards' mean probability of each true next token ``(n, t-1)`` (0 at
    padding) and the mask of real targets."""
    if not models:
        raise ClulError("no shard model to score with")
    probs, mask = None, None
    for m in models:
        lp, mask = token_logprobs(m, x)
        probs = lp.exp() if probs is None else probs + lp.exp()
    return torch.log(probs / len(models)) * mask, mask


def score_texts(models: Sequence[nn.Module], tok, context: int,
                texts: Sequence[str]) -> list[dict]:
    """Each text's tokens, mean negative log-likelihood per token and perplexity under the
    ensemble (texts longer than ``context`` tokens are scored on their first ``context``)."""
    if not texts or any(not isinstance(t, str) or not t for t in texts):
        raise ClulError("texts must be a non-empty list of non-empty strings")
    ids, _ = encode(tok, list(texts), context)
    lp, mask = mean_logprobs(models, torch.from_numpy(ids.astype(np.float32)))
    n = mask.sum(1).clamp_min(1)
    nll = (-lp.sum(1) / n).tolist()
    return [{"tokens": int(k), "nll": float(v), "perplexity": float(np.exp(v)),
             "cut": bool(len(tok.encode(t, add_special_tokens=False).ids) + 2 > context)}
            for t, k, v in zip(texts, mask.sum(1).tolist(), nll, strict=True)]


@torch.no_grad()
def generate(models: Sequence[nn.Module], tok, context: int, prompt: str,
             max_tokens: int = 64) -> dict:
    """Greedy continuation of ``prompt`` by the mean of the shards' next-token
    distributions, until ``<eos>``, ``max_tokens`` or the context length."""
    if not isinstance(prompt, str):
        raise ClulError("prompt must be a string")
    if not 1 <= int(max_tokens) <= MAX_NEW_TOKENS:
        raise ClulError(f"max_tokens must be within 1..{MAX_NEW_TOKENS}, got {max_tokens}")
    if not models:
        raise ClulError("no shard model to generate with")
    ids = encode_prompt(tok, prompt)
    if len(ids) >= context:
        raise ClulError(f"the prompt holds {len(ids)} tokens; the context is {context}")
    new: list[int] = []
    while len(new) < max_tokens and len(ids) < context:
        x = torch.tensor([ids], dtype=torch.float32)
        p = sum(torch.softmax(m(x)[0, -1].float(), -1) for m in models) / len(models)
        nxt = int(p.argmax())
        if nxt == EOS:
            break
        ids.append(nxt)
        new.append(nxt)
    return {"prompt": prompt, "completion": decode(tok, new), "tokens": len(new)}
