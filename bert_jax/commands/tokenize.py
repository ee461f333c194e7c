"""`bert-jax tokenize --vocab=PATH [--nolower_case] < text`: WordPiece each stdin line.

Prints one JSON object per input line, `{"tokens": [...], "ids": [...]}`, with
no [CLS]/[SEP]; an empty line gives empty lists. Bytes that are not UTF-8 are
dropped (decoded to U+FFFD, which BERT's cleaning removes).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

from absl import flags

from bert_jax.errors import UserError
from bert_jax.tokenization import WordPieceTokenizer

_VOCAB = flags.DEFINE_string("vocab", None, "BERT vocab.txt (one token per line, UTF-8).", required=True)
_LOWER_CASE = flags.DEFINE_boolean(
    "lower_case", True, "Uncased model: lowercase and strip accents (--nolower_case for cased)."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 1024, "Lines tokenized per batch.", lower_bound=1)


def _stdin_lines() -> Iterator[bytes]:
    for line in sys.stdin.buffer:
        yield line.rstrip(b"\n")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; the text comes on stdin")
    tokenizer = WordPieceTokenizer(_VOCAB.value, lower_case=_LOWER_CASE.value)
    out = sys.stdout.buffer
    for tokens, ids in tokenizer.iter_encode(_stdin_lines(), batch_size=_BATCH_SIZE.value):
        out.write(json.dumps({"tokens": tokens, "ids": ids}, ensure_ascii=False).encode("utf-8") + b"\n")
    out.flush()
