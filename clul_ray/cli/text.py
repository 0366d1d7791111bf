"""``clul-ray tokenizer``: learn a BPE vocabulary from a corpus declared never-deletable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import AsJson, emit, run


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
