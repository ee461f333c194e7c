"""`bert-jax tokenize --vocab=PATH [--nolower_case] < text`: tokenize each stdin line.

PATH is any tokenizer `bert_jax.tokenization.load_tokenizer` reads: a BERT
vocab.txt (WordPiece), a RoBERTa vocab.json with merges.txt beside it
(byte-level BPE), a SentencePiece .model, or a folder holding one of them (a
Hugging Face model or tokenizer folder, whose tokenizer_config.json then gives
the flavor and casing). Prints one JSON object per input line,
`{"tokens": [...], "ids": [...]}`, with no [CLS]/[SEP] (<s>/</s>); an empty line
gives empty lists. Bytes that are not UTF-8 are read as U+FFFD (which
WordPiece's cleaning drops).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

from absl import flags

from bert_jax.errors import UserError
from bert_jax.tokenization import load_tokenizer

_VOCAB = flags.DEFINE_string(
    "vocab", None, "vocab.txt, vocab.json (+ merges.txt), a SentencePiece .model or a tokenizer folder.", required=True
)
_LOWER_CASE = flags.DEFINE_boolean(
    "lower_case", None,
    "Lowercase (and strip accents) before tokenizing. Default: the folder's tokenizer_config.json, else the "
    "kind's own (WordPiece and ALBERT: true; byte-level BPE and XLM-R/CamemBERT never lowercase).",
)
_FLAVOR = flags.DEFINE_enum(
    "flavor", None, ["xlmr", "camembert", "albert"],
    "SentencePiece id layout (default: from the folder's files, else albert if the model has [CLS], else xlmr).",
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 1024, "Lines tokenized per batch.", lower_bound=1)


def _stdin_lines() -> Iterator[bytes]:
    for line in sys.stdin.buffer:
        yield line.rstrip(b"\n")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; the text comes on stdin")
    tokenizer = load_tokenizer(_VOCAB.value, lower_case=_LOWER_CASE.value, flavor=_FLAVOR.value)
    out = sys.stdout.buffer
    for tokens, ids in tokenizer.iter_encode(_stdin_lines(), batch_size=_BATCH_SIZE.value):
        out.write(json.dumps({"tokens": tokens, "ids": ids}, ensure_ascii=False).encode("utf-8") + b"\n")
    out.flush()
