"""`bert-jax tokenize --vocab=PATH [--nolower_case] < text`: tokenize each stdin line.

PATH is any tokenizer `bert_jax.tokenization.load_tokenizer` reads: a BERT
vocab.txt (WordPiece), a RoBERTa vocab.json with merges.txt beside it
(byte-level BPE), a SentencePiece .model, or a folder holding one of them (a
Hugging Face model or tokenizer folder, whose tokenizer_config.json then gives
the flavor and casing). Prints one JSON object per input line,
`{"tokens": [...], "ids": [...]}`, with no [CLS]/[SEP] (<s>/</s>); an empty line
gives empty lists. The input must be UTF-8: a line that is not is refused
with its line number (exit status 2) rather than read as U+FFFD, which
WordPiece's cleaning would silently drop (a Latin-1 "naïve" would become
`n ##ave`); the output stops before that line's batch.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator

from absl import flags

from bert_jax.commands import common
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


def utf8_lines(stream: Iterable[bytes], source: str = "stdin") -> Iterator[bytes]:
    """The lines of `stream` without their newline, each checked to be UTF-8;
    UserError naming the line (1-based), byte and column of one that is not."""
    for number, line in enumerate(stream, start=1):
        line = line.rstrip(b"\n")
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            bad = line[e.start : e.end].hex(" ")
            raise UserError(
                f"{source} line {number}: byte(s) {bad} at column {e.start + 1} are not UTF-8; convert the "
                "input first (e.g. iconv -f latin1 -t utf-8)"
            ) from None
        yield line


def main(argv: list[str]) -> None:
    common.no_positional_args(argv, "the text comes on stdin")
    tokenizer = load_tokenizer(_VOCAB.value, lower_case=_LOWER_CASE.value, flavor=_FLAVOR.value)
    out = sys.stdout.buffer
    for tokens, ids in tokenizer.iter_encode(utf8_lines(sys.stdin.buffer), batch_size=_BATCH_SIZE.value):
        out.write(json.dumps({"tokens": tokens, "ids": ids}, ensure_ascii=False).encode("utf-8") + b"\n")
    out.flush()
