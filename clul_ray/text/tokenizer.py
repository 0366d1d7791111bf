"""Tokenizers of text roots, from the ``tokenizers`` library.

A tokenizer is part of what a deletion must not leak: a BPE vocabulary learned from a
training corpus keeps merges learned from documents later deleted. So the default,
``bytes``, learns nothing: one token per UTF-8 byte (ids ``3 + byte``) after three special
tokens (``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2); a deletion then equals a fresh training
without the rows, tokenizer included, by construction. A learned BPE vocabulary is
allowed only from a corpus the user declares never-deletable (:func:`learn_bpe`, the
``clul-ray tokenizer`` command); it is stored with the root and keyed by its digest.

A document is encoded as ``<bos> tokens <eos>`` then ``<pad>`` up to the context length
(longer documents are cut: :func:`encode` reports how many were).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from ..errors import ClulError

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ["<pad>", "<bos>", "<eos>"]
BYTES = "bytes"


@lru_cache(maxsize=1)
def _byte_chars() -> list[str]:
    """GPT-2's byte -> printable character map (the one ``ByteLevel`` pre-tokenizer uses)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs, strict=True))
    return [chr(table[b]) for b in range(256)]


def _byte_level(model):
    from tokenizers import Tokenizer, decoders, pre_tokenizers

    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return tok


@lru_cache(maxsize=1)
def byte_tokenizer():
    """The default tokenizer: one token per byte, no merges, nothing learned."""
    from tokenizers import models

    vocab = {s: i for i, s in enumerate(SPECIALS)}
    vocab.update({c: len(SPECIALS) + b for b, c in enumerate(_byte_chars())})
    tok = _byte_level(models.BPE(vocab=vocab, merges=[]))
    tok.add_special_tokens(SPECIALS)
    return tok


def learn_bpe(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE vocabulary learned from ``texts`` (a never-deletable corpus only)."""
    from tokenizers import models, pre_tokenizers, trainers

    if vocab_size < len(SPECIALS) + 256:
        raise ClulError(f"a BPE vocabulary needs at least {len(SPECIALS) + 256} tokens "
                        f"(the specials and the 256 bytes), got {vocab_size}")
    tok = _byte_level(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def from_json(text: str):
    """A tokenizer from its JSON (``Tokenizer.to_str()``); refuses one without the specials."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_str(text)
    except Exception as e:  # the library raises its own Exception type
        raise ClulError(f"not a tokenizer file: {str(e).splitlines()[0]}") from None
    for i, s in enumerate(SPECIALS):
        if tok.token_to_id(s) != i:
            raise ClulError(f"the tokenizer must give {s} the id {i} (learned with "
                            "`clul-ray tokenizer`)")
    return tok


def load(spec: str | None):
    """``bytes`` (or None) -> the byte tokenizer; a path -> a tokenizer JSON file."""
    if spec in (None, "", BYTES):
        return byte_tokenizer()
    try:
        with open(spec, encoding="utf-8") as f:
            return from_json(f.read())
    except OSError as e:
        raise ClulError(f"cannot read tokenizer {spec}: {e.strerror}") from None


def digest(tok) -> str:
    """The content digest of a tokenizer (its JSON)."""
    return hashlib.sha256(tok.to_str().encode()).hexdigest()


def tokenizer_spec(tok) -> str:
    """How a root's config names a tokenizer: ``bytes``, or ``sha256:DIGEST`` of a learned
    one (stored with the root)."""
    return BYTES if digest(tok) == digest(byte_tokenizer()) else f"sha256:{digest(tok)}"


def vocab_size(tok) -> int:
    return int(tok.get_vocab_size(with_added_tokens=True))


def encode(tok, texts: Sequence[str], context: int) -> tuple[np.ndarray, int]:
    """Documents -> ``(n, context)`` int64 ids (``<bos> ... <eos>`` and padding) and how
    many documents were cut at the context length."""
    if context < 3:
        raise ClulError(f"a text context needs at least 3 tokens, got {context}")
    out = np.full((len(texts), context), PAD, dtype=np.int64)
    cut = 0
    if not len(texts):
        return out, 0
    for i, enc in enumerate(tok.encode_batch(list(texts), add_special_tokens=False)):
        ids = [BOS, *enc.ids, EOS]
        if len(ids) > context:
            cut += 1
            ids = ids[:context]
        out[i, :len(ids)] = ids
    return out, cut


def encode_prompt(tok, text: str) -> list[int]:
    """A prompt's ids: ``<bos>`` and its tokens, no ``<eos>`` (a model continues it)."""
    return [BOS, *tok.encode(text, add_special_tokens=False).ids]


def decode(tok, ids: Iterable[int]) -> str:
    """Ids -> text, stopping at the first ``<eos>`` and skipping ``<bos>`` and padding."""
    keep: list[int] = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        if i not in (PAD, BOS):
            keep.append(i)
    return tok.decode(keep, skip_special_tokens=True)
