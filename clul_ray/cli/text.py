"""``clul-ray tokenizer`` and ``clul-ray lm-base``: what text roots learn from a corpus declared
never-deletable (a BPE vocabulary, a base model for per-shard LoRA adapters)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import AsJson, emit, emit_progress, parse_model_args, run


def tokenizer(
    corpus: Annotated[str, typer.Option(
        help="text:PATH of documents that will never be deleted (the vocabulary keeps what "
             "it learns from them)")] = ...,
    vocab_size: Annotated[int, typer.Option(help="tokens in the vocabulary (>= 259)")] = 512,
    out_path: Annotated[Path, typer.Option("--out", help="where to write the tokenizer JSON")]
    = Path("tokenizer.json"),
    as_json: AsJson = False,
) -> None:
    """Learn a byte-level BPE tokenizer for text roots (train --tokenizer FILE). Only from a
    corpus that is never deleted: a deletion cannot take back merges learned from a row."""

    def body() -> None:
        from ..data.sources import open_source
        from ..errors import ClulError
        from ..text.tokenizer import byte_tokenizer, decode, learn_bpe, tokenizer_spec
        from ..text.tokenizer import vocab_size as size

        if not corpus.startswith("text:"):
            raise ClulError(f"--corpus must be text:PATH, got '{corpus}'")
        if out_path.exists() and out_path.is_dir():
            raise ClulError(f"--out {out_path} is a folder")
        src = open_source(corpus)  # bytes: the documents' text, checked (empty, UTF-8)
        texts = [decode(byte_tokenizer(), row) for row in
                 src.table.column("x").combine_chunks().flatten().to_numpy()
                 .reshape(src.table.num_rows, -1)]
        tok = learn_bpe(texts, vocab_size)
        out_path.write_text(tok.to_str())
        emit({"out": str(out_path), "documents": len(texts), "vocab_size": size(tok),
              "tokenizer": tokenizer_spec(tok)}, as_json,
             lambda r: typer.echo(f"wrote {r['out']}: {r['vocab_size']} tokens learned from "
                                  f"{r['documents']} documents ({r['tokenizer'][:19]}...)"))

    run(body)


def lm_base(
    corpus: Annotated[str, typer.Option(
        help="text:PATH of documents that will never be deleted (the base keeps what it "
             "learns from them)")] = ...,
    out_path: Annotated[Path, typer.Option("--out", help="where to write the base model file")]
    = Path("base.pt"),
    context: Annotated[int, typer.Option(help="tokens per document (the roots' --context)")]
    = 256,
    model_arg: Annotated[list[str] | None, typer.Option(
        help="a gpt-tiny argument KEY=VALUE (repeatable), e.g. d_model=64")] = None,
    epochs: Annotated[int, typer.Option(help="passes over the corpus")] = 1,
    lr: Annotated[float, typer.Option(help="Adam's learning rate")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="documents per step")] = 32,
    seed: Annotated[int, typer.Option(help="seed of the initialisation and the order")] = 0,
    tokenizer: Annotated[str, typer.Option(
        help="bytes (default) or a tokenizer JSON (clul-ray tokenizer): the roots' own")]
    = "bytes",
    as_json: AsJson = False,
) -> None:
    """Train a gpt-tiny base for per-shard LoRA adapters (train --model gpt-tiny-lora
    --model-arg base=FILE). Only on a corpus that is never deleted: a deletion retrains the
    adapters, never the base."""

    def body() -> None:
        from ..data.sources import features, open_source
        from ..errors import ClulError
        from ..text.base import train_base
        from ..text.tokenizer import load

        if not corpus.startswith("text:"):
            raise ClulError(f"--corpus must be text:PATH, got '{corpus}'")
        args = parse_model_args(model_arg or [])
        tok = load(tokenizer)
        rows = features(open_source(corpus, input_shape=[context], tokenizer=tok).table)
        emit_progress(lambda prog: train_base(rows, out_path, tok, corpus, args, epochs, lr,
                                              batch_size, seed, prog), as_json,
                      lambda r: typer.echo(
                          f"wrote {r['out']}: gpt-tiny trained on {r['trained_on']['rows']} "
                          f"documents for {r['trained_on']['epochs']} epochs, final loss "
                          f"{r['final_loss']:.4f} (sha256 {r['sha256'][:12]}...)"))

    run(body)
