"""`bert-jax inspect-data --input=SPEC|--shards=GLOB [--vocab_file=V] [--vocab_size_of_model=N|--config=F] [--json]`.

Preflight before training: counts, length histograms, [UNK] rate overall and,
per Unicode script, words, [UNK] words and tokens per word (which languages a
vocabulary serves badly), casing of the vocab against do_lower_case, vocab
size against the model. Any vocabulary `load_tokenizer` reads: WordPiece
vocab.txt, SentencePiece .model, byte-level BPE vocab.json (+ merges.txt), or
a folder holding one. Exits 1 when it finds a problem (printed as `!! PROBLEM:`).
"""

from __future__ import annotations

import json
import sys

from absl import flags
from ml_collections import config_flags

from bert_jax.commands import common
from bert_jax.data import corpus, inspect
from bert_jax.errors import UserError

_INPUT = flags.DEFINE_string("input", None, "Corpus spec: globs, tfds:NAME:FEATURE[@DIR] or builtin:stdlib-docs.")
_SHARDS = flags.DEFINE_string("shards", None, "Created shards: a create-data output directory or a shard glob.")
_VOCAB = flags.DEFINE_string(
    "vocab_file",
    None,
    "Vocabulary (required with --input): vocab.txt (WordPiece), a SentencePiece .model, vocab.json with "
    "merges.txt beside it (byte-level BPE), or a folder holding one.",
)
_LOWER = flags.DEFINE_boolean(
    "do_lower_case", None, "Lowercase the text as the model will; default: the vocabulary kind's default."
)
_MODEL_VOCAB = flags.DEFINE_integer("vocab_size_of_model", None, "The model's vocab_size to check against.")
_CONFIG = config_flags.DEFINE_config_file("config", None, "A pre-training config; its model.vocab_size is checked.")
_MAX_DOCS = flags.DEFINE_integer("max_documents", 2000, "Corpus mode: look at this many documents at most.")
_MAX_RECORDS = flags.DEFINE_integer("max_records", None, "Shards mode: look at this many records at most.")
_MAX_SEQ = flags.DEFINE_integer("max_seq_length", 128, "Corpus mode: range of the sentence-length histogram.")
_FORMAT = flags.DEFINE_enum("input_format", "auto", corpus.FORMATS, "Local text layout.")
_JSON = flags.DEFINE_boolean("json", False, "Print the report as JSON.")


def _model_vocab_size() -> int | None:
    if _MODEL_VOCAB.value is not None:
        return _MODEL_VOCAB.value
    config = _CONFIG.value
    return int(config.model.vocab_size) if config is not None else None


def main(argv: list[str]) -> None:
    common.no_positional_args(argv, hint="")
    if (_INPUT.value is None) == (_SHARDS.value is None):
        raise UserError("pass exactly one of --input (a corpus) or --shards (created data)")
    from bert_jax.tokenization import load_tokenizer

    tokenizer = load_tokenizer(_VOCAB.value, lower_case=_LOWER.value) if _VOCAB.value else None
    if _INPUT.value is not None:
        if tokenizer is None:
            raise UserError("--input needs --vocab_file (the vocab the corpus will be tokenized with)")
        report = inspect.inspect_corpus(
            _INPUT.value,
            tokenizer,
            do_lower_case=tokenizer.lower_case,
            model_vocab_size=_model_vocab_size(),
            max_documents=_MAX_DOCS.value,
            input_format=_FORMAT.value,
            max_seq_length=_MAX_SEQ.value,
        )
    else:
        report = inspect.inspect_shards(
            _SHARDS.value, tokenizer, model_vocab_size=_model_vocab_size(), max_records=_MAX_RECORDS.value
        )
    print(json.dumps(report, indent=1) if _JSON.value else inspect.format_report(report))
    if report["problems"]:
        sys.exit(1)
